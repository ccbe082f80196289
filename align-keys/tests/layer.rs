//! `KeyAuthLayer`: valid keys reach the service with their record; everything else gets the
//! error envelope.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use ::http::{Request, Response, StatusCode};
use align_keys::layer::KeyAuthLayer;
use align_keys::store::KeyStore;
use align_keys::*;
use bytes::Bytes;
use chrono::Utc;
use common::*;
use tower::{ServiceBuilder, ServiceExt};

async fn call(layer: &KeyAuthLayer, headers: &[(&str, &str)]) -> Response<Bytes> {
    let svc =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|req: Request<()>| async move {
                let key = req.extensions().get::<VerifiedKey>().unwrap();
                Ok::<_, Infallible>(Response::new(Bytes::from(key.record().name.clone())))
            });
    let mut req = Request::builder().uri("/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    svc.oneshot(req.body(()).unwrap()).await.unwrap()
}

fn code(r: &Response<Bytes>) -> String {
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_layer_passes_valid_keys_and_refuses_the_rest() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(store as Arc<dyn KeyStore>);
    let minted = keys
        .mint(new_key(&f, "svc", Environment::Live), Utc::now())
        .await
        .unwrap();
    let token = minted.token.expose();
    let layer = KeyAuthLayer::new(Arc::clone(keys.verifier()));

    let bearer = format!("Bearer {token}");
    let ok = call(&layer, &[("authorization", &bearer)]).await;
    assert_eq!((ok.status(), &ok.body()[..]), (StatusCode::OK, &b"svc"[..]));
    let ok = call(&layer, &[("x-api-key", token)]).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let missing = call(&layer, &[]).await;
    assert_eq!(
        (missing.status(), code(&missing).as_str()),
        (StatusCode::UNAUTHORIZED, "missing_key")
    );
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let invalid = call(&layer, &[("x-api-key", "akt_nope")]).await;
    assert_eq!(code(&invalid), "invalid_key");
    let other = keys
        .mint(new_key(&f, "other", Environment::Live), Utc::now())
        .await
        .unwrap();
    let ambiguous = call(
        &layer,
        &[
            ("authorization", &bearer),
            ("x-api-key", other.token.expose()),
        ],
    )
    .await;
    assert_eq!(
        (ambiguous.status(), code(&ambiguous).as_str()),
        (StatusCode::BAD_REQUEST, "ambiguous_credentials")
    );

    keys.revoke(minted.record.id, Utc::now()).await.unwrap();
    let revoked = call(&layer, &[("authorization", &bearer)]).await;
    assert_eq!(code(&revoked), "key_revoked");
    assert!(!String::from_utf8_lossy(revoked.body()).contains(&token[13..]));
}

/// One request through `layer` then `require(permission)`, from `peer` (if any).
async fn call_from(
    layer: &KeyAuthLayer,
    token: &str,
    peer: Option<&str>,
    permission: Option<Permission>,
) -> Response<Bytes> {
    let inner = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
    });
    let mut req = Request::builder()
        .uri("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    if let Some(p) = peer {
        req.extensions_mut()
            .insert(align_http::PeerAddr(p.parse().unwrap()));
    }
    match permission {
        Some(p) => ServiceBuilder::new()
            .layer(layer.clone())
            .layer(align_keys::layer::require(p))
            .service(inner)
            .oneshot(req)
            .await
            .unwrap(),
        None => ServiceBuilder::new()
            .layer(layer.clone())
            .service(inner)
            .oneshot(req)
            .await
            .unwrap(),
    }
}

#[tokio::test]
async fn a_key_is_refused_outside_its_allow_list_and_without_a_known_address() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(store as Arc<dyn KeyStore>);
    let mut new = new_key(&f, "office", Environment::Live);
    new.allowed_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    let minted = keys.mint(new, Utc::now()).await.unwrap();
    let layer = KeyAuthLayer::new(Arc::clone(keys.verifier()));
    let token = minted.token.expose();

    let inside = call_from(&layer, token, Some("10.1.2.3:5000"), None).await;
    assert_eq!(inside.status(), StatusCode::OK);
    let outside = call_from(&layer, token, Some("127.0.0.1:5000"), None).await;
    assert_eq!(
        (outside.status(), code(&outside).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    // The refusal still names its caller for the layers outside (audit, request log).
    assert!(outside.extensions().get::<VerifiedKey>().is_some());
    let unknown = call_from(&layer, token, None, None).await;
    assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
}

/// A creator directory where every creator is a viewer.
struct Viewers;

#[async_trait::async_trait]
impl align_keys::layer::CreatorRoles for Viewers {
    async fn role_of(&self, _: UserId) -> Result<Role> {
        Ok(Role::Viewer)
    }
}

#[tokio::test]
async fn require_checks_the_permission_within_the_creators_current_role() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(store as Arc<dyn KeyStore>);
    let minted = keys
        .mint(new_key(&f, "svc", Environment::Sandbox), Utc::now())
        .await
        .unwrap();
    let token = minted.token.expose();
    let layer = KeyAuthLayer::new(Arc::clone(keys.verifier()));
    let ok = call_from(&layer, token, None, Some(Permission::KeysWrite)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    // A sandbox key's answers say so.
    assert_eq!(ok.headers()["align-environment"], "sandbox");

    // The same key, its creator now a viewer: `keys:write` is beyond the role.
    let bounded = layer.clone().with_roles(Arc::new(Viewers));
    let refused = call_from(&bounded, token, None, Some(Permission::KeysWrite)).await;
    assert_eq!(
        (refused.status(), code(&refused).as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let read = call_from(&bounded, token, None, Some(Permission::KeysRead)).await;
    assert_eq!(read.status(), StatusCode::OK);
}
