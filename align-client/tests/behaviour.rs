//! Retries, idempotency keys, errors, paging and the environment guard, against a scripted
//! HTTP server on loopback (what the real server does is walked in `tests/walk.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use align_client::{Client, CreateProject, Environment, Error, ErrorCode, PageParams, UpdateKey};
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A clearly fake key, for the redaction checks only.
const FIXTURE_KEY: &str = "test-fixture-key-not-a-real-token-0123456789";

/// What the scripted server does with one request.
#[derive(Clone)]
enum Step {
    /// Answer with this status, extra headers and body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Close the connection without answering.
    Close,
}

fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Step {
    Step::Answer(
        status,
        headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body.to_owned(),
    )
}

/// One request the server got: the request line and its headers (lower-cased names).
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A server that plays `script` in order (the last step again once it runs out).
async fn scripted(script: Vec<Step>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let Ok(got) = sock.read(&mut chunk).await else {
                    break None;
                };
                if got == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..got]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap_or_default().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + 4 + len {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(got) => buf.extend_from_slice(&chunk[..got]),
                }
            }
            seen.lock().unwrap().push(Seen { line, headers });
            let step = script[n.min(script.len() - 1)].clone();
            n += 1;
            match step {
                Step::Close => drop(sock),
                Step::Answer(status, headers, body) => {
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\nx-request-id: req_header\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
            }
        }
    });
    (addr, log)
}

fn client(addr: SocketAddr) -> align_client::ClientBuilder {
    Client::builder(&format!("http://{addr}"))
        .api_key(FIXTURE_KEY)
        .backoff(Duration::from_millis(10))
}

fn error_body(code: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"m","requestId":"req_body"}}}}"#)
}

const PROJECT: &str = r#"{"id":"5b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","name":"p",
"organizationId":"6b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","createdAt":"2026-05-14T10:00:00.000Z"}"#;

#[tokio::test]
async fn a_429_is_retried_after_retry_after_with_the_same_idempotency_key() {
    let (addr, log) = scripted(vec![
        answer(429, &[("retry-after", "1")], &error_body("rate_limit")),
        answer(201, &[], PROJECT),
    ])
    .await;
    let c = client(addr).build().unwrap();
    let started = Instant::now();
    let p = c
        .create_project(&CreateProject { name: "p".into() })
        .await
        .unwrap();
    assert_eq!(p.name, "p");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let first = seen[0].header("idempotency-key").unwrap();
    assert_eq!(uuid::Uuid::parse_str(first).unwrap().get_version_num(), 4);
    assert_eq!(Some(first), seen[1].header("idempotency-key"));
}

#[tokio::test]
async fn separate_posts_get_separate_idempotency_keys() {
    let (addr, log) = scripted(vec![answer(201, &[], PROJECT)]).await;
    let c = client(addr).build().unwrap();
    for _ in 0..2 {
        c.create_project(&CreateProject { name: "p".into() })
            .await
            .unwrap();
    }
    let seen = log.lock().unwrap().clone();
    assert_ne!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key")
    );
}

#[tokio::test]
async fn other_4xx_answers_are_never_retried_and_carry_code_and_request_id() {
    let (addr, log) = scripted(vec![answer(409, &[], &error_body("key_not_active"))]).await;
    let c = client(addr).build().unwrap();
    let e = c.revoke_key("x").await.unwrap_err();
    let api = e.api().unwrap();
    assert_eq!(api.status, 409);
    assert_eq!(api.code, ErrorCode::KeyNotActive);
    assert_eq!(api.message, "m");
    assert_eq!(api.request_id.as_deref(), Some("req_body"));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_503_is_retried_up_to_the_configured_attempts() {
    let (addr, log) = scripted(vec![answer(
        503,
        &[("retry-after", "0")],
        &error_body("unavailable"),
    )])
    .await;
    let c = client(addr).max_attempts(3).build().unwrap();
    let e = c.get_me().await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::Unavailable));
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_is_returned_at_once() {
    let (addr, log) = scripted(vec![answer(
        429,
        &[("retry-after", "120")],
        &error_body("quota_exceeded"),
    )])
    .await;
    let c = client(addr)
        .max_retry_wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let e = c.get_me().await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::QuotaExceeded));
    assert_eq!(e.api().unwrap().retry_after, Some(Duration::from_secs(120)));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_a_get_but_not_for_a_patch() {
    let key = r#"{"apiKeyId":"5b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","keyName":"k","keyPrefix":"ako_00000000",
"organizationId":"6b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","scope":"organization","scopedProjectId":null,
"permissions":null,"createdByUserId":"7b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","lastUsedAt":null,
"environment":"live","createdAt":"2026-05-14T10:00:00.000Z","expiresAt":null,"revokedAt":null,
"ownerId":null,"meta":null}"#;
    let (addr, log) = scripted(vec![Step::Close, answer(200, &[], key)]).await;
    let c = client(addr).build().unwrap();
    let k = c.get_key("k").await.unwrap();
    assert_eq!(k.key_name, "k");
    assert_eq!(log.lock().unwrap().len(), 2);

    let (addr, log) = scripted(vec![Step::Close, answer(200, &[], key)]).await;
    let c = client(addr).build().unwrap();
    let e = c.update_key("k", &UpdateKey::default()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn neither_the_client_nor_its_errors_show_the_key() {
    let (addr, _log) = scripted(vec![answer(401, &[], &error_body("invalid_key"))]).await;
    let c = client(addr).build().unwrap();
    let e = c.get_me().await.unwrap_err();
    for text in [
        format!("{c:?}"),
        format!("{e:?}"),
        format!("{e}"),
        format!("{:?}", client(addr)),
    ] {
        assert!(!text.contains(FIXTURE_KEY), "{text}");
    }
    // The key does go out, as a bearer token.
    let log = _log.lock().unwrap().clone();
    assert_eq!(
        log[0].header("authorization"),
        Some(format!("Bearer {FIXTURE_KEY}").as_str())
    );
}

#[tokio::test]
async fn a_minted_token_is_redacted_in_debug() {
    let minted = r#"{"apiKeyId":"5b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","keyName":"k","keyPrefix":"ako_00000000",
"organizationId":"6b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","scope":"organization","scopedProjectId":null,
"permissions":null,"createdByUserId":"7b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","lastUsedAt":null,
"environment":"live","createdAt":"2026-05-14T10:00:00.000Z","expiresAt":null,"revokedAt":null,
"ownerId":null,"meta":null,"key":"test-fixture-minted-token"}"#;
    let (addr, _log) = scripted(vec![answer(201, &[], minted)]).await;
    let c = client(addr).build().unwrap();
    let m = c
        .create_key(&align_client::CreateKey::organization("k"))
        .await
        .unwrap();
    assert_eq!(m.key.expose(), "test-fixture-minted-token");
    assert!(!format!("{m:?}").contains("test-fixture-minted-token"));
}

#[tokio::test]
async fn a_live_key_is_refused_before_anything_else_is_sent_when_sandbox_is_required() {
    let me = r#"{"apiKeyId":"5b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","keyName":"k","keyPrefix":"ako_00000000",
"organizationId":"6b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f","scope":"organization","scopedProjectId":null,
"permissions":null,"createdByUserId":"7b0c4f4e-8d1c-4b7e-9a43-1f1b1c1d1e1f",
"lastUsedAt":"2026-05-14T10:00:00.000Z","environment":"live"}"#;
    let (addr, log) = scripted(vec![answer(200, &[], me)]).await;
    let c = client(addr)
        .require_environment(Environment::Sandbox)
        .build()
        .unwrap();
    for _ in 0..2 {
        let e = c
            .create_project(&CreateProject { name: "p".into() })
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::EnvironmentMismatch {
                    required: Environment::Sandbox,
                    actual: Environment::Live
                }
            ),
            "{e:?}"
        );
    }
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "only /me was asked, once: {seen:?}");
    assert!(seen[0].line.starts_with("GET /api/v1/me "));
    assert_eq!(c.known_environment(), Some(Environment::Live));
}

#[tokio::test]
async fn a_sandbox_answer_header_makes_the_environment_known() {
    let (addr, _log) = scripted(vec![answer(
        200,
        &[("align-environment", "sandbox")],
        r#"{"data":[],"nextCursor":null}"#,
    )])
    .await;
    let c = client(addr).build().unwrap();
    assert_eq!(c.known_environment(), None);
    c.list_projects(&PageParams::default()).await.unwrap();
    assert_eq!(c.known_environment(), Some(Environment::Sandbox));
    assert_eq!(c.environment().await.unwrap(), Environment::Sandbox);
}

#[tokio::test]
async fn the_stream_follows_next_cursor_to_the_end() {
    let page = |name: &str, next: &str| {
        format!(
            r#"{{"data":[{}],"nextCursor":{next}}}"#,
            PROJECT.replace(r#""name":"p""#, &format!(r#""name":"{name}""#))
        )
    };
    let (addr, log) = scripted(vec![
        answer(200, &[], &page("one", r#""c1""#)),
        answer(200, &[], &page("two", "null")),
    ])
    .await;
    let c = client(addr).build().unwrap();
    let all: Vec<_> = c.list_projects_stream(Some(1)).try_collect().await.unwrap();
    let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    let seen = log.lock().unwrap().clone();
    assert!(
        seen[0].line.starts_with("GET /api/v1/projects?limit=1 "),
        "{seen:?}"
    );
    assert!(
        seen[1]
            .line
            .starts_with("GET /api/v1/projects?limit=1&cursor=c1 "),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_base_url_that_is_not_http_is_refused() {
    for bad in ["ftp://example.com", "not a url", "/relative"] {
        assert!(matches!(
            Client::builder(bad).build(),
            Err(Error::Config(_))
        ));
    }
}
