//! The webhook commands, run as built binaries: `webhooks listen` receiving signed deliveries
//! over loopback, and the endpoint and delivery commands on a data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use align_keys::Environment;
use align_webhooks::{
    Attempt, DeliveryId, EndpointId, NewMessage, Next, Owner, SigningSecret, SqliteWebhookStore,
    WebhookStore,
};

const WAIT: Duration = Duration::from_secs(20);

fn align(data: &Path, args: &[&str], allow_private: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_align"));
    c.args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ALIGN_LOG", "warn")
        .env_remove("ALIGN_API_URL")
        .env_remove("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS")
        .stdin(Stdio::null());
    if allow_private {
        c.env("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1");
    }
    c.output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

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

/// Runs `f` against the data directory's webhook store, as the server would.
fn with_store<T>(data: &Path, f: impl AsyncFnOnce(SqliteWebhookStore) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sealer = align_webhooks::Sealer::load(&data.join("secrets-key")).unwrap();
        let store = SqliteWebhookStore::open(data.join("align.db"), sealer)
            .await
            .unwrap();
        f(store).await
    })
}

#[test]
fn operators_manage_endpoints_and_deliveries_on_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], false).status.success());
    let org = json(&align(&data, &["orgs", "list", "--json"], false))[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = "http://127.0.0.1:9/hooks/align";
    let add = |extra: &[&str], allow: bool| {
        let mut args = vec!["webhooks", "endpoints", "add", "--url", url, "--json"];
        args.extend_from_slice(extra);
        align(&data, &args, allow)
    };
    // The delivery policy applies: loopback only when the operator allows private targets,
    // and plain http only for sandbox endpoints.
    assert_eq!(
        add(&["--environment", "sandbox"], false).status.code(),
        Some(2)
    );
    let live = add(&[], true);
    assert_eq!(live.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&live.stderr).contains("scheme"));
    assert_eq!(
        add(&["--environment", "staging"], true).status.code(),
        Some(2)
    );

    let created = add(
        &[
            "--environment",
            "sandbox",
            "--events",
            "api_key.*, project.created",
            "--org",
            &org,
        ],
        true,
    );
    let ep = json(&created);
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    SigningSecret::parse(&secret).unwrap();
    assert!(!String::from_utf8_lossy(&created.stderr).contains(&secret[6..]));
    let id = ep["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a bare UUID, as in the API: {id}");
    assert_eq!(ep["environment"], "sandbox");
    assert_eq!(ep["organizationId"], org.as_str());
    assert_eq!(
        ep["events"],
        serde_json::json!(["api_key.*", "project.created"])
    );

    let listed = json(&align(
        &data,
        &["webhooks", "endpoints", "list", "--json"],
        false,
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains("whsec_"),
        "listings never show secrets"
    );
    let table = align(&data, &["webhooks", "endpoints", "list"], false);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));

    // The server's side: an event fans out to the endpoint; its first attempt fails for good.
    let delivery = with_store(&data, async |store| {
        let message = NewMessage::new(
            "evt_1",
            "api_key.revoked",
            Environment::Sandbox,
            serde_json::json!({ "keyPrefix": "akt_9311c954" }),
        )
        .owned_by(Owner::organization(org.clone()));
        let enqueued = store.enqueue(message, chrono::Utc::now()).await.unwrap();
        let d = enqueued.deliveries[0];
        let attempt = Attempt {
            at: chrono::Utc::now(),
            status: Some(410),
            latency_ms: 3,
            response_body: None,
            error: None,
        };
        store
            .record_attempt(d, attempt, Next::Failed)
            .await
            .unwrap();
        d
    });
    let listed = json(&align(
        &data,
        &["webhooks", "deliveries", &id, "--json"],
        false,
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], delivery.0.to_string());
    assert_eq!(listed[0]["eventType"], "api_key.revoked");
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["lastStatus"], 410);
    // After the receiver's outage: every failed delivery since a time is due again.
    let recovered = json(&align(
        &data,
        &["webhooks", "recover", &id, "--since", "1h", "--json"],
        false,
    ));
    assert_eq!(recovered["recovered"], 1);
    let shown = json(&align(
        &data,
        &["webhooks", "endpoints", "show", &id, "--json"],
        false,
    ));
    assert_eq!(shown["id"], id.as_str());
    assert!(shown.get("secret").is_none());
    // Update and test go through a running server (--api-url).
    for args in [
        &["webhooks", "endpoints", "update", &id, "--enable"][..],
        &["webhooks", "endpoints", "test", &id],
    ] {
        let o = align(&data, args, false);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--api-url"));
    }
    let retried = json(&align(
        &data,
        &["webhooks", "retry", &delivery.to_string(), "--json"],
        false,
    ));
    assert_eq!(retried["status"], "pending");
    assert!(retried["nextAttemptAt"].is_string());

    // Rotation: a new secret, printed once; the old one keeps signing for the grace period.
    let rotated = align(
        &data,
        &[
            "webhooks",
            "endpoints",
            "rotate-secret",
            &id,
            "--grace-seconds",
            "60",
            "--json",
        ],
        false,
    );
    let new_secret = json(&rotated)["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(json(&rotated)["previousSecretSignsUntil"].is_string());
    assert!(!String::from_utf8_lossy(&rotated.stderr).contains(&new_secret[6..]));
    let endpoint_id = EndpointId::parse(&id).unwrap();
    let signatures = with_store(&data, async |store| {
        let ep = store.endpoint(endpoint_id).await.unwrap();
        assert_eq!(ep.secrets.current().expose().expose(), new_secret);
        ep.secrets
            .signature_header("msg_1", 1, b"{}", chrono::Utc::now())
    });
    assert_eq!(signatures.split(' ').count(), 2, "both secrets sign");

    let stranger = "00000000-0000-4000-8000-000000000000";
    for args in [
        &["webhooks", "deliveries", &id, "--org", stranger][..],
        &["webhooks", "endpoints", "remove", &id, "--org", stranger],
    ] {
        let foreign = align(&data, args, false);
        assert_eq!(
            foreign.status.code(),
            Some(3),
            "another organisation's view"
        );
    }
    let removed = align(
        &data,
        &["webhooks", "endpoints", "remove", &id, "--json"],
        false,
    );
    assert_eq!(json(&removed)["deleted"], true);
    let listed = json(&align(
        &data,
        &["webhooks", "endpoints", "list", "--json"],
        false,
    ));
    assert_eq!(listed, serde_json::json!([]));
    let gone = align(&data, &["webhooks", "deliveries", &id], false);
    assert_eq!(gone.status.code(), Some(3));

    // Unknown and malformed ids.
    let unknown = EndpointId::new().to_string();
    let unknown_delivery = DeliveryId::new().to_string();
    for (args, code) in [
        (vec!["webhooks", "endpoints", "remove", unknown.as_str()], 3),
        (vec!["webhooks", "deliveries", unknown.as_str()], 3),
        (vec!["webhooks", "retry", unknown_delivery.as_str()], 3),
        (vec!["webhooks", "endpoints", "remove", "nope"], 2),
        (vec!["webhooks", "retry", "nope"], 2),
    ] {
        assert_eq!(
            align(&data, &args, false).status.code(),
            Some(code),
            "{args:?}"
        );
    }

    // Every change is audited, with the system as actor, and no secret or URL path in it.
    let audit = json(&align(&data, &["audit", "query", "--json"], false));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "webhook_endpoint.created",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.deleted",
        "webhook_delivery.retried",
        "webhook_endpoint.recovered",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let export = align(&data, &["audit", "tail", "-n", "100", "--json"], false);
    let text = String::from_utf8(export.stdout).unwrap();
    assert!(text.contains("http://127.0.0.1:9"), "{text}");
    for secret_part in [&secret[6..], &new_secret[6..], "/hooks/align"] {
        assert!(
            !text.contains(secret_part),
            "{secret_part} in the audit log"
        );
    }
    assert_eq!(
        json(&align(&data, &["audit", "verify", "--json"], false))["intact"],
        true
    );
}

/// Issue 21, finding 6: a delivery's attempts page on the data directory too, newest first,
/// each once; the table prints the next page's cursor on stderr.
#[test]
fn issue_21_finding_6_webhooks_attempts_pages_a_deliverys_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], false).status.success());
    let org = json(&align(&data, &["orgs", "list", "--json"], false))[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = align(
        &data,
        &[
            "webhooks",
            "endpoints",
            "add",
            "--url",
            "http://127.0.0.1:9/hooks",
            "--environment",
            "sandbox",
            "--json",
        ],
        true,
    );
    assert!(added.status.success());
    let delivery = with_store(&data, async |store| {
        let message = NewMessage::new(
            "evt_1",
            "api_key.revoked",
            Environment::Sandbox,
            serde_json::json!({}),
        )
        .owned_by(Owner::organization(org.clone()));
        let d = store
            .enqueue(message, chrono::Utc::now())
            .await
            .unwrap()
            .deliveries[0];
        for i in 0..25 {
            let attempt = Attempt {
                at: chrono::Utc::now(),
                status: Some(500),
                latency_ms: i,
                response_body: None,
                error: None,
            };
            let next = Next::RetryAt(chrono::Utc::now());
            store.record_attempt(d, attempt, next).await.unwrap();
        }
        d.to_string()
    });
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let mut args = vec!["webhooks", "attempts", &delivery, "--limit", "10", "--json"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = json(&align(&data, &args, false));
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["latencyMs"].as_u64().unwrap()),
        );
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        (0..25).rev().collect::<Vec<u64>>(),
        "newest first, once"
    );
    assert!(cursor.is_none());

    let table = align(
        &data,
        &["webhooks", "attempts", &delivery, "--limit", "1"],
        false,
    );
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("latencyMs"));
    assert!(String::from_utf8_lossy(&table.stderr).contains("--cursor c"));
    for bad in [
        &["--limit", "0"][..],
        &["--limit", "101"],
        &["--cursor", "nope"],
    ] {
        let mut args = vec!["webhooks", "attempts", delivery.as_str()];
        args.extend_from_slice(bad);
        assert_eq!(align(&data, &args, false).status.code(), Some(2), "{bad:?}");
    }
}
