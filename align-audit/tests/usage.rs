//! Per-key usage from the request log (DESIGN §11): the same counts from every sink, folded
//! summaries counted as the requests they stand for, and the SQLite request log's usage
//! index counting each record once, rebuilt from the segments, and bounded by retention.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use std::time::Duration;

use align_audit::{Actor, AuditSink, Entry, Granularity, UsageBucket, UsageQuery};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use support::{all_sinks, base_time};

/// A request by API key `key`, `minutes_ago` minutes before `base_time()`.
fn request(n: u32, key: &str, status: u16, minutes_ago: i64) -> Entry {
    Entry::request("GET", format!("/api/v1/things/{n}"))
        .time(at(minutes_ago) + TimeDelta::milliseconds(n.into()))
        .organization("org_1")
        .actor(Actor::ApiKey {
            id: key.into(),
            prefix: "ako_00000000".into(),
        })
        .request_id(format!("req_{n}"))
        .status(status)
        .latency(Duration::from_micros(50))
        .build()
        .unwrap()
}

fn at(minutes_ago: i64) -> DateTime<Utc> {
    base_time() - TimeDelta::minutes(minutes_ago)
}

/// A folded summary: `count` rejections of `key` in one second (`align_audit::fold`).
fn folded(key: &str, status: u16, minutes_ago: i64, count: u64) -> Entry {
    Entry::request("GET", "/api/v1/me")
        .time(at(minutes_ago))
        .organization("org_1")
        .actor(Actor::ApiKey {
            id: key.into(),
            prefix: "ako_00000000".into(),
        })
        .status(status)
        .metadata(json!({ "folded": { "count": count, "lastRequestId": "req_last" } }))
        .build()
        .unwrap()
}

/// What every sink is given: key_a's requests over three hours, key_b's, and a console
/// user's request.
fn traffic() -> Vec<Entry> {
    let mut out = Vec::new();
    for n in 0..40u32 {
        let status = [200, 201, 404, 429, 500][n as usize % 5];
        out.push(request(n, "key_a", status, i64::from(n) * 4 + 1));
    }
    for n in 40..50u32 {
        out.push(request(n, "key_b", 200, 5));
    }
    out.push(folded("key_a", 429, 2, 37));
    out.push(
        Entry::request("GET", "/console")
            .time(at(3))
            .actor(Actor::User {
                id: "user_1".into(),
            })
            .status(200)
            .build()
            .unwrap(),
    );
    out
}

fn totals(b: &[UsageBucket]) -> (u64, u64, u64, u64, u64) {
    b.iter().fold((0, 0, 0, 0, 0), |t, b| {
        (
            t.0 + b.requests,
            t.1 + b.succeeded,
            t.2 + b.client_errors,
            t.3 + b.rate_limited,
            t.4 + b.server_errors,
        )
    })
}

fn last_hours(hours: i64) -> UsageQuery {
    UsageQuery::new(
        "key_a",
        base_time() - TimeDelta::hours(hours),
        base_time(),
        Granularity::Hour,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_a_keys_requests_per_step_by_outcome_on_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in all_sinks(dir.path()).await {
        for e in traffic() {
            sink.submit(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        let q = last_hours(4);
        let b = sink.usage(&q).await.unwrap();
        assert_eq!(b.len() as i64, q.steps(), "{name}");
        assert!(b.windows(2).all(|w| w[0].start < w[1].start), "{name}");
        // 40 requests, 8 of each status, plus the folded 37 rate-limited ones.
        assert_eq!(totals(&b), (77, 16, 8, 45, 8), "{name}");
        // Each bucket holds the requests of its own hour.
        for bucket in &b {
            let end = bucket.start + TimeDelta::hours(1);
            let expected = (0..40i64)
                .map(|n| at(n * 4 + 1))
                .filter(|t| *t >= bucket.start && *t < end)
                .count() as u64
                + u64::from(at(2) >= bucket.start && at(2) < end) * 37;
            assert_eq!(bucket.requests, expected, "{name} {}", bucket.start);
        }
        // A minute range sees only its minutes; another key only its own requests.
        let one = UsageQuery::new("key_a", at(2), at(1), Granularity::Minute).unwrap();
        assert_eq!(totals(&sink.usage(&one).await.unwrap()).3, 37, "{name}");
        let b_key = UsageQuery::new("key_b", at(60), base_time(), Granularity::Day).unwrap();
        assert_eq!(totals(&sink.usage(&b_key).await.unwrap()).0, 10, "{name}");
        let none = UsageQuery::new("key_c", at(60), base_time(), Granularity::Day).unwrap();
        assert_eq!(totals(&sink.usage(&none).await.unwrap()).0, 0, "{name}");
        let user = UsageQuery::new("user_1", at(60), base_time(), Granularity::Day).unwrap();
        assert_eq!(totals(&sink.usage(&user).await.unwrap()).0, 1, "{name}");
        sink.close().await.unwrap();
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;

    use align_audit::{SqliteSink, SqliteSinkConfig};

    use super::*;

    fn config() -> SqliteSinkConfig {
        let mut c = SqliteSinkConfig::with_checkpoint_key(support::test_key());
        c.sync_to_disk = false;
        c.request_commit_window = Duration::from_millis(5);
        // A few records a segment, so that the index reads closed and open segments.
        c.request_segment_bytes = 2048;
        c
    }

    async fn open(db: &Path) -> SqliteSink {
        SqliteSink::open(db, config()).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_usage_index_counts_each_record_once_across_refreshes_and_processes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let server = open(&db).await;
        let all = traffic();
        let (first, rest) = all.split_at(20);
        for e in first.iter().cloned() {
            server.submit(e).await.unwrap();
        }
        server.flush().await.unwrap();
        let early = totals(&server.usage(&last_hours(4)).await.unwrap());
        assert_eq!(early.0, 20);
        for e in rest.iter().cloned() {
            server.submit(e).await.unwrap();
        }
        server.flush().await.unwrap();
        // An operator's CLI on the same database refreshes the same index.
        let cli = open(&db).await;
        assert!(cli.refresh_usage().await.unwrap() > 0);
        assert_eq!(server.refresh_usage().await.unwrap(), 0);
        assert_eq!(cli.refresh_usage().await.unwrap(), 0);
        let expected = (77, 16, 8, 45, 8);
        assert_eq!(
            totals(&server.usage(&last_hours(4)).await.unwrap()),
            expected
        );
        assert_eq!(totals(&cli.usage(&last_hours(4)).await.unwrap()), expected);
        cli.close().await.unwrap();

        // The index is derived: without it, the same answer comes back from the segments.
        let index = SqliteSink::request_log_dir(&db).join("usage-v1.sqlite");
        assert!(index.exists());
        let before = server.usage(&last_hours(4)).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", index.display()));
        }
        assert_eq!(server.usage(&last_hours(4)).await.unwrap(), before);
        server.close().await.unwrap();
    }

    /// Regression: erasing a subject rewrites the open segment shorter, and the index's
    /// offset into it then pointed into the middle of a record (usage answered "corrupt").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_erasure_that_rewrites_the_open_segment_leaves_usage_exact() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let mut c = config();
        c.request_segment_bytes = 1 << 20;
        let sink = SqliteSink::open(&db, c).await.unwrap();
        let personal = |n: u32| {
            Entry::request("GET", format!("/api/v1/things/{n}"))
                .time(base_time() - TimeDelta::minutes(30) + TimeDelta::milliseconds(n.into()))
                .organization("org_1")
                .actor(Actor::ApiKey {
                    id: "key_a".into(),
                    prefix: "ako_00000000".into(),
                })
                .request_id(format!("req_{n}"))
                .status(200)
                .ip("203.0.113.7".parse().unwrap())
                .user_agent("a rather long user agent string that erasure removes/1.0")
                .build()
                .unwrap()
        };
        for n in 0..10 {
            sink.submit(personal(n)).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, 10);
        assert!(sink.erase_subject("key_a").await.unwrap() > 0);
        for n in 10..15 {
            sink.submit(personal(n)).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, 15);
        sink.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_usage_index_ahead_of_its_segments_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let backup = dir.path().join("backup.db");
        let sink = open(&db).await;
        for e in traffic().into_iter().take(10) {
            sink.submit(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        SqliteSink::copy_request_log(&db, &backup).unwrap();
        for e in traffic().into_iter().skip(10) {
            sink.submit(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, 77);
        sink.close().await.unwrap();
        // The segments go back to the backup's ten records; the index had counted more.
        let index = SqliteSink::request_log_dir(&db).join("usage-v1.sqlite");
        let kept = dir.path().join("usage-v1.sqlite");
        std::fs::copy(&index, &kept).unwrap();

        SqliteSink::restore_request_log(&backup, &db).unwrap();
        std::fs::copy(&kept, &index).unwrap();
        let sink = open(&db).await;
        let kept_records = sink
            .query(&align_audit::Query::new(align_audit::Stream::Request).limit(100))
            .await
            .unwrap()
            .records
            .len();
        assert_eq!(kept_records, 10);
        assert_eq!(sink.refresh_usage().await.unwrap(), 10);
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, 10);
        sink.close().await.unwrap();
    }

    /// A query for one actor skips the closed segments the usage index rules out, and still
    /// finds every match: in old segments, in the open one, and past what the index counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_actors_request_log_query_finds_every_match_with_the_index() {
        use align_audit::{Query, Stream};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let sink = open(&db).await;
        // A rare key once, three hours ago, among many requests of a busy one.
        sink.submit(request(0, "rare", 200, 180)).await.unwrap();
        for n in 1..200u32 {
            sink.submit(request(n, "busy", 200, 170 - i64::from(n / 2)))
                .await
                .unwrap();
        }
        sink.flush().await.unwrap();
        let count = |actor: &'static str| {
            let sink = &sink;
            async move {
                let mut q = Query::new(Stream::Request).actor(actor).limit(1000);
                q.limit = 1000;
                sink.query(&q).await.unwrap().records.len()
            }
        };
        assert_eq!((count("rare").await, count("busy").await), (1, 199));
        sink.refresh_usage().await.unwrap();
        assert_eq!(
            (
                count("rare").await,
                count("busy").await,
                count("none").await
            ),
            (1, 199, 0)
        );
        // Past the index: a new request of the rare key, not yet counted by it.
        sink.submit(request(500, "rare", 429, 1)).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(count("rare").await, 2);
        sink.refresh_usage().await.unwrap();
        assert_eq!(count("rare").await, 2);
        sink.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_forgets_the_usage_of_the_minutes_it_purged() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let sink = open(&db).await;
        for e in traffic() {
            sink.submit(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, 77);
        // Everything older than an hour goes.
        sink.purge(align_audit::Stream::Request, at(60))
            .await
            .unwrap();
        let left = (0..40i64).filter(|n| at(n * 4 + 1) >= at(60)).count() as u64 + 37;
        assert_eq!(totals(&sink.usage(&last_hours(4)).await.unwrap()).0, left);
        sink.close().await.unwrap();
    }
}
