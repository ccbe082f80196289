//! The PostgreSQL sink: one chain per stream under concurrent writers from several instances,
//! persistence, backpressure, and tampering done directly in the database. Skipped, with a
//! printed reason, without `ALIGN_TEST_POSTGRES_URL`.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
#![cfg(feature = "postgres")]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use align_audit::{AuditSink, BreakReason, Entry, PgSink, PgSinkConfig, Query, Stream};
use align_core::postgres::ScratchSchema;
use proptest::prelude::*;
use support::{arb_entry, entry, postgres_url, test_key};

/// A fresh schema, or `None` (after saying why) when no PostgreSQL is configured.
async fn scratch() -> Option<ScratchSchema> {
    Some(ScratchSchema::create(&postgres_url()?).await.unwrap())
}

/// A sink over a pool of its own: what another server instance would have.
async fn instance(scratch: &ScratchSchema, config: PgSinkConfig) -> PgSink {
    PgSink::open(scratch.pool().unwrap(), config).await.unwrap()
}

async fn open(scratch: &ScratchSchema) -> PgSink {
    instance(scratch, PgSinkConfig::with_checkpoint_key(test_key())).await
}

/// Runs `sql` on the scratch schema, as someone with database access would.
async fn sql(scratch: &ScratchSchema, sql: &str) -> u64 {
    let client = scratch.pool().unwrap().get().await.unwrap();
    client.execute(sql, &[]).await.unwrap()
}

async fn broken_at(sink: &PgSink) -> Option<(u64, BreakReason)> {
    let report = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
    report.broken.map(|b| (b.sequence, b.reason))
}

/// Every record of `stream`, oldest first.
async fn all_records(sink: &PgSink, stream: Stream) -> Vec<align_audit::Record> {
    let mut out = Vec::new();
    let mut q = Query::new(stream).limit(1000);
    loop {
        let page = sink.query(&q).await.unwrap();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => break,
        }
    }
    out.reverse();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_writing_at_once_extend_one_gap_free_chain() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let mut small = PgSinkConfig::with_checkpoint_key(test_key());
    small.max_batch = 7;
    let sinks = [
        Arc::new(instance(&scratch, small.clone()).await),
        Arc::new(instance(&scratch, small).await),
    ];
    // Per instance: four tasks of durable appends and two of queued request-log entries.
    let mut tasks = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        for t in 0..4u32 {
            let sink = Arc::clone(sink);
            tasks.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                for n in 0..40 {
                    let e = entry(Stream::Audit, (i as u32) * 1000 + t * 100 + n, 0, "u");
                    receipts.push(sink.append(e).await.unwrap());
                }
                receipts
            }));
        }
        for t in 0..2u32 {
            let sink = Arc::clone(sink);
            tasks.push(tokio::spawn(async move {
                for n in 0..100 {
                    let e = entry(Stream::Request, (i as u32) * 1000 + t * 100 + n, 0, "u");
                    sink.submit(e).await.unwrap();
                }
                Vec::new()
            }));
        }
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    for sink in &sinks {
        sink.close().await.unwrap();
    }

    // Every acknowledged append has its own place in the one chain, and it is stored there.
    let sequences: BTreeSet<u64> = receipts.iter().map(|r| r.sequence).collect();
    assert_eq!(sequences.len(), 320, "two appends were given one sequence");
    assert_eq!(sequences, (1..=320).collect(), "gaps in the audit chain");
    let reader = open(&scratch).await;
    let stored = all_records(&reader, Stream::Audit).await;
    assert_eq!(stored.len(), 320);
    for r in &receipts {
        assert_eq!(stored[r.sequence as usize - 1].hash(), &r.hash);
    }
    for (stream, total) in [(Stream::Audit, 320), (Stream::Request, 400)] {
        let report = reader.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{stream:?}: {:?}", report.broken);
        assert_eq!((report.checked, report.end.sequence), (total, total));
        assert_eq!(reader.head(stream).await.unwrap(), report.end);
    }
    // Both instances' records are interleaved in the chain, not one after the other.
    let by_first = |r: &align_audit::Record| r.entry().target().unwrap().len() > 6;
    let switches = stored
        .windows(2)
        .filter(|w| by_first(&w[0]) != by_first(&w[1]))
        .count();
    assert!(switches > 1, "the instances never interleaved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_sink_continues_the_chain() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let sink = open(&scratch).await;
    for n in 0..5 {
        sink.submit(entry(Stream::Audit, n, 1, "u")).await.unwrap();
    }
    sink.close().await.unwrap();
    let sink = open(&scratch).await;
    let r = sink.append(entry(Stream::Audit, 9, 0, "u")).await.unwrap();
    assert_eq!(r.sequence, 6);
    assert_eq!(broken_at(&sink).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_queue_holds_writers_back_without_dropping_anything() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let mut config = PgSinkConfig::with_checkpoint_key(test_key());
    config.queue_capacity = 1;
    config.max_batch = 3;
    let sink = Arc::new(instance(&scratch, config).await);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                for n in 0..25 {
                    sink.submit(entry(Stream::Request, t * 100 + n, 0, "u"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    sink.close().await.unwrap();
    assert_eq!(sink.head(Stream::Request).await.unwrap().sequence, 200);
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact() && report.checked == 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_directly_in_the_database_are_detected() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let sink = open(&scratch).await;
    for n in 0..6 {
        sink.submit(entry(Stream::Audit, n, 1, "u")).await.unwrap();
    }
    sink.flush().await.unwrap();
    let mut seen = Vec::new();
    sink.verify(Stream::Audit, &mut |p| seen.push((p.checked, p.total)))
        .await
        .unwrap();
    assert_eq!(seen.last(), Some(&(6, 6)), "progress reaches the total");

    sql(
        &scratch,
        "UPDATE audit_records SET status = 500 WHERE sequence = 3",
    )
    .await;
    assert_eq!(broken_at(&sink).await, Some((3, BreakReason::HashMismatch)));
    sql(
        &scratch,
        "UPDATE audit_records SET status = 200 WHERE sequence = 3",
    )
    .await;
    assert_eq!(broken_at(&sink).await, None);

    sql(
        &scratch,
        "UPDATE audit_records SET personal = replace(personal, '203.0.113.', '198.51.100.')
         WHERE sequence = 3",
    )
    .await;
    assert_eq!(
        broken_at(&sink).await,
        Some((3, BreakReason::PersonalDataMismatch))
    );
    sql(
        &scratch,
        "UPDATE audit_records SET personal = replace(personal, '198.51.100.', '203.0.113.')
         WHERE sequence = 3",
    )
    .await;
    assert_eq!(broken_at(&sink).await, None);

    sql(&scratch, "DELETE FROM audit_records WHERE sequence = 6").await;
    assert_eq!(
        broken_at(&sink).await,
        Some((6, BreakReason::MissingRecords { head: 6 }))
    );
    sql(&scratch, "DELETE FROM audit_records WHERE sequence = 2").await;
    assert_eq!(
        broken_at(&sink).await,
        Some((2, BreakReason::UnexpectedSequence { found: 3 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_missing_checkpoint_is_detected() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let sink = open(&scratch).await;
    for n in 0..6 {
        sink.submit(entry(Stream::Audit, n, 1, "u")).await.unwrap();
    }
    assert_eq!(
        sink.purge(Stream::Audit, chrono::Utc::now()).await.unwrap(),
        6
    );
    sink.append(entry(Stream::Audit, 7, -400, "u"))
        .await
        .unwrap();
    assert_eq!(broken_at(&sink).await, None);

    // Another instance without the checkpoint key cannot verify the purged stream.
    let keyless = instance(&scratch, PgSinkConfig::default()).await;
    assert!(matches!(
        keyless.verify(Stream::Audit, &mut |_| {}).await,
        Err(align_audit::Error::CheckpointKeyMissing)
    ));

    sql(&scratch, "UPDATE audit_checkpoints SET sequence = 5").await;
    assert_eq!(
        broken_at(&sink).await,
        Some((5, BreakReason::BadCheckpointSignature))
    );
    sql(&scratch, "DELETE FROM audit_checkpoints").await;
    assert_eq!(
        broken_at(&sink).await,
        Some((1, BreakReason::UnexpectedSequence { found: 7 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_from_two_instances_leave_one_consistent_checkpoint() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let (a, b) = (open(&scratch).await, open(&scratch).await);
    for n in 0..40 {
        a.submit(entry(Stream::Request, n, 40 - i64::from(n), "u"))
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    let now = support::base_time();
    let cutoffs = [
        now - chrono::TimeDelta::days(20),
        now - chrono::TimeDelta::days(10),
    ];
    let (x, y) = tokio::join!(
        a.purge(Stream::Request, cutoffs[0]),
        b.purge(Stream::Request, cutoffs[1])
    );
    // Ages 40..=1 days: 20 are older than 20 days, 30 older than 10; whichever ran first,
    // 30 are gone in all.
    assert_eq!(x.unwrap() + y.unwrap(), 30);
    let report = b.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.start.sequence, report.checked), (30, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_under_the_writer_lose_no_acknowledged_append() {
    let Some(scratch) = scratch().await else {
        return;
    };
    // The sink's connections carry a name of their own, so only they are killed.
    let name = format!("audit-kill-{}", scratch.name());
    let mut config = scratch.config();
    config.application_name(&name);
    let pool = align_core::postgres::pool(config).unwrap();
    let sink = Arc::new(
        PgSink::open(pool, PgSinkConfig::with_checkpoint_key(test_key()))
            .await
            .unwrap(),
    );
    let killer = {
        let admin = scratch.pool().unwrap();
        tokio::spawn(async move {
            let mut killed = 0;
            for _ in 0..20 {
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                let client = admin.get().await.unwrap();
                let rows = client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1",
                        &[&name],
                    )
                    .await
                    .unwrap();
                killed += rows.len();
            }
            killed
        })
    };
    let mut acked = Vec::new();
    let mut failed = 0;
    for n in 0..300 {
        match sink.append(entry(Stream::Audit, n, 0, "u")).await {
            Ok(r) => acked.push(r),
            // Only a COMMIT whose answer was lost may fail: it is never tried twice.
            Err(align_audit::Error::WriteFailed { .. }) => failed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let killed = killer.await.unwrap();
    assert!(killed > 0, "no connection was killed");
    // Batches cut off before their COMMIT are retried on a new connection; only the few cut
    // off during it fail (without the retry, about two per killed connection fail).
    assert!(
        failed <= killed / 2,
        "{failed} of 300 appends failed, {killed} kills"
    );
    let stored = all_records(&sink, Stream::Audit).await;
    for r in &acked {
        assert_eq!(stored[r.sequence as usize - 1].hash(), &r.hash);
    }
    let report = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    eprintln!(
        "{killed} connections killed, {} appends acknowledged, {failed} failed",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_rows_deleted_and_the_head_rewritten_are_caught_by_an_anchor() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let sink = open(&scratch).await;
    for n in 0..10 {
        sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
    }
    let key =
        align_audit::AnchorKey::from_pkcs8(&align_audit::AnchorKey::generate_pkcs8().unwrap())
            .unwrap();
    let head = sink.head(Stream::Audit).await.unwrap();
    let check = align_audit::AnchorCheck::new(
        key.sign(Stream::Audit, head, chrono::Utc::now()),
        *key.public_key(),
    );
    // What someone with write access to the database does to hide the newest records.
    sql(
        &scratch,
        "DELETE FROM audit_records WHERE stream = 'audit' AND sequence > 6",
    )
    .await;
    sql(
        &scratch,
        "UPDATE audit_heads SET sequence = 6, hash = (SELECT hash FROM audit_records \
         WHERE stream = 'audit' AND sequence = 6) WHERE stream = 'audit'",
    )
    .await;
    assert_eq!(broken_at(&sink).await, None, "invisible without the anchor");
    let report = sink
        .verify_against(Stream::Audit, Some(&check), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        report.broken.map(|b| (b.sequence, b.reason)),
        Some((
            7,
            BreakReason::TruncatedBelowAnchor {
                anchored: 10,
                head: 6
            }
        ))
    );
    sink.close().await.unwrap();
}

/// Changes made to one stored record with SQL, as someone with write access to the database
/// could make them; each keeps the row readable or makes it unreadable (also detected).
const TAMPER: &[&str] = &[
    "UPDATE audit_records SET status = COALESCE(status, 0) # 1 WHERE {at}",
    "UPDATE audit_records SET action = action || 'x' WHERE {at}",
    "UPDATE audit_records SET target = COALESCE(target, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET organization = COALESCE(organization, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET path = COALESCE(path, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET method = COALESCE(method, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET request_id = COALESCE(request_id, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET subject = COALESCE(subject, '') || 'x' WHERE {at}",
    "UPDATE audit_records SET metadata = '{\"n\":-1}' WHERE {at}",
    "UPDATE audit_records SET time = time + 1 WHERE {at}",
    "UPDATE audit_records SET latency_us = COALESCE(latency_us, 0) + 1 WHERE {at}",
    "UPDATE audit_records SET actor_id = actor_id || 'x' WHERE {at}",
    "UPDATE audit_records SET environment = CASE environment WHEN 'live' THEN 'sandbox' ELSE 'live' END WHERE {at}",
    "UPDATE audit_records SET id = gen_random_uuid()::text WHERE {at}",
    "UPDATE audit_records SET hash = set_byte(hash, 0, get_byte(hash, 0) # 1) WHERE {at}",
    "UPDATE audit_records SET prev_hash = set_byte(prev_hash, 0, get_byte(prev_hash, 0) # 1) WHERE {at}",
    "UPDATE audit_records SET personal = regexp_replace(personal, '\"ua ', '\"ub ') WHERE {at} AND personal LIKE '%\"ua %'",
    "UPDATE audit_records SET sequence = sequence + 1000 WHERE {at}",
    "DELETE FROM audit_records WHERE {at}",
];

proptest! {
    // Each case builds a schema and a chain in PostgreSQL: fewer cases than in memory.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_single_change_made_in_the_database_is_detected(
        entries in prop::collection::vec(arb_entry(), 1..12),
        at in any::<prop::sample::Index>(),
        change in 0..TAMPER.len(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let Some(scratch) = scratch().await else {
                return Ok(());
            };
            let sink = open(&scratch).await;
            let audit: Vec<Entry> = entries
                .into_iter()
                .filter(|e| e.stream() == Stream::Audit)
                .chain(std::iter::once(entry(Stream::Audit, 7, 1, "u")))
                .collect();
            let n = audit.len();
            for e in audit {
                sink.submit(e).await.unwrap();
            }
            sink.flush().await.unwrap();
            let target = at.index(n) + 1;
            let statement = TAMPER[change].replace("{at}", &format!("stream = 'audit' AND sequence = {target}"));
            let changed = sql(&scratch, &statement).await;
            prop_assume!(changed == 1);
            let detected = match sink.verify(Stream::Audit, &mut |_| {}).await {
                Ok(report) => report.broken.map(|b| b.sequence),
                // An unreadable row is a detected change too.
                Err(_) => Some(target as u64),
            };
            prop_assert!(detected.is_some(), "undetected: {}", statement);
            prop_assert!(detected.unwrap() <= target as u64 + 1, "found late: {}", statement);
            sink.close().await.unwrap();
            Ok(())
        })?;
    }
}
