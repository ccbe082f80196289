//! Shared test helpers: entries, proptest strategies and a way to run one test body against
//! every sink.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use align_audit::{Actor, AuditSink, CheckpointKey, Entry, JsonlSink, MemorySink, Stream};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

/// A fixed, clearly fake checkpoint key for tests.
pub fn test_key() -> CheckpointKey {
    CheckpointKey::from_bytes(b"test-only checkpoint key, 32+ bytes long").unwrap()
}

pub fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_000).unwrap()
}

/// A request-log or audit entry with every field set, `days_ago` days before `base_time()`.
pub fn entry(stream: Stream, n: u32, days_ago: i64, subject: &str) -> Entry {
    let ip: IpAddr = if n % 2 == 0 {
        format!("203.0.113.{}", n % 250).parse().unwrap()
    } else {
        format!("2001:db8:{:x}:7::1", n).parse().unwrap()
    };
    Entry::builder(
        stream,
        if stream == Stream::Audit {
            "api_key.revoked"
        } else {
            "http.request"
        },
    )
    .time(base_time() - TimeDelta::days(days_ago) + TimeDelta::milliseconds(i64::from(n)))
    .organization(format!("org_{}", n % 3))
    .environment(align_core::Environment::Live)
    .actor(Actor::User {
        id: subject.to_owned(),
    })
    .target(format!("key_{n}"))
    .request_id(format!("req_{n}"))
    .method("POST")
    .path(format!("/api/v1/keys/{n}/revoke?x=1"))
    .status(200)
    .latency(Duration::from_micros(u64::from(n) * 10))
    .ip(ip)
    .user_agent(format!("client/{n}"))
    .personal("email", format!("user{n}@example.test"))
    .metadata(
        serde_json::json!({"n": n, "reason": "rotation", "nested": {"b": 1, "a": [1.5, null]}}),
    )
    .build()
    .unwrap()
}

/// Random entries: a mix of streams, ages (in days), subjects and optional fields.
pub fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        any::<bool>(),
        0u32..1000,
        0i64..500,
        0usize..3,
        proptest::option::of("[a-z/]{0,12}"),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
    )
        .prop_map(|(audit, n, days, subject, target, status, with_ip)| {
            let stream = if audit {
                Stream::Audit
            } else {
                Stream::Request
            };
            let mut b = Entry::builder(stream, "act")
                .time(base_time() - TimeDelta::days(days))
                .actor(Actor::User {
                    id: format!("user_{subject}"),
                })
                .user_agent(format!("ua {n}"));
            if let Some(t) = target {
                b = b.target(t);
            }
            if let Some(s) = status {
                b = b.status(s);
            }
            if with_ip {
                b = b.ip(IpAddr::from([198, 51, 100, (n % 256) as u8]));
            }
            b.metadata(serde_json::json!({ "n": n })).build().unwrap()
        })
}

/// Every sink, freshly opened in `dir` with the test checkpoint key: memory, JSON Lines,
/// SQLite (feature `sqlite`) and PostgreSQL (feature `postgres`, in a scratch schema dropped
/// when the loop ends) when `ALIGN_TEST_POSTGRES_URL` is set.
pub async fn all_sinks(dir: &std::path::Path) -> Sinks {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(unused_mut))]
    let mut sinks: Vec<(&'static str, Arc<dyn AuditSink>)> = vec![
        (
            "memory",
            Arc::new(MemorySink::with_checkpoint_key(test_key())),
        ),
        (
            "jsonl",
            Arc::new(
                JsonlSink::open(dir.join("audit.jsonl"), Some(test_key()))
                    .await
                    .unwrap(),
            ),
        ),
    ];
    #[cfg(feature = "sqlite")]
    sinks.push((
        "sqlite",
        Arc::new(
            align_audit::SqliteSink::open(
                dir.join("audit.db"),
                align_audit::SqliteSinkConfig::with_checkpoint_key(test_key()),
            )
            .await
            .unwrap(),
        ),
    ));
    #[cfg(feature = "postgres")]
    let scratch = match postgres_url() {
        Some(url) => {
            let scratch = align_core::postgres::ScratchSchema::create(&url)
                .await
                .unwrap();
            let sink = align_audit::PgSink::open(
                scratch.pool().unwrap(),
                align_audit::PgSinkConfig::with_checkpoint_key(test_key()),
            )
            .await
            .unwrap();
            sinks.push(("postgres", Arc::new(sink)));
            Some(scratch)
        }
        None => None,
    };
    Sinks {
        sinks: sinks.into_iter(),
        #[cfg(feature = "postgres")]
        _scratch: scratch,
    }
}

/// The sinks to run a test body over; yields each once and keeps PostgreSQL's scratch schema
/// until the loop is done.
pub struct Sinks {
    sinks: std::vec::IntoIter<(&'static str, Arc<dyn AuditSink>)>,
    #[cfg(feature = "postgres")]
    _scratch: Option<align_core::postgres::ScratchSchema>,
}

impl Iterator for Sinks {
    type Item = (&'static str, Arc<dyn AuditSink>);

    fn next(&mut self) -> Option<Self::Item> {
        self.sinks.next()
    }
}

/// The PostgreSQL database to test against (`ALIGN_TEST_POSTGRES_URL`), or `None` after
/// printing, once per test binary and past the harness's output capture, why it is skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ALIGN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping PostgreSQL sink tests: ALIGN_TEST_POSTGRES_URL is not set"
                );
            });
            None
        }
    }
}

/// Verifies `stream` and panics with the break if the chain is not intact.
pub async fn assert_intact(name: &str, sink: &dyn AuditSink, stream: Stream) {
    let report = sink.verify(stream, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{name}/{stream:?}: {:?}", report.broken);
}
