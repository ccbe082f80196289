//! `KeyLimitsLayer`: headers on every response after the rate was decided, 429 with the
//! envelope beyond the rate (the key's own or the default), past the requests in flight and
//! past a quota; requests without a key untouched.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use align_http::RequestId;
use align_ratelimit::{KeyLimits, KeyLimitsLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt};

/// The caller a test request names, with its own rate.
#[derive(Clone)]
struct Client(&'static str, Option<u32>);

fn request(client: Option<Client>) -> (Request<()>, RequestId) {
    let id = RequestId::new();
    let mut req = Request::builder().uri("/").body(()).unwrap();
    req.extensions_mut().insert(id.clone());
    if let Some(c) = client {
        req.extensions_mut().insert(c);
    }
    (req, id)
}

fn layer(limits: KeyLimits<&'static str>) -> KeyLimitsLayer<&'static str> {
    KeyLimitsLayer::new(Arc::new(limits), |ext| {
        ext.get::<Client>().map(|c| (c.0, c.1))
    })
}

fn body(r: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(r.body()).unwrap()
}

#[tokio::test]
async fn the_layer_limits_per_key_and_tells_the_client() {
    let svc = ServiceBuilder::new()
        .layer(layer(KeyLimits::builder(2).build().unwrap()))
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
        });
    let a = || Some(Client("a", None));
    let first = svc.clone().oneshot(request(a()).0).await.unwrap();
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    let reset: u64 = first.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset <= 60);
    svc.clone().oneshot(request(a()).0).await.unwrap();
    let (req, id) = request(a());
    let third = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    let retry: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(body(&third)["error"]["code"], "rate_limit");
    assert_eq!(body(&third)["error"]["requestId"], id.as_str());
    // Another key, and a request without a key, are not affected.
    let b = svc
        .clone()
        .oneshot(request(Some(Client("b", None))).0)
        .await
        .unwrap();
    assert_eq!(b.status(), StatusCode::OK);
    let anonymous = svc.oneshot(request(None).0).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert!(anonymous.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn a_key_with_its_own_limit_is_held_to_it_not_to_the_default() {
    let svc = ServiceBuilder::new()
        .layer(layer(KeyLimits::builder(100).build().unwrap()))
        .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::new())) });
    let mut served = 0;
    for _ in 0..7 {
        let r = svc
            .clone()
            .oneshot(request(Some(Client("five", Some(5)))).0)
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            served += 1;
            assert_eq!(r.headers()["x-ratelimit-limit"], "5");
        }
    }
    assert_eq!(served, 5);
}

#[tokio::test]
async fn requests_in_flight_beyond_the_limit_are_refused_with_concurrency_limit() {
    let (entered, mut wait) = tokio::sync::mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let svc = ServiceBuilder::new()
        .layer(layer(
            KeyLimits::builder(100).max_concurrent(1).build().unwrap(),
        ))
        .service_fn({
            let release = Arc::clone(&release);
            move |_req: Request<()>| {
                let (entered, release) = (entered.clone(), Arc::clone(&release));
                async move {
                    let _ = entered.send(()).await;
                    release.notified().await;
                    Ok::<_, Infallible>(Response::new(Bytes::new()))
                }
            }
        });
    let held = tokio::spawn(svc.clone().oneshot(request(Some(Client("c", None))).0));
    wait.recv().await.unwrap();
    let second = svc
        .clone()
        .oneshot(request(Some(Client("c", None))).0)
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body(&second)["error"]["code"], "concurrency_limit");
    assert!(second.headers().contains_key("retry-after"));
    assert!(second.headers().contains_key("x-ratelimit-limit"));
    release.notify_one();
    let first = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_key_past_its_daily_quota_is_refused_with_quota_exceeded() {
    let svc = ServiceBuilder::new()
        .layer(layer(
            KeyLimits::builder(100)
                .quota_per_day(Some(2))
                .build()
                .unwrap(),
        ))
        .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::new())) });
    for _ in 0..2 {
        let r = svc
            .clone()
            .oneshot(request(Some(Client("q", None))).0)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let third = svc
        .oneshot(request(Some(Client("q", None))).0)
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body(&third)["error"]["code"], "quota_exceeded");
}
