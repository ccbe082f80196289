//! [`LimitsLayer`] (header size, declared body size, timeout) and [`BodyLimitLayer`] (reads
//! the body within the limit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower_layer::Layer;
use tower_service::Service;

use crate::{ApiError, RequestId};

/// Largest total size of request headers read by default (names and values): 16 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest request body by default: 1 MiB (DESIGN §4).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest a request may take by default: 30 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds every request is held to before anything else reads it: headers over
/// `max_header_bytes` are `400 invalid_request`, a `Content-Length` over `max_body_bytes`
/// is `413 payload_too_large` (the body is not read), and a request that takes longer than
/// `timeout` is `504 timeout` (its work is dropped).
///
/// ```
/// use std::time::Duration;
/// use align_http::LimitsLayer;
/// let layer = LimitsLayer::default().max_body_bytes(64 * 1024).timeout(Duration::from_secs(5));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LimitsLayer {
    max_header_bytes: usize,
    max_body_bytes: usize,
    timeout: Duration,
}

impl Default for LimitsLayer {
    fn default() -> Self {
        Self {
            max_header_bytes: MAX_HEADER_BYTES,
            max_body_bytes: MAX_BODY_BYTES,
            timeout: REQUEST_TIMEOUT,
        }
    }
}

impl LimitsLayer {
    /// Headers larger than `n` bytes in all are refused.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }
    /// A declared body larger than `n` bytes is refused.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// Requests taking longer than `d` are answered `504`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Limits {
            inner,
            layer: *self,
        }
    }
}

/// The service made by [`LimitsLayer`].
#[derive(Debug, Clone)]
pub struct Limits<S> {
    inner: S,
    layer: LimitsLayer,
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

type BoxFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Limits<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LimitsFuture<S::Future, Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        let refusal = if header_bytes > self.layer.max_header_bytes {
            Some(ApiError::invalid_request(format!(
                "the request headers are too large (the limit is {} KiB)",
                self.layer.max_header_bytes / 1024
            )))
        } else if content_length(req.headers())
            .is_some_and(|n| n > self.layer.max_body_bytes as u64)
        {
            Some(ApiError::payload_too_large(self.layer.max_body_bytes))
        } else {
            None
        };
        let request_id = req.extensions().get::<RequestId>().cloned();
        if let Some(e) = refusal {
            let id = request_id.as_ref().map_or("", RequestId::as_str);
            return LimitsFuture::refused(e.to_response(id));
        }
        LimitsFuture::running(
            tokio::time::timeout(self.layer.timeout, self.inner.call(req)),
            request_id,
        )
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Limits`]: a refusal answered at once, or the inner service's answer
    /// within the time limit (`504 timeout` past it). Written out rather than boxed, so a
    /// request costs no allocation and no copy of the inner future here.
    pub struct LimitsFuture<F, R> {
        #[pin]
        state: LimitsState<F, R>,
    }
}

impl<F, R> LimitsFuture<F, R> {
    fn refused(response: R) -> Self {
        Self {
            state: LimitsState::Refused {
                response: Some(response),
            },
        }
    }

    fn running(work: tokio::time::Timeout<F>, request_id: Option<RequestId>) -> Self {
        Self {
            state: LimitsState::Running { work, request_id },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = LimitsProjection]
    enum LimitsState<F, R> {
        Refused {
            response: Option<R>,
        },
        Running {
            #[pin]
            work: tokio::time::Timeout<F>,
            request_id: Option<RequestId>,
        },
    }
}

impl<F, ResBody, E> Future for LimitsFuture<F, Response<ResBody>>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            LimitsProjection::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled again after it answered: answer the same way rather than panic.
                None => Poll::Ready(Ok(ApiError::internal().to_response(""))),
            },
            LimitsProjection::Running { work, request_id } => {
                match std::task::ready!(work.poll(cx)) {
                    Ok(result) => Poll::Ready(result),
                    Err(_) => {
                        let id = request_id.as_ref().map_or("", RequestId::as_str);
                        Poll::Ready(Ok(ApiError::timeout().to_response(id)))
                    }
                }
            }
        }
    }
}

/// Reads the whole request body, at most `limit` bytes (`413 payload_too_large` past it, also
/// for a body sent without `Content-Length`), and hands it on in memory (`Full<Bytes>`). Put it
/// after authentication and the limits, so that no body is read for a request refused anyway.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// A layer reading bodies of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl Default for BodyLimitLayer {
    fn default() -> Self {
        Self::new(MAX_BODY_BYTES)
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

/// Reads a whole body, refusing one over `limit` bytes with `413`.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::payload_too_large(limit)),
        Err(_) => Err(ApiError::invalid_request(
            "the request body could not be read",
        )),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            match read_body(body, limit).await {
                Ok(bytes) => {
                    inner
                        .call(Request::from_parts(parts, Full::new(bytes)))
                        .await
                }
                Err(e) => {
                    let id = parts
                        .extensions
                        .get::<RequestId>()
                        .map_or("", RequestId::as_str);
                    Ok(e.to_response(id))
                }
            }
        })
    }
}
