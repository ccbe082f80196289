//! Two `align serve` processes over one PostgreSQL database (and one Redis when
//! `ALIGN_TEST_REDIS_URL` is set): one is killed with SIGKILL while it holds webhook deliveries
//! in flight, and the survivor delivers every one of them (same `webhook-id`) once their leases
//! end, without touching them before; both write audit records into the one chain, which
//! `align audit verify --database-url …` finds intact. Skipped, with a printed reason, without
//! `ALIGN_TEST_POSTGRES_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{call, spawn_server};

/// Attempts may take 4 s, so a claim's lease is 2 × 4 + 2 = 10 s: what a killed instance's
/// deliveries wait before another instance may take them.
const ATTEMPT_TIMEOUT_SECS: &str = "4";
const MESSAGES: usize = 6;

/// One request that reached the receiver: its `webhook-id` and when it arrived.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

/// A webhook receiver that records every delivery and, while `held`, keeps each one waiting
/// for its answer (a slow endpoint: the deliveries stay in flight, leased to their sender).
struct Receiver {
    addr: SocketAddr,
    arrivals: Arrivals,
    hold: Arc<(Mutex<bool>, Condvar)>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals: Arrivals = Arc::default();
        let hold = Arc::new((Mutex::new(true), Condvar::new()));
        let (log, gate) = (Arc::clone(&arrivals), Arc::clone(&hold));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, gate) = (Arc::clone(&log), Arc::clone(&gate));
                std::thread::spawn(move || serve(stream, &log, &gate));
            }
        });
        Self {
            addr,
            arrivals,
            hold,
        }
    }

    /// Answers every held request and every later one at once.
    fn release(&self) {
        *self.hold.0.lock().unwrap() = false;
        self.hold.1.notify_all();
    }

    /// How many times each `webhook-id` arrived (before `until`, when given).
    fn counts(&self, until: Option<Instant>) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (id, at) in self.arrivals.lock().unwrap().iter() {
            if until.is_none_or(|u| *at < u) {
                *out.entry(id.clone()).or_default() += 1;
            }
        }
        out
    }

    /// The ids that arrived at or after `since`.
    fn since(&self, since: Instant) -> BTreeSet<String> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals
            .iter()
            .filter(|(_, at)| *at >= since)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.counts(None)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads requests off one connection; records each, waits while held, answers 200.
fn serve(stream: std::net::TcpStream, log: &Arrivals, gate: &(Mutex<bool>, Condvar)) {
    let mut reader = BufReader::new(stream);
    loop {
        let (mut id, mut len) = (String::new(), 0_usize);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("webhook-id:") {
                id = v.trim().to_owned();
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push((id, Instant::now()));
        let mut held = gate.0.lock().unwrap();
        while *held {
            held = gate.1.wait(held).unwrap();
        }
        drop(held);
        if reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// `url` with `schema` first on every connection's `search_path`.
fn url_in(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// `align audit …` on the shared database; the parsed JSON answer.
fn audit(data: &Path, database: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_align"))
        .arg("audit")
        .args(args)
        .args(["--json", "--data-dir"])
        .arg(data)
        .env("ALIGN_DATABASE_URL", database)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "align audit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_killed_instances_deliveries_reach_the_survivor_and_both_extend_one_audit_chain() {
    let Some(base) = std::env::var("ALIGN_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        // Past the test harness's output capture, so the reason shows in every run.
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: ALIGN_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scratch = runtime
        .block_on(align_keys::postgres::ScratchSchema::create(&base))
        .unwrap();
    let database = url_in(&base, scratch.name());
    let redis_prefix = format!("align-test:{}-{}:", std::process::id(), scratch.name());
    let redis = std::env::var("ALIGN_TEST_REDIS_URL").unwrap_or_default();
    let env: Vec<(&str, &str)> = vec![
        ("ALIGN_DATABASE_URL", &database),
        ("ALIGN_RATELIMIT_REDIS_URL", &redis),
        ("ALIGN_RATELIMIT_REDIS_PREFIX", &redis_prefix),
        ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
        ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "1,1,1,1"),
        ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
        ("ALIGN_WEBHOOKS_ATTEMPT_TIMEOUT_SECS", ATTEMPT_TIMEOUT_SECS),
    ];
    let dirs = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dirs.path().join("a"), dirs.path().join("b"));

    // B starts first, on the empty database: it bootstraps the organisation.
    let (mut b, addr_b) = spawn_server(&dir_b, &env);
    let admin = std::fs::read_to_string(dir_b.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();
    let (status, sandbox) = call(
        addr_b,
        "POST",
        "/api/v1/keys",
        &admin,
        Some(&json!({"name": "sandbox-admin", "scope": "organization", "environment": "sandbox"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{sandbox}");
    let sandbox = sandbox["key"].as_str().unwrap().to_owned();
    let rx = Receiver::start();
    let (status, ep) = call(
        addr_b,
        "POST",
        "/api/v1/webhook-endpoints",
        &sandbox,
        Some(&json!({ "url": format!("http://{}/in", rx.addr), "eventTypes": ["webhook.test"] })),
    )
    .unwrap();
    assert_eq!(status, 201, "{ep}");
    let test = format!(
        "/api/v1/webhook-endpoints/{}/test",
        ep["id"].as_str().unwrap()
    );

    // Messages enqueued through B; B's dispatcher claims them all and the receiver holds them.
    for _ in 0..MESSAGES {
        let (status, body) = call(addr_b, "POST", &test, &sandbox, Some(&json!({}))).unwrap();
        assert_eq!(status, 202, "{body}");
    }
    rx.wait_for("B's deliveries", Duration::from_secs(10), |rx| {
        rx.counts(None).len() == MESSAGES
    });
    let held: BTreeSet<String> = rx.counts(None).into_keys().collect();

    // A joins while B holds them, and writes to the audit log too (a key minted through A).
    // It needs B's secrets key file, as docs/operations.md says: copied before it starts.
    std::fs::create_dir(&dir_a).unwrap();
    std::fs::copy(dir_b.join("secrets-key"), dir_a.join("secrets-key")).unwrap();
    let (_a, addr_a) = spawn_server(&dir_a, &env);
    assert!(
        !dir_a.join("bootstrap-admin-key").exists(),
        "the second instance finds the database set up"
    );
    let (status, minted_a) = call(
        addr_a,
        "POST",
        "/api/v1/keys",
        &admin,
        Some(&json!({"name": "via-a", "scope": "organization"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{minted_a}");

    // B dies at once, its deliveries still in flight.
    b.kill().unwrap(); // SIGKILL
    b.wait().unwrap();
    let killed = Instant::now();
    rx.release();
    assert_eq!(
        rx.counts(Some(killed))
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![1; MESSAGES],
        "while B's leases ran, A sent none of B's deliveries again"
    );

    // A delivers every one of them once the leases end, with the same webhook-id.
    rx.wait_for("A's redeliveries", Duration::from_secs(40), |rx| {
        held.is_subset(&rx.since(killed))
    });
    let waited = killed.elapsed();
    eprintln!("the survivor redelivered B's {MESSAGES} held deliveries {waited:?} after the kill");
    // And its own messages as usual.
    for _ in 0..2 {
        let (status, body) = call(addr_a, "POST", &test, &sandbox, Some(&json!({}))).unwrap();
        assert_eq!(status, 202, "{body}");
    }
    rx.wait_for("A's own messages", Duration::from_secs(10), |rx| {
        rx.counts(None).len() == MESSAGES + 2
    });

    // Both instances' records are in the one audit chain, which verifies.
    let (status, events) = call(
        addr_a,
        "GET",
        "/api/v1/audit-events?action=api_key.created",
        &admin,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{events}");
    let targets: BTreeSet<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["target"].as_str())
        .collect();
    assert!(
        targets.contains(minted_a["apiKeyId"].as_str().unwrap()),
        "A's record: {events}"
    );
    assert_eq!(targets.len(), 2, "B's record and A's: {events}");
    for stream in ["audit", "request"] {
        let report = audit(&dir_a, &database, &["verify", "--stream", stream]);
        assert_eq!(report["intact"], true, "{stream}: {report}");
        assert!(report["checked"].as_u64().unwrap() >= 2, "{report}");
    }
    let tail = audit(&dir_a, &database, &["query", "--action", "api_key.created"]);
    assert_eq!(tail.as_array().unwrap().len(), 2, "{tail}");
    drop(scratch);
}
