//! [`ApiError`]: the one place where an error answer's status, stable code, message and
//! headers are decided, and [`ApiError::to_response`], the one place that renders it as the
//! envelope `{"error":{"code","message","requestId"}}`. Every layer of the pipeline and every
//! handler of the reference server answers through it, so an embedder stacking the same layers
//! answers byte for byte alike.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::Serialize;

/// An error answer: status, stable code and a message that never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `key_revoked`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// The `Allow` header of a `405` (the methods the path does answer).
    pub allow: Option<String>,
}

/// Whether JSON writes `s` between quotes as it is: no quote, no backslash, no control
/// character (serde_json escapes those and nothing else).
fn needs_no_escape(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Why a response is a refusal, in its extensions (put there by [`ApiError::to_response`]):
/// the status and the stable code, for the layers outside the one that refused. Copied, not
/// the whole error: its message stays in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The status answered.
    pub status: StatusCode,
    /// The stable code, e.g. `rate_limit`.
    pub code: &'static str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// `400 invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// `400 ambiguous_credentials`.
    pub fn ambiguous_credentials() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_credentials",
            "the Authorization and X-API-Key headers carry different keys",
        )
    }
    /// `401 missing_key`.
    pub fn missing_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        )
    }
    /// `401 invalid_key`.
    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "the API key is not valid",
        )
    }
    /// `401 key_revoked`.
    pub fn key_revoked() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "key_revoked",
            "the API key has been revoked",
        )
    }
    /// `401 key_expired`.
    pub fn key_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "key_expired",
            "the API key has expired",
        )
    }
    /// `401 key_suspended`.
    pub fn key_suspended() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "key_suspended",
            "the API key is suspended",
        )
    }
    /// `401 invalid_signature`: a signed intake (secret-scanning reports) whose signature is
    /// missing or does not verify against any configured public key. Nothing is changed.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
    }
    /// `403 forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// `404 not_found`.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such object or route",
        )
    }
    /// `405 method_not_allowed`: the path exists, the method does not (`Allow` lists the
    /// methods it answers).
    pub fn method_not_allowed(allow: String) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not answer this method (see the Allow header)",
            )
        }
    }
    /// `409 idempotency_conflict`.
    pub fn idempotency_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "a request with this Idempotency-Key is still being processed",
        )
    }
    /// `422 idempotency_key_reused`.
    pub fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )
    }
    /// `413 payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }
    /// `415 unsupported_media_type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as application/json",
        )
    }
    /// `429 rate_limit`.
    pub fn rate_limit(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit",
                "rate limit exceeded for this key",
            )
        }
    }
    /// `429 concurrency_limit`.
    pub fn concurrency_limit(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "concurrency_limit",
                "too many requests in flight for this key",
            )
        }
    }
    /// `429 quota_exceeded`.
    pub fn quota_exceeded(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                "this key has used its quota for the period",
            )
        }
    }
    /// `429 rate_limit` for a console sign-in refused after too many failures.
    pub fn sign_in_throttled(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit",
                "Too many sign-in attempts. Try again later.",
            )
        }
    }
    /// `401 invalid_credentials`: a console sign-in with a wrong e-mail or password (which
    /// of the two is never said).
    pub fn wrong_password() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Wrong email or password",
        )
    }
    /// `504 timeout`.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request took too long",
        )
    }
    /// `500 internal_error`: never for bad input.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side",
        )
    }
    /// `503 unavailable`.
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable",
            )
        }
    }

    /// `409 endpoint_disabled`: a test event for a disabled webhook endpoint (it would never
    /// be sent). Beyond DESIGN's table: the request is valid, the endpoint's state is not.
    pub fn endpoint_disabled() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "endpoint_disabled",
            "the endpoint is disabled; enable it before sending a test event",
        )
    }

    /// `409 conflict`: the organisation already has `cap` webhook endpoints
    /// (`webhooks.max_endpoints_per_organization`).
    pub fn endpoint_limit(cap: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "this organisation already has {cap} webhook endpoints, the most allowed; \
                 delete one before creating another"
            ),
        )
    }

    /// `409 conflict`: the object's state forbids the change (a project with active keys or
    /// enabled endpoints, the organisation's last admin); `message` says what to do first.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// `409 key_not_active`: resuming, rotating or changing a key that is revoked or expired
    /// (a rotated-out key included). Those are final: nothing makes the key valid again.
    pub fn key_not_active() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "key_not_active",
            "the key is revoked or expired; revoked and expired keys are final and cannot be resumed, rotated or changed",
        )
    }

    /// `503 unavailable` when the data store cannot be written (disk full, read-only file
    /// system, I/O error): the operator's problem, not the caller's, and it passes.
    pub fn storage_unwritable() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the data store cannot be written right now (disk full or read-only); try again later",
            )
        }
    }

    /// Whether the answer needs `WWW-Authenticate: Bearer` (every `401` but a signed
    /// intake's, which no API key would fix).
    pub fn is_unauthorized(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED && self.code != "invalid_signature"
    }
}

impl ApiError {
    /// The envelope `{"error":{"code","message","requestId"}}` with this error's status and
    /// headers (`Retry-After`, `Allow`, `WWW-Authenticate: Bearer`), and its [`Rejection`] in
    /// the response's extensions, so outer layers (request log, metrics, audit) can read the
    /// typed reason without parsing the body.
    pub fn to_response<B: From<Bytes>>(&self, request_id: &str) -> Response<B> {
        /// `{"error": …}`, serialised directly (no intermediate `Value`).
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: ErrorBody<'a>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorBody<'a> {
            code: &'a str,
            message: &'a str,
            request_id: &'a str,
        }
        let body = Envelope {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
                request_id,
            },
        };
        // Sized for the envelope at once (the 401 and 429 floods go through here).
        let mut bytes =
            Vec::with_capacity(64 + self.code.len() + self.message.len() + request_id.len());
        if [self.code, self.message.as_str(), request_id]
            .into_iter()
            .all(needs_no_escape)
        {
            // What serde_json writes for these strings, without its escaping pass (about
            // 1 400 instructions of every rejection, counted: docs/performance.md).
            for part in [
                r#"{"error":{"code":""#,
                self.code,
                r#"","message":""#,
                &self.message,
                r#"","requestId":""#,
                request_id,
                r#""}}"#,
            ] {
                bytes.extend_from_slice(part.as_bytes());
            }
        } else if serde_json::to_writer(&mut bytes, &body).is_err() {
            bytes.clear();
        }
        let mut r = Response::new(B::from(Bytes::from(bytes)));
        *r.status_mut() = self.status;
        let headers = r.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(ALLOW, allow);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.is_unauthorized() {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r.extensions_mut().insert(Rejection {
            status: self.status,
            code: self.code,
        });
        r
    }
}
