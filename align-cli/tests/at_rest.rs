//! Data at rest (DESIGN §8; finding 8 of issue 20, finding 5 of issue 21), with the built
//! binary: the data directory is `0700` and every file Align writes in it or for it `0600`,
//! and webhook signing secrets are sealed in the database, its WAL and its backups, under a
//! key kept in `DIR/secrets-key` that can be rotated while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use align_webhooks::{SigningSecret, WebhookVerifier};
use serde_json::{Value, json};

use support::{Running, call};

/// The server's settings in these tests: deliveries to loopback, retried fast.
const SERVE_ENV: &[(&str, &str)] = &[
    ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
    ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "1,1"),
    ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
];

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` (recursively), after checking that `dir` and every directory under
/// it is `0700` and every file `0600`.
fn assert_private_tree(dir: &Path) -> Vec<PathBuf> {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // SQLite removes its -wal and -shm files as the last connection closes.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files.extend(assert_private_tree(&path));
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files.push(path);
        }
    }
    files
}

/// `align ARGS --data-dir DATA` with `env`.
fn align(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ALIGN_LOG", "warn")
        .env_remove("ALIGN_SECRETS_KEY_FILE")
        .env_remove("ALIGN_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `align serve` on a free loopback port with [`SERVE_ENV`]; also returns every line it
/// logged up to the one saying where it listens.
fn serve(data: &Path) -> (Running, SocketAddr, Vec<String>) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("ALIGN_LOG", "info")
        .env_remove("ALIGN_SECRETS_KEY_FILE")
        .env_remove("ALIGN_DATABASE_URL")
        .envs(SERVE_ENV.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("server exited: {seen:#?}"))
            .unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        seen.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    (Running(server), addr, seen)
}

/// SIGTERM, then a clean exit.
fn stop(mut server: Running) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());
}

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `POST path` with `body`, expecting `status`.
fn post(addr: SocketAddr, key: &str, path: &str, body: &Value, status: u16) -> Value {
    let (got, v) = call(addr, "POST", path, key, Some(body)).unwrap();
    assert_eq!(got, status, "{path}: {v}");
    v
}

/// A delivery a [`receiver`] got: headers by lower-case name, and the body.
struct Delivery {
    headers: std::collections::HashMap<String, String>,
    body: Vec<u8>,
}

impl Delivery {
    /// Whether the Standard Webhooks signature verifies with `secret` alone.
    fn verifies_with(&self, secret: &str) -> bool {
        let verifier = WebhookVerifier::new(SigningSecret::parse(secret).unwrap());
        let now = chrono::Utc::now().timestamp();
        verifier
            .verify_parts(
                &self.headers["webhook-id"],
                &self.headers["webhook-timestamp"],
                &self.headers["webhook-signature"],
                &self.body,
                now,
            )
            .is_ok()
    }
}

/// A plain HTTP/1.1 receiver on loopback answering `204` to everything; deliveries arrive on
/// the channel.
fn receiver() -> (String, Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::HashMap::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // request line
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if tx.send(Delivery { headers, body }).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// Sends the endpoint a test event and returns its delivery.
fn test_delivery(addr: SocketAddr, key: &str, endpoint: &str, rx: &Receiver<Delivery>) -> Delivery {
    let sent = post(
        addr,
        key,
        &format!("/api/v1/webhook-endpoints/{endpoint}/test"),
        &json!({}),
        202,
    );
    let id = sent["webhookId"].as_str().unwrap().to_owned();
    loop {
        let d = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no delivery in time");
        if d.headers.get("webhook-id") == Some(&id) {
            return d;
        }
    }
}

/// Neither the text of any of `secrets` nor its base64 body is in any of `files`.
fn assert_absent(files: &[PathBuf], secrets: &[&str]) {
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        for secret in secrets {
            let body = secret.strip_prefix("whsec_").unwrap();
            for needle in [secret.as_bytes(), body.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a webhook secret is readable in {}",
                    file.display()
                );
            }
        }
    }
}

/// The `secrets` column of every endpoint row, read straight from the database file.
fn stored_secrets(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT secrets FROM webhooks_endpoints ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn sandbox_endpoint(addr: SocketAddr, key: &str, url: &str) -> Value {
    post(
        addr,
        key,
        "/api/v1/webhook-endpoints",
        &json!({ "url": url, "environment": "sandbox" }),
        201,
    )
}

#[test]
fn finding_8_data_directory_is_0700_and_every_file_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, addr, _) = serve(&data);
    let admin = admin_key(&data);
    post(
        addr,
        &admin,
        "/api/v1/keys",
        &json!({ "name": "ci", "scope": "organization" }),
        201,
    );
    let (_, me) = call(addr, "GET", "/api/v1/me", &admin, None).unwrap();
    sandbox_endpoint(addr, &admin, "http://127.0.0.1:9/hook");

    let files = assert_private_tree(&data);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "align.db",
        "align.db-wal",
        "align.db-shm",
        "bootstrap-admin-key",
        "secrets-key",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    // What the CLI writes for the data directory, while the server runs.
    let backup = dir.path().join("backup.db");
    ok_json(&align(
        &data,
        &["backup", "--to", backup.to_str().unwrap(), "--json"],
        &[],
    ));
    assert_eq!(mode(&backup), 0o600);
    let export = dir.path().join("subject.jsonl");
    let exported = align(
        &data,
        &[
            "audit",
            "export",
            "--subject",
            // The admin key: the actor of the mint.
            me["apiKeyId"].as_str().unwrap(),
            "--to",
            export.to_str().unwrap(),
        ],
        &[],
    );
    assert!(exported.status.success(), "{exported:?}");
    assert_eq!(mode(&export), 0o600);
    assert!(
        std::fs::read_to_string(&export)
            .unwrap()
            .contains("api_key.created")
    );
    // An existing file is never overwritten.
    let again = align(
        &data,
        &[
            "audit",
            "export",
            "--subject",
            "x",
            "--to",
            export.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(again.status.code(), Some(2));

    stop(server);
    assert_private_tree(&data);
    // A purge creates the audit checkpoint key: private too.
    ok_json(&align(
        &data,
        &["audit", "purge", "--older-than-days", "0", "--json"],
        &[],
    ));
    let files = assert_private_tree(&data);
    assert!(files.iter().any(|f| f.ends_with("audit-checkpoint-key")));
}

#[test]
fn finding_8_an_existing_data_directory_is_tightened_at_start_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], &[]).status.success());
    // As an earlier version (or a careless copy) left it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (server, addr, log) = serve(&data);
    assert_private_tree(&data);
    // Serving (so SIGTERM finds its handler installed: the listening line comes just before).
    assert_eq!(call(addr, "GET", "/healthz", "", None).unwrap().0, 200);
    let said = log
        .iter()
        .filter(|l| l.contains("tightened the mode"))
        .collect::<Vec<_>>();
    assert!(
        said.iter().any(|l| l
            .contains(&format!("path={} ", data.canonicalize().unwrap().display()))
            && l.contains("was=0755")),
        "{log:#?}"
    );
    assert!(
        said.iter()
            .any(|l| l.contains("align.db") && l.contains("was=0644"))
    );
    stop(server);
}

#[test]
fn finding_8_webhook_secrets_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, addr, _) = serve(&data);
    let admin = admin_key(&data);
    let (url, deliveries) = receiver();
    let a = sandbox_endpoint(addr, &admin, &url);
    let b = sandbox_endpoint(addr, &admin, &url);
    let ed = post(
        addr,
        &admin,
        "/api/v1/webhook-endpoints",
        &json!({ "url": url, "environment": "sandbox", "signatureScheme": "v1a" }),
        201,
    );
    assert!(ed["publicKey"].as_str().unwrap().starts_with("whpk_"));
    let a_id = a["id"].as_str().unwrap();
    let first = a["secret"].as_str().unwrap().to_owned();
    let rotated = post(
        addr,
        &admin,
        &format!("/api/v1/webhook-endpoints/{a_id}/rotate-secret"),
        &json!({ "graceSeconds": 3600 }),
        200,
    );
    let second = rotated["secret"].as_str().unwrap().to_owned();
    let other = b["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    // Deliveries still verify with the secrets the API returned (both, during the grace).
    let d = test_delivery(addr, &admin, a_id, &deliveries);
    assert!(d.verifies_with(&second) && d.verifies_with(&first));
    assert!(!d.verifies_with(&other));
    let d = test_delivery(addr, &admin, b["id"].as_str().unwrap(), &deliveries);
    assert!(d.verifies_with(&other));

    let backup = dir.path().join("backup.db");
    ok_json(&align(
        &data,
        &["backup", "--to", backup.to_str().unwrap(), "--json"],
        &[],
    ));
    let secrets = [first.as_str(), second.as_str(), other.as_str()];
    let mut files = assert_private_tree(&data);
    assert!(files.iter().any(|f| f.ends_with("align.db-wal")));
    files.push(backup.clone());
    assert_absent(&files, &secrets);
    let stored = stored_secrets(&data.join("align.db"));
    assert_eq!(stored.len(), 3);
    for s in stored.iter().chain(&stored_secrets(&backup)) {
        assert!(s.starts_with("sealed:v1:"), "{s}");
        assert!(!s.contains("whsk_") && !s.contains("whsec_"));
    }

    stop(server);
    assert_absent(&assert_private_tree(&data), &secrets);
}

#[test]
fn issue_21_finding_5_backup_files_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], &[]).status.success());
    let added = ok_json(&align(
        &data,
        &[
            "webhooks",
            "endpoints",
            "add",
            "--url",
            "http://127.0.0.1:9/hook",
            "--environment",
            "sandbox",
            "--json",
        ],
        &[("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1")],
    ));
    let secret = added["secret"].as_str().unwrap().to_owned();
    let backup = dir.path().join("nightly.db");
    let made = align(&data, &["backup", "--to", backup.to_str().unwrap()], &[]);
    assert!(made.status.success(), "{made:?}");
    assert!(String::from_utf8_lossy(&made.stderr).contains("secrets key file"));
    assert_eq!(mode(&backup), 0o600);
    assert_absent(std::slice::from_ref(&backup), &[&secret]);
    // A second backup to the same file is refused and leaves it as it was.
    let before = std::fs::read(&backup).unwrap();
    let again = align(&data, &["backup", "--to", backup.to_str().unwrap()], &[]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read(&backup).unwrap(), before);

    // Restored elsewhere, the database opens only with its key file, and without it no new
    // key is made in its place.
    let elsewhere = dir.path().join("restored");
    let restored = align(
        &elsewhere,
        &["restore", "--from", backup.to_str().unwrap()],
        &[],
    );
    assert!(restored.status.success(), "{restored:?}");
    assert_eq!(mode(&elsewhere), 0o700);
    assert_eq!(mode(&elsewhere.join("align.db")), 0o600);
    let refused = align(
        &elsewhere,
        &["webhooks", "endpoints", "list", "--json"],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    let key_file_text = std::fs::read_to_string(data.join("secrets-key")).unwrap();
    let key_id = key_file_text
        .lines()
        .find_map(|l| l.strip_prefix("# key "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert!(
        said.contains("secrets key") && said.contains(key_id) && said.contains("secrets-key"),
        "{said}"
    );
    assert!(
        !elsewhere.join("secrets-key").exists(),
        "no new key in its place"
    );
    std::fs::copy(data.join("secrets-key"), elsewhere.join("secrets-key")).unwrap();
    let listed = ok_json(&align(
        &elsewhere,
        &["webhooks", "endpoints", "list", "--json"],
        &[],
    ));
    assert_eq!(listed[0]["id"], added["id"]);
}

#[test]
fn a_server_without_the_right_secrets_key_refuses_to_start_and_makes_no_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], &[]).status.success());
    let key_file = data.join("secrets-key");
    let kept = std::fs::read(&key_file).unwrap();
    // Even with no endpoint yet, the database knows the key it seals with.
    std::fs::remove_file(&key_file).unwrap();
    let start = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_align"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("ALIGN_LOG", "warn")
            .env_remove("ALIGN_SECRETS_KEY_FILE")
            .env_remove("ALIGN_DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = start(&data);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("cannot use the secrets key file") && said.contains("restore the key file"),
        "{said}"
    );
    assert!(!key_file.exists(), "no new key replaces the lost one");
    // Another deployment's key file is refused the same way.
    let other = dir.path().join("other");
    assert!(align(&other, &["init"], &[]).status.success());
    std::fs::copy(other.join("secrets-key"), &key_file).unwrap();
    let refused = start(&data);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        std::fs::read(other.join("secrets-key")).unwrap(),
        std::fs::read(&key_file).unwrap()
    );
    // The right one lets it start.
    std::fs::write(&key_file, kept).unwrap();
    let (server, addr, _) = serve(&data);
    assert_eq!(call(addr, "GET", "/healthz", "", None).unwrap().0, 200);
    stop(server);
}

#[test]
fn secrets_rotate_key_reseals_everything_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, addr, _) = serve(&data);
    let admin = admin_key(&data);
    let (url, deliveries) = receiver();
    let a = sandbox_endpoint(addr, &admin, &url);
    let a_id = a["id"].as_str().unwrap();
    let secret = a["secret"].as_str().unwrap();
    assert!(test_delivery(addr, &admin, a_id, &deliveries).verifies_with(secret));
    let old_ids: Vec<String> = stored_secrets(&data.join("align.db"))
        .iter()
        .map(|s| align_webhooks::sealed_key_id(s).unwrap().to_owned())
        .collect();

    let rotated = ok_json(&align(&data, &["secrets", "rotate-key", "--json"], &[]));
    let new_id = rotated["keyId"].as_str().unwrap();
    assert_eq!(rotated["resealedEndpoints"], 1);
    assert_eq!(rotated["previousKeyIds"], json!(old_ids));
    assert_ne!(old_ids[0], new_id);
    let key_text = std::fs::read_to_string(data.join("secrets-key")).unwrap();
    assert_eq!(
        key_text
            .lines()
            .filter(|l| l.starts_with("aes256gcm:"))
            .count(),
        1,
        "the old key is gone from the key file"
    );
    assert_eq!(mode(&data.join("secrets-key")), 0o600);

    // The running server reads the re-sealed endpoint, and seals new ones, with the new key.
    assert!(test_delivery(addr, &admin, a_id, &deliveries).verifies_with(secret));
    let b = sandbox_endpoint(addr, &admin, &url);
    for s in stored_secrets(&data.join("align.db")) {
        assert_eq!(align_webhooks::sealed_key_id(&s).unwrap(), new_id);
    }
    assert!(
        test_delivery(addr, &admin, b["id"].as_str().unwrap(), &deliveries)
            .verifies_with(b["secret"].as_str().unwrap())
    );
    let audit = ok_json(&align(
        &data,
        &[
            "audit",
            "query",
            "--action",
            "secrets.key_rotated",
            "--json",
        ],
        &[],
    ));
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    stop(server);
    let (server, addr, _) = serve(&data);
    assert!(test_delivery(addr, &admin, a_id, &deliveries).verifies_with(secret));
    stop(server);
}
