//! Usage at scale (DESIGN §11, issue 26): fills a request log with `ENTRIES` records of `KEYS`
//! API keys spread over the last 30 days, then measures the usage index's first build and the
//! latency of one key's usage over 30 days (by day and by hour), and again after more traffic.
//!
//! ```text
//! cargo run --release -p align-audit --features sqlite --example usage_at_scale -- 10000000 1000 /tmp/usage-scale
//! ```
//! Arguments: entries (default 1 000 000), keys (default 1000), a directory (default a new
//! temporary one; an existing request log there is reused, not refilled).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring tool: fail loudly"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use align_audit::{
    Actor, AuditSink, Entry, Granularity, Query, SqliteSink, SqliteSinkConfig, Stream, UsageQuery,
};
use chrono::{TimeDelta, Utc};

fn entry(i: u64, keys: u64, at: chrono::DateTime<Utc>) -> Entry {
    let key = format!("key-{:05}", i % keys);
    let status = match i % 1000 {
        0..=9 => 429,
        10..=14 => 404,
        15 => 500,
        _ => 200,
    };
    Entry::request("GET", "/api/v1/me")
        .time(at)
        .organization("org_1")
        .actor(Actor::ApiKey {
            id: key,
            prefix: "ako_00000000".into(),
        })
        .request_id(format!("req_{i}"))
        .status(status)
        .latency(Duration::from_micros(80))
        .ip(format!("203.0.113.{}", i % 250).parse().unwrap())
        .user_agent("loadgen/1.0")
        .build()
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(sink: &SqliteSink, keys: u64, step: Granularity, label: &str) {
    let now = Utc::now();
    let mut times = Vec::new();
    let mut counted = 0;
    for n in 0..200u64 {
        let key = format!("key-{:05}", (n * 7919) % keys);
        let q = UsageQuery::new(key, now - TimeDelta::days(30), now, step).unwrap();
        let t = Instant::now();
        let b = sink.usage(&q).await.unwrap();
        times.push(t.elapsed());
        counted += b.iter().map(|b| b.requests).sum::<u64>();
    }
    times.sort();
    println!(
        "{label}: 200 queries, p50 {:?}, p99 {:?}, max {:?} ({} requests counted per key on average)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
        counted / 200
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: u64 = args.get(1).map_or(1_000_000, |a| a.parse().unwrap());
    let keys: u64 = args.get(2).map_or(1000, |a| a.parse().unwrap());
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .get(3)
        .map_or_else(|| temp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("align.db");
    let mut config = SqliteSinkConfig::default();
    config.sync_to_disk = false;
    let fresh = !SqliteSink::request_log_dir(&db).exists();
    let sink = SqliteSink::open(&db, config).await.unwrap();
    let start = Utc::now() - TimeDelta::days(30);
    if fresh {
        let t = Instant::now();
        let span = TimeDelta::days(30).num_milliseconds();
        for i in 0..entries {
            let offset = span * i64::try_from(i).unwrap() / i64::try_from(entries).unwrap();
            let at = start + TimeDelta::milliseconds(offset);
            sink.submit(entry(i, keys, at)).await.unwrap();
        }
        sink.flush().await.unwrap();
        println!(
            "filled {entries} entries of {keys} keys in {:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    let added = sink.refresh_usage().await.unwrap();
    println!("usage index: {added} records indexed in {:?}", t.elapsed());
    measure(&sink, keys, Granularity::Day, "30 days by day").await;
    measure(&sink, keys, Granularity::Hour, "30 days by hour").await;
    // A minute's more traffic (1 000 requests/s), then the same queries: each refreshes first.
    for i in 0..60_000 {
        sink.submit(entry(entries + i, keys, Utc::now()))
            .await
            .unwrap();
    }
    sink.flush().await.unwrap();
    let t = Instant::now();
    let q = UsageQuery::new(
        "key-00000",
        Utc::now() - TimeDelta::days(30),
        Utc::now(),
        Granularity::Day,
    )
    .unwrap();
    sink.usage(&q).await.unwrap();
    println!(
        "first query after 60 000 new records (refresh included): {:?}",
        t.elapsed()
    );
    measure(&sink, keys, Granularity::Day, "30 days by day, after").await;
    // The request log itself, for one key: a page of its latest 100 requests, and a key
    // with none (every closed segment ruled out by the usage index, or read without it).
    for actor in ["key-00007", "key-without-requests"] {
        let t = Instant::now();
        let page = sink
            .query(&Query::new(Stream::Request).actor(actor).limit(100))
            .await
            .unwrap();
        println!(
            "request log of {actor}: {} records in {:?}",
            page.records.len(),
            t.elapsed()
        );
    }
    sink.close().await.unwrap();
}
