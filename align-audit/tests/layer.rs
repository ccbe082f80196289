//! `RequestLogLayer` logs every request, with the caller from `KeyAuthLayer`, and folds
//! floods of rejections into summary entries.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::convert::Infallible;
use std::sync::Arc;

use align_audit::{Actor, AuditSink, MemorySink, Query, RequestLogLayer, Stream};
use align_http::{PeerAddr, RequestIdLayer};
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

/// A key manager with one minted key (all permissions, live).
async fn keys_with_one() -> (KeyManager, String) {
    let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
    let minted = keys
        .mint(
            NewKey::new("svc", OrganizationId::new()),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let token = minted.token.expose().to_owned();
    (keys, token)
}

/// A request from 192.0.2.7, with `token` as its key when given.
fn request(token: Option<&str>) -> Request<()> {
    let mut req = Request::builder().uri("/api/v1/things?page=2");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("192.0.2.7:4711".parse().unwrap()));
    req
}

/// Every request-log entry in `sink`, oldest first.
async fn entries(sink: &MemorySink) -> Vec<align_audit::Entry> {
    sink.flush().await.unwrap();
    let mut page = sink.query(&Query::new(Stream::Request)).await.unwrap();
    page.records.reverse();
    page.records
        .into_iter()
        .map(|r| r.entry().clone())
        .collect()
}

/// Whether `e` is a summary entry, and its count.
fn folded_count(e: &align_audit::Entry) -> Option<u64> {
    e.metadata()["folded"]["count"].as_u64()
}

/// Sends `n` requests that `KeyAuthLayer` refuses (`401`, no key) through a fresh request log
/// folding after `after`, all within one wall-clock second (tried again when a second began in
/// the middle), and returns the log, its sink and the responses' request ids.
async fn flood_of_401s(after: u32, n: usize) -> (RequestLogLayer, Arc<MemorySink>, Vec<String>) {
    let (keys, _) = keys_with_one().await;
    for _ in 0..20 {
        let sink = Arc::new(MemorySink::new());
        let log = RequestLogLayer::new(sink.clone()).fold_rejections_after(after);
        let svc = ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(log.clone())
            .layer(KeyAuthLayer::new(Arc::clone(keys.verifier())))
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(bytes::Bytes::new()))
            });
        let second = chrono::Utc::now().timestamp();
        let mut ids = Vec::new();
        for _ in 0..n {
            let r = svc.clone().oneshot(request(None)).await.unwrap();
            assert_eq!(r.status(), 401);
            ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
        }
        if chrono::Utc::now().timestamp() == second {
            return (log, sink, ids);
        }
    }
    panic!("no second held the flood");
}

#[tokio::test]
async fn a_flood_of_401s_gives_the_first_entries_and_one_summary_with_the_count() {
    let (log, sink, ids) = flood_of_401s(3, 10).await;
    let own = entries(&sink).await;
    assert_eq!(own.len(), 3, "the first three have their own entries");
    for (e, id) in own.iter().zip(&ids) {
        assert_eq!(e.request_id(), Some(id.as_str()));
        assert_eq!(folded_count(e), None);
    }
    log.flush_summaries().await;
    let all = entries(&sink).await;
    assert_eq!(all.len(), 4, "and the other seven one summary");
    let summary = &all[3];
    assert_eq!(folded_count(summary), Some(7));
    let folded = &summary.metadata()["folded"];
    // The summary is the first folded request's entry, naming the last one.
    assert_eq!(summary.request_id(), Some(ids[3].as_str()));
    assert_eq!(folded["lastRequestId"], ids[9].as_str());
    assert!(folded["lastAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(summary.status(), Some(401));
    assert_eq!(summary.path(), Some("/api/v1/things"));
    assert_eq!(summary.ip(), Some("192.0.2.7".parse().unwrap()));
    log.flush_summaries().await;
    assert_eq!(entries(&sink).await.len(), 4, "a summary is written once");
}

#[tokio::test]
async fn with_folding_off_every_401_has_its_own_entry() {
    let (_log, sink, _) = flood_of_401s(0, 10).await;
    let all = entries(&sink).await;
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|e| folded_count(e).is_none()));
}

#[tokio::test]
async fn a_keyed_request_that_is_served_is_never_folded() {
    let (keys, token) = keys_with_one().await;
    let sink = Arc::new(MemorySink::new());
    let log = RequestLogLayer::new(sink.clone()).fold_rejections_after(1);
    let svc = ServiceBuilder::new()
        .layer(log.clone())
        .layer(KeyAuthLayer::new(Arc::clone(keys.verifier())))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(bytes::Bytes::new()))
        });
    for _ in 0..20 {
        let r = svc.clone().oneshot(request(Some(&token))).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    log.flush_summaries().await;
    let all = entries(&sink).await;
    assert_eq!(all.len(), 20, "each keyed 200 has its own entry");
    assert!(all.iter().all(|e| folded_count(e).is_none()));
    assert!(
        all.iter()
            .all(|e| matches!(e.actor(), Actor::ApiKey { .. }))
    );
}

#[tokio::test]
async fn the_sweeper_writes_a_finished_summary_and_the_rest_on_shutdown() {
    let (log, sink, _) = flood_of_401s(1, 4).await;
    let sweeper = log.start_sweeper();
    // Within about two seconds the client's second is over and swept.
    let mut summaries = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let all = entries(&sink).await;
        summaries = all.iter().filter(|e| folded_count(e) == Some(3)).count();
        if summaries > 0 {
            break;
        }
    }
    assert_eq!(summaries, 1, "the sweep wrote the finished summary");
    sweeper.shutdown().await;
    assert_eq!(entries(&sink).await.len(), 2, "nothing else to write");

    // A summary still open when the sweeper stops is written by its shutdown.
    let (log, sink, _) = flood_of_401s(1, 4).await;
    let sweeper = log.start_sweeper();
    sweeper.shutdown().await;
    let all = entries(&sink).await;
    assert_eq!(all.len(), 2);
    assert_eq!(folded_count(&all[1]), Some(3));
}
