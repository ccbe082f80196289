//! The privacy commands as a built binary (issue 23): `align retention run --as-of` a year
//! ahead removes every store's old rows and keeps the recent ones while `align audit verify`
//! still reports both chains intact; `align privacy export|erase` and `align users
//! update|delete`, on the data directory and over `--api-url`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

mod support;

use support::{align, call, spawn_server};

const PASSWORD: &str = "a long enough console password";

fn json_of(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// `align ARGS` against the running server at `addr` with `key`.
fn over_api(addr: SocketAddr, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .arg("--api-url")
        .arg(format!("http://{addr}"))
        .env("ALIGN_API_KEY", key)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// One raw HTTP/1.1 exchange (closing the connection): status, head and body.
fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_owned(),
        body.to_owned(),
    )
}

fn set_cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .unwrap()
}

/// Signs `email` in to the console: a session row in the store.
fn sign_in(addr: SocketAddr, email: &str) {
    let (status, head, body) = exchange(
        addr,
        "GET /console/login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let marker = "name=\"csrf\" value=\"";
    let at = body.find(marker).unwrap() + marker.len();
    let csrf = &body[at..at + body[at..].find('"').unwrap()];
    let pre = set_cookie(&head, "align_csrf");
    let form = format!(
        "csrf={csrf}&email={}&password={}",
        email.replace('@', "%40"),
        PASSWORD.replace(' ', "+")
    );
    let (status, head, _) = exchange(
        addr,
        &format!(
            "POST /console/login HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
             cookie: align_csrf={pre}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             content-length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "{head}");
}

fn retention(data: &Path, as_of: chrono::DateTime<Utc>) -> Value {
    let at = as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json_of(&align(
        data,
        &["retention", "run", "--as-of", &at, "--json"],
    ))
}

fn verify(data: &Path, stream: &str) {
    let o = align(data, &["audit", "verify", "--stream", stream]);
    assert!(
        o.status.success(),
        "{stream}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn retention_a_year_ahead_empties_every_old_store_and_the_chains_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let admin = admin_key(&data);
    let pw = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["users", "set-password", "admin@localhost", "--data-dir"])
        .arg(&data)
        .env("ALIGN_USER_PASSWORD", PASSWORD)
        .env("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "100000")
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        pw.status.success(),
        "{}",
        String::from_utf8_lossy(&pw.stderr)
    );
    let (_server, addr) = spawn_server(
        &data,
        &[
            ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
            ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "1"),
            ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
        ],
    );
    // Requests (request log), a key minted (audit log, an event), a session, and a delivery
    // that failed after its attempts (webhook deliveries and attempts).
    sign_in(addr, "admin@localhost");
    let (status, minted) = call(
        addr,
        "POST",
        "/api/v1/keys",
        &admin,
        Some(&json!({"name": "sandbox", "scope": "organization", "environment": "sandbox"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{minted}");
    let sandbox = minted["key"].as_str().unwrap();
    let (status, ep) = call(
        addr,
        "POST",
        "/api/v1/webhook-endpoints",
        sandbox,
        Some(&json!({"url": "http://127.0.0.1:9/nothing-listens"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap();
    let (status, _) = call(
        addr,
        "POST",
        &format!("/api/v1/webhook-endpoints/{ep_id}/test"),
        sandbox,
        None,
    )
    .unwrap();
    assert_eq!(status, 202);
    let started = Instant::now();
    loop {
        let (_, d) = call(
            addr,
            "GET",
            &format!("/api/v1/webhook-endpoints/{ep_id}/deliveries"),
            sandbox,
            None,
        )
        .unwrap();
        if d["data"][0]["status"] == "failed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{d}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..5 {
        assert_eq!(
            call(addr, "GET", "/api/v1/me", &admin, None).unwrap().0,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(300));

    // A month ahead nothing but the session has expired yet... (sessions last hours).
    let soon = retention(&data, Utc::now() + TimeDelta::days(20));
    assert_eq!(soon["removed"]["requestLog"], 0, "{soon}");
    assert_eq!(soon["removed"]["auditLog"], 0, "{soon}");
    assert_eq!(soon["removed"]["events"], 0, "{soon}");
    assert_eq!(soon["removed"]["webhookDeliveries"], 0, "{soon}");
    assert_eq!(soon["removed"]["sessions"], 1, "{soon}");

    // A year ahead: the request log, events, deliveries and attempts are past 30 days; the
    // audit log (400 days) stays.
    let year = retention(&data, Utc::now() + TimeDelta::days(365));
    let removed = &year["removed"];
    assert!(removed["requestLog"].as_u64().unwrap() >= 5, "{year}");
    assert!(removed["events"].as_u64().unwrap() >= 2, "{year}");
    assert!(
        removed["webhookDeliveries"].as_u64().unwrap() >= 1,
        "{year}"
    );
    assert!(removed["webhookAttempts"].as_u64().unwrap() >= 2, "{year}");
    assert_eq!(removed["auditLog"], 0, "{year}");
    let (_, events) = call(addr, "GET", "/api/v1/events", sandbox, None).unwrap();
    assert_eq!(events["data"].as_array().unwrap().len(), 0, "{events}");
    let (_, audit) = call(addr, "GET", "/api/v1/audit-events", &admin, None).unwrap();
    assert!(
        !audit["data"].as_array().unwrap().is_empty(),
        "recent audit kept"
    );
    verify(&data, "audit");
    verify(&data, "request");

    // Past the audit log's 400 days its old prefix goes too; the chain still verifies.
    let later = retention(&data, Utc::now() + TimeDelta::days(401));
    assert!(
        later["removed"]["auditLog"].as_u64().unwrap() >= 1,
        "{later}"
    );
    verify(&data, "audit");
    verify(&data, "request");

    // A human run prints what it removed per store.
    let o = align(&data, &["retention", "run"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for store in [
        "request_log",
        "audit_log",
        "webhook_attempts",
        "events",
        "sessions",
    ] {
        assert!(text.contains(store), "{text}");
    }
}

#[test]
fn privacy_and_user_commands_work_on_the_data_directory_and_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let admin = admin_key(&data);
    json_of(&align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "dana@acme.test",
            "--role",
            "engineer",
            "--json",
        ],
    ));
    let dana = json_of(&align(
        &data,
        &[
            "users",
            "update",
            "dana@acme.test",
            "--name",
            "Dana Dev",
            "--json",
        ],
    ));
    assert_eq!(dana["name"], "Dana Dev");
    let dana_id = dana["id"].as_str().unwrap().to_owned();

    // Exported into a new private file.
    let file = dir.path().join("dana.jsonl");
    let o = align(
        &data,
        &[
            "privacy",
            "export",
            "dana@acme.test",
            "--to",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"kind\":\"user\""), "{text}");
    assert!(text.contains("Dana Dev"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let (_server, addr) = spawn_server(&data, &[]);
    for _ in 0..3 {
        assert_eq!(
            call(addr, "GET", "/api/v1/me", &admin, None).unwrap().0,
            200
        );
    }
    // The admin's export, over the API, holds their key's requests.
    let me = call(addr, "GET", "/api/v1/me", &admin, None).unwrap().1;
    let admin_id = me["createdByUserId"].as_str().unwrap();
    let o = over_api(addr, &admin, &["privacy", "export", admin_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "request" && l["actor"]["id"] == me["apiKeyId"])
    );
    // Corrected and erased over the API.
    let v = json_of(&over_api(
        addr,
        &admin,
        &[
            "users",
            "update",
            &dana_id,
            "--email",
            "dana@acme.example",
            "--json",
        ],
    ));
    assert_eq!(v["email"], "dana@acme.example");
    let v = json_of(&over_api(
        addr,
        &admin,
        &["privacy", "erase", &dana_id, "--json"],
    ));
    assert_eq!(v["subject"], dana_id.as_str());
    let o = over_api(addr, &admin, &["privacy", "export", &dana_id]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !text.contains("Dana Dev") && !text.contains("dana@acme"),
        "{text}"
    );
    // The last admin cannot be deleted; Dana can.
    let o = over_api(addr, &admin, &["users", "delete", admin_id]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_of(&align(&data, &["users", "delete", &dana_id, "--json"]));
    assert_eq!(v["deleted"], true);
    let o = align(&data, &["privacy", "export", &dana_id]);
    assert_eq!(o.status.code(), Some(3), "no such subject any more");
    verify(&data, "audit");
    verify(&data, "request");
}
