//! Request ids: [`RequestId`], and [`RequestIdLayer`] that gives every request one and every
//! response its `X-Request-Id`.
//!
//! Ids are UUID v4 made without a system call per request.
//!
//! `Uuid::new_v4` asks the kernel for 16 random bytes (`getrandom`) on every call, a
//! measurable share of a cheap request. Instead each thread draws one random 128-bit key from
//! the kernel the first time, then derives every id from a per-thread counter through the
//! SplitMix64 finaliser (a bijection of 64-bit words) keyed with it: ids within a thread never
//! repeat before the version and variant bits are applied, and ids look as random as before.
//! They are identifiers, not secrets: nothing relies on them being unpredictable.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// One thread's key and counter.
struct State {
    key: (u64, u64),
    counter: Cell<u64>,
}

thread_local! {
    static STATE: State = State {
        key: uuid::Uuid::new_v4().as_u64_pair(),
        counter: Cell::new(0),
    };
}

/// SplitMix64's output function: a bijection on `u64` with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh UUID v4.
fn new_uuid() -> uuid::Uuid {
    STATE.with(|s| {
        let n = s.counter.get().wrapping_add(1);
        s.counter.set(n);
        let hi = mix(s.key.0.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let lo = mix(s.key.1 ^ n);
        uuid::Builder::from_random_bytes((u128::from(hi) << 64 | u128::from(lo)).to_be_bytes())
            .into_uuid()
    })
}

/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of one request (a UUID v4, hyphenated, lower case), in the request's extensions
/// from [`RequestIdLayer`] on; every layer's error envelope and log entry names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id.
    pub fn new() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        Self(Arc::from(&*new_uuid().hyphenated().encode_lower(&mut buf)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of `req` (the one [`RequestIdLayer`] gave it), or `""` outside the layer.
    pub fn of<B>(req: &Request<B>) -> &str {
        req.extensions().get::<Self>().map_or("", Self::as_str)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Gives every request a [`RequestId`] in its extensions (keeping one an outer service already
/// put there) and every response the `X-Request-Id` header. A client's own `X-Request-Id` is
/// not trusted: ids are the server's, so a log cannot be made to hold a forged one.
///
/// ```
/// use align_http::{RequestId, RequestIdLayer};
/// use tower::{ServiceBuilder, ServiceExt};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let svc = ServiceBuilder::new().layer(RequestIdLayer).service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(http::Response::new(RequestId::of(&req).to_owned()))
/// });
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.headers()["x-request-id"], res.body().as_str());
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = match req.extensions().get::<RequestId>() {
            Some(id) => id.clone(),
            None => {
                let id = RequestId::new();
                req.extensions_mut().insert(id.clone());
                id
            }
        };
        RequestIdFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestIdService`]: the inner service's answer with `X-Request-Id`
    /// added. Written out rather than boxed, so a request costs no allocation and no copy of
    /// the inner future here.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<RequestId>,
    }
}

impl<F, ResBody, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                response.headers_mut().insert(X_REQUEST_ID, v);
            }
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_4_and_distinct() {
        let ids: HashSet<uuid::Uuid> = (0..100_000).map(|_| super::new_uuid()).collect();
        assert_eq!(ids.len(), 100_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn strings_parse_back() {
        let s = super::RequestId::new().to_string();
        assert_eq!(s.len(), 36);
        let parsed: uuid::Uuid = s.parse().unwrap_or_default();
        assert_eq!(parsed.to_string(), s);
    }
}
