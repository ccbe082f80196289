//! Fault injection with the built binary: `align serve` is killed with SIGKILL in the middle
//! of minting and revoking keys (each a durable audit write and an outbox write in the same
//! transaction as the key), then restarted on the same data directory. Nothing acknowledged
//! is lost, every stored key has its event, the audit chain verifies, and every event is
//! delivered to the webhook receiver at least once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{call, spawn_server};

/// Loopback receivers allowed, a short retry schedule, a limit that never trips.
const SERVER_ENV: &[(&str, &str)] = &[
    ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
    ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "1,1,1"),
    ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
    ("ALIGN_WEBHOOKS_ATTEMPT_TIMEOUT_SECS", "1"),
    ("ALIGN_RATELIMIT_PER_MINUTE", "60000"),
];

/// What the receiver got: each delivery's `webhook-id` and body.
type Deliveries = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver: answers 200 and records each delivery's `webhook-id` and body.
fn receiver() -> (SocketAddr, Deliveries) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Deliveries = Arc::default();
    let log = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let (mut id, mut len) = (String::new(), 0_usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("webhook-id:") {
                        id = v.trim().to_owned();
                    }
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                log.lock()
                    .unwrap()
                    .push((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (addr, got)
}

/// Every sandbox event the admin key can poll, by type → the set of `data.apiKeyId`s.
fn events(addr: SocketAddr, key: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut path = "/api/v1/events?environment=sandbox&limit=1000".to_owned();
    loop {
        let (status, page) = call(addr, "GET", &path, key, None).unwrap();
        assert_eq!(status, 200, "{page}");
        for e in page["data"].as_array().unwrap() {
            let id = e["data"]["apiKeyId"].as_str().unwrap_or("").to_owned();
            out.entry(e["type"].as_str().unwrap().to_owned())
                .or_default()
                .insert(id);
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/events?environment=sandbox&limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

#[test]
fn a_server_killed_mid_write_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data, SERVER_ENV);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();
    let (hook_addr, delivered) = receiver();
    let (status, ep) = call(
        addr,
        "POST",
        "/api/v1/webhook-endpoints",
        &admin,
        Some(&json!({ "url": format!("http://{hook_addr}/in"), "environment": "sandbox" })),
    )
    .unwrap();
    assert_eq!(status, 201, "{ep}");

    // Traffic: mint sandbox keys and revoke some of them, from three threads, recording what
    // the server acknowledged; the server is killed while this runs.
    let minted: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..3 {
        let (minted, revoked, admin) = (Arc::clone(&minted), Arc::clone(&revoked), admin.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0.. {
                let body = json!({"name": format!("w{w}-{i}"), "scope": "organization", "environment": "sandbox"});
                let Some((status, key)) = call(addr, "POST", "/api/v1/keys", &admin, Some(&body)) else {
                    return;
                };
                assert_eq!(status, 201, "{key}");
                let id = key["apiKeyId"].as_str().unwrap().to_owned();
                minted.lock().unwrap().push((id.clone(), key["key"].as_str().unwrap().to_owned()));
                if i % 2 == 0 {
                    let path = format!("/api/v1/keys/{id}/revoke");
                    let Some((status, _)) = call(addr, "POST", &path, &admin, None) else {
                        return;
                    };
                    assert_eq!(status, 200);
                    revoked.lock().unwrap().push(id);
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let minted = minted.lock().unwrap().clone();
    let revoked: BTreeSet<String> = revoked.lock().unwrap().iter().cloned().collect();
    assert!(
        minted.len() >= 10,
        "only {} mints before the kill",
        minted.len()
    );
    eprintln!(
        "killed after {} acknowledged mints and {} acknowledged revocations",
        minted.len(),
        revoked.len()
    );

    let (mut server, addr) = spawn_server(&data, SERVER_ENV);
    // Every acknowledged key exists; every acknowledged revocation holds.
    for (id, token) in &minted {
        let (status, body) = call(addr, "GET", "/api/v1/me", token, None).unwrap();
        if revoked.contains(id) {
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("key_revoked"))
            );
        } else {
            assert!(
                status == 200 || body["error"]["code"] == "key_revoked",
                "an acknowledged key was lost: {status} {body}"
            );
        }
    }
    // Every stored key has its created event, every acknowledged revocation its revoked event
    // (they share the transaction).
    let seen = events(addr, &admin);
    let created = seen.get("api_key.created").cloned().unwrap_or_default();
    let (status, keys) = call(addr, "GET", "/api/v1/keys?limit=200", &admin, None).unwrap();
    assert_eq!(status, 200);
    let mut stored = 0;
    let mut path_keys = keys;
    loop {
        for k in path_keys["data"].as_array().unwrap() {
            if k["environment"] == "sandbox" {
                stored += 1;
                assert!(
                    created.contains(k["apiKeyId"].as_str().unwrap()),
                    "a key without its event: {k}"
                );
            }
        }
        let Some(c) = path_keys["nextCursor"].as_str() else {
            break;
        };
        path_keys = call(
            addr,
            "GET",
            &format!("/api/v1/keys?limit=200&cursor={c}"),
            &admin,
            None,
        )
        .unwrap()
        .1;
    }
    assert!(stored >= minted.len());
    let revoked_events = seen.get("api_key.revoked").cloned().unwrap_or_default();
    assert!(revoked.iter().all(|id| revoked_events.contains(id)));

    // Every event is delivered at least once (a delivery claimed by the killed dispatcher
    // comes back when its lease ends).
    let want: BTreeSet<String> = created.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| b["type"] == "api_key.created")
            .filter_map(|(_, b)| b["data"]["apiKeyId"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<_> = want.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} created events never delivered",
            missing.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The audit chain verifies after the crash.
    let verify = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A keep-alive HTTP/1.1 client: `GET path` with `key`, returning the status and the
/// `x-request-id` the server sent; `None` once the server is gone.
struct KeepAlive {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> Option<Self> {
        let s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Self {
            writer: s.try_clone().ok()?,
            reader: BufReader::new(s),
        })
    }

    fn get(&mut self, path: &str, key: &str) -> Option<(u16, String)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\r\n");
        self.writer.write_all(req.as_bytes()).ok()?;
        let mut status = 0;
        let mut length = 0usize;
        let mut id = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(s) = l.strip_prefix("HTTP/1.1 ") {
                status = s.get(..3)?.parse().ok()?;
            } else if let Some((name, value)) = l.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().ok()?,
                    "x-request-id" => value.trim().clone_into(&mut id),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).ok()?;
        Some((status, id))
    }
}

/// Issue 24's fault test: `align serve` killed with SIGKILL in the middle of a flood of
/// authenticated requests (each a request-log record buffered by the worker and written by
/// the segment writer every commit window). After a restart `align audit verify` passes
/// (both chains, against the anchors the killed server wrote), and every request answered
/// more than the commit window (20 ms) plus scheduling slack before the kill is in the
/// request log.
#[test]
fn a_server_killed_during_a_flood_keeps_its_request_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("ALIGN_RATELIMIT_PER_MINUTE", "1000000"),
        ("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", "1"),
    ];
    let (mut server, addr) = spawn_server(&data, &env);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();
    let (status, me) = call(addr, "GET", "/api/v1/me", &admin, None).unwrap();
    assert_eq!(status, 200, "{me}");
    let key_id = me["apiKeyId"].as_str().unwrap().to_owned();

    // (request id, when its answer arrived), from 8 keep-alive connections.
    let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (answered, admin) = (Arc::clone(&answered), admin.clone());
            std::thread::spawn(move || {
                let Some(mut c) = KeepAlive::connect(addr) else {
                    return;
                };
                while let Some((status, id)) = c.get("/api/v1/me", &admin) {
                    assert_eq!(status, 200);
                    answered.lock().unwrap().push((id, Instant::now()));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let killed = Instant::now();
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 1000, "only {} answers", answered.len());

    // The chains verify after the kill, against the anchors the killed server wrote.
    let verify = support::align(&data, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let (mut server, addr) = spawn_server(&data, &env);
    let (status, _) = call(addr, "GET", "/api/v1/me", &admin, None).unwrap();
    assert_eq!(status, 200);
    // The operator's CLI next to the running server: export the key's records.
    let export = support::align(&data, &["audit", "export", "--subject", &key_id]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let logged: BTreeSet<String> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["requestId"].as_str().map(str::to_owned))
        .collect();
    let slack = Duration::from_millis(250);
    let missing: Vec<Duration> = answered
        .iter()
        .filter(|(id, _)| !logged.contains(id))
        .map(|(_, at)| killed.saturating_duration_since(*at))
        .collect();
    let oldest_missing = missing.iter().max().copied().unwrap_or_default();
    eprintln!(
        "killed after {} answers; {} not in the request log, answered at most {:?} before the kill",
        answered.len(),
        missing.len(),
        oldest_missing
    );
    assert!(
        oldest_missing <= slack,
        "a request answered {oldest_missing:?} before the kill is not in the request log"
    );
    let verify = support::align(&data, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
