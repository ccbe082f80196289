//! The webhook and event commands against a running server (`--api-url`), run as built
//! binaries over loopback: `align serve` delivers to `align webhooks listen`, endpoints are
//! managed through the CLI's client mode, and key changes made on the data directory show up
//! as events, like changes made over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A child process whose stdout lines arrive on a channel and whose stderr is collected.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    /// The next stdout line that `matches`, waiting up to `WAIT`.
    fn line_where(&self, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("no such line in time");
            let v: Value = serde_json::from_str(&line).unwrap();
            if matches(&v) {
                return v;
            }
        }
    }

    /// Reads stdout lines until one of each `types` has been seen (in any order: deliveries
    /// run concurrently); returns them by type.
    fn lines_of_types(&self, types: &[&str]) -> std::collections::BTreeMap<String, Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = std::collections::BTreeMap::new();
        while !types.iter().all(|t| seen.contains_key(*t)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("no such line in time");
            let v: Value = serde_json::from_str(&line).unwrap();
            if let Some(t) = v["type"].as_str() {
                seen.entry(t.to_owned()).or_insert(v);
            }
        }
        seen
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
    }
}

impl Drop for Running {
    /// A failed test leaves no process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Finds, in a line of stderr, that a child is up and what the test needs from it.
type Ready<'a, T> = &'a dyn Fn(&str) -> Option<T>;

/// Starts `align ARGS`, its stdout lines on a channel, its stderr drained (so it never
/// blocks on a full pipe) after `ready` has found the line saying it is up; `ready` returns
/// what the caller needs from that line.
fn spawn<T>(
    args: &[&str],
    envs: &[(&str, &str)],
    ready: Option<Ready<'_, T>>,
) -> (Running, Option<T>) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_align"));
    c.args(args)
        .env_remove("ALIGN_API_URL")
        .env_remove("ALIGN_API_KEY")
        .env_remove("ALIGN_WEBHOOK_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = ready.map(|ready| {
        loop {
            let line = errors.next().expect("exited before it was ready").unwrap();
            if let Some(t) = ready(&line) {
                break t;
            }
        }
    });
    std::thread::spawn(move || for _ in errors {});
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Running { child, lines: rx }, found)
}

/// `align serve` on a free loopback port, allowed to deliver to loopback, retrying fast.
fn serve(data: &Path) -> (Running, String) {
    let data = data.to_str().unwrap();
    let (server, addr) = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[
            ("ALIGN_LOG", "info"),
            ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
            ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "1,1"),
            ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
        ],
        Some(&|line: &str| {
            let rest = line.split("addr=").nth(1)?;
            rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
        }),
    );
    (server, format!("http://{}", addr.unwrap()))
}

/// `align webhooks listen --json` on a free loopback port; returns it and its URL.
fn listen(secret_file: &Path) -> (Running, String) {
    let secret_file = secret_file.to_str().unwrap();
    let (listener, addr) = spawn(
        &[
            "webhooks",
            "listen",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
            secret_file,
        ],
        &[],
        Some(&|line: &str| {
            let rest = line.strip_prefix("listening on http://")?;
            rest.trim().parse::<SocketAddr>().ok()
        }),
    );
    (listener, format!("http://{}/hooks", addr.unwrap()))
}

/// `align ARGS --api-url URL` with the key in ALIGN_API_KEY.
fn client(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .args(["--api-url", url])
        .env("ALIGN_API_KEY", key)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `align ARGS --data-dir DIR` (the operator's commands on the server's database).
fn operator(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("ALIGN_API_URL")
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Polls `check` until it returns `Some`, for up to `WAIT`.
fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "not in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn webhooks_listen_prints_a_verified_test_event_sent_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, url) = serve(&data);
    let admin = admin_key(&data);
    let api = |args: &[&str]| client(&url, &admin, args);

    // Register a sandbox endpoint (plain http allowed) at a placeholder; its secret is printed
    // once, to stdout only.
    let added = api(&[
        "webhooks",
        "endpoints",
        "add",
        "--url",
        "http://127.0.0.1:9/placeholder",
        "--environment",
        "sandbox",
        "--json",
    ]);
    let endpoint = json(&added);
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let added_stderr = String::from_utf8_lossy(&added.stderr);
    assert!(added_stderr.contains("shown once"), "{added_stderr}");
    assert!(!added_stderr.contains(&secret[6..]));
    let secret_file = dir.path().join("endpoint-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();

    // Point it at a receiver that knows the secret, then ask the server for a test event.
    let (listener, hook_url) = listen(&secret_file);
    let updated = json(&api(&[
        "webhooks",
        "endpoints",
        "update",
        &id,
        "--url",
        &hook_url,
        "--json",
    ]));
    assert_eq!(updated["url"], hook_url.as_str());
    let shown = json(&api(&["webhooks", "endpoints", "show", &id, "--json"]));
    assert_eq!(shown["url"], hook_url.as_str());
    assert!(shown.get("secret").is_none());
    let listed = json(&api(&["webhooks", "endpoints", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[6..]));
    let human = api(&["webhooks", "endpoints", "list"]);
    assert!(human.status.success());
    let table = String::from_utf8_lossy(&human.stdout);
    assert!(table.starts_with("id") && table.contains(&id), "{table}");

    let sent = json(&api(&["webhooks", "endpoints", "test", &id, "--json"]));
    assert_eq!(sent["type"], "webhook.test");
    let event = listener.line_where(|v| v["type"] == "webhook.test");
    assert_eq!(event["id"], sent["webhookId"]);
    assert_eq!(event["data"]["endpointId"], id.as_str());

    // The delivery is recorded as succeeded, with its attempt; it can be retried.
    let delivery = eventually(|| {
        let rows = json(&api(&["webhooks", "deliveries", &id, "--json"]));
        let row = rows.as_array()?.first()?.clone();
        (row["status"] == "succeeded").then_some(row)
    });
    assert_eq!(delivery["eventType"], "webhook.test");
    assert_eq!(delivery["attempts"][0]["status"], 204);
    let delivery_id = delivery["id"].as_str().unwrap();
    let retried = json(&api(&["webhooks", "retry", delivery_id, "--json"]));
    assert_eq!(retried["id"], delivery_id);
    // A retried delivery is the same message again: the receiver acknowledges the duplicate
    // and prints nothing new.
    eventually(|| {
        let rows = json(&api(&["webhooks", "deliveries", &id, "--json"]));
        (rows[0]["attemptCount"] == 2 && rows[0]["status"] == "succeeded").then_some(())
    });
    // Its two attempts page newest first over the API (issue 21, finding 6).
    let page = json(&api(&[
        "webhooks",
        "attempts",
        delivery_id,
        "--limit",
        "1",
        "--json",
    ]));
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let older = json(&api(&[
        "webhooks",
        "attempts",
        delivery_id,
        "--limit",
        "1",
        "--cursor",
        &cursor,
        "--json",
    ]));
    assert_eq!(older["data"].as_array().unwrap().len(), 1);
    assert!(older["nextCursor"].is_null());
    assert!(older["data"][0]["at"].as_str() <= page["data"][0]["at"].as_str());
    let recovered = json(&api(&[
        "webhooks", "recover", &id, "--since", "1h", "--json",
    ]));
    assert_eq!(recovered["recovered"], 0, "nothing failed");

    // After a rotation both secrets sign, so the receiver holding the old one still verifies.
    let rotated = json(&api(&[
        "webhooks",
        "endpoints",
        "rotate-secret",
        &id,
        "--grace-seconds",
        "600",
        "--json",
    ]));
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let again = json(&api(&["webhooks", "endpoints", "test", &id, "--json"]));
    let event = listener.line_where(|v| v["type"] == "webhook.test");
    assert_eq!(event["id"], again["webhookId"]);

    // The events log holds both test events (sandbox ones, asked for by a live key).
    let events = json(&api(&[
        "events",
        "list",
        "--type",
        "webhook.*",
        "--environment",
        "sandbox",
        "--json",
    ]));
    let ids: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids, [&sent["webhookId"], &again["webhookId"]]);

    // API errors keep the documented exit codes.
    let missing = "ep_00000000-0000-4000-8000-000000000000";
    let not_found = api(&["webhooks", "endpoints", "show", missing]);
    assert_eq!(not_found.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("no such webhook endpoint"));
    let refused = api(&[
        "webhooks",
        "endpoints",
        "add",
        "--url",
        "ftp://hooks.acme.test/",
        "--environment",
        "sandbox",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_request"));
    assert_eq!(
        api(&["webhooks", "endpoints", "update", &id]).status.code(),
        Some(2),
        "nothing to change"
    );
    assert_eq!(
        api(&["webhooks", "endpoints", "show", "not-an-id"])
            .status
            .code(),
        Some(2)
    );
    let unreachable = client(
        "http://127.0.0.1:9",
        &admin,
        &["webhooks", "endpoints", "list"],
    );
    assert_eq!(unreachable.status.code(), Some(1));
    let wrong_key = client(&url, "ako_nope", &["webhooks", "endpoints", "list"]);
    assert_eq!(wrong_key.status.code(), Some(2));

    let removed = json(&api(&["webhooks", "endpoints", "remove", &id, "--json"]));
    assert_eq!(removed["deleted"], true);
    assert_eq!(
        api(&["webhooks", "endpoints", "show", &id]).status.code(),
        Some(3)
    );
    listener.stop();
    server.stop();
}

#[test]
fn key_changes_on_the_data_directory_are_events_delivered_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, url) = serve(&data);
    let admin = admin_key(&data);
    let api = |args: &[&str]| client(&url, &admin, args);
    // The endpoint first (at a placeholder), so that the receiver can start with its secret.
    let endpoint = json(&api(&[
        "webhooks",
        "endpoints",
        "add",
        "--url",
        "http://127.0.0.1:9/placeholder",
        "--environment",
        "sandbox",
        "--events",
        "api_key.*",
        "--json",
    ]));
    let id = endpoint["id"].as_str().unwrap();
    let secret_file = dir.path().join("endpoint-secret");
    std::fs::write(&secret_file, endpoint["secret"].as_str().unwrap()).unwrap();
    let (listener, hook_url) = listen(&secret_file);
    json(&api(&[
        "webhooks",
        "endpoints",
        "update",
        id,
        "--url",
        &hook_url,
        "--json",
    ]));
    let (follower, _) = spawn::<()>(
        &[
            "events",
            "list",
            "--follow",
            "--json",
            "--since",
            "1m",
            "--environment",
            "sandbox",
            "--type",
            "api_key.*",
            "--interval-ms",
            "100",
            "--api-url",
            &url,
        ],
        &[("ALIGN_API_KEY", &admin)],
        None,
    );

    // The operator mints and revokes a sandbox key on the data directory, server running.
    let minted = json(&operator(
        &data,
        &["keys", "create", "--name", "ops", "--sandbox", "--json"],
    ));
    let key_id = minted["apiKeyId"].as_str().unwrap().to_owned();
    json(&operator(&data, &["keys", "revoke", &key_id, "--json"]));

    // Both changes are events: delivered, signed, to the receiver …
    let kinds = ["api_key.created", "api_key.revoked"];
    for event in listener.lines_of_types(&kinds).values() {
        assert_eq!(event["data"]["apiKeyId"], key_id.as_str());
    }
    // … seen by a follower of the events log, once each …
    for event in follower.lines_of_types(&kinds).values() {
        assert_eq!(event["data"]["apiKeyId"], key_id.as_str());
    }
    assert!(
        follower
            .lines
            .recv_timeout(Duration::from_millis(500))
            .is_err()
    );
    // … and listed by type.
    let revoked = json(&api(&[
        "events",
        "list",
        "--type",
        "api_key.revoked",
        "--environment",
        "sandbox",
        "--json",
    ]));
    let revoked = revoked.as_array().unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["data"]["apiKeyId"], key_id.as_str());
    assert!(revoked[0]["data"]["revokedAt"].is_string());
    let table = api(&["events", "list", "--environment", "sandbox"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("api_key.revoked"));
    assert_eq!(
        api(&["events", "list", "--since", "yesterday"])
            .status
            .code(),
        Some(2)
    );

    follower.stop();
    listener.stop();
    server.stop();
}
