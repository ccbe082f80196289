//! `RateLimitLayer`: headers on admitted responses, 429 with the envelope beyond the limit,
//! requests without a key untouched.

#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::convert::Infallible;
use std::sync::Arc;

use align_ratelimit::{KeyedLimiter, Rate, RateLimitLayer, RateLimiter, SlidingWindow};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test]
async fn the_layer_limits_per_key_and_tells_the_client() {
    let limiter: Arc<dyn RateLimiter<String>> = Arc::new(KeyedLimiter::new(
        SlidingWindow::new(Rate::per_minute(2)).unwrap(),
    ));
    let layer = RateLimitLayer::new(limiter, |headers, _ext| {
        headers
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        });
    let req = |client: Option<&str>| {
        let mut b = Request::builder().uri("/").header("x-request-id", "req-1");
        if let Some(c) = client {
            b = b.header("x-client", c);
        }
        b.body(()).unwrap()
    };
    let first = svc.clone().oneshot(req(Some("a"))).await.unwrap();
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    svc.clone().oneshot(req(Some("a"))).await.unwrap();
    let third = svc.clone().oneshot(req(Some("a"))).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    let retry: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: serde_json::Value = serde_json::from_str(third.body()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit");
    assert_eq!(body["error"]["requestId"], "req-1");
    // Another key, and a request without a key, are not affected.
    assert_eq!(
        svc.clone().oneshot(req(Some("b"))).await.unwrap().status(),
        StatusCode::OK
    );
    let anonymous = svc.oneshot(req(None)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert!(anonymous.headers().get("x-ratelimit-limit").is_none());
}
