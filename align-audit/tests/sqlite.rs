//! The SQLite sink: persistence, backpressure, and tampering done directly in the database.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
#![cfg(feature = "sqlite")]

mod support;

use std::sync::Arc;

use align_audit::{AuditSink, BreakReason, JsonlSink, Query, SqliteSink, SqliteSinkConfig, Stream};
use rusqlite::Connection;
use support::{entry, test_key};

async fn open(path: &std::path::Path) -> SqliteSink {
    SqliteSink::open(path, SqliteSinkConfig::with_checkpoint_key(test_key()))
        .await
        .unwrap()
}

async fn filled(path: &std::path::Path, n: u32) -> SqliteSink {
    let sink = open(path).await;
    for i in 0..n {
        sink.submit(entry(Stream::Audit, i, 1, "u")).await.unwrap();
    }
    sink.flush().await.unwrap();
    sink
}

async fn broken_at(sink: &SqliteSink) -> Option<(u64, BreakReason)> {
    let report = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
    report.broken.map(|b| (b.sequence, b.reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_sink_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    filled(&path, 5).await.close().await.unwrap();
    let sink = open(&path).await;
    let r = sink.append(entry(Stream::Audit, 9, 0, "u")).await.unwrap();
    assert_eq!(r.sequence, 6);
    assert_eq!(broken_at(&sink).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_queue_holds_writers_back_without_dropping_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SqliteSinkConfig::with_checkpoint_key(test_key());
    config.queue_capacity = 1;
    config.max_batch = 3;
    config.sync_to_disk = false;
    let sink = Arc::new(
        SqliteSink::open(dir.path().join("q.db"), config)
            .await
            .unwrap(),
    );
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
async fn progress_is_reported_up_to_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let sink = filled(&dir.path().join("p.db"), 10).await;
    let mut seen = Vec::new();
    sink.verify(Stream::Audit, &mut |p| seen.push((p.checked, p.total)))
        .await
        .unwrap();
    assert_eq!(seen.last(), Some(&(10, 10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_directly_in_the_database_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let sink = filled(&path, 6).await;
    let raw = Connection::open(&path).unwrap();
    let sql = |s: &str| raw.execute_batch(s).unwrap();

    sql("UPDATE audit_records SET status = 500 WHERE sequence = 3");
    assert_eq!(broken_at(&sink).await, Some((3, BreakReason::HashMismatch)));
    sql("UPDATE audit_records SET status = 200 WHERE sequence = 3");
    assert_eq!(broken_at(&sink).await, None);

    // Personal data is stored in its compact binary form, the commitments computed from the
    // salt and values: an altered address no longer matches the record hash.
    let personal: Vec<u8> = raw
        .query_row(
            "SELECT personal FROM audit_records WHERE sequence = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let forged = replace(&personal, b"203.0.113.", b"203.0.114.");
    raw.execute(
        "UPDATE audit_records SET personal = ?1 WHERE sequence = 3",
        [&forged],
    )
    .unwrap();
    assert_eq!(broken_at(&sink).await, Some((3, BreakReason::HashMismatch)));
    raw.execute(
        "UPDATE audit_records SET personal = ?1 WHERE sequence = 3",
        [&personal],
    )
    .unwrap();
    assert_eq!(broken_at(&sink).await, None);

    sql("DELETE FROM audit_records WHERE sequence = 6");
    assert_eq!(
        broken_at(&sink).await,
        Some((6, BreakReason::MissingRecords { head: 6 }))
    );
    sql("DELETE FROM audit_records WHERE sequence = 4");
    assert_eq!(
        broken_at(&sink).await,
        Some((4, BreakReason::UnexpectedSequence { found: 5 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_missing_checkpoint_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let sink = filled(&path, 6).await;
    // Entries are one day old; purge everything up to now, then add fresh ones.
    assert_eq!(
        sink.purge(Stream::Audit, chrono::Utc::now()).await.unwrap(),
        6
    );
    sink.append(entry(Stream::Audit, 7, -400, "u"))
        .await
        .unwrap();
    assert_eq!(broken_at(&sink).await, None);

    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("UPDATE audit_checkpoints SET sequence = 5")
        .unwrap();
    assert_eq!(
        broken_at(&sink).await,
        Some((5, BreakReason::BadCheckpointSignature))
    );
    raw.execute_batch("DELETE FROM audit_checkpoints").unwrap();
    assert_eq!(
        broken_at(&sink).await,
        Some((1, BreakReason::UnexpectedSequence { found: 7 }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_reopens_after_a_torn_write_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let sink = JsonlSink::open(&path, None).await.unwrap();
    for n in 0..3 {
        sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
    }
    sink.close().await.unwrap();
    // A crash in the middle of a write leaves half a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"record\":{\"sequence\":4,\"prevH");
    std::fs::write(&path, text).unwrap();

    let sink = JsonlSink::open(&path, None).await.unwrap();
    let r = sink.append(entry(Stream::Audit, 3, 0, "u")).await.unwrap();
    assert_eq!(r.sequence, 4);
    let report = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    let page = sink.query(&Query::new(Stream::Audit)).await.unwrap();
    assert_eq!(page.records.len(), 4);
}

/// Audit logs hold personal data (DESIGN §8): SQLite files and JSON Lines files, and the file
/// a purge rewrites, are their owner's only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_files_are_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let sink = SqliteSink::open(&db, SqliteSinkConfig::default())
        .await
        .unwrap();
    sink.append(entry(Stream::Audit, 0, 0, "u")).await.unwrap();
    for f in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    sink.close().await.unwrap();

    let path = dir.path().join("log.jsonl");
    let sink = JsonlSink::open(&path, Some(support::test_key()))
        .await
        .unwrap();
    sink.append(entry(Stream::Audit, 0, 0, "u")).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
    assert_eq!(sink.purge(Stream::Audit, future).await.unwrap(), 1);
    assert_eq!(mode(&path), 0o600, "the rewritten file");
    sink.close().await.unwrap();
}

#[tokio::test]
async fn two_writers_on_one_file_extend_one_chain() {
    use align_audit::{AuditSink, Entry, SqliteSink, SqliteSinkConfig, Stream};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let server = SqliteSink::open(&path, SqliteSinkConfig::default())
        .await
        .unwrap();
    let cli = SqliteSink::open(&path, SqliteSinkConfig::default())
        .await
        .unwrap();
    let mut receipts = Vec::new();
    for i in 0..10 {
        let sink = if i % 3 == 0 { &cli } else { &server };
        let entry = Entry::audit(format!("step.{i}")).build().unwrap();
        receipts.push(sink.append(entry).await.unwrap());
        // Request-log entries queued by one writer in between.
        server
            .submit(Entry::request("GET", "/x").build().unwrap())
            .await
            .unwrap();
    }
    server.close().await.unwrap();
    cli.close().await.unwrap();
    let sequences: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
    assert_eq!(
        sequences,
        (1..=10).collect::<Vec<_>>(),
        "one chain, no forks or gaps"
    );
    let reader = SqliteSink::open(&path, SqliteSinkConfig::default())
        .await
        .unwrap();
    for stream in [Stream::Audit, Stream::Request] {
        let report = reader.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{stream:?}: {report:?}");
    }
    assert_eq!(reader.head(Stream::Audit).await.unwrap().sequence, 10);
}

/// A sink whose writer waits `delay` for more submitted entries before committing.
async fn with_commit_delay(path: &std::path::Path, delay: std::time::Duration) -> SqliteSink {
    let mut config = SqliteSinkConfig::with_checkpoint_key(test_key());
    config.commit_delay = delay;
    config.request_commit_window = delay;
    config.sync_to_disk = false;
    SqliteSink::open(path, config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_appends_and_flushes_do_not_wait_for_the_commit_delay() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let sink = with_commit_delay(&dir.path().join("d.db"), Duration::from_secs(60)).await;
    sink.submit(entry(Stream::Request, 1, 0, "u"))
        .await
        .unwrap();
    let started = Instant::now();
    let receipt = sink.append(entry(Stream::Audit, 2, 0, "u")).await.unwrap();
    assert_eq!(receipt.sequence, 1);
    // The request log has a commit window of its own: the submitted entry is not written yet.
    assert_eq!(sink.head(Stream::Request).await.unwrap().sequence, 0);
    let receipt = sink
        .append(entry(Stream::Request, 2, 0, "u"))
        .await
        .unwrap();
    assert_eq!(receipt.sequence, 2);
    assert_eq!(sink.head(Stream::Request).await.unwrap().sequence, 2);
    sink.submit(entry(Stream::Request, 3, 0, "u"))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.head(Stream::Request).await.unwrap().sequence, 3);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited {:?}",
        started.elapsed()
    );
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_entries_are_committed_after_the_commit_delay_without_a_flush() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let sink = with_commit_delay(&dir.path().join("s.db"), Duration::from_millis(50)).await;
    for n in 0..3 {
        sink.submit(entry(Stream::Request, n, 0, "u"))
            .await
            .unwrap();
    }
    let started = Instant::now();
    while sink.head(Stream::Request).await.unwrap().sequence < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact() && report.checked == 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_reaches_request_log_rows_in_every_slice_of_the_stream() {
    use align_audit::{Actor, Entry, PersonalState};
    let dir = tempfile::tempdir().unwrap();
    let sink = with_commit_delay(&dir.path().join("e.db"), std::time::Duration::ZERO).await;
    // More rows than one slice of the walk (20 000), the subject's spread over all of them.
    let rows = 45_000u32;
    for n in 0..rows {
        let key = if n % 3 == 0 { "key_a" } else { "key_b" };
        let entry = Entry::request("GET", "/api/v1/me")
            .actor(Actor::ApiKey {
                id: key.into(),
                prefix: "ako_00000000".into(),
            })
            .ip([203, 0, 113, 7].into())
            .build()
            .unwrap();
        sink.submit(entry).await.unwrap();
    }
    sink.append(entry(Stream::Audit, 1, 0, "key_a"))
        .await
        .unwrap();
    assert_eq!(sink.erase_subject("key_a").await.unwrap(), 15_000 + 1);
    let page = sink
        .query(&Query::new(Stream::Request).actor("key_a").limit(500))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 500);
    assert!(page.records.iter().all(
        |r| r.entry().personal_state() == Some(PersonalState::Erased) && r.entry().ip().is_none()
    ));
    let other = sink
        .query(&Query::new(Stream::Request).actor("key_b").limit(10))
        .await
        .unwrap();
    assert!(other.records.iter().all(|r| r.entry().ip().is_some()));
    for stream in [Stream::Request, Stream::Audit] {
        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{stream:?}: {report:?}");
    }
}

/// `haystack` with the first `from` replaced by `to` (same length).
fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .unwrap();
    let mut out = haystack.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

/// Rows written before the compact form hold personal data as JSON text with stored
/// commitments: they are still read, verified and anonymised, and tampering with them is
/// still reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_with_personal_data_as_json_text_are_still_read_verified_and_anonymised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.db");
    let sink = filled(&path, 6).await;
    let page = sink.query(&Query::new(Stream::Audit)).await.unwrap();
    let third = page.records.iter().find(|r| r.sequence() == 3).unwrap();
    let json = serde_json::to_value(third).unwrap()["entry"]["personal"].to_string();
    assert!(
        json.contains("\"commitment\"") && json.contains("203.0.113.2"),
        "{json}"
    );
    let raw = Connection::open(&path).unwrap();
    let set = |value: &str| {
        raw.execute(
            "UPDATE audit_records SET personal = ?1 WHERE sequence = 3",
            [value],
        )
        .unwrap()
    };
    set(&json);
    assert_eq!(broken_at(&sink).await, None);
    let again = sink.query(&Query::new(Stream::Audit)).await.unwrap();
    assert_eq!(again.records, page.records);

    set(&json.replacen("203.0.113.2", "203.0.113.9", 1));
    assert_eq!(
        broken_at(&sink).await,
        Some((3, BreakReason::PersonalDataMismatch))
    );
    set(&json);

    assert_eq!(
        sink.anonymise(Stream::Audit, chrono::Utc::now())
            .await
            .unwrap(),
        6
    );
    assert_eq!(broken_at(&sink).await, None);
    let page = sink.query(&Query::new(Stream::Audit)).await.unwrap();
    let third = page.records.iter().find(|r| r.sequence() == 3).unwrap();
    assert_eq!(third.entry().personal("ip"), Some("203.0.113.0"));
    let kind: String = raw
        .query_row(
            "SELECT typeof(personal) FROM audit_records WHERE sequence = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "blob");
}
