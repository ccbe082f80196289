//! [`RequestLogLayer`]: a request-log entry for every request, as a `tower` layer (feature
//! `tower`).
//!
//! The entry holds the method, the path (never the query string), status, latency, request id
//! (`align_http::RequestId` from `RequestIdLayer`, outside this layer), user agent and the
//! client address (`align_http::PeerAddr`, or a `SocketAddr`, in the request's extensions).
//! When a layer inside this one puts an `Arc<`[`align_core::KeyIdentity`]`>` into the response's
//! extensions (as `align-keys`' `KeyAuthLayer` does), that key becomes the entry's actor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use align_core::KeyIdentity;
use align_http::{PeerAddr, RequestId};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::record::{Actor, Entry};
use crate::sink::AuditSink;

/// Writes a request-log entry for every request through `sink`.
#[derive(Clone)]
pub struct RequestLogLayer {
    sink: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for RequestLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestLogLayer")
    }
}

impl RequestLogLayer {
    /// A layer logging to `sink` (entries are queued with [`AuditSink::submit`]).
    pub fn new(sink: Arc<dyn AuditSink>) -> Self {
        Self { sink }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            sink: Arc::clone(&self.sink),
        }
    }
}

/// The service made by [`RequestLogLayer`].
#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
    sink: Arc<dyn AuditSink>,
}

impl<S> std::fmt::Debug for RequestLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestLog")
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
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
        let sink = Arc::clone(&self.sink);
        let started = Instant::now();
        let time = chrono::Utc::now();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let user_agent = header("user-agent");
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(RequestId::to_string);
        let ip = PeerAddr::ip_of(&req);
        let mut entry = Entry::request(req.method().as_str(), req.uri().path()).time(time);
        Box::pin(async move {
            let response = inner.call(req).await?;
            entry = entry
                .status(response.status().as_u16())
                .latency(started.elapsed());
            if let Some(k) = response.extensions().get::<Arc<KeyIdentity>>() {
                entry = entry
                    .organization(k.organization_id.clone())
                    .environment(k.environment)
                    .actor(Actor::ApiKey {
                        id: k.key_id.clone(),
                        prefix: k.prefix.clone(),
                    });
            }
            // The id the response names (an outer `RequestIdLayer` sets it), else the
            // request's.
            let id = response
                .headers()
                .get(align_http::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or(request_id);
            if let Some(id) = id {
                entry = entry.request_id(id);
            }
            if let Some(ua) = user_agent {
                entry = entry.user_agent(ua);
            }
            if let Some(ip) = ip {
                entry = entry.ip(ip);
            }
            // A queued entry that later fails to commit is reported by the sink's next
            // `flush`; the response is not held back for it.
            if let Ok(e) = entry.build() {
                let _ = sink.submit(e).await;
            }
            Ok(response)
        })
    }
}
