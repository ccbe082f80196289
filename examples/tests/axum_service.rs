//! The axum example, exercised through its router: the layers authenticate, limit and log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

#[allow(dead_code)]
#[path = "../axum_service.rs"]
mod axum_service;

use std::sync::Arc;

use align_audit::{Actor, AuditSink, MemorySink, Query, RequestLogLayer, Stream};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn the_axum_app_is_protected_limited_and_logged() {
    let keys = axum_service::key_manager();
    let demo = axum_service::demo_key(&keys).await.unwrap();
    let log = Arc::new(MemorySink::new());
    let settings = axum_service::Settings {
        per_minute: 2,
        ..axum_service::Settings::default()
    };
    let app = axum_service::app(
        &keys,
        RequestLogLayer::new(log.clone()),
        Arc::new(align_webhooks::MemoryWebhookStore::new()),
        Arc::new(align_http::ReplyStore::memory()),
        settings,
    )
    .unwrap();
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
    assert_eq!(
        v["customer"], "cus_demo",
        "the key's ownerId is the service's customer"
    );

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

#[tokio::test]
async fn creating_an_invoice_sends_a_signed_invoice_created_webhook() {
    use align_webhooks::{
        Dispatcher, DispatcherConfig, Endpoint, EndpointKey, EndpointSecrets, MemoryWebhookStore,
        SigningSecret, UrlPolicy, Verifier, WebhookStore, WebhookVerifier,
    };

    // A receiver on loopback that hands over what it got.
    let (got, mut received) = tokio::sync::mpsc::channel::<(http::HeaderMap, bytes::Bytes)>(1);
    let receiver = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let got = got.clone();
            async move {
                let _ = got.send((headers, body)).await;
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let secret = SigningSecret::generate().unwrap();
    let store = Arc::new(MemoryWebhookStore::new());
    let endpoint = Endpoint::new(
        align_keys::Environment::Sandbox,
        url,
        EndpointSecrets::new(EndpointKey::Symmetric(secret.clone())),
    );
    store.create_endpoint(&endpoint).await.unwrap();

    let keys = axum_service::key_manager();
    let demo = axum_service::demo_key(&keys).await.unwrap();
    let app = axum_service::app(
        &keys,
        RequestLogLayer::new(Arc::new(MemorySink::new())),
        store.clone(),
        Arc::new(align_http::ReplyStore::memory()),
        axum_service::Settings::default(),
    )
    .unwrap();
    let create = Request::builder()
        .method("POST")
        .uri("/api/v1/invoices")
        .header("authorization", format!("Bearer {}", demo.token.expose()))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"amount": 1200, "currency": "EUR"}"#))
        .unwrap();
    let created = app.oneshot(create).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let config = DispatcherConfig {
        url_policy: UrlPolicy::new().allow_private_targets(true),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone() as Arc<dyn WebhookStore>, config).unwrap();
    assert_eq!(dispatcher.run_once().await.unwrap(), 1);
    let (headers, body) = tokio::time::timeout(std::time::Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    let verified = WebhookVerifier::new(secret)
        .verify(&headers, &body)
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "invoice.created");
    assert_eq!(event["data"]["invoice"]["amount"], 1200);
    let _ = verified;
}

#[tokio::test]
async fn the_axum_app_runs_the_same_over_postgresql() {
    let Some(base) = std::env::var("ALIGN_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipping the PostgreSQL example: ALIGN_TEST_POSTGRES_URL is not set");
        return;
    };
    let scratch = align_keys::postgres::ScratchSchema::create(&base)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{}", scratch.name());
    let sealer = align_webhooks::Sealer::new(align_webhooks::SealingKey::generate().unwrap());
    let (keys, webhooks, replies) = axum_service::postgres_stores(&url, sealer).await.unwrap();
    let demo = axum_service::demo_key(&keys).await.unwrap();
    let app = axum_service::app(
        &keys,
        RequestLogLayer::new(Arc::new(MemorySink::new())),
        Arc::clone(&webhooks),
        replies,
        axum_service::Settings::default(),
    )
    .unwrap();
    let token = demo.token.expose();
    let create = || {
        Request::builder()
            .method("POST")
            .uri("/api/v1/invoices")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "inv-1")
            .body(Body::from(r#"{"amount": 10}"#))
            .unwrap()
    };
    let first = app.clone().oneshot(create()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_body = first.into_body().collect().await.unwrap().to_bytes();
    // The replay comes from the reply kept (sealed) in PostgreSQL.
    let again = app.clone().oneshot(create()).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again_body = again.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(first_body, again_body);
    // The event went to the PostgreSQL outbox with the first answer (a failed enqueue is a
    // 503); the outbox answers.
    webhooks.outbox_stats().await.unwrap();

    let me = Request::builder()
        .uri("/api/v1/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let me = app.clone().oneshot(me).await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let v: serde_json::Value =
        serde_json::from_slice(&me.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["customer"], "cus_demo");

    keys.revoke(demo.record.id, chrono::Utc::now())
        .await
        .unwrap();
    let revoked = Request::builder()
        .uri("/api/v1/invoices")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let revoked = app.oneshot(revoked).await.unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
}
