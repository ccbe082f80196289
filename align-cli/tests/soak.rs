//! A bounded soak of the built server: many keys (valid, throttled, revoked, invalid), driven
//! at twice the server's rate limit for `ALIGN_SOAK_SECS` seconds (default 8; the
//! reliability suite runs minutes). No answer outside the intended codes (200, 401, 429),
//! and the server's resident memory and open file descriptors stay flat.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::spawn_server;

/// A low limit, so the soak crosses it.
const SERVER_ENV: &[(&str, &str)] = &[("ALIGN_RATELIMIT_PER_MINUTE", "120")];

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The server's descriptor count once the connections a run just dropped are closed on its
/// side too (that happens a moment after the client's close): the same count read four times
/// 50 ms apart, or the last reading after 3 s.
fn settled_fds(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = fds(pid);
    let mut same = 0;
    while same < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// One keep-alive connection; returns the status of each request sent on it.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self {
            stream: BufReader::new(s),
        }
    }

    fn request(&mut self, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.get(9..12).unwrap().parse().unwrap();
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[test]
fn a_mixed_overload_soak_keeps_answers_intended_and_resources_flat() {
    let secs: u64 = std::env::var("ALIGN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data, SERVER_ENV);
    let pid = server.id();
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();

    // 24 keys: a third revoked, a third throttled (10/min), a third valid; and 8 well-formed
    // keys that do not exist.
    let mut conn = Conn::open(addr);
    let mut keys = Vec::new();
    for i in 0..24 {
        let body = format!(r#"{{"name":"soak-{i}","scope":"organization"}}"#);
        let (status, text) = conn.request("POST", "/api/v1/keys", &admin, &body);
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = v["key"].as_str().unwrap().to_owned();
        let id = v["apiKeyId"].as_str().unwrap();
        if i % 3 == 0 {
            let path = format!("/api/v1/keys/{id}/revoke");
            let (status, _) = conn.request("POST", &path, &admin, "");
            assert_eq!(status, 200);
        } else if i % 3 == 1 {
            // Throttled keys: a limit a short soak is sure to cross.
            let path = format!("/api/v1/keys/{id}");
            let (status, text) =
                conn.request("PATCH", &path, &admin, r#"{"rateLimitPerMinute":10}"#);
            assert_eq!(status, 200, "{text}");
        }
        keys.push(key);
    }
    for i in 0..8 {
        // Well-formed shape, unknown (and failing its checksum or lookup).
        keys.push(format!(
            "ako_{:08x}_{}",
            0xdead_0000_u32 + i,
            "A".repeat(49)
        ));
    }

    let counts: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let run = |duration: Duration| {
        let mut threads = Vec::new();
        for (t, chunk) in keys.chunks(4).enumerate() {
            let chunk = chunk.to_vec();
            let counts = Arc::clone(&counts);
            threads.push(std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let start = Instant::now();
                let mut n = 0_u64;
                // Twice the limit: 120/min is 2/s per key, so 4/s per key.
                let per_request = Duration::from_millis(250) / chunk.len() as u32;
                while start.elapsed() < duration {
                    let key = &chunk[(n as usize) % chunk.len()];
                    let path = if (n + t as u64) % 5 == 0 {
                        "/api/v1/keys?limit=5"
                    } else {
                        "/api/v1/me"
                    };
                    let (status, body) = conn.request("GET", path, key, "");
                    assert!(
                        matches!(status, 200 | 401 | 429),
                        "unexpected {status}: {body}"
                    );
                    *counts.lock().unwrap().entry(status).or_default() += 1;
                    n += 1;
                    std::thread::sleep(per_request.saturating_sub(Duration::from_millis(1)));
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
    };

    // Warm up (caches, limiter state, allocator arenas), then measure across the soak.
    run(Duration::from_secs(2));
    let (rss_before, fds_before) = (rss_kib(pid), settled_fds(pid));
    run(Duration::from_secs(secs));
    let (rss_after, fds_after) = (rss_kib(pid), settled_fds(pid));
    let counts = counts.lock().unwrap().clone();
    eprintln!(
        "soak {secs}s: answers {counts:?}; RSS {rss_before} → {rss_after} KiB; fds {fds_before} → {fds_after}"
    );
    for code in [200, 401, 429] {
        assert!(
            counts.get(&code).copied().unwrap_or(0) > 0,
            "no {code} at all: {counts:?}"
        );
    }
    assert!(
        rss_after <= rss_before + rss_before / 4 + 8 * 1024,
        "memory grew: {rss_before} → {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before + 4,
        "descriptors grew: {fds_before} → {fds_after}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
