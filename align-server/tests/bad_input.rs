//! Bad input never gets a 500 or a panic: every answer is a 4xx with the error envelope, and
//! no token ever reaches the data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

fn assert_envelope(r: &support::Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.code(), code, "{}", r.body);
    assert!(r.body["error"]["message"].is_string());
    assert!(r.body["error"]["requestId"].is_string());
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_invalid_requests() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {}", s.admin_key);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for body in [
        b"{".to_vec(),
        b"[]".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        br#"{"name": 5, "scope": "organization"}"#.to_vec(),
        br#"{"name": "x", "scope": "galaxy"}"#.to_vec(),
        br#"{"name": "x", "scope": "organization", "extra": true}"#.to_vec(),
        br#"{"name": "x", "scope": "organization", "permissions": ["keys:fly"]}"#.to_vec(),
        br#"{"name": "", "scope": "organization"}"#.to_vec(),
        br#"{"name": "x", "scope": "organization", "expiresAt": "yesterday"}"#.to_vec(),
        br#"{"name": "x", "scope": "organization", "expiresAt": "2001-01-01T00:00:00Z"}"#.to_vec(),
        br#"{"name": "x", "scope": "project"}"#.to_vec(),
    ] {
        let r = s
            .send(Method::POST, "/api/v1/keys", &h, Some(body.clone()))
            .await;
        assert_envelope(&r, StatusCode::BAD_REQUEST, "invalid_request");
    }
    s.stop().await;
}

/// Every body is a JSON object. A change whose fields are all optional would otherwise take
/// an array (serde's sequence form of a struct) as "change nothing" and answer 200: spec-driven
/// fuzzing found `PATCH /organization` doing so with `[]`.
#[tokio::test]
async fn bodies_that_are_not_objects_are_invalid_requests_everywhere() {
    let s = TestServer::start().await;
    let (_, key) = s
        .mint(&s.admin_key, json!({"name": "k", "scope": "organization"}))
        .await;
    let key_path = format!("/api/v1/keys/{}", key["apiKeyId"].as_str().unwrap());
    let rotate_path = format!("{key_path}/rotate");
    let auth = format!("Bearer {}", s.admin_key);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let targets = [
        (Method::PATCH, "/api/v1/organization"),
        (Method::PATCH, key_path.as_str()),
        (Method::POST, rotate_path.as_str()),
        (Method::POST, "/api/v1/projects"),
        (Method::POST, "/api/v1/webhook-endpoints"),
    ];
    for (method, path) in targets {
        for body in ["[]", " \n[{}]", "null", "0", "\"x\"", "true"] {
            let r = s
                .send(method.clone(), path, &h, Some(body.as_bytes().to_vec()))
                .await;
            assert_envelope(&r, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    // An empty body still means `{}`, and whitespace before an object is fine.
    let r = s
        .send(
            Method::PATCH,
            "/api/v1/organization",
            &h,
            Some(b" \n {}".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn a_quoted_token_in_a_bad_body_is_not_echoed() {
    let s = TestServer::start().await;
    let body = json!({"name": ["x"], "scope": s.admin_key.clone()});
    let r = s.post("/api/v1/keys", &s.admin_key, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!String::from_utf8_lossy(&r.raw).contains(&s.admin_key[13..]));
    let body = json!({"name": "x", "scope": "organization", "permissions": [s.admin_key.clone()]});
    let r = s.post("/api/v1/keys", &s.admin_key, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        !String::from_utf8_lossy(&r.raw).contains(&s.admin_key[13..]),
        "{}",
        r.body
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_media_type_and_oversized_bodies() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 1024).await;
    let auth = format!("Bearer {}", s.admin_key);
    let r = s
        .send(
            Method::POST,
            "/api/v1/keys",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(b"name=x".to_vec()),
        )
        .await;
    assert_envelope(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = vec![b' '; 4096];
    let r = s
        .send(
            Method::POST,
            "/api/v1/keys",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(big),
        )
        .await;
    assert_envelope(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    s.stop().await;
}

#[tokio::test]
async fn odd_paths_and_ids_are_not_found() {
    let s = TestServer::start().await;
    for path in [
        "/api/v1/keys/'%20OR%201=1--",
        "/api/v1/keys/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/keys/00000000-0000-4000-8000-000000000000",
        "/api/v1/nothing",
        "/api/v2/me",
        "/../../etc/passwd",
        "/api/v1/keys/x/y/z",
    ] {
        let r = s.get(path, &s.admin_key).await;
        assert_envelope(&r, StatusCode::NOT_FOUND, "not_found");
    }
    let long = format!("/api/v1/{}", "a".repeat(8_000));
    let r = s.get(&long, &s.admin_key).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let r = s
        .send(
            Method::DELETE,
            "/api/v1/me",
            &[("x-api-key", &s.admin_key)],
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET"));
    let r = s
        .send(
            Method::PUT,
            "/api/v1/keys",
            &[("x-api-key", &s.admin_key)],
            None,
        )
        .await;
    assert_envelope(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST, GET"));
    let r = s.send(Method::TRACE, "/healthz", &[], None).await;
    assert_envelope(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        s.get("/healthz", "").await.status,
        StatusCode::OK,
        "still healthy"
    );
    s.stop().await;
}

#[tokio::test]
async fn odd_credentials_are_refused_cleanly() {
    let s = TestServer::start().await;
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer  ",
        "Token abc",
        "Bearer ako_\u{e9}",
    ] {
        let r = s
            .send(Method::GET, "/api/v1/me", &[("authorization", auth)], None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn no_minted_token_reaches_the_data_directory() {
    let s = TestServer::start().await;
    let mut tokens = vec![s.admin_key.clone()];
    for i in 0..20 {
        let (t, res) = s
            .mint(
                &s.admin_key,
                json!({"name": format!("k{i}"), "scope": "organization"}),
            )
            .await;
        s.get("/api/v1/me", &t).await;
        if i % 3 == 0 {
            let id = res["apiKeyId"].as_str().unwrap();
            let r = s
                .post(
                    &format!("/api/v1/keys/{id}/rotate"),
                    &s.admin_key,
                    json!({}),
                )
                .await;
            tokens.push(r.body["key"].as_str().unwrap().to_owned());
        }
        tokens.push(t);
    }
    let dir = s.stop().await;
    let mut bytes = Vec::new();
    // Every file, the request log's segments (`align.db-requests/`) included.
    let mut dirs = vec![dir.path().to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.file_name().is_some_and(|n| n == "bootstrap-admin-key") {
                continue; // the one place the contract puts a token
            }
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    let windows: std::collections::HashSet<&[u8]> = bytes.windows(16).collect();
    for t in &tokens {
        for fragment in t.as_bytes()[13..].windows(16) {
            assert!(
                !windows.contains(fragment),
                "token material in the data directory"
            );
        }
    }
}

#[tokio::test]
async fn slow_clients_holding_connections_do_not_block_others() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start().await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /api/v1/me HTTP/1.1\r\nhost: x\r\nx-api-")
            .await
            .unwrap();
        slow.push(c);
    }
    for _ in 0..5 {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let huge_header = "x".repeat(64 * 1024);
    let r = s
        .send(
            Method::GET,
            "/api/v1/me",
            &[("x-padding", &huge_header), ("x-api-key", &s.admin_key)],
            None,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(s.get("/healthz", "").await.status, StatusCode::OK);
    drop(slow);
    s.stop().await;
}

#[tokio::test]
async fn a_handler_past_the_timeout_answers_504_timeout() {
    let s = TestServer::start_with(|c| {
        c.request_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    // Another connection holds the write lock, so creating a project waits on the database
    // (up to its 5 s busy timeout), well past the 300 ms request timeout. Reads (the key
    // lookup) still go through under WAL.
    let db = rusqlite::Connection::open(s.data_dir().join("align.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let r = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "slow"}))
        .await;
    let waited = started.elapsed();
    db.execute_batch("COMMIT").unwrap();
    assert_envelope(&r, StatusCode::GATEWAY_TIMEOUT, "timeout");
    assert!(waited < std::time::Duration::from_secs(3), "{waited:?}");
    s.stop().await;
}
