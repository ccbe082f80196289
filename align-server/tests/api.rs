//! Black-box tests: a real server on an ephemeral port, a real HTTP client, DESIGN §4.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn bootstrap_writes_an_owner_only_admin_key_and_healthz_needs_no_key() {
    let s = TestServer::start().await;
    assert!(s.admin_key.starts_with("ako_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir().join("bootstrap-admin-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(s.data_dir().join("align.db").exists());
    let r = s.send(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("x-request-id").is_some());
    s.stop().await;
}

#[tokio::test]
async fn me_has_exactly_the_seed_shape_plus_environment() {
    let s = TestServer::start().await;
    let r = s.get("/api/v1/me", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "apiKeyId",
            "createdByUserId",
            "environment",
            "keyName",
            "keyPrefix",
            "lastUsedAt",
            "organizationId",
            "permissions",
            "scope",
            "scopedProjectId"
        ]
    );
    assert_eq!(r.body["scope"], "organization");
    assert_eq!(r.body["environment"], "live");
    assert_eq!(r.body["keyPrefix"], &s.admin_key[..12]);
    let last_used = r.body["lastUsedAt"].as_str().unwrap();
    assert_eq!(
        last_used.len(),
        "2026-05-14T10:00:00.000Z".len(),
        "{last_used}"
    );
    assert!(last_used.ends_with('Z'));
    assert_eq!(r.header("x-ratelimit-limit"), Some("600"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("599"));
    assert!(r.header("x-ratelimit-reset").is_some());
    s.stop().await;
}

#[tokio::test]
async fn credentials_in_either_header_work_and_conflicting_ones_are_refused() {
    let s = TestServer::start().await;
    let k = s.admin_key.clone();
    let via_header = s
        .send(Method::GET, "/api/v1/me", &[("x-api-key", &k)], None)
        .await;
    assert_eq!(via_header.status, StatusCode::OK);
    let bearer = format!("Bearer {k}");
    let both_same = s
        .send(
            Method::GET,
            "/api/v1/me",
            &[("authorization", &bearer), ("x-api-key", &k)],
            None,
        )
        .await;
    assert_eq!(both_same.status, StatusCode::OK);
    let (other, _) = s
        .mint(&k, json!({"name": "other", "scope": "organization"}))
        .await;
    let both_differ = s
        .send(
            Method::GET,
            "/api/v1/me",
            &[("authorization", &bearer), ("x-api-key", &other)],
            None,
        )
        .await;
    assert_eq!(both_differ.status, StatusCode::BAD_REQUEST);
    assert_eq!(both_differ.code(), "ambiguous_credentials");

    let none = s.send(Method::GET, "/api/v1/me", &[], None).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::UNAUTHORIZED, "missing_key")
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let bad = s.get("/api/v1/me", "ako_nothing").await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );
    let unknown = s
        .get(
            "/api/v1/me",
            "ako_9311c954_00000000000000000000000000000000000000000000Rws4U",
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );
    assert_eq!(
        unknown.body["error"]["requestId"].as_str(),
        unknown.header("x-request-id")
    );
    assert!(unknown.header("x-ratelimit-limit").is_none());
    s.stop().await;
}

#[tokio::test]
async fn mint_use_revoke_then_key_revoked() {
    let s = TestServer::start().await;
    let (token, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "prod-sync", "scope": "organization"}),
        )
        .await;
    assert_eq!(res["keyName"], "prod-sync");
    assert_eq!(res["keyPrefix"], &token[..12]);
    assert!(res["revokedAt"].is_null());
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    let id = res["apiKeyId"].as_str().unwrap();
    let listed = s.get(&format!("/api/v1/keys/{id}"), &s.admin_key).await;
    assert!(listed.body.get("key").is_none(), "the token is shown once");
    let r = s
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["revokedAt"].is_string());
    let after = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (after.status, after.code()),
        (StatusCode::UNAUTHORIZED, "key_revoked")
    );
    let again = s
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(
        again.body["revokedAt"], r.body["revokedAt"],
        "revoke is idempotent"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_601st_request_in_a_minute_is_rate_limited() {
    let s = TestServer::start().await;
    let (token, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "busy", "scope": "organization"}),
        )
        .await;
    for i in 0..600 {
        let r = s.get("/api/v1/me", &token).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let r = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limit")
    );
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    // Another key is not affected.
    assert_eq!(
        s.get("/api/v1/me", &s.admin_key).await.status,
        StatusCode::OK
    );
    s.stop().await;
}

/// `POST /keys/{id}/rotate` by the bootstrap admin with `grace` seconds.
async fn rotate(s: &TestServer, id: &str, grace: u64) -> support::Reply {
    let path = format!("/api/v1/keys/{id}/rotate");
    s.post(&path, &s.admin_key, json!({ "graceSeconds": grace }))
        .await
}

/// Revocation is for good: rotating a revoked key is a valid request its state refuses (409),
/// and no successor is minted.
#[tokio::test]
async fn a_revoked_key_cannot_be_rotated() {
    let s = TestServer::start().await;
    let (_, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "gone", "scope": "organization"}),
        )
        .await;
    let id = res["apiKeyId"].as_str().unwrap();
    let r = s
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let before = s.get("/api/v1/keys?limit=100", &s.admin_key).await;
    let r = rotate(&s, id, 257).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "key_not_active"),
        "{}",
        r.body
    );
    let after = s.get("/api/v1/keys?limit=100", &s.admin_key).await;
    assert_eq!(
        before.body["data"], after.body["data"],
        "no successor minted"
    );
    s.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_key_working_during_grace_only() {
    let s = TestServer::start().await;
    let (old, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "rotating", "scope": "organization"}),
        )
        .await;
    let id = res["apiKeyId"].as_str().unwrap();
    let r = rotate(&s, id, 1).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let new = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(r.body["keyName"], "rotating");
    assert_eq!(r.body["rotatedFromKeyId"], id);
    assert_eq!(s.get("/api/v1/me", &old).await.status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/me", &new).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let expired = s.get("/api/v1/me", &old).await;
    assert_eq!(
        (expired.status, expired.code()),
        (StatusCode::UNAUTHORIZED, "key_expired")
    );
    assert_eq!(s.get("/api/v1/me", &new).await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn suspended_keys_are_refused_until_resumed() {
    let s = TestServer::start().await;
    let (token, res) = s
        .mint(&s.admin_key, json!({"name": "s", "scope": "organization"}))
        .await;
    let id = res["apiKeyId"].as_str().unwrap();
    s.post(
        &format!("/api/v1/keys/{id}/suspend"),
        &s.admin_key,
        json!({}),
    )
    .await;
    let r = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "key_suspended")
    );
    s.post(
        &format!("/api/v1/keys/{id}/resume"),
        &s.admin_key,
        json!({}),
    )
    .await;
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn project_keys_see_only_their_project_and_other_objects_are_404() {
    let s = TestServer::start().await;
    let a = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "a"}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let b = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "b"}))
        .await;
    let (pa, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "pa", "scope": "project", "projectId": a.body["id"]}),
        )
        .await;
    let (_, kb) = s
        .mint(
            &s.admin_key,
            json!({"name": "pb", "scope": "project", "projectId": b.body["id"]}),
        )
        .await;
    let me = s.get("/api/v1/me", &pa).await;
    assert_eq!(me.body["scope"], "project");
    assert_eq!(me.body["scopedProjectId"], a.body["id"]);
    // B's key and the admin key do not exist as far as project A's key can tell.
    let other = s
        .get(
            &format!("/api/v1/keys/{}", kb["apiKeyId"].as_str().unwrap()),
            &pa,
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let list = s.get("/api/v1/keys", &pa).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let projects = s.get("/api/v1/projects", &pa).await;
    assert_eq!(projects.body["data"].as_array().unwrap().len(), 1);
    // It cannot mint for another project or the organisation.
    let r = s
        .post(
            "/api/v1/keys",
            &pa,
            json!({"name": "x", "scope": "project", "projectId": b.body["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post(
            "/api/v1/keys",
            &pa,
            json!({"name": "x", "scope": "organization"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.post("/api/v1/projects", &pa, json!({"name": "c"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    s.stop().await;
}

#[tokio::test]
async fn sandbox_keys_touch_only_sandbox_data_and_say_so() {
    let s = TestServer::start().await;
    let (sb, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "sb", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    assert!(sb.starts_with("akt_"));
    assert_eq!(res["environment"], "sandbox");
    let me = s.get("/api/v1/me", &sb).await;
    assert_eq!(me.header("align-environment"), Some("sandbox"));
    assert_eq!(me.body["environment"], "sandbox");
    let live = s
        .post(
            "/api/v1/keys",
            &sb,
            json!({"name": "l", "scope": "organization", "environment": "live"}),
        )
        .await;
    assert_eq!(
        (live.status, live.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (child, _) = s
        .mint(&sb, json!({"name": "child", "scope": "organization"}))
        .await;
    assert!(
        child.starts_with("akt_"),
        "environment defaults to the caller's"
    );
    let list = s.get("/api/v1/keys", &sb).await;
    assert!(
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["environment"] == "sandbox")
    );
    let admin = s.get("/api/v1/me", &s.admin_key).await;
    assert!(admin.header("align-environment").is_none());
    s.stop().await;
}

#[tokio::test]
async fn organization_security_contact_can_be_read_and_changed() {
    let s = TestServer::start().await;
    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &s.admin_key,
            json!({"securityContact": "security@acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let g = s.get("/api/v1/organization", &s.admin_key).await;
    assert_eq!(g.body["securityContact"], "security@acme.test");
    let bad = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &s.admin_key,
            json!({"securityContact": "nope"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    s.stop().await;
}

#[tokio::test]
async fn lists_page_with_cursors() {
    let s = TestServer::start().await;
    for i in 0..5 {
        s.mint(
            &s.admin_key,
            json!({"name": format!("k{i}"), "scope": "organization"}),
        )
        .await;
    }
    let mut seen = 0;
    let mut url = "/api/v1/keys?limit=2".to_owned();
    loop {
        let r = s.get(&url, &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK);
        seen += r.body["data"].as_array().unwrap().len();
        match r.body["nextCursor"].as_str() {
            Some(c) => url = format!("/api/v1/keys?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 6, "five minted plus the bootstrap key");
    let bad = s.get("/api/v1/keys?limit=0", &s.admin_key).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = s.get("/api/v1/keys?cursor=zzz", &s.admin_key).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn a_per_key_rate_limit_override_applies_at_once() {
    let s = TestServer::start().await;
    let (token, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "slow", "scope": "organization"}),
        )
        .await;
    let id = res["apiKeyId"].as_str().unwrap();
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"rateLimitPerMinute": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["rateLimitPerMinute"], 3);
    for _ in 0..3 {
        let ok = s.get("/api/v1/me", &token).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.header("x-ratelimit-limit"), Some("3"));
    }
    let limited = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (limited.status, limited.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limit")
    );
    let bad = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"rateLimitPerMinute": 0}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let cleared = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"rateLimitPerMinute": null}),
        )
        .await;
    assert!(cleared.body["rateLimitPerMinute"].is_null());
    s.stop().await;
}

#[tokio::test]
async fn an_ip_allow_list_refuses_other_networks() {
    let s = TestServer::start().await;
    let (token, res) = s
        .mint(
            &s.admin_key,
            json!({"name": "office", "scope": "organization"}),
        )
        .await;
    let id = res["apiKeyId"].as_str().unwrap();
    let path = format!("/api/v1/keys/{id}");
    let r = s
        .json(
            Method::PATCH,
            &path,
            &s.admin_key,
            json!({"allowedCidrs": ["203.0.113.0/24"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["allowedCidrs"], json!(["203.0.113.0/24"]));
    let refused = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    s.json(
        Method::PATCH,
        &path,
        &s.admin_key,
        json!({"allowedCidrs": ["127.0.0.1"]}),
    )
    .await;
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    let bad = s
        .json(
            Method::PATCH,
            &path,
            &s.admin_key,
            json!({"allowedCidrs": ["not-a-net"]}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    s.stop().await;
}

#[tokio::test]
async fn an_idempotent_mint_replays_the_same_key_and_refuses_a_different_request() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {}", s.admin_key);
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "mint-1"),
    ];
    let body = br#"{"name": "ci-read", "scope": "organization"}"#.to_vec();
    let first = s
        .send(Method::POST, "/api/v1/keys", &h, Some(body.clone()))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.header("idempotent-replayed").is_none());
    let second = s
        .send(Method::POST, "/api/v1/keys", &h, Some(body.clone()))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        second.body["key"], first.body["key"],
        "the lost token can be recovered"
    );
    assert_eq!(second.body["apiKeyId"], first.body["apiKeyId"]);
    let list = s.get("/api/v1/keys", &s.admin_key).await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        2,
        "minted once"
    );
    let other = br#"{"name": "other", "scope": "organization"}"#.to_vec();
    let reused = s.send(Method::POST, "/api/v1/keys", &h, Some(other)).await;
    assert_eq!(
        (reused.status, reused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    // Errors are outcomes too: the same bad request replays its error.
    let h2 = [h[0], h[1], ("idempotency-key", "bad-1")];
    let bad = br#"{"name": "", "scope": "organization"}"#.to_vec();
    let e1 = s
        .send(Method::POST, "/api/v1/keys", &h2, Some(bad.clone()))
        .await;
    let e2 = s.send(Method::POST, "/api/v1/keys", &h2, Some(bad)).await;
    assert_eq!(
        (e1.status, e2.status),
        (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST)
    );
    assert_eq!(e2.header("idempotent-replayed"), Some("true"));
    let dir = s.stop().await;
    // The replayable token lives in memory only.
    let token = first.body["key"].as_str().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("bootstrap-admin-key") {
            continue;
        }
        // SQLite removes its -wal and -shm files as the last connections close; one may
        // vanish between listing and reading.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(20).any(|w| w == &token.as_bytes()[13..33]),
            "{path:?}"
        );
    }
}

#[tokio::test]
async fn a_daily_quota_answers_quota_exceeded() {
    let s = TestServer::start_with(|c| c.quota_per_day = Some(2)).await;
    let (token, _) = s
        .mint(&s.admin_key, json!({"name": "q", "scope": "organization"}))
        .await;
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    let r = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded")
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    s.stop().await;
}

#[tokio::test]
async fn too_many_requests_in_flight_answer_concurrency_limit() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start_with(|c| c.max_concurrent_per_key = 1).await;
    // Hold one request open: headers sent, body not finished.
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 13\r\n\r\n{{\"name\":",
        s.admin_key
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = s.get("/api/v1/me", &s.admin_key).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "concurrency_limit")
    );
    assert!(r.header("retry-after").is_some());
    slow.write_all(b"\"p\"}").await.unwrap();
    drop(slow);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        s.get("/api/v1/me", &s.admin_key).await.status,
        StatusCode::OK,
        "permit returned"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_server_speaks_http2_too() {
    use http_body_util::BodyExt;
    let s = TestServer::start().await;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://{}/api/v1/me", s.addr))
        .header("authorization", format!("Bearer {}", s.admin_key))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["keyPrefix"], &s.admin_key[..12]);
    s.stop().await;
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_is_an_idempotency_conflict() {
    let s = TestServer::start().await;
    // Hold the database so the first mint waits inside its handler.
    let db = rusqlite::Connection::open(s.data_dir().join("align.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let auth = format!("Bearer {}", s.admin_key);
    let body = br#"{"name": "slow", "scope": "organization"}"#.to_vec();
    let first = {
        let (addr, auth, body) = (s.addr, auth.clone(), body.clone());
        tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut tx, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = http::Request::post("/api/v1/keys")
                .header("host", "x")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .header("idempotency-key", "k-1")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            tx.send_request(req).await.unwrap().status()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "k-1"),
    ];
    let second = s.send(Method::POST, "/api/v1/keys", &h, Some(body)).await;
    assert_eq!(
        (second.status, second.code()),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    db.execute_batch("COMMIT").unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn a_database_held_past_its_busy_timeout_answers_503_unavailable() {
    let s = TestServer::start().await;
    let db = rusqlite::Connection::open(s.data_dir().join("align.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "p"}))
        .await;
    db.execute_batch("COMMIT").unwrap();
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    // And once the database is free again, the same request works.
    let ok = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "p"}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    s.stop().await;
}

#[tokio::test]
async fn keys_carry_owner_id_and_meta_through_mint_get_list_and_patch_but_not_me() {
    let s = TestServer::start().await;
    let (token, minted) = s
        .mint(
            &s.admin_key,
            json!({"name": "acme-sync", "scope": "organization", "permissions": ["keys:*"],
                   "ownerId": "cus_8812", "meta": {"plan": "pro", "seats": 5}}),
        )
        .await;
    let id = minted["apiKeyId"].as_str().unwrap();
    assert_eq!(minted["ownerId"], "cus_8812");
    assert_eq!(minted["meta"], json!({"plan": "pro", "seats": 5}));
    // The wildcard was expanded when the key was minted.
    assert_eq!(
        minted["permissions"],
        json!(["keys:read", "keys:write", "keys:verify"])
    );

    let got = s.get(&format!("/api/v1/keys/{id}"), &s.admin_key).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["ownerId"], "cus_8812");
    assert_eq!(got.body["meta"]["plan"], "pro");
    let list = s.get("/api/v1/keys", &s.admin_key).await;
    let listed = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["apiKeyId"] == id)
        .unwrap();
    assert_eq!(listed["ownerId"], "cus_8812");
    assert_eq!(listed["meta"]["seats"], 5);
    // Keys without them say null.
    let admin = &list.body["data"][0];
    assert!(
        admin["ownerId"].is_null() && admin["meta"].is_null(),
        "{admin}"
    );

    // `/me` keeps its exact shape.
    let me = s.get("/api/v1/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(me.body.get("ownerId").is_none() && me.body.get("meta").is_none());
    assert_eq!(me.body.as_object().unwrap().len(), 10);
    assert_eq!(
        me.body["permissions"],
        json!(["keys:read", "keys:write", "keys:verify"])
    );

    let patched = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"ownerId": "cus_9", "meta": {"plan": "team"}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["ownerId"], "cus_9");
    assert_eq!(patched.body["meta"], json!({"plan": "team"}));
    let cleared = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"ownerId": null, "meta": null}),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert!(cleared.body["ownerId"].is_null() && cleared.body["meta"].is_null());

    // Rotation carries them to the successor.
    s.json(
        Method::PATCH,
        &format!("/api/v1/keys/{id}"),
        &s.admin_key,
        json!({"ownerId": "cus_10", "meta": {"k": 1}}),
    )
    .await;
    let rotated = rotate(&s, id, 0).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    assert_eq!(rotated.body["ownerId"], "cus_10");
    assert_eq!(rotated.body["meta"], json!({"k": 1}));
    s.stop().await;
}

#[tokio::test]
async fn an_owner_id_or_meta_over_the_limit_or_an_unknown_permission_is_invalid_request() {
    let s = TestServer::start().await;
    let long_owner = "x".repeat(257);
    let big_meta = json!({ "blob": "y".repeat(4100) });
    for body in [
        json!({"name": "k", "scope": "organization", "ownerId": long_owner}),
        json!({"name": "k", "scope": "organization", "meta": big_meta}),
        json!({"name": "k", "scope": "organization", "meta": [1, 2]}),
        json!({"name": "k", "scope": "organization", "permissions": ["invoices:read"]}),
        json!({"name": "k", "scope": "organization", "permissions": ["invoices:*"]}),
    ] {
        let r = s.post("/api/v1/keys", &s.admin_key, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.code(), "invalid_request", "{body}");
    }
    let (_, minted) = s
        .mint(&s.admin_key, json!({"name": "k", "scope": "organization"}))
        .await;
    let id = minted["apiKeyId"].as_str().unwrap();
    for body in [json!({"ownerId": long_owner}), json!({"meta": big_meta})] {
        let r = s
            .json(
                Method::PATCH,
                &format!("/api/v1/keys/{id}"),
                &s.admin_key,
                body.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
    }
    s.stop().await;
}
