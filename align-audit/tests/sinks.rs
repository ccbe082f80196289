//! Behaviour every sink shares: chaining, queries, privacy operations, export, shutdown.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use std::net::IpAddr;

use align_audit::{AuditSink, Error, MemorySink, PersonalState, PrivacyPolicy, Query, Stream};
use chrono::TimeDelta;
use support::{all_sinks, assert_intact, base_time, entry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_appends_chain_in_order_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        let a1 = sink.append(entry(Stream::Audit, 1, 0, "u1")).await.unwrap();
        let r1 = sink
            .append(entry(Stream::Request, 2, 0, "u1"))
            .await
            .unwrap();
        let a2 = sink.append(entry(Stream::Audit, 3, 0, "u1")).await.unwrap();
        assert_eq!((a1.sequence, r1.sequence, a2.sequence), (1, 1, 2), "{name}");
        let head = sink.head(Stream::Audit).await.unwrap();
        assert_eq!((head.sequence, head.hash), (2, a2.hash), "{name}");
        let page = sink.query(&Query::new(Stream::Audit)).await.unwrap();
        assert_eq!(
            page.records[1].hash(),
            page.records[0].prev_hash(),
            "{name}"
        );
        assert_intact(name, sink.as_ref(), Stream::Audit).await;
        assert_intact(name, sink.as_ref(), Stream::Request).await;
        sink.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_and_page_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..25 {
            let subject = if n % 5 == 0 { "alice" } else { "bob" };
            sink.submit(entry(Stream::Audit, n, i64::from(25 - n), subject))
                .await
                .unwrap();
        }
        sink.flush().await.unwrap();
        let mut seen = Vec::new();
        let mut q = Query::new(Stream::Audit).limit(7);
        loop {
            let page = sink.query(&q).await.unwrap();
            seen.extend(page.records.iter().map(|r| r.sequence()));
            match page.next_cursor {
                Some(c) => q = q.after(c.to_string().parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>(), "{name}");

        let alice = sink
            .query(&Query::new(Stream::Audit).actor("alice"))
            .await
            .unwrap();
        assert_eq!(alice.records.len(), 5, "{name}");
        let org = sink
            .query(
                &Query::new(Stream::Audit)
                    .organization("org_1")
                    .target("key_4"),
            )
            .await
            .unwrap();
        assert_eq!(org.records.len(), 1, "{name}");
        let since = base_time() - TimeDelta::days(10);
        let recent = sink
            .query(&Query::new(Stream::Audit).between(since, base_time()))
            .await
            .unwrap();
        assert!(
            recent.records.iter().all(|r| r.entry().time() >= since),
            "{name}"
        );
        assert_eq!(recent.records.len(), 10, "{name}");
        let none = sink.query(&Query::new(Stream::Request)).await.unwrap();
        assert!(
            none.records.is_empty() && none.next_cursor.is_none(),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymisation_coarsens_ips_drops_user_agents_and_keeps_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..10 {
            sink.submit(entry(Stream::Request, n, i64::from(10 - n), "u"))
                .await
                .unwrap();
        }
        let cutoff = base_time() - TimeDelta::days(5);
        let changed = sink.anonymise(Stream::Request, cutoff).await.unwrap();
        assert_eq!(changed, 5, "{name}");
        assert_eq!(
            sink.anonymise(Stream::Request, cutoff).await.unwrap(),
            0,
            "{name}"
        );
        let page = sink.query(&Query::new(Stream::Request)).await.unwrap();
        for r in &page.records {
            let e = r.entry();
            let old = e.time() < cutoff;
            let ip = e.ip().unwrap();
            assert_eq!(ip == align_audit::coarsen_ip(ip), old, "{name}: {ip}");
            assert_eq!(e.user_agent().is_none(), old, "{name}");
            assert_eq!(e.personal("email").is_none(), old, "{name}");
            if let (true, IpAddr::V4(v4)) = (old, ip) {
                assert_eq!(v4.octets()[3], 0);
            }
        }
        assert_intact(name, sink.as_ref(), Stream::Request).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_one_subjects_personal_fields_only() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..6 {
            let subject = if n < 2 { "alice" } else { "bob" };
            sink.submit(entry(Stream::Audit, n, 1, subject))
                .await
                .unwrap();
            sink.submit(entry(Stream::Request, n, 1, subject))
                .await
                .unwrap();
        }
        assert_eq!(sink.erase_subject("alice").await.unwrap(), 4, "{name}");
        for stream in Stream::ALL {
            let page = sink.query(&Query::new(stream)).await.unwrap();
            for r in &page.records {
                let alice = r.entry().concerns("alice");
                let state = r.entry().personal_state().unwrap();
                let expected = if alice {
                    PersonalState::Erased
                } else {
                    PersonalState::Present
                };
                assert_eq!(state, expected, "{name}");
                assert_eq!(r.entry().ip().is_none(), alice, "{name}");
            }
            assert_intact(name, sink.as_ref(), stream).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_gives_a_subjects_records_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..4 {
            let subject = if n % 2 == 0 { "alice" } else { "bob" };
            sink.submit(entry(Stream::Audit, n, 1, subject))
                .await
                .unwrap();
            sink.submit(entry(Stream::Request, n, 1, subject))
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(
            sink.export_subject("alice", &mut out).await.unwrap(),
            4,
            "{name}"
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["stream"], "request", "{name}");
        assert_eq!(lines[0]["actor"]["id"], "alice");
        assert_eq!(lines[0]["path"], "/api/v1/keys/0/revoke");
        assert_eq!(lines[0]["personal"]["ip"], "203.0.113.0");
        assert_eq!(lines[0]["personal"]["email"], "user0@example.test");
        assert_eq!(lines[0]["metadata"]["nested"]["a"][0], 1.5);
        assert!(lines[0]["time"].as_str().unwrap().ends_with(".000Z"));
        assert!(
            lines[0].get("hash").is_none(),
            "exports carry values, not chain internals"
        );
        assert!(lines[1]["sequence"].as_u64() > lines[0]["sequence"].as_u64());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_leaves_a_signed_checkpoint_that_verification_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..10 {
            sink.submit(entry(Stream::Request, n, i64::from(40 - n * 2), "u"))
                .await
                .unwrap();
        }
        let policy = PrivacyPolicy::default();
        let outcome = sink.apply_policy(&policy, base_time()).await.unwrap();
        // Ages 40, 38, 36, 34, 32 days are past the 30-day retention.
        assert_eq!(outcome.request_purged, 5, "{name}");
        assert_eq!(outcome.request_anonymised, 5, "{name}");
        let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{name}: {:?}", report.broken);
        assert_eq!(
            (report.start.sequence, report.checked, report.end.sequence),
            (5, 5, 10)
        );
        // Purging everything keeps the chain continuing after the checkpoint.
        assert_eq!(
            sink.purge(Stream::Request, base_time()).await.unwrap(),
            5,
            "{name}"
        );
        let r = sink
            .append(entry(Stream::Request, 99, 0, "u"))
            .await
            .unwrap();
        assert_eq!(r.sequence, 11);
        assert_intact(name, sink.as_ref(), Stream::Request).await;
    }
}

#[tokio::test]
async fn purging_without_a_checkpoint_key_is_refused() {
    let sink = MemorySink::new();
    sink.append(entry(Stream::Request, 1, 100, "u"))
        .await
        .unwrap();
    let err = sink.purge(Stream::Request, base_time()).await.unwrap_err();
    assert!(matches!(err, Error::CheckpointKeyMissing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_sinks_refuse_writes_after_committing_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for n in 0..50 {
            sink.submit(entry(Stream::Request, n, 0, "u"))
                .await
                .unwrap();
        }
        sink.close().await.unwrap();
        sink.close().await.unwrap();
        let err = sink
            .append(entry(Stream::Request, 1, 0, "u"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Closed), "{name}: {err}");
        assert_eq!(
            sink.head(Stream::Request)
                .await
                .map(|h| h.sequence)
                .unwrap_or(50),
            50
        );
    }
}
