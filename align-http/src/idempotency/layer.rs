//! [`IdempotencyLayer`]: `Idempotency-Key` on POST, per API key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use align_core::KeyIdentity;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_layer::Layer;
use tower_service::Service;

use super::{Begin, ReplyStore, fingerprint, validate_key};
use crate::{ApiError, RequestId};

/// `Idempotent-Replayed`.
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Honours `Idempotency-Key` on `POST` for requests a key layer authenticated (the caller is
/// the [`KeyIdentity`] in the request's extensions; requests without one pass through).
///
/// The first request with a key runs and its answer (errors included, server errors not) is
/// kept for 24 hours; the same request again gets that answer with `Idempotent-Replayed:
/// true`; while the first still runs, `409 idempotency_conflict`; a different request (method,
/// path and query, body) with the same key, `422 idempotency_key_reused`. Takes the buffered
/// body of [`crate::BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    store: Arc<ReplyStore>,
}

impl IdempotencyLayer {
    /// A layer keeping replies in `store`.
    pub fn new(store: Arc<ReplyStore>) -> Self {
        Self { store }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService {
            inner,
            store: Arc::clone(&self.store),
        }
    }
}

/// The service made by [`IdempotencyLayer`].
#[derive(Debug, Clone)]
pub struct IdempotencyService<S> {
    inner: S,
    store: Arc<ReplyStore>,
}

/// The request's validated `Idempotency-Key`, when it is a POST that carries one.
fn idempotency_key<B>(req: &Request<B>) -> Result<Option<String>, ApiError> {
    if req.method() != Method::POST {
        return Ok(None);
    }
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::invalid_request("Idempotency-Key must be ASCII"))?;
            validate_key(v).map(Some)
        }
    }
}

impl<S, ResBody> Service<Request<Full<Bytes>>> for IdempotencyService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let caller = req
            .extensions()
            .get::<Arc<KeyIdentity>>()
            .map(|k| k.key_id.clone());
        let idem = match (caller, idempotency_key(&req)) {
            (Some(caller), Ok(Some(idem))) => (caller, idem),
            (_, Err(e)) => {
                let response = e.to_response(RequestId::of(&req));
                return Box::pin(async move { Ok(response) });
            }
            _ => return Box::pin(inner.call(req)),
        };
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let request_id = RequestId::of(&req).to_owned();
            let (parts, body) = req.into_parts();
            // Already in memory (the body layer read it): this only takes it out.
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
            let fp = fingerprint(parts.method.as_str(), path, &body);
            let ticket = match store.begin(&idem.0, idem.1, fp).await {
                Ok(Begin::Run(ticket)) => ticket,
                Ok(Begin::Replay(stored)) => {
                    let mut r = Response::new(ResBody::from(Bytes::from(stored.body.to_vec())));
                    *r.status_mut() = stored.status;
                    let h = r.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    h.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                    return Ok(r);
                }
                Err(e) => return Ok(e.to_response(&request_id)),
            };
            let req = Request::from_parts(parts, Full::new(body));
            // Error answers are part of the outcome too, and are replayed like successes.
            let response = inner.call(req).await?;
            let (head, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            ticket.complete(head.status, &bytes).await;
            Ok(Response::from_parts(head, ResBody::from(bytes)))
        })
    }
}
