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
use chrono::Utc;
use common::*;
use tower::{ServiceBuilder, ServiceExt};

async fn call(layer: &KeyAuthLayer, headers: &[(&str, &str)]) -> Response<String> {
    let svc =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|req: Request<()>| async move {
                let key = req.extensions().get::<VerifiedKey>().unwrap();
                Ok::<_, Infallible>(Response::new(key.record().name.clone()))
            });
    let mut req = Request::builder().uri("/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    svc.oneshot(req.body(()).unwrap()).await.unwrap()
}

fn code(r: &Response<String>) -> String {
    let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
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
    assert_eq!((ok.status(), ok.body().as_str()), (StatusCode::OK, "svc"));
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
    assert!(!revoked.body().contains(&token[13..]));
}
