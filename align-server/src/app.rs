//! The request path, top to bottom: request id → body limit → timeout → (`/healthz`, the
//! `/docs` pages and the `/console`, which need no key) → authentication → per-key rate limit →
//! handler → response headers → request log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use align_keys::http::CredentialProblem;
use align_keys::{Environment, KeyRecord, Role, Verification, VerifiedKey};
use align_ratelimit::Decision;
use bytes::Bytes;
use chrono::Utc;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, USER_AGENT};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::audit::{self, RequestMeta};
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::idempotency::{self, Begin};
use crate::routes;
use crate::state::AppState;

/// Largest total size of request headers we read (names and values).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    /// The verified key.
    pub(crate) key: VerifiedKey,
    /// Its creator's current role.
    pub(crate) role: Role,
}

impl Auth {
    /// The policy's view of the caller.
    pub(crate) fn caller(&self) -> align_keys::Caller<'_> {
        align_keys::Caller {
            key: self.key.record(),
            creator_role: self.role,
        }
    }
}

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

/// Facts gathered on the way, used to finish the response and the log entries.
#[derive(Debug, Default)]
struct Trace {
    decision: Option<Decision>,
    caller: Option<Arc<KeyRecord>>,
}

/// Answers one HTTP request. Never fails: every problem becomes an error envelope.
pub(crate) async fn handle<B>(
    state: Arc<AppState>,
    req: http::Request<B>,
    peer: SocketAddr,
) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let meta = Arc::new(RequestMeta {
        request_id: crate::request_id::new_string(),
        peer,
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        started: audit::now(),
        user: std::sync::OnceLock::new(),
    });
    let mut trace = Trace::default();

    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let outcome = match content_length(&parts.headers) {
        _ if header_bytes > MAX_HEADER_BYTES => Err(ApiError::invalid_request(
            "the request headers are too large (the limit is 16 KiB)",
        )),
        Some(n) if n > state.config.max_body_bytes as u64 => {
            Err(ApiError::payload_too_large(state.config.max_body_bytes))
        }
        _ => {
            let work = pipeline(&state, parts, body, &meta, &mut trace);
            match tokio::time::timeout(state.config.request_timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::timeout()),
            }
        }
    };
    let mut response = outcome.unwrap_or_else(|e| h::error(&e, &meta.request_id));
    finish(&mut response, &meta.request_id, &trace);

    let status = response.status();
    let caller = trace.caller.as_deref();
    if let (StatusCode::FORBIDDEN, Some(k)) = (status, caller) {
        let target = meta.path.clone();
        state
            .audit_change(
                &meta,
                k,
                "permission.denied",
                &target,
                status,
                serde_json::json!({}),
            )
            .await;
    }
    let latency = started.elapsed();
    let route = routes::route_of(&method, &meta.path);
    state
        .metrics
        .observe(&method, route, status.as_u16(), latency);
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
        key = caller.map_or("-", |k| k.prefix.as_str()),
        latency_us = latency.as_micros() as u64,
    );
    state
        .log_request(meta, trace.caller.as_ref(), status, latency)
        .await;
    response
}

async fn pipeline<B>(
    state: &AppState,
    parts: Parts,
    body: B,
    meta: &Arc<RequestMeta>,
    trace: &mut Trace,
) -> Result<Response, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if parts.uri.path() == "/healthz" {
        if parts.method != Method::GET {
            return Err(routes::unrouted(&parts.method, "/healthz"));
        }
        return Ok(state.health().await);
    }
    if parts.uri.path() == "/.well-known/security.txt" {
        if parts.method != Method::GET {
            return Err(routes::unrouted(&parts.method, "/.well-known/security.txt"));
        }
        return routes::organization::security_txt(state).await;
    }
    if crate::docs::is_docs_path(parts.uri.path()) {
        return crate::docs::serve(&parts.method, parts.uri.path());
    }
    if state.console.is_some() && crate::console::is_console_path(parts.uri.path()) {
        return Ok(crate::console::handle(state, parts, body, meta).await);
    }
    if parts.uri.path() == crate::leaks::github::PATH {
        // Signed by GitHub, not by an API key: checked before anything else is read.
        return crate::leaks::github::handle(state, parts, body, meta).await;
    }
    if !parts.uri.path().starts_with("/api/") && parts.uri.path() != "/metrics" {
        return Err(ApiError::not_found());
    }
    if parts.uri.path() == "/metrics"
        && parts.method == Method::GET
        && routes::is_metrics_operator(state, &parts.headers)
    {
        return routes::metrics_text(state).await;
    }

    let auth = authenticate(state, &parts.headers).await?;
    let record = auth.key.record();
    trace.caller = Some(auth.key.record_arc());

    if !record.allows_ip(meta.peer.ip()) {
        return Err(ApiError::forbidden(
            "this key may not be used from this network (see its allowedCidrs)",
        ));
    }

    let decision = state.check_rate(record).await?;
    trace.decision = Some(decision);
    if !decision.allowed {
        state.metrics.denied("rate_limit");
        state.rate_limit_exceeded(record, &decision).await;
        return Err(ApiError::rate_limit(
            decision.retry_after_secs().unwrap_or(1),
        ));
    }

    // Held until the handler is done; released on drop, also on timeout or panic.
    let _slot = state.limits.acquire(record.id).await?.map_err(|d| {
        state.metrics.denied("concurrency_limit");
        ApiError::concurrency_limit(d.retry_after_secs().unwrap_or(1))
    })?;
    if let Some(d) = state.limits.check_quotas(record.id).await? {
        state.metrics.denied("quota_exceeded");
        return Err(ApiError::quota_exceeded(d.retry_after_secs().unwrap_or(1)));
    }

    let body = read_body(body, state.config.max_body_bytes).await?;

    let Some(idem_key) = idempotency_key(&parts)? else {
        return routes::dispatch(
            state,
            Request {
                parts,
                body,
                auth,
                meta: Arc::clone(meta),
            },
        )
        .await;
    };
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let fp = idempotency::fingerprint(parts.method.as_str(), path, &body);
    let ticket = match state.idempotency.begin(record.id, idem_key, fp).await? {
        Begin::Run(ticket) => ticket,
        Begin::Replay(stored) => {
            let mut r = h::raw_json(stored.status, Bytes::from(stored.body.to_vec()));
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(r);
        }
    };
    // Error answers are part of the outcome too, and are replayed like successes.
    let response = routes::dispatch(
        state,
        Request {
            parts,
            body,
            auth,
            meta: Arc::clone(meta),
        },
    )
    .await
    .unwrap_or_else(|e| h::error(&e, &meta.request_id));
    let (head, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    ticket.complete(head.status, &bytes).await;
    Ok(http::Response::from_parts(
        head,
        http_body_util::Full::new(bytes),
    ))
}

/// The `Idempotency-Key` of a POST, validated.
fn idempotency_key(parts: &Parts) -> Result<Option<String>, ApiError> {
    if parts.method != Method::POST {
        return Ok(None);
    }
    match parts.headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::invalid_request("Idempotency-Key must be ASCII"))?;
            idempotency::validate_key(v).map(Some)
        }
    }
}

/// Finds the key in `Authorization: Bearer` or `X-API-Key` and verifies it.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Auth, ApiError> {
    let result = verify_caller(state, headers).await;
    let outcome = match &result {
        Ok(_) => "valid",
        Err(e) => match e.code {
            "missing_key" => "missing",
            "key_revoked" => "revoked",
            "key_expired" => "expired",
            "key_suspended" => "suspended",
            "ambiguous_credentials" => "ambiguous",
            _ => "invalid",
        },
    };
    state.metrics.auth(outcome);
    result
}

async fn verify_caller(state: &AppState, headers: &HeaderMap) -> Result<Auth, ApiError> {
    let token = presented_key(headers)?;
    let verification = state
        .keys
        .verifier()
        .verify(token, Utc::now())
        .await
        .map_err(ApiError::from)?;
    let key = match verification {
        Verification::Valid(k) => k,
        Verification::Invalid(_) => return Err(ApiError::invalid_key()),
        Verification::Revoked(_) => return Err(ApiError::key_revoked()),
        Verification::Expired(_) => return Err(ApiError::key_expired()),
        Verification::Suspended(_) => return Err(ApiError::key_suspended()),
    };
    let role = state.role_of(key.record().created_by).await?;
    Ok(Auth { key, role })
}

/// The key the client sent; both headers with different keys is ambiguous.
fn presented_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    align_keys::http::presented_key(headers).map_err(|p| match p {
        CredentialProblem::Missing => ApiError::missing_key(),
        CredentialProblem::Malformed => ApiError::invalid_key(),
        CredentialProblem::Ambiguous => ApiError::ambiguous_credentials(),
    })
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

/// Reads a whole body, refusing one over `limit` bytes with `413`.
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(_) => Err(ApiError::invalid_request(
            "the request body could not be read",
        )),
    }
}

/// `X-Request-Id`.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-RateLimit-Limit`.
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `Align-Environment`.
const ALIGN_ENVIRONMENT: HeaderName = HeaderName::from_static("align-environment");

/// Headers every response gets: request id, rate-limit state, sandbox marker. (Names are
/// constants: a name given as a string is parsed again on every insert.)
fn finish(response: &mut Response, request_id: &str, trace: &Trace) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Some(d) = trace.decision {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(d.limit));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
        // Per-minute limits: never more than 60 (DESIGN §4).
        let reset = d.reset_secs_within(Duration::from_secs(60));
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
    }
    if trace.caller.as_ref().map(|k| k.environment) == Some(Environment::Sandbox) {
        headers.insert(ALIGN_ENVIRONMENT, HeaderValue::from_static("sandbox"));
    }
}
