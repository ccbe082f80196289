//! The axum example, exercised through its router: the layers authenticate, limit and log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

#[allow(dead_code)]
#[path = "../axum_service.rs"]
mod axum_service;

use std::sync::Arc;

use align_audit::{Actor, AuditSink, MemorySink, Query, Stream};
use align_keys::{KeyManager, MemoryKeyStore, Sha256Hasher};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn the_axum_app_is_protected_limited_and_logged() {
    let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
    let demo = axum_service::demo_key(&keys).await.unwrap();
    let log = Arc::new(MemorySink::new());
    let settings = axum_service::Settings {
        per_minute: 2,
        ..axum_service::Settings::default()
    };
    let app = axum_service::app(&keys, log.clone(), settings).unwrap();
    let get = |key: Option<&str>| {
        let mut b = Request::builder().uri("/api/v1/me");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::empty()).unwrap()
    };
    let token = demo.token.expose();

    let ok = app.clone().oneshot(get(Some(token))).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-ratelimit-limit"], "2");
    let body = ok.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["keyName"], "demo");

    let missing = app.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    app.clone().oneshot(get(Some(token))).await.unwrap();
    let limited = app.clone().oneshot(get(Some(token))).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));

    keys.revoke(demo.record.id, chrono::Utc::now())
        .await
        .unwrap();
    let revoked = app.oneshot(get(Some(token))).await.unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);

    log.flush().await.unwrap();
    let mut q = Query::new(Stream::Request);
    q.limit = 50;
    let page = log.query(&q).await.unwrap();
    assert_eq!(page.records.len(), 5, "every request is logged");
    let by_key = page
        .records
        .iter()
        .filter(|r| matches!(r.entry().actor(), Actor::ApiKey { .. }))
        .count();
    assert_eq!(
        by_key, 3,
        "the two admitted and the rate-limited request name their key"
    );
}
