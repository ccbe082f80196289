//! DESIGN §11 over HTTP: `GET /api/v1/keys/{id}/usage` counts a key's requests per step by
//! outcome (empty steps included, `keys:read` on that key), and `GET /api/v1/request-logs`
//! pages the request log by key and status with coarse addresses (`audit:read`,
//! organisation-scoped live keys).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

fn sum(buckets: &Value, field: &str) -> u64 {
    buckets["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[field].as_u64().unwrap())
        .sum()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Mints a key limited to 3 requests a minute and makes 6 requests with it: 3 answered,
/// 2 refused (429) and one for a key that does not exist (404). Returns (id, token).
async fn busy_key(s: &TestServer) -> (String, String) {
    let (token, key) = s
        .mint(
            &s.admin_key,
            json!({"name": "busy", "scope": "organization"}),
        )
        .await;
    let id = key["apiKeyId"].as_str().unwrap().to_owned();
    let limited = s
        .json(
            http::Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &s.admin_key,
            json!({"rateLimitPerMinute": 3}),
        )
        .await;
    assert_eq!(limited.status, StatusCode::OK, "{}", limited.body);
    let missing = s
        .get("/api/v1/keys/00000000-0000-4000-8000-000000000000", &token)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(s.get("/api/v1/me", &token).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    (id, token)
}

/// The key's usage once all 6 requests are in the request log (written within its commit
/// window).
async fn settled_usage(s: &TestServer, path: &str) -> Value {
    for _ in 0..100 {
        let r = s.get(path, &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if sum(&r.body, "requests") >= 6 {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the usage of {path} never reached 6 requests");
}

#[tokio::test]
async fn key_usage_counts_the_keys_requests_per_step_by_outcome() {
    let s = TestServer::start().await;
    let (id, _) = busy_key(&s).await;
    // The default: the last 24 hours by hour, 25 whole-hour steps, empty ones included.
    let usage = settled_usage(&s, &format!("/api/v1/keys/{id}/usage")).await;
    let data = usage["data"].as_array().unwrap();
    assert_eq!(data.len(), 25, "{usage}");
    assert!(
        data.iter()
            .all(|b| b["start"].as_str().unwrap().ends_with(":00:00.000Z"))
    );
    assert_eq!(
        [
            "requests",
            "succeeded",
            "clientErrors",
            "rateLimited",
            "serverErrors"
        ]
        .map(|f| sum(&usage, f)),
        [6, 2, 1, 3, 0]
    );
    assert_eq!(data.last().unwrap()["requests"], 6);

    // By minute over the last ten minutes; by day over a month.
    let now = Utc::now();
    let by_minute = s
        .get(
            &format!(
                "/api/v1/keys/{id}/usage?granularity=minute&from={}",
                rfc3339(now - chrono::Duration::minutes(10))
            ),
            &s.admin_key,
        )
        .await;
    assert_eq!(by_minute.status, StatusCode::OK);
    assert!((11..=12).contains(&by_minute.body["data"].as_array().unwrap().len()));
    assert_eq!(sum(&by_minute.body, "requests"), 6);
    let by_day = s
        .get(
            &format!(
                "/api/v1/keys/{id}/usage?granularity=day&from={}&to={}",
                rfc3339(now - chrono::Duration::days(30)),
                rfc3339(now + chrono::Duration::minutes(1))
            ),
            &s.admin_key,
        )
        .await;
    assert_eq!(by_day.status, StatusCode::OK);
    assert_eq!(sum(&by_day.body, "requests"), 6);
    s.stop().await;
}

#[tokio::test]
async fn key_usage_refuses_bad_ranges_unknown_keys_and_callers_without_keys_read() {
    let s = TestServer::start().await;
    let (id, _) = busy_key(&s).await;
    let now = Utc::now();
    for query in [
        "granularity=week".to_owned(),
        "from=yesterday".to_owned(),
        // Empty values are bad fields, not the defaults (schemathesis: `?to=` was accepted).
        "to=".to_owned(),
        "from=".to_owned(),
        "granularity=".to_owned(),
        format!(
            "from={}&to={}",
            rfc3339(now),
            rfc3339(now - chrono::Duration::hours(1))
        ),
        format!(
            "granularity=minute&from={}",
            rfc3339(now - chrono::Duration::days(3))
        ),
    ] {
        let r = s
            .get(&format!("/api/v1/keys/{id}/usage?{query}"), &s.admin_key)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        assert_eq!(r.code(), "invalid_request", "{query}");
    }
    let unknown = s
        .get(
            "/api/v1/keys/00000000-0000-4000-8000-000000000000/usage",
            &s.admin_key,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "hooks", "scope": "organization", "permissions": ["webhooks:read"]}),
        )
        .await;
    let refused = s.get(&format!("/api/v1/keys/{id}/usage"), &narrow).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    s.stop().await;
}

#[tokio::test]
async fn request_logs_page_by_key_and_status_with_coarse_addresses() {
    let s = TestServer::start().await;
    let (id, _) = busy_key(&s).await;
    settled_usage(&s, &format!("/api/v1/keys/{id}/usage")).await;

    let mut path = format!("/api/v1/request-logs?keyId={id}&limit=4");
    let mut seen = Vec::new();
    loop {
        let page = s.get(&path, &s.admin_key).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(page.body["data"].as_array().unwrap().iter().cloned());
        match page.body["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/request-logs?keyId={id}&limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    let sequences: Vec<u64> = seen
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] > w[1]), "{sequences:?}");
    for e in &seen {
        assert_eq!(e["actor"]["id"], id.as_str());
        assert_eq!(e["action"], "http.request");
        // 127.0.0.1 is shown as its /24.
        assert_eq!(e["ip"], "127.0.0.0", "{e}");
    }

    let limited = s
        .get(
            &format!("/api/v1/request-logs?keyId={id}&status=429"),
            &s.admin_key,
        )
        .await;
    assert_eq!(limited.status, StatusCode::OK);
    let limited = limited.body["data"].as_array().unwrap().clone();
    assert_eq!(limited.len(), 3);
    assert!(limited.iter().all(|e| e["status"] == 429));

    // Not an HTTP status, also an empty one (schemathesis: `status=` was accepted).
    for status in ["abc", "", "99", "600"] {
        let bad = s
            .get(
                &format!("/api/v1/request-logs?status={status}"),
                &s.admin_key,
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "status={status}");
    }
    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "reader", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    let refused = s.get("/api/v1/request-logs", &narrow).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    s.stop().await;
}
