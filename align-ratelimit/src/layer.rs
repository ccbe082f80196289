//! [`RateLimitLayer`]: per-key rate limiting as a `tower` layer (feature `tower`).
//!
//! The embedder says how to find a request's key (for example the verified API key that an
//! authentication layer put in the request's extensions); requests without a key pass
//! through. Admitted responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset`; refused requests get `429` with the error envelope
//! `{"error":{"code":"rate_limit",…}}`, those headers and `Retry-After`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::decision::Decision;
use crate::limiter::RateLimiter;

/// Finds the key a request is limited under, from its headers and extensions.
pub type KeyOf<K> = Arc<dyn Fn(&HeaderMap, &http::Extensions) -> Option<K> + Send + Sync>;

/// Limits requests per key with `limiter`, one unit each.
pub struct RateLimitLayer<K> {
    limiter: Arc<dyn RateLimiter<K>>,
    key_of: KeyOf<K>,
}

impl<K> Clone for RateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            key_of: Arc::clone(&self.key_of),
        }
    }
}

impl<K> std::fmt::Debug for RateLimitLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimitLayer")
    }
}

impl<K> RateLimitLayer<K> {
    /// A layer limiting with `limiter` under the key `key_of` finds (none: not limited).
    pub fn new(
        limiter: Arc<dyn RateLimiter<K>>,
        key_of: impl Fn(&HeaderMap, &http::Extensions) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        Self {
            limiter,
            key_of: Arc::new(key_of),
        }
    }
}

impl<S, K> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
pub struct RateLimit<S, K> {
    inner: S,
    layer: RateLimitLayer<K>,
}

impl<S: Clone, K> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, K> std::fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

fn apply(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in decision.headers().iter() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
    K: Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let key = (self.layer.key_of)(req.headers(), req.extensions());
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .unwrap_or("")
            .to_owned();
        let decision = key.map(|k| self.layer.limiter.check(&k, 1));
        Box::pin(async move {
            match decision {
                None => inner.call(req).await,
                Some(Err(_)) => Ok(refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ("unavailable", "the rate limiter is unavailable"),
                    &request_id,
                    None,
                )),
                Some(Ok(d)) if !d.allowed => Ok(refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    ("rate_limit", "rate limit exceeded for this key"),
                    &request_id,
                    Some(&d),
                )),
                Some(Ok(d)) => {
                    let mut response = inner.call(req).await?;
                    apply(response.headers_mut(), &d);
                    Ok(response)
                }
            }
        })
    }
}

/// The error envelope; `request_id` holds only `[A-Za-z0-9-]`, so it needs no escaping.
fn refusal<B: From<String>>(
    status: StatusCode,
    (code, message): (&str, &str),
    request_id: &str,
    decision: Option<&Decision>,
) -> Response<B> {
    let body = format!(
        r#"{{"error":{{"code":"{code}","message":"{message}","requestId":"{request_id}"}}}}"#
    );
    let mut r = Response::new(B::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match decision {
        Some(d) => apply(r.headers_mut(), d),
        None => {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }
    r
}
