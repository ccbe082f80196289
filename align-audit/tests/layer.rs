//! `RequestLogLayer` logs every request, with the caller from `KeyAuthLayer`.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::convert::Infallible;
use std::sync::Arc;

use align_audit::{Actor, AuditSink, MemorySink, Query, RequestLogLayer, Stream};
use align_http::PeerAddr;
use align_keys::layer::KeyAuthLayer;
use align_keys::{
    Environment, KeyManager, MemoryKeyStore, NewKey, OrganizationId, Scope, Sha256Hasher, UserId,
};
use http::{Request, Response};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn every_request_is_logged_with_its_caller_and_without_its_query() {
    let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
    let minted = keys
        .mint(
            NewKey {
                name: "svc".into(),
                organization_id: OrganizationId::new(),
                scope: Scope::Organization,
                permissions: None,
                environment: Environment::Live,
                created_by: UserId::new(),
                expires_at: None,
                rate_limit_per_minute: None,
                allowed_cidrs: vec![],
                owner_id: None,
                meta: None,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let sink = Arc::new(MemorySink::new());
    let svc = ServiceBuilder::new()
        .layer(RequestLogLayer::new(sink.clone()))
        .layer(KeyAuthLayer::new(Arc::clone(keys.verifier())))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(bytes::Bytes::from_static(b"ok")))
        });

    let token = minted.token.expose().to_owned();
    let mut req = Request::builder()
        .uri("/things?api_key=secret")
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", "layer-test")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr("192.0.2.7:4711".parse().unwrap()));
    let ok = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(ok.status(), 200);
    let refused = svc
        .oneshot(Request::builder().uri("/x").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    sink.flush().await.unwrap();
    let page = sink.query(&Query::new(Stream::Request)).await.unwrap();
    assert_eq!(page.records.len(), 2);
    let logged = page
        .records
        .iter()
        .find(|r| r.entry().status() == Some(200))
        .unwrap()
        .entry();
    assert_eq!(logged.path(), Some("/things"));
    assert_eq!(logged.user_agent(), Some("layer-test"));
    assert_eq!(logged.ip(), Some("192.0.2.7".parse().unwrap()));
    assert!(
        matches!(logged.actor(), Actor::ApiKey { prefix, .. } if *prefix == minted.record.prefix)
    );
    let unauth = page
        .records
        .iter()
        .find(|r| r.entry().status() == Some(401))
        .unwrap()
        .entry();
    assert!(matches!(unauth.actor(), Actor::System));
    let all = serde_json::to_string(&page.records).unwrap();
    assert!(!all.contains(&token[13..]) && !all.contains("secret"));
}
