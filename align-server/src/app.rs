//! The request path, as a stack of the library crates' public layers (outside in):
//!
//! 1. [`RequestIdLayer`] (`align-http`): the request's id, `X-Request-Id` on every response;
//! 2. [`LimitsLayer`] (`align-http`): header size, declared body size, the request timeout;
//! 3. the server's own pages, answered without a key: `/healthz`, `security.txt`, `/docs`,
//!    the console, GitHub's signed secret-scanning intake, operator `/metrics` ([`public`]);
//! 4. [`KeyAuthLayer`] (`align-keys`): the key, its creator's current role, its allow-list;
//! 5. [`KeyLimitsLayer`] (`align-ratelimit`): the key's rate, requests in flight, quotas;
//! 6. [`BodyLimitLayer`] (`align-http`): the body, read within its limit;
//! 7. [`IdempotencyLayer`] (`align-http`): `Idempotency-Key` replays;
//! 8. the route's handler ([`routes::dispatch`]).
//!
//! Every refusal is an [`ApiError`] rendered by `align-http` (one envelope), its [`Rejection`] in
//! the response's extensions. What the server
//! adds after the answer ([`handle`]): metrics, the `permission.denied` audit record of a
//! `403`, the `rate_limit.exceeded` event, and the request log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use align_http::{
    ApiError, BodyLimitLayer, IdempotencyLayer, LimitsLayer, PeerAddr, Rejection, RequestId,
    RequestIdLayer,
};
use align_keys::layer::{Authenticated, KeyAuthLayer};
use align_keys::{KeyId, VerifiedKey};
use align_ratelimit::{Decision, KeyLimitsLayer};
use bytes::Bytes;
use http::header::USER_AGENT;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::audit::{self, RequestMeta};
use crate::http::Response;
use crate::routes;
use crate::state::AppState;

/// The authenticated caller of a request: the verified key and its creator's current role.
pub(crate) type Auth = Authenticated;

/// What a request carries into its handler.
#[derive(Debug)]
pub(crate) struct Request {
    /// Method, URI, headers.
    pub(crate) parts: Parts,
    /// The whole body (already size-checked).
    pub(crate) body: Bytes,
    /// The caller.
    pub(crate) auth: Auth,
    /// Request id, peer, user agent: for audit records (shared with the request log, not
    /// copied).
    pub(crate) meta: Arc<RequestMeta>,
}

impl Request {
    /// The request's caller acting, for the operations the API shares with the console.
    pub(crate) fn acting(&self) -> crate::principal::Acting<'_> {
        crate::principal::Acting {
            who: crate::principal::Principal::Key(&self.auth),
            meta: &self.meta,
        }
    }

    /// Durably records a security-relevant change made by this request.
    pub(crate) async fn audit(
        &self,
        state: &AppState,
        action: &str,
        target: &str,
        status: StatusCode,
        metadata: serde_json::Value,
    ) {
        let caller = self.auth.key.record();
        state
            .audit_change(&self.meta, caller, action, target, status, metadata)
            .await;
    }
}

/// The layers of the pipeline that hold state, made once at start-up and cloned (a few `Arc`s)
/// into each request's stack.
#[derive(Clone, Debug)]
pub(crate) struct Layers {
    limits: LimitsLayer,
    auth: KeyAuthLayer,
    key_limits: KeyLimitsLayer<KeyId>,
    body: BodyLimitLayer,
    idempotency: IdempotencyLayer,
}

impl Layers {
    /// The layers over the server's settings, verifier, roles, limits and reply store.
    pub(crate) fn new(
        config: &crate::config::Config,
        verifier: &Arc<align_keys::KeyVerifier>,
        roles: Arc<crate::state::Roles>,
        limits: &Arc<align_ratelimit::KeyLimits<KeyId>>,
        replies: &Arc<align_http::ReplyStore>,
    ) -> Self {
        Self {
            limits: LimitsLayer::default()
                .max_body_bytes(config.max_body_bytes)
                .timeout(config.request_timeout),
            auth: KeyAuthLayer::new(Arc::clone(verifier)).with_roles(roles),
            key_limits: KeyLimitsLayer::new(Arc::clone(limits), |ext| {
                ext.get::<VerifiedKey>()
                    .map(|k| (k.record().id, k.record().rate_limit_per_minute))
            }),
            body: BodyLimitLayer::new(config.max_body_bytes),
            idempotency: IdempotencyLayer::new(Arc::clone(replies)),
        }
    }
}

/// Answers one HTTP request. Never fails: every problem becomes an error envelope.
pub(crate) async fn handle<B>(
    state: Arc<AppState>,
    mut req: http::Request<B>,
    peer: SocketAddr,
) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let request_id = RequestId::new();
    let meta = Arc::new(RequestMeta {
        request_id: request_id.to_string(),
        peer,
        user_agent: req
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        started: audit::now(),
        user: std::sync::OnceLock::new(),
    });
    let method = req.method().clone();
    let ext = req.extensions_mut();
    ext.insert(request_id);
    ext.insert(PeerAddr(peer));

    let stack = ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(state.layers.limits)
        .service(service_fn({
            let (state, meta) = (Arc::clone(&state), Arc::clone(&meta));
            // Called once: the clones are the request's own.
            move |req: http::Request<B>| {
                let (state, meta) = (Arc::clone(&state), Arc::clone(&meta));
                // Boxed where it is made: the layers then move a pointer, not the state
                // machine (copied at each layer it would cost thousands of instructions a
                // request, docs/performance.md).
                Box::pin(answer(state, meta, req))
            }
        }));
    let response = match call_ready(stack, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    observe(&state, &method, meta, response, started).await
}

/// The server's own pages, else the API's layers and the route's handler.
async fn answer<B>(
    state: Arc<AppState>,
    meta: Arc<RequestMeta>,
    req: http::Request<B>,
) -> Result<Response, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let req = match public(&state, &meta, req).await {
        Ok(answered) => return Ok(answered),
        Err(req) => req,
    };
    // The layers are built for the request that needs them (a page never does).
    let layers = state.layers.clone();
    let api = ServiceBuilder::new()
        .layer(layers.auth)
        .layer(layers.key_limits)
        .layer(layers.body)
        .layer(layers.idempotency)
        .service(service_fn(move |req| {
            Box::pin(dispatch(Arc::clone(&state), Arc::clone(&meta), req))
        }));
    call_ready(api, req).await
}

/// Calls `service` at once when it is ready, as every layer of the pipeline always is (none
/// holds a request back in `poll_ready`); otherwise waits for it as `ServiceExt::oneshot`
/// does. Saves the `Oneshot` state machine (and its copies) on every request.
fn call_ready<S, R>(mut service: S, req: R) -> CallReady<S, R>
where
    S: tower::Service<R>,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match service.poll_ready(&mut cx) {
        std::task::Poll::Ready(Ok(())) => CallReady::Called {
            future: service.call(req),
        },
        _ => CallReady::Waiting {
            future: service.oneshot(req),
        },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`call_ready`].
    #[project = CallReadyProjection]
    enum CallReady<S, R>
    where
        S: tower::Service<R>,
    {
        Called { #[pin] future: S::Future },
        Waiting { #[pin] future: tower::util::Oneshot<S, R> },
    }
}

impl<S, R> std::future::Future for CallReady<S, R>
where
    S: tower::Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            CallReadyProjection::Called { future } => future.poll(cx),
            CallReadyProjection::Waiting { future } => future.poll(cx),
        }
    }
}

/// What the server does with every answer: metrics, the audit record of a refusal by the
/// policy, the `rate_limit.exceeded` event, the request log.
async fn observe(
    state: &AppState,
    method: &Method,
    meta: Arc<RequestMeta>,
    response: Response,
    started: Instant,
) -> Response {
    let status = response.status();
    let caller = response
        .extensions()
        .get::<VerifiedKey>()
        .map(VerifiedKey::record_arc);
    let refusal = response.extensions().get::<Rejection>().map(|r| r.code);
    if let Some(outcome) = auth_outcome(caller.is_some(), refusal) {
        state.metrics.auth(outcome);
    }
    if let (Some(k), Some(code @ ("rate_limit" | "concurrency_limit" | "quota_exceeded"))) =
        (&caller, refusal)
    {
        state.metrics.denied(code);
        if let (Some(d), "rate_limit") = (response.extensions().get::<Decision>(), code) {
            // Claimed at once; the event (once a minute per key) is boxed, so a flood's
            // requests carry no room for it.
            if let Some(event) = state.rate_limit_exceeded(k, d) {
                event.await;
            }
        }
    }
    if let (StatusCode::FORBIDDEN, Some(k)) = (status, &caller) {
        let target = meta.path.clone();
        // Rare: boxed, so the common request's future has no room for it.
        Box::pin(state.audit_change(
            &meta,
            k,
            "permission.denied",
            &target,
            status,
            serde_json::json!({}),
        ))
        .await;
    }
    let latency = started.elapsed();
    let route = routes::route_of(method, &meta.path);
    state
        .metrics
        .observe(method, route, status.as_u16(), latency);
    // Every request is in the request log (`align audit tail --stream request -f` follows
    // it); this line repeats it on stderr for those who ask (`ALIGN_LOG=info,align::request=debug`).
    // Formatting and writing it costs more than the rest of a rejected request, so it is off
    // at the default level (docs/operations.md).
    tracing::debug!(
        target: "align::request",
        request_id = %meta.request_id,
        method = %meta.method,
        path = %meta.path,
        status = status.as_u16(),
        key = caller.as_ref().map_or("-", |k| k.prefix.as_str()),
        latency_us = latency.as_micros() as u64,
    );
    state
        .log_request(meta, caller.as_ref(), status, latency)
        .await;
    response
}

/// The key layer's verdict for the `align_auth_total` metric: `None` when the request never
/// reached it (a page answered without a key, a refusal by the limits before it).
fn auth_outcome(authenticated: bool, refusal: Option<&str>) -> Option<&'static str> {
    if authenticated {
        return Some("valid");
    }
    Some(match refusal? {
        "missing_key" => "missing",
        "invalid_key" => "invalid",
        "key_revoked" => "revoked",
        "key_expired" => "expired",
        "key_suspended" => "suspended",
        "ambiguous_credentials" => "ambiguous",
        _ => return None,
    })
}

/// The server's own pages and intakes, answered without an API key; the request back when it
/// is for the API.
async fn public<B>(
    state: &AppState,
    meta: &Arc<RequestMeta>,
    req: http::Request<B>,
) -> Result<Response, http::Request<B>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    let rid = RequestId::of(&req).to_owned();
    let answer = |r: Result<Response, ApiError>| r.unwrap_or_else(|e| e.to_response(&rid));
    if path == "/healthz" {
        if req.method() != Method::GET {
            return Ok(answer(Err(routes::unrouted(req.method(), "/healthz"))));
        }
        return Ok(Box::pin(state.health()).await);
    }
    if path == "/.well-known/security.txt" {
        if req.method() != Method::GET {
            let e = routes::unrouted(req.method(), "/.well-known/security.txt");
            return Ok(answer(Err(e)));
        }
        return Ok(answer(
            Box::pin(routes::organization::security_txt(state)).await,
        ));
    }
    if crate::docs::is_docs_path(path) {
        return Ok(answer(crate::docs::serve(req.method(), path)));
    }
    if state.console.is_some() && crate::console::is_console_path(path) {
        let (parts, body) = req.into_parts();
        return Ok(Box::pin(crate::console::handle(state, parts, body, meta)).await);
    }
    if path == crate::leaks::github::PATH {
        // Signed by GitHub, not by an API key: checked before anything else is read.
        let (parts, body) = req.into_parts();
        return Ok(answer(
            Box::pin(crate::leaks::github::handle(state, parts, body, meta)).await,
        ));
    }
    if !path.starts_with("/api/") && path != "/metrics" {
        return Ok(answer(Err(ApiError::not_found())));
    }
    if path == "/metrics"
        && req.method() == Method::GET
        && routes::is_metrics_operator(state, req.headers())
    {
        return Ok(answer(Box::pin(routes::metrics_text(state)).await));
    }
    Err(req)
}

/// The innermost service: the route's handler, for a request every layer let through.
async fn dispatch(
    state: Arc<AppState>,
    meta: Arc<RequestMeta>,
    req: http::Request<Full<Bytes>>,
) -> Result<Response, Infallible> {
    let (mut parts, body) = req.into_parts();
    let rid = parts
        .extensions
        .get::<RequestId>()
        .map_or_else(String::new, |r| r.to_string());
    let Some(auth) = parts.extensions.remove::<Authenticated>() else {
        return Ok(ApiError::internal().to_response(&rid));
    };
    // Already in memory (the body layer read it).
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let request = Request {
        parts,
        body,
        auth,
        meta,
    };
    Ok(routes::dispatch(&state, request)
        .await
        .unwrap_or_else(|e| e.to_response(&rid)))
}

/// Reads a whole body, refusing one over `limit` bytes with `413`.
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    align_http::read_body(body, limit).await
}
