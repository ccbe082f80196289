//! The differential test of issue 22: the reference server and `examples/axum_service.rs`,
//! both built from the crates' public layers, answer the same table of requests with the same
//! statuses, error codes and pipeline headers.
//!
//! Both run on loopback; a raw HTTP/1.1 client sends each row to both (raw, so that a body
//! without `Content-Length`, oversized headers and a body that never finishes can be sent).
//! Each side has its own keys of the same kinds (valid, sandbox, revoked, expired, suspended,
//! read-only, allow-listed elsewhere, with its own low rate), made through its own means: the
//! server's HTTP API, the example's `KeyManager`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

#[allow(dead_code)]
#[path = "../axum_service.rs"]
mod axum_service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use align_audit::{MemorySink, RequestLogLayer};
use align_keys::{Environment, NewKey, OrganizationId, PermissionSet, Scope, UserId};
use align_server::{Config, Server};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The per-key rate of the "slow" key, on both sides.
const OWN_RATE: u32 = 2;
/// Requests of one key in flight, on both sides.
const MAX_CONCURRENT: u64 = 2;

/// The keys of one side, by kind.
#[derive(Debug, Default)]
struct Keys(BTreeMap<&'static str, String>);

impl Keys {
    fn get(&self, kind: &str) -> &str {
        self.0.get(kind).map_or("", String::as_str)
    }
}

/// One side under test.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    keys: Keys,
    /// The path of a `POST` that creates something (201) and honours `Idempotency-Key`.
    create: &'static str,
}

/// An answer, as far as the pipeline decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    code: String,
    headers: BTreeMap<&'static str, String>,
}

/// Headers the pipeline sets, compared by presence or value.
const COMPARED: &[(&str, bool)] = &[
    // (name, compare the value too)
    ("x-request-id", false),
    ("x-ratelimit-limit", true),
    ("x-ratelimit-remaining", false),
    ("x-ratelimit-reset", false),
    ("retry-after", false),
    ("www-authenticate", true),
    ("align-environment", true),
    ("idempotent-replayed", true),
    ("content-type", true),
];

/// Sends `raw` (a whole request, or the start of one) and reads the answer.
async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Written beside the reading: a server may answer (413) and close before the body is in.
    let raw = raw.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&raw).await;
        write
    });
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    let reading = async {
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("an answer within 10 s");
    drop(writer);
    parse(&buf)
}

fn parse(buf: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if let Some((name, with_value)) = COMPARED.iter().find(|(n, _)| *n == k) {
                let v = if *with_value {
                    v.trim().to_owned()
                } else {
                    String::from("…")
                };
                headers.insert(*name, v);
            }
        }
    }
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Answer {
        status,
        code,
        headers,
    }
}

/// A request: method, path, headers, body (`None`: no body and no `Content-Length`).
fn request(method: &str, path: &str, headers: &[(&str, String)], body: Option<&str>) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        raw.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            b.len()
        ));
    }
    raw.push_str("\r\n");
    if let Some(b) = body {
        raw.push_str(b);
    }
    raw.into_bytes()
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// The reference server on loopback, with keys of every kind made through its API.
async fn reference_server(dir: &std::path::Path) -> (Side, tokio::sync::oneshot::Sender<()>) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        max_concurrent_per_key: MAX_CONCURRENT,
        ..Config::default()
    };
    let key_file = config.bootstrap_key_path();
    let server = Server::start(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    let admin = std::fs::read_to_string(key_file).unwrap().trim().to_owned();
    let api = |method: &'static str, path: String, body: Value| {
        let admin = admin.clone();
        async move {
            let raw = request(method, &path, &[bearer(&admin)], Some(&body.to_string()));
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&raw).await.unwrap();
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf).into_owned();
            let body = text
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_owned();
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
        }
    };
    let mint = |body: Value| async move {
        let v = api("POST", "/api/v1/keys".into(), body).await;
        (
            v["key"].as_str().unwrap_or_default().to_owned(),
            v["apiKeyId"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut keys = Keys::default();
    let base = json!({"name": "k", "scope": "organization"});
    keys.0.insert("admin", admin.clone());
    let (valid, _) = mint(base.clone()).await;
    keys.0.insert("valid", valid);
    let (other, _) = mint(base.clone()).await;
    keys.0.insert("other", other);
    let (sandbox, _) =
        mint(json!({"name": "s", "scope": "organization", "environment": "sandbox"})).await;
    keys.0.insert("sandbox", sandbox);
    let (revoked, id) = mint(base.clone()).await;
    api("POST", format!("/api/v1/keys/{id}/revoke"), json!({})).await;
    keys.0.insert("revoked", revoked);
    let (suspended, id) = mint(base.clone()).await;
    api("POST", format!("/api/v1/keys/{id}/suspend"), json!({})).await;
    keys.0.insert("suspended", suspended);
    let soon = (Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (expired, _) = mint(json!({"name": "e", "scope": "organization", "expiresAt": soon})).await;
    keys.0.insert("expired", expired);
    let (read_only, _) =
        mint(json!({"name": "r", "scope": "organization", "permissions": ["keys:read", "projects:read"]})).await;
    keys.0.insert("read_only", read_only);
    let (elsewhere, id) = mint(base.clone()).await;
    api(
        "PATCH",
        format!("/api/v1/keys/{id}"),
        json!({"allowedCidrs": ["10.0.0.0/8"]}),
    )
    .await;
    keys.0.insert("elsewhere", elsewhere);
    let (here, id) = mint(base.clone()).await;
    api(
        "PATCH",
        format!("/api/v1/keys/{id}"),
        json!({"allowedCidrs": ["127.0.0.0/8"]}),
    )
    .await;
    keys.0.insert("here", here);
    let (slow, id) = mint(base.clone()).await;
    api(
        "PATCH",
        format!("/api/v1/keys/{id}"),
        json!({"rateLimitPerMinute": OWN_RATE}),
    )
    .await;
    keys.0.insert("slow", slow);
    let (busy, _) = mint(base.clone()).await;
    keys.0.insert("busy", busy);
    (
        Side {
            name: "reference server",
            addr,
            keys,
            create: "/api/v1/projects",
        },
        stop,
    )
}

/// The axum example on loopback, with keys of the same kinds made with its `KeyManager`.
async fn axum_example() -> Side {
    let keys = axum_service::key_manager();
    let org = OrganizationId::new();
    let user = UserId::new();
    let now = Utc::now();
    let new = |name: &str| NewKey {
        name: name.into(),
        organization_id: org,
        scope: Scope::Organization,
        permissions: None,
        environment: Environment::Live,
        created_by: user,
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: None,
        meta: None,
    };
    let mut made = Keys::default();
    for kind in ["admin", "valid", "other", "busy"] {
        let m = keys.mint(new(kind), now).await.unwrap();
        made.0.insert(kind, m.token.expose().to_owned());
    }
    let m = keys
        .mint(
            NewKey {
                environment: Environment::Sandbox,
                ..new("sandbox")
            },
            now,
        )
        .await
        .unwrap();
    made.0.insert("sandbox", m.token.expose().to_owned());
    let m = keys.mint(new("revoked"), now).await.unwrap();
    keys.revoke(m.record.id, now).await.unwrap();
    made.0.insert("revoked", m.token.expose().to_owned());
    let m = keys.mint(new("suspended"), now).await.unwrap();
    keys.suspend(m.record.id, now).await.unwrap();
    made.0.insert("suspended", m.token.expose().to_owned());
    let soon = now + chrono::Duration::milliseconds(1500);
    let m = keys
        .mint(
            NewKey {
                expires_at: Some(soon),
                ..new("expired")
            },
            now,
        )
        .await
        .unwrap();
    made.0.insert("expired", m.token.expose().to_owned());
    let read = PermissionSet::only(axum_service::INVOICES_READ);
    let m = keys
        .mint(
            NewKey {
                permissions: Some(read),
                ..new("read_only")
            },
            now,
        )
        .await
        .unwrap();
    made.0.insert("read_only", m.token.expose().to_owned());
    for (kind, net) in [("elsewhere", "10.0.0.0/8"), ("here", "127.0.0.0/8")] {
        let m = keys
            .mint(
                NewKey {
                    allowed_cidrs: vec![net.parse().unwrap()],
                    ..new(kind)
                },
                now,
            )
            .await
            .unwrap();
        made.0.insert(kind, m.token.expose().to_owned());
    }
    let m = keys
        .mint(
            NewKey {
                rate_limit_per_minute: Some(OWN_RATE),
                ..new("slow")
            },
            now,
        )
        .await
        .unwrap();
    made.0.insert("slow", m.token.expose().to_owned());

    let settings = axum_service::Settings {
        max_concurrent: MAX_CONCURRENT,
        ..axum_service::Settings::default()
    };
    let router = axum_service::app(
        &keys,
        RequestLogLayer::new(Arc::new(MemorySink::new())),
        Arc::new(align_webhooks::MemoryWebhookStore::new()),
        Arc::new(align_http::ReplyStore::memory()),
        settings,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Side {
        name: "axum example",
        addr,
        keys: made,
        create: "/api/v1/invoices",
    }
}

/// Makes a row's request for one side.
type MakeRequest = Box<dyn Fn(&Side) -> Vec<u8>>;

/// A row of the table: what it is, and the request for a side.
struct Row {
    what: &'static str,
    make: MakeRequest,
}

fn row(what: &'static str, make: impl Fn(&Side) -> Vec<u8> + 'static) -> Row {
    Row {
        what,
        make: Box::new(make),
    }
}

/// The side's creating `POST` by the valid key with `Idempotency-Key: idem`.
fn create_with_key(s: &Side, idem: &str, body: &str) -> Vec<u8> {
    request(
        "POST",
        s.create,
        &[
            bearer(s.keys.get("valid")),
            ("idempotency-key", idem.to_owned()),
        ],
        Some(body),
    )
}

fn get_me(headers: &[(&str, String)]) -> Vec<u8> {
    request("GET", "/api/v1/me", headers, None)
}

fn table() -> Vec<Row> {
    let key = |kind: &'static str| move |s: &Side| get_me(&[bearer(s.keys.get(kind))]);
    vec![
        row("no key", |_| get_me(&[])),
        row("a valid key as Bearer", key("valid")),
        row("a valid key as X-API-Key", |s| {
            get_me(&[("x-api-key", s.keys.get("valid").to_owned())])
        }),
        row("the same key in both headers", |s| {
            get_me(&[
                bearer(s.keys.get("valid")),
                ("x-api-key", s.keys.get("valid").to_owned()),
            ])
        }),
        row("different keys in the two headers", |s| {
            get_me(&[
                bearer(s.keys.get("valid")),
                ("x-api-key", s.keys.get("other").to_owned()),
            ])
        }),
        row("a malformed key", |_| get_me(&[bearer("ako_not-a-key")])),
        row("a well-formed key no one minted", |_| {
            get_me(&[bearer(
                align_keys::token::generate(Environment::Live)
                    .unwrap()
                    .token
                    .expose(),
            )])
        }),
        row("a key with a wrong checksum", |s| {
            let mut k = s.keys.get("valid").to_owned();
            let last = if k.ends_with('A') { "B" } else { "A" };
            k.replace_range(k.len() - 1.., last);
            get_me(&[bearer(&k)])
        }),
        row("an Authorization that is not Bearer", |_| {
            get_me(&[("authorization", "Basic dXNlcjpwYXNz".to_owned())])
        }),
        row("a revoked key", key("revoked")),
        row("an expired key", key("expired")),
        row("a suspended key", key("suspended")),
        row("a sandbox key", key("sandbox")),
        row("a key used outside its allow-list", key("elsewhere")),
        row("a key used inside its allow-list", key("here")),
        row("a key without the permission the route needs", |s| {
            request(
                "POST",
                s.create,
                &[bearer(s.keys.get("read_only"))],
                Some(r#"{"name":"x"}"#),
            )
        }),
        row("an unknown route with a valid key", |s| {
            request("GET", "/api/v1/nope", &[bearer(s.keys.get("valid"))], None)
        }),
        row("an unknown route without a key", |_| {
            request("GET", "/api/v1/nope", &[], None)
        }),
        row("headers over 16 KiB", |s| {
            get_me(&[
                bearer(s.keys.get("valid")),
                ("x-padding", "p".repeat(17 * 1024)),
            ])
        }),
        row("a declared body over 1 MiB", |s| {
            let mut raw = format!(
                "POST {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                s.create,
                s.keys.get("valid"),
                2 * 1024 * 1024
            )
            .into_bytes();
            raw.extend_from_slice(b"{}");
            raw
        }),
        row("a chunked body over 1 MiB", |s| {
            let mut raw = format!(
                "POST {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                s.create,
                s.keys.get("valid"),
            )
            .into_bytes();
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..20 {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(&chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            raw
        }),
        row("an Idempotency-Key that is too long", |s| {
            create_with_key(s, &"k".repeat(300), r#"{"name":"x"}"#)
        }),
        row("a POST with a fresh Idempotency-Key", |s| {
            create_with_key(s, "diff-1", r#"{"name":"first"}"#)
        }),
        row("the same POST replayed", |s| {
            create_with_key(s, "diff-1", r#"{"name":"first"}"#)
        }),
        row("another POST with the same Idempotency-Key", |s| {
            create_with_key(s, "diff-1", r#"{"name":"second"}"#)
        }),
        row("a key with its own rate, request 1", key("slow")),
        row("a key with its own rate, request 2", key("slow")),
        row("a key with its own rate, over it", key("slow")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_and_the_axum_example_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (server, stop) = reference_server(dir.path()).await;
    let example = axum_example().await;
    // The "expired" keys expire 1.5 s after they were made.
    tokio::time::sleep(Duration::from_millis(1600)).await;

    let rows = table();
    assert!(rows.len() >= 20, "the table has {} rows", rows.len());
    let mut differences = Vec::new();
    for r in &rows {
        let a = send_raw(server.addr, &(r.make)(&server)).await;
        let b = send_raw(example.addr, &(r.make)(&example)).await;
        if a != b {
            differences.push(format!(
                "{}:\n  {}: {a:?}\n  {}: {b:?}",
                r.what, server.name, example.name
            ));
        }
    }

    // Requests in flight beyond the limit: hold MAX_CONCURRENT requests open (their bodies
    // never finish), then one more is refused alike.
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for side in [&server, &example] {
        for _ in 0..MAX_CONCURRENT {
            let mut s = TcpStream::connect(side.addr).await.unwrap();
            let start = format!(
                "POST {} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
                side.create,
                side.keys.get("busy")
            );
            s.write_all(start.as_bytes()).await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        answers.push(send_raw(side.addr, &get_me(&[bearer(side.keys.get("busy"))])).await);
    }
    assert_eq!(answers[0].code, "concurrency_limit", "{:?}", answers[0]);
    if answers[0] != answers[1] {
        differences.push(format!(
            "over the concurrency limit:\n  {}: {:?}\n  {}: {:?}",
            server.name, answers[0], example.name, answers[1]
        ));
    }
    drop(held);
    let _ = stop.send(());
    assert!(
        differences.is_empty(),
        "{} of {} rows differ:\n{}",
        differences.len(),
        rows.len() + 1,
        differences.join("\n")
    );
}
