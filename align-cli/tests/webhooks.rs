//! The webhook commands, run as built binaries: `webhooks listen` receiving signed deliveries
//! over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use align_webhooks::SigningSecret;

const WAIT: Duration = Duration::from_secs(20);

/// `align webhooks listen` on an ephemeral loopback port: the child, its address, its stdout
/// lines as they arrive, and everything it wrote to stderr.
fn spawn_listener(secret_file: &Path) -> (Child, SocketAddr, Receiver<String>, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["webhooks", "listen", "--json", "--listen", "127.0.0.1:0"])
        .arg("--secret-file")
        .arg(secret_file)
        .env_remove("ALIGN_WEBHOOK_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let stderr = Arc::new(Mutex::new(String::new()));
    let addr: SocketAddr = loop {
        let line = errors.next().expect("listener exited").unwrap();
        stderr.lock().unwrap().push_str(&line);
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim().parse().unwrap();
        }
    };
    let log = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in errors.map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, addr, rx, stderr)
}

/// POSTs `body` with the given webhook headers; returns the status.
fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!(
        "POST /webhooks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out[9..12].parse().unwrap()
}

fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
}

#[test]
fn listen_prints_each_verified_event_once_and_refuses_forgeries() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SigningSecret::generate().unwrap();
    let secret_text = secret.expose().expose().to_owned();
    let secret_file = dir.path().join("endpoint-secret");
    std::fs::write(&secret_file, format!("{secret_text}\n")).unwrap();
    let (child, addr, lines, stderr) = spawn_listener(&secret_file);

    let now = chrono::Utc::now().timestamp().to_string();
    let body = r#"{"type":"api_key.revoked","timestamp":"2026-05-14T10:00:00.000Z","data":{"keyPrefix":"ako_9311c954"}}"#;
    let signed = |id: &str, body: &str| secret.sign(id, now.parse().unwrap(), body.as_bytes());
    let sig1 = signed("msg_1", body);
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", sig1.as_str()),
    ];
    assert_eq!(post(addr, &headers, body), 204);
    let event: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
    assert_eq!(event["id"], "msg_1");
    assert_eq!(event["type"], "api_key.revoked");
    assert_eq!(event["timestamp"], "2026-05-14T10:00:00.000Z");
    assert_eq!(event["data"]["keyPrefix"], "ako_9311c954");

    // The same delivery again (a retry after a lost answer): acknowledged, not printed.
    assert_eq!(post(addr, &headers, body), 200);
    // A tampered body, a signature by another secret, a missing header, a stale timestamp.
    let tampered = body.replace("9311c954", "00000000");
    assert_eq!(post(addr, &headers, &tampered), 401);
    let other = SigningSecret::generate().unwrap();
    let forged = other.sign("msg_2", now.parse().unwrap(), body.as_bytes());
    let forged_headers = [
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", forged.as_str()),
    ];
    assert_eq!(post(addr, &forged_headers, body), 401);
    assert_eq!(post(addr, &headers[..2], body), 400);
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let stale_sig = secret.sign("msg_3", stale.parse().unwrap(), body.as_bytes());
    let stale_headers = [
        ("webhook-id", "msg_3"),
        ("webhook-timestamp", stale.as_str()),
        ("webhook-signature", stale_sig.as_str()),
    ];
    assert_eq!(post(addr, &stale_headers, body), 401);

    // The next line printed is the next genuine event: nothing above was printed.
    let sig4 = signed("msg_4", body);
    let headers4 = [
        ("webhook-id", "msg_4"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", sig4.as_str()),
    ];
    assert_eq!(post(addr, &headers4, body), 204);
    let next: serde_json::Value = serde_json::from_str(&lines.recv_timeout(WAIT).unwrap()).unwrap();
    assert_eq!(next["id"], "msg_4");
    assert!(lines.recv_timeout(Duration::from_millis(300)).is_err());
    terminate(child);
    let log = stderr.lock().unwrap().clone();
    assert!(log.contains("duplicate msg_1"), "{log}");
    assert!(
        !log.contains(&secret_text[6..]),
        "the secret is never printed"
    );
}

#[test]
fn listen_needs_a_secret_from_a_file_or_the_environment() {
    let o = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["webhooks", "listen", "--listen", "127.0.0.1:0"])
        .env_remove("ALIGN_WEBHOOK_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["webhooks", "listen", "--listen", "127.0.0.1:0"])
        .env("ALIGN_WEBHOOK_SECRET", "whsec_not-base64!")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not-base64"));
}
