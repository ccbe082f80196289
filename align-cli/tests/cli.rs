//! The operator CLI, run as a built binary: init, mint, serve, revoke while serving, audit
//! verify before and after a byte of a record is changed, and `--json` on every listing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod support;

use support::align;

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// `align serve` on an ephemeral port over `data`; returns the child and its address.
fn spawn_server(data: &Path) -> (std::process::Child, SocketAddr) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("ALIGN_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining its log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

/// `align ARGS --api-url http://ADDR` with `key` in `ALIGN_API_KEY`.
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

fn get_me(addr: SocketAddr, key: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET /api/v1/me HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}

#[test]
fn operators_mint_and_revoke_with_the_cli_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    assert!(data.join("bootstrap-admin-key").exists());
    assert!(
        align(&data, &["init"]).status.success(),
        "init is idempotent"
    );

    let project = json(&align(
        &data,
        &["projects", "create", "--name", "billing", "--json"],
    ));
    let user = json(&align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "dev@acme.test",
            "--role",
            "engineer",
            "--json",
        ],
    ));
    assert_eq!(user["role"], "engineer");
    let minted = json(&align(&data, &["keys", "create", "--name", "ci", "--json"]));
    let token = minted["key"].as_str().unwrap().to_owned();
    let id = minted["apiKeyId"].as_str().unwrap().to_owned();
    // An engineer may not mint organisation keys, even from the CLI.
    let refused = align(
        &data,
        &["keys", "create", "--name", "x", "--user", "dev@acme.test"],
    );
    assert_eq!(refused.status.code(), Some(2));
    let pid = project["id"].as_str().unwrap();
    let ok = align(
        &data,
        &[
            "keys",
            "create",
            "--name",
            "p",
            "--user",
            "dev@acme.test",
            "--project",
            pid,
            "--json",
        ],
    );
    assert!(json(&ok)["key"].as_str().unwrap().starts_with("ako_"));

    // --json output of every listing parses.
    for listing in [
        &["orgs", "list"][..],
        &["users", "list"],
        &["projects", "list"],
        &["keys", "list"],
        &["audit", "query"],
    ] {
        let mut args = listing.to_vec();
        args.push("--json");
        let v = json(&align(&data, &args));
        assert!(v.is_array(), "{listing:?}");
    }
    let listed = json(&align(&data, &["keys", "list", "--json"]));
    assert!(
        !listed.to_string().contains(&token[13..]),
        "listings never show tokens"
    );

    let (mut server, addr) = spawn_server(&data);
    assert_eq!(get_me(addr, &token).0, 200);
    assert!(align(&data, &["keys", "revoke", &id]).status.success());
    let mut status = 0;
    let mut body = String::new();
    for _ in 0..40 {
        (status, body) = get_me(addr, &token);
        if status == 401 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 401);
    assert!(body.contains("key_revoked"), "{body}");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());

    let verified = json(&align(&data, &["audit", "verify", "--json"]));
    assert_eq!(verified["intact"], true);
    // Change one byte of one audit record: verify must fail and name it.
    let db = rusqlite::Connection::open(data.join("align.db")).unwrap();
    let seq: i64 = db
        .query_row(
            "SELECT MIN(sequence) FROM audit_records WHERE stream = 'audit'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE audit_records SET action = action || 'x' WHERE stream = 'audit' AND sequence = ?1",
        [seq],
    )
    .unwrap();
    drop(db);
    let broken = align(&data, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(4));
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains(&format!("record {seq}")), "{message}");
}

#[test]
fn backup_while_serving_then_restore_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let minted = json(&align(
        &data,
        &["keys", "create", "--name", "before-backup", "--json"],
    ));
    let (mut server, addr) = spawn_server(&data);
    assert_eq!(get_me(addr, minted["key"].as_str().unwrap()).0, 200);
    // The request's log entry reaches its segment file within the commit window (20 ms).
    std::thread::sleep(std::time::Duration::from_millis(300));

    let copy = dir.path().join("backup.db");
    let made = json(&align(
        &data,
        &["backup", "--to", copy.to_str().unwrap(), "--json"],
    ));
    assert!(made["bytes"].as_u64().unwrap() > 0);
    // The request log's segment files, copied beside the backup while the server appends.
    assert!(made["requestLogBytes"].as_u64().unwrap() > 0, "{made}");
    assert!(dir.path().join("backup.db-requests").is_dir());
    assert_eq!(
        align(&data, &["backup", "--to", copy.to_str().unwrap()])
            .status
            .code(),
        Some(2),
        "no overwrite"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());

    let elsewhere = dir.path().join("restored");
    assert!(
        align(&elsewhere, &["restore", "--from", copy.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        align(&data, &["restore", "--from", copy.to_str().unwrap()])
            .status
            .code(),
        Some(2),
        "needs --force"
    );
    // The restored database's webhook secrets open with the key file they were sealed with
    // (docs/operations.md, "Backup and restore"); at_rest.rs covers a restore without it.
    std::fs::copy(data.join("secrets-key"), elsewhere.join("secrets-key")).unwrap();
    let keys = json(&align(&elsewhere, &["keys", "list", "--json"]));
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"before-backup"), "{names:?}");
    assert_eq!(
        json(&align(&elsewhere, &["audit", "verify", "--json"]))["intact"],
        true
    );
    // The restored request log holds the request made before the backup.
    let requests = align(
        &elsewhere,
        &[
            "audit",
            "export",
            "--subject",
            minted["apiKeyId"].as_str().unwrap(),
        ],
    );
    assert!(requests.status.success());
    assert!(
        String::from_utf8(requests.stdout)
            .unwrap()
            .contains("\"path\":\"/api/v1/me\""),
        "the restored request log lacks the request"
    );

    // The key's own records, as JSON Lines.
    let id = minted["apiKeyId"].as_str().unwrap();
    let export = align(&data, &["audit", "export", "--subject", id]);
    assert!(export.status.success());
    let text = String::from_utf8(export.stdout).unwrap();
    assert!(
        text.lines().count() >= 1,
        "the key's request is in its export"
    );
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.is_object());
    }
    assert!(!text.contains(&minted["key"].as_str().unwrap()[13..]));
}

#[test]
fn webhooks_verify_checks_a_delivery_from_files() {
    let dir = tempfile::tempdir().unwrap();
    // The Standard Webhooks specification's published example (a fixture, not a secret).
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let headers = dir.path().join("headers");
    std::fs::write(
        &headers,
        "HTTP/1.1 200 OK\r\nwebhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\r\n\
         webhook-timestamp: 1614265330\r\n\
         webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\r\n",
    )
    .unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, r#"{"test": 2432232314}"#).unwrap();
    let run = |payload: &Path, now: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_align"));
        c.args(["webhooks", "verify", "--json", "--secret-file"])
            .arg(&secret)
            .arg("--headers")
            .arg(&headers)
            .arg("--payload")
            .arg(payload)
            .env_remove("ALIGN_WEBHOOK_SECRET");
        if let Some(n) = now {
            c.args(["--now", n]);
        }
        c.output().unwrap()
    };
    let ok = run(&body, Some("1614265331"));
    let v = json(&ok);
    assert_eq!(v["webhookId"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
    let stale = run(&body, None);
    assert_eq!(
        stale.status.code(),
        Some(4),
        "years-old timestamps are refused"
    );
    let altered = dir.path().join("altered");
    std::fs::write(&altered, r#"{"test": 2432232315}"#).unwrap();
    assert_eq!(run(&altered, Some("1614265331")).status.code(), Some(4));
    let completions = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(completions.status.success());
    assert!(String::from_utf8_lossy(&completions.stdout).contains("align"));
}

#[test]
fn client_commands_talk_to_a_running_server_with_the_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key")).unwrap();
    let url = format!("http://{addr}");
    let client = |args: &[&str], key: &str| {
        Command::new(env!("CARGO_BIN_EXE_align"))
            .args(args)
            .args(["--api-url", &url, "--json"])
            .env("ALIGN_API_KEY", key.trim())
            .env("ALIGN_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let me = json(&client(&["me"], &admin));
    assert_eq!(me["keyPrefix"], &admin[..12]);
    let minted = json(&client(
        &[
            "keys",
            "create",
            "--name",
            "via-api",
            "--permissions",
            "keys:read",
        ],
        &admin,
    ));
    let token = minted["key"].as_str().unwrap().to_owned();
    let listed = json(&client(&["keys", "list"], &admin));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&token[13..]));
    let id = minted["apiKeyId"].as_str().unwrap();
    assert!(json(&client(&["keys", "revoke", id], &admin))["revokedAt"].is_string());
    let refused = client(&["me"], &token);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("key_revoked"));
    // The key can also come from a file.
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, &admin).unwrap();
    let from_file = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["me", "--api-url", &url, "--json", "--key-file"])
        .arg(&key_file)
        .env_remove("ALIGN_API_KEY")
        .output()
        .unwrap();
    assert_eq!(json(&from_file)["keyPrefix"], &admin[..12]);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());
}

#[test]
fn purge_and_anonymize_keep_the_logs_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    for i in 0..3 {
        json(&align(
            &data,
            &["keys", "create", "--name", &format!("k{i}"), "--json"],
        ));
    }
    let anonymised = json(&align(
        &data,
        &["audit", "anonymize", "--older-than-days", "0", "--json"],
    ));
    assert_eq!(anonymised.as_array().unwrap().len(), 2, "both streams");
    let purged = json(&align(
        &data,
        &[
            "audit",
            "purge",
            "--stream",
            "audit",
            "--older-than-days",
            "0",
            "--json",
        ],
    ));
    assert!(purged[0]["records"].as_u64().unwrap() >= 3, "{purged}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("audit-checkpoint-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    json(&align(
        &data,
        &["keys", "create", "--name", "after", "--json"],
    ));
    assert_eq!(
        json(&align(&data, &["audit", "verify", "--json"]))["intact"],
        true
    );
    assert_eq!(
        json(&align(
            &data,
            &["audit", "verify", "--stream", "request", "--json"]
        ))["intact"],
        true
    );
}

#[test]
fn progress_goes_to_stderr_and_never_into_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    json(&align(&data, &["keys", "create", "--name", "k", "--json"]));
    let run = |args: &[&str], progress: &str| {
        Command::new(env!("CARGO_BIN_EXE_align"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("ALIGN_LOG", "warn")
            .env("ALIGN_PROGRESS", progress)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // Forced on (as on a terminal): the in-place line is drawn on stderr, then erased.
    let live = run(&["audit", "verify", "--json"], "always");
    assert_eq!(json(&live)["intact"], true);
    let err = String::from_utf8_lossy(&live.stderr);
    assert!(
        err.contains("\r\x1b[2Kverifying the audit log ["),
        "{err:?}"
    );
    assert!(err.ends_with("\r\x1b[2K"), "the line is erased: {err:?}");
    let export = run(&["audit", "export", "--subject", "nobody"], "always");
    assert!(export.status.success());
    assert!(export.stdout.is_empty());
    let purged = run(
        &["audit", "purge", "--older-than-days", "3650", "--json"],
        "always",
    );
    assert!(json(&purged).is_array());
    // Not a terminal (a pipe, as here): no control characters at all.
    for args in [
        &["audit", "verify", "--json"][..],
        &["audit", "anonymize", "--json"],
    ] {
        let plain = run(args, "");
        assert!(json(&plain).is_array() || json(&plain).is_object());
        assert!(!plain.stderr.contains(&b'\r'), "{args:?}");
        assert!(!plain.stderr.contains(&0x1b), "{args:?}");
    }
}

/// Lines of a child's stdout, as they arrive.
fn line_reader(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn terminate(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
}

#[test]
fn audit_tail_prints_the_last_records_then_follows_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let mut ids = Vec::new();
    for i in 0..3 {
        let k = json(&align(
            &data,
            &["keys", "create", "--name", &format!("k{i}"), "--json"],
        ));
        ids.push(k["apiKeyId"].as_str().unwrap().to_owned());
    }
    let last_two = align(&data, &["audit", "tail", "-n", "2", "--json"]);
    assert!(last_two.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(last_two.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["target"], ids[1], "oldest first");
    assert_eq!(lines[1]["target"], ids[2]);
    assert!(lines[0]["sequence"].as_u64() < lines[1]["sequence"].as_u64());
    let human = align(&data, &["audit", "tail", "-n", "1"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("api_key.created") && text.contains(&ids[2]),
        "{text}"
    );
    assert_eq!(
        align(&data, &["audit", "tail", "--stream", "bogus"])
            .status
            .code(),
        Some(2)
    );

    let mut follower = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["audit", "tail", "--follow", "--json", "-n", "1"])
        .args(["--interval-ms", "100", "--data-dir"])
        .arg(&data)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(&mut follower);
    let wait = Duration::from_secs(20);
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(wait).unwrap()).unwrap();
    assert_eq!(first["target"], ids[2], "the last record first");
    // Now other processes append: the follower prints each record once, in order.
    let later = json(&align(
        &data,
        &["keys", "create", "--name", "later", "--json"],
    ));
    json(&align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "ops@acme.test",
            "--role",
            "viewer",
            "--json",
        ],
    ));
    let a: serde_json::Value = serde_json::from_str(&lines.recv_timeout(wait).unwrap()).unwrap();
    let b: serde_json::Value = serde_json::from_str(&lines.recv_timeout(wait).unwrap()).unwrap();
    assert_eq!(a["action"], "api_key.created");
    assert_eq!(a["target"], later["apiKeyId"]);
    assert_eq!(b["action"], "user.created");
    assert_eq!(
        b["sequence"].as_u64().unwrap(),
        a["sequence"].as_u64().unwrap() + 1
    );
    assert!(lines.recv_timeout(Duration::from_millis(500)).is_err());
    terminate(follower);
}

#[test]
fn keys_create_takes_an_owner_and_meta_and_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let minted = json(&align(
        &data,
        &[
            "keys",
            "create",
            "--name",
            "acme",
            "--permissions",
            "keys:*,audit:read",
            "--owner",
            "cus_8812",
            "--meta",
            r#"{"plan":"pro"}"#,
            "--json",
        ],
    ));
    assert_eq!(minted["ownerId"], "cus_8812");
    assert_eq!(minted["meta"]["plan"], "pro");
    // `keys:*` is every `keys:` permission of the vocabulary, `keys:verify` (DESIGN §12) too.
    assert_eq!(
        minted["permissions"],
        serde_json::json!(["keys:read", "keys:write", "audit:read", "keys:verify"])
    );
    let id = minted["apiKeyId"].as_str().unwrap();
    let shown = json(&align(&data, &["keys", "show", id, "--json"]));
    assert_eq!(shown["ownerId"], "cus_8812");
    assert_eq!(shown["meta"], serde_json::json!({"plan": "pro"}));
    for bad in [
        &["--meta", "[1]"][..],
        &["--meta", "not json"],
        &["--owner", &"x".repeat(257)],
        &["--permissions", "invoices:read"],
    ] {
        let mut args = vec!["keys", "create", "--name", "bad"];
        args.extend_from_slice(bad);
        let out = align(&data, &args);
        assert!(!out.status.success(), "{bad:?}");
    }
}

/// `align users set-role` once demoted the organisation's only admin, which `align users update
/// --role` and the API refuse: the rule is now one function (`align_keys::store::takes_last_admin`)
/// that every door asks.
#[test]
fn users_set_role_keeps_the_organisations_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let users = json(&align(&data, &["users", "list", "--json"]));
    let admin = users[0]["email"].as_str().unwrap().to_owned();
    for role in ["engineer", "viewer"] {
        let refused = align(&data, &["users", "set-role", &admin, role]);
        assert_eq!(refused.status.code(), Some(2), "{role}");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("last admin"), "{err}");
    }
    // With a second admin, the first may step down, and the second may not then.
    json(&align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "ops@acme.test",
            "--role",
            "admin",
            "--json",
        ],
    ));
    let changed = json(&align(
        &data,
        &["users", "set-role", &admin, "engineer", "--json"],
    ));
    assert_eq!(changed["role"], "engineer");
    let refused = align(&data, &["users", "set-role", "ops@acme.test", "viewer"]);
    assert_eq!(refused.status.code(), Some(2));
    // Making an admin an admin again is no demotion.
    let same = json(&align(
        &data,
        &["users", "set-role", "ops@acme.test", "admin", "--json"],
    ));
    assert_eq!(same["role"], "admin");
    let users = json(&align(&data, &["users", "list", "--json"]));
    let admins = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin")
        .count();
    assert_eq!(admins, 1);
}

/// `align keys update` changes what `PATCH /api/v1/keys/{id}` changes (name, owner id, data,
/// rate limit, expiry, networks), on the data directory and over the API alike; `--clear`
/// clears; a request that changes nothing or a malformed value is
/// refused with exit 2.
#[test]
fn keys_update_sets_and_clears_owner_meta_limit_expiry_and_networks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let minted = json(&align(
        &data,
        &["keys", "create", "--name", "cust", "--json"],
    ));
    let id = minted["apiKeyId"].as_str().unwrap().to_owned();
    let v = json(&align(
        &data,
        &[
            "keys",
            "update",
            &id,
            "--name",
            "customer-42",
            "--owner",
            "cust_42",
            "--meta",
            r#"{"plan":"pro"}"#,
            "--rate-limit",
            "120",
            "--expires-at",
            "2099-01-31T00:00:00Z",
            "--allowed-cidrs",
            "203.0.113.7,2001:db8::/32",
            "--json",
        ],
    ));
    assert_eq!(v["keyName"], "customer-42");
    assert_eq!(v["ownerId"], "cust_42");
    assert_eq!(v["meta"], serde_json::json!({"plan": "pro"}));
    assert!(v["expiresAt"].as_str().unwrap().starts_with("2099-01-31"));
    let shown = json(&align(&data, &["keys", "show", &id, "--json"]));
    assert_eq!(shown["ownerId"], "cust_42");

    for bad in [
        &["keys", "update", &id][..],
        &["keys", "update", &id, "--meta", "[1]"],
        &["keys", "update", &id, "--expires-at", "tomorrow"],
        &["keys", "update", &id, "--allowed-cidrs", "10.0.0.0/33"],
        &["keys", "update", &id, "--owner", "x", "--clear", "owner"],
        &["keys", "update", &id, "--clear", "name"],
    ] {
        let o = align(&data, bad);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // The same over the API: the server applies it (and records it), the CLI only asks.
    let (mut server, addr) = spawn_server(&data);
    let key = std::fs::read_to_string(data.join("bootstrap-admin-key")).unwrap();
    let over_api = |args: &[&str]| over_api(addr, key.trim(), args);
    let v = json(&over_api(&[
        "keys",
        "update",
        &id,
        "--clear",
        "owner,meta,rate-limit,expiry",
        "--allowed-cidrs",
        "",
        "--json",
    ]));
    assert_eq!(v["ownerId"], serde_json::Value::Null, "{v}");
    assert_eq!(v["meta"], serde_json::Value::Null, "{v}");
    assert_eq!(v["expiresAt"], serde_json::Value::Null, "{v}");
    let o = over_api(&["keys", "update", &id, "--owner", &"x".repeat(300)]);
    assert_ne!(o.status.code(), Some(0));
    server.kill().unwrap();
    server.wait().unwrap();

    let records = json(&align(
        &data,
        &["audit", "query", "--action", "api_key.updated", "--json"],
    ));
    assert!(
        records.as_array().map_or(0, Vec::len) >= 2,
        "both updates are in the audit log: {records}"
    );
}

/// `align keys usage` answers what `GET /api/v1/keys/{id}/usage` answers, from the data
/// directory and over the API alike; a bad range is refused with exit 2.
#[test]
fn keys_usage_counts_a_keys_requests_locally_and_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let minted = json(&align(
        &data,
        &["keys", "create", "--name", "used", "--json"],
    ));
    let id = minted["apiKeyId"].as_str().unwrap().to_owned();
    let token = minted["key"].as_str().unwrap().to_owned();
    let (mut server, addr) = spawn_server(&data);
    for _ in 0..4 {
        assert_eq!(get_me(addr, &token).0, 200);
    }
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key")).unwrap();
    let over_api = |args: &[&str]| over_api(addr, admin.trim(), args);
    let total = |v: &serde_json::Value| -> u64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum()
    };
    let mut remote = serde_json::Value::Null;
    for _ in 0..100 {
        remote = json(&over_api(&["keys", "usage", &id, "--json"]));
        if total(&remote) == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(total(&remote), 4, "{remote}");
    assert_eq!(remote.as_array().unwrap().len(), 25);
    server.kill().unwrap();
    server.wait().unwrap();

    let local = json(&align(
        &data,
        &["keys", "usage", &id, "--granularity", "day", "--json"],
    ));
    assert_eq!(total(&local), 4, "{local}");
    assert_eq!(local[local.as_array().unwrap().len() - 1]["succeeded"], 4);
    let refused = align(
        &data,
        &[
            "keys",
            "usage",
            &id,
            "--from",
            "2020-01-01T00:00:00Z",
            "--granularity",
            "minute",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
}

/// `align keys verify KEY …` over the API with `key` in `ALIGN_API_KEY`, the presented key
/// written to its standard input when `stdin` is given (for `-`).
fn verify(addr: SocketAddr, key: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["keys", "verify"])
        .args(args)
        .arg("--api-url")
        .arg(format!("http://{addr}"))
        .env("ALIGN_API_KEY", key)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The first line of a command's standard output.
fn first_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Key spaces and their keys made in the data directory are verified by a running server:
/// `align keys verify` prints the code and exits 0 only for VALID; a suspension made in the
/// data directory reaches the server; the verifications count in the key's usage.
#[test]
fn keyspace_keys_minted_locally_are_verified_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let space = json(&align(
        &data,
        &[
            "keyspaces",
            "create",
            "--name",
            "Acme API",
            "--prefix",
            "acme",
            "--permissions",
            "invoices:read,invoices:write,admin",
            "--json",
        ],
    ));
    let ks = space["id"].as_str().unwrap().to_owned();
    assert_eq!(space["prefix"], "acme");
    // The same prefix twice, or a reserved one, is the operator's error.
    for prefix in ["acme", "ako"] {
        let again = align(
            &data,
            &["keyspaces", "create", "--name", "x", "--prefix", prefix],
        );
        assert_eq!(again.status.code(), Some(2), "{prefix}");
    }
    let listed = json(&align(&data, &["keyspaces", "list", "--json"]));
    assert_eq!(listed[0]["id"], ks.as_str());
    let renamed = json(&align(
        &data,
        &[
            "keyspaces",
            "update",
            &ks,
            "--name",
            "Acme public API",
            "--json",
        ],
    ));
    assert_eq!(renamed["name"], "Acme public API");

    let minted = align(
        &data,
        &[
            "keyspaces",
            "keys",
            "mint",
            &ks,
            "--name",
            "cus_8812 production",
            "--owner",
            "cus_8812",
            "--permissions",
            "invoices:read",
            "--credits",
            "3",
            "--ratelimit",
            "requests:100/1m",
            "--json",
        ],
    );
    assert!(
        String::from_utf8_lossy(&minted.stderr).contains("shown once"),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let minted = json(&minted);
    let token = minted["key"].as_str().unwrap().to_owned();
    let id = minted["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("acme_"), "{token}");
    assert_eq!(minted["ratelimits"][0]["durationSeconds"], 60);
    let shown = json(&align(
        &data,
        &["keyspaces", "keys", "show", &ks, &id, "--json"],
    ));
    assert!(shown.get("key").is_none(), "shown once");
    let keys = json(&align(&data, &["keyspaces", "keys", "list", &ks, "--json"]));
    assert!(
        !keys.to_string().contains(&token[14..]),
        "listings never show tokens"
    );
    let gateway = json(&align(
        &data,
        &[
            "keys",
            "create",
            "--name",
            "gateway",
            "--permissions",
            "keys:verify",
            "--json",
        ],
    ));
    let gateway = gateway["key"].as_str().unwrap().to_owned();

    // Verification goes through a server.
    let refused = align(&data, &["keys", "verify", &token]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--api-url"));

    let (mut server, addr) = spawn_server(&data);
    let v = verify(
        addr,
        &gateway,
        &[&token, "--permissions", "invoices:read"],
        None,
    );
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(first_line(&v), "VALID");
    let v = verify(
        addr,
        &gateway,
        &["-", "--json"],
        Some(&format!("{token}\n")),
    );
    let answer = json(&v);
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["ownerId"], "cus_8812");
    assert_eq!(answer["credits"]["remaining"], 1);
    assert_eq!(answer["ratelimits"][0]["remaining"], 98);
    let v = verify(addr, &gateway, &[&token, "--permissions", "admin"], None);
    assert_eq!(
        (v.status.code(), first_line(&v)),
        (Some(1), "INSUFFICIENT_PERMISSIONS".into())
    );
    let v = verify(addr, &gateway, &["acme_00000000_nope"], None);
    assert_eq!(
        (v.status.code(), first_line(&v)),
        (Some(1), "NOT_FOUND".into())
    );
    let v = verify(
        addr,
        &gateway,
        &[&token, "--permissions", "invoices:read AND"],
        None,
    );
    assert_eq!(
        v.status.code(),
        Some(2),
        "a malformed query is a bad request"
    );

    // A suspension made in the data directory reaches the running server.
    assert!(
        align(&data, &["keyspaces", "keys", "suspend", &ks, &id])
            .status
            .success()
    );
    let mut code = String::new();
    for _ in 0..100 {
        // Cost 0: a verification before the suspension arrives spends no credit.
        code = first_line(&verify(addr, &gateway, &[&token, "--cost", "0"], None));
        if code == "SUSPENDED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code, "SUSPENDED");
    assert!(
        align(&data, &["keyspaces", "keys", "resume", &ks, &id])
            .status
            .success()
    );
    for _ in 0..100 {
        code = first_line(&verify(addr, &gateway, &[&token, "--cost", "1"], None));
        if code != "SUSPENDED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code, "VALID", "the last credit");
    let v = verify(addr, &gateway, &[&token, "--ratelimit", "requests:0"], None);
    assert_eq!(
        (v.status.code(), first_line(&v)),
        (Some(1), "USAGE_EXCEEDED".into())
    );
    server.kill().unwrap();
    server.wait().unwrap();

    // Every verification of the key is in its usage (NOT_FOUND is nobody's).
    let usage = json(&align(
        &data,
        &[
            "keyspaces",
            "keys",
            "usage",
            &ks,
            &id,
            "--granularity",
            "day",
            "--json",
        ],
    ));
    let total: u64 = usage
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum();
    assert!(total >= 6, "{usage}");
    let conflict = align(
        &data,
        &[
            "keyspaces",
            "keys",
            "update",
            &ks,
            &id,
            "--credits",
            "5",
            "--clear",
            "credits",
        ],
    );
    assert_eq!(conflict.status.code(), Some(2));
    let revoked = json(&align(
        &data,
        &["keyspaces", "keys", "revoke", &ks, &id, "--json"],
    ));
    assert!(revoked["revokedAt"].is_string());
    let final_ = align(&data, &["keyspaces", "keys", "resume", &ks, &id]);
    assert_eq!(final_.status.code(), Some(2), "a revoked key is final");
}

/// Every `align keyspaces` command over the API, with the bootstrap admin key.
#[test]
fn keyspaces_over_the_api_mint_list_update_rotate_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let (mut server, addr) = spawn_server(&data);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key")).unwrap();
    let admin = admin.trim();
    let api = |args: &[&str]| over_api(addr, admin, args);
    let space = json(&api(&[
        "keyspaces",
        "create",
        "--name",
        "Acme API",
        "--prefix",
        "acme",
        "--permissions",
        "invoices:read,admin",
        "--json",
    ]));
    let ks = space["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json(&api(&["keyspaces", "list", "--json"]))[0]["id"],
        ks.as_str()
    );
    assert_eq!(
        json(&api(&["keyspaces", "show", &ks, "--json"]))["prefix"],
        "acme"
    );
    let updated = json(&api(&[
        "keyspaces",
        "update",
        &ks,
        "--permissions",
        "invoices:read,invoices:write,admin",
        "--json",
    ]));
    assert_eq!(updated["permissions"].as_array().unwrap().len(), 3);
    let minted = json(&api(&[
        "keyspaces",
        "keys",
        "mint",
        &ks,
        "--name",
        "c1",
        "--owner",
        "cus_1",
        "--meta",
        r#"{"plan":"pro"}"#,
        "--permissions",
        "invoices:write",
        "--expires-at",
        "2099-01-01T00:00:00Z",
        "--json",
    ]));
    let id = minted["id"].as_str().unwrap().to_owned();
    assert!(minted["key"].as_str().unwrap().starts_with("acme_"));
    json(&api(&[
        "keyspaces",
        "keys",
        "mint",
        &ks,
        "--name",
        "c2",
        "--sandbox",
        "--json",
    ]));
    let theirs = json(&api(&[
        "keyspaces",
        "keys",
        "list",
        &ks,
        "--owner",
        "cus_1",
        "--json",
    ]));
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    assert_eq!(
        json(&api(&["keyspaces", "keys", "list", &ks, "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        json(&api(&["keyspaces", "keys", "show", &ks, &id, "--json"]))["ownerId"],
        "cus_1"
    );
    let changed = json(&api(&[
        "keyspaces",
        "keys",
        "update",
        &ks,
        &id,
        "--credits",
        "100",
        "--refill",
        "100/day",
        "--ratelimit",
        "tokens:5000/1h",
        "--clear",
        "expiry,meta",
        "--json",
    ]));
    assert_eq!(changed["credits"]["refill"]["interval"], "day");
    assert_eq!(changed["ratelimits"][0]["durationSeconds"], 3600);
    assert!(
        changed["expiresAt"].is_null() && changed["meta"].is_null(),
        "{changed}"
    );
    let suspended = json(&api(&["keyspaces", "keys", "suspend", &ks, &id, "--json"]));
    assert!(suspended["suspendedAt"].is_string());
    let resumed = json(&api(&["keyspaces", "keys", "resume", &ks, &id, "--json"]));
    assert!(resumed["suspendedAt"].is_null());
    let rotation = json(&api(&[
        "keyspaces",
        "keys",
        "rotate",
        &ks,
        &id,
        "--grace",
        "60",
        "--json",
    ]));
    assert_eq!(rotation["successor"]["rotatedFromKeyId"], id.as_str());
    assert_eq!(rotation["key"], rotation["successor"]["key"]);
    assert!(rotation["previous"]["expiresAt"].is_string());
    let successor = rotation["successor"]["id"].as_str().unwrap().to_owned();
    let revoked = json(&api(&[
        "keyspaces",
        "keys",
        "revoke",
        &ks,
        &successor,
        "--json",
    ]));
    assert!(revoked["revokedAt"].is_string());
    let v = verify(addr, admin, &[rotation["key"].as_str().unwrap()], None);
    assert_eq!(
        (v.status.code(), first_line(&v)),
        (Some(1), "REVOKED".into())
    );
    let usage = json(&api(&[
        "keyspaces",
        "keys",
        "usage",
        &ks,
        &successor,
        "--json",
    ]));
    assert_eq!(usage.as_array().unwrap().len(), 25, "a day by hour");
    let missing = api(&[
        "keyspaces",
        "keys",
        "show",
        &ks,
        "6f1c1e0e-3f4a-4b8e-9a59-0c1f1d3a5b7c",
    ]);
    assert_eq!(missing.status.code(), Some(3));
    server.kill().unwrap();
    server.wait().unwrap();
}
