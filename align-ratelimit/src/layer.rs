//! [`KeyLimitsLayer`]: per-key rate, concurrency and quota as one `tower` layer (feature
//! `tower`), over [`KeyLimits`].
//!
//! The embedder says how to find a request's key and the key's own rate (for example from the
//! verified API key an authentication layer put in the request's extensions); requests without
//! a key pass through. In order: the rate (the key's own per minute, or the default) → `429
//! rate_limit`; requests in flight → `429 concurrency_limit`; calendar quotas → `429
//! quota_exceeded`; each with `Retry-After`, in the envelope of `align_http::ApiError`. Every
//! response after the rate was decided carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (whole seconds until `Remaining` grows, never more than the 60 s
//! window), and the [`Decision`] in its extensions for outer layers. A limiter that cannot
//! decide (a shared store down, failing closed) is `503 unavailable`.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use align_http::{ApiError, RequestId};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::decision::Decision;
use crate::keylimits::KeyLimits;

/// Finds the key a request is limited under and the key's own rate per minute (`None`: the
/// default), from the request's extensions.
pub type KeyOf<K> = Arc<dyn Fn(&http::Extensions) -> Option<(K, Option<u32>)> + Send + Sync>;

/// `X-RateLimit-Limit`.
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// The window of per-minute limits.
const WINDOW: Duration = Duration::from_secs(60);

/// Holds each key to its [`KeyLimits`].
///
/// ```
/// use std::sync::Arc;
/// use align_ratelimit::{KeyLimits, KeyLimitsLayer};
/// let limits = Arc::new(KeyLimits::<String>::builder(600).build().unwrap());
/// // Here the key is a header; with align-keys it is the verified key's id and own rate.
/// let layer = KeyLimitsLayer::new(limits, |ext| ext.get::<String>().map(|k| (k.clone(), None)));
/// # let _ = layer;
/// ```
pub struct KeyLimitsLayer<K: Hash + Eq> {
    limits: Arc<KeyLimits<K>>,
    key_of: KeyOf<K>,
}

impl<K: Hash + Eq> Clone for KeyLimitsLayer<K> {
    fn clone(&self) -> Self {
        Self {
            limits: Arc::clone(&self.limits),
            key_of: Arc::clone(&self.key_of),
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for KeyLimitsLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimitsLayer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq> KeyLimitsLayer<K> {
    /// A layer holding the key `key_of` finds (none: not limited) to `limits`.
    pub fn new(
        limits: Arc<KeyLimits<K>>,
        key_of: impl Fn(&http::Extensions) -> Option<(K, Option<u32>)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            limits,
            key_of: Arc::new(key_of),
        }
    }
}

impl<S, K: Hash + Eq> Layer<S> for KeyLimitsLayer<K> {
    type Service = KeyLimitsService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyLimitsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`KeyLimitsLayer`].
pub struct KeyLimitsService<S, K: Hash + Eq> {
    inner: S,
    layer: KeyLimitsLayer<K>,
}

impl<S: Clone, K: Hash + Eq> Clone for KeyLimitsService<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, K: Hash + Eq> std::fmt::Debug for KeyLimitsService<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyLimitsService")
    }
}

/// Header values of the numbers most answers carry (limits, what remains, seconds to reset),
/// made once: formatting a number into a fresh `HeaderValue` costs an allocation each time.
static SMALL_NUMBERS: std::sync::LazyLock<Vec<HeaderValue>> =
    std::sync::LazyLock::new(|| (0..=1024_u64).map(HeaderValue::from).collect());

/// `n` as a header value.
fn number(n: u64) -> HeaderValue {
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL_NUMBERS.get(i).cloned())
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// The `X-RateLimit-*` headers of `decision`.
pub fn apply_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(X_RATELIMIT_LIMIT, number(decision.limit));
    headers.insert(X_RATELIMIT_REMAINING, number(decision.remaining));
    headers.insert(
        X_RATELIMIT_RESET,
        number(decision.reset_secs_within(WINDOW)),
    );
}

/// A limiter that could not decide: the shared store is down and the policy is to fail
/// closed (`503 unavailable`), or something that should not happen (`500`).
fn undecided(e: crate::Error) -> ApiError {
    match e {
        crate::Error::Unavailable { .. } => ApiError::unavailable(),
        _ => ApiError::internal(),
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for KeyLimitsService<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
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
        let Some((key, rate)) = (self.layer.key_of)(req.extensions()) else {
            return Box::pin(inner.call(req));
        };
        let limits = Arc::clone(&self.layer.limits);
        Box::pin(async move {
            let decision = match limits.check(&key, rate).await {
                Ok(d) => d,
                Err(e) => return Ok(undecided(e).to_response(RequestId::of(&req))),
            };
            let admitted = if decision.allowed {
                admit(&limits, &key).await
            } else {
                Err(ApiError::rate_limit(
                    decision.retry_after_secs().unwrap_or(1),
                ))
            };
            let mut response = match admitted {
                // Held until the inner service is done; released on drop, also on timeout.
                Ok(_slot) => inner.call(req).await?,
                Err(e) => e.to_response(RequestId::of(&req)),
            };
            apply_headers(response.headers_mut(), &decision);
            response.extensions_mut().insert(decision);
            Ok(response)
        })
    }
}

/// Takes an in-flight slot and counts the quotas, or the refusal.
async fn admit<K>(limits: &KeyLimits<K>, key: &K) -> Result<crate::Slot<K>, ApiError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let slot = limits
        .acquire(key)
        .await
        .map_err(undecided)?
        .map_err(|d| ApiError::concurrency_limit(d.retry_after_secs().unwrap_or(1)))?;
    if let Some(d) = limits.check_quotas(key).await.map_err(undecided)? {
        return Err(ApiError::quota_exceeded(d.retry_after_secs().unwrap_or(1)));
    }
    Ok(slot)
}
