//! The client's one error type.

use std::fmt;
use std::time::Duration;

use crate::types::Environment;

/// Everything a call can fail with. No variant carries the API key or a request header.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error (`{"error":{"code","message","requestId"}}`).
    #[error(transparent)]
    Api(#[from] Box<ApiError>),
    /// The request could not be sent, or no answer came (connection refused, reset, TLS,
    /// the per-attempt timeout).
    #[error("the request to the API failed: {source}")]
    Transport {
        /// What failed underneath.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The answer started but its body was cut short.
    #[error("the response was cut short: {source}")]
    Body {
        /// What failed underneath.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A successful answer whose body is not the documented shape.
    #[error("cannot decode the {status} answer: {source}")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A request body could not be encoded as JSON.
    #[error("cannot encode the request body: {0}")]
    Encode(#[source] serde_json::Error),
    /// The client was set up wrongly (a base URL that is not a URL, a key that cannot be a
    /// header value, a TLS set-up that failed).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The key's environment is not the one the client was built to require
    /// ([`crate::ClientBuilder::require_environment`]); nothing else was sent.
    #[error("the key is a {actual} key but this client requires a {required} key")]
    EnvironmentMismatch {
        /// What the builder asked for.
        required: Environment,
        /// What `GET /api/v1/me` said.
        actual: Environment,
    },
}

impl Error {
    /// The API error, when the server answered with one.
    #[must_use]
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// The error code of an API error.
    #[must_use]
    pub fn code(&self) -> Option<&ErrorCode> {
        self.api().map(|e| &e.code)
    }

    pub(crate) fn transport(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transport {
            source: Box::new(e),
        }
    }
}

/// An error answer of the API (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The error code of the body (`ErrorCode::Other("")` when the body had none).
    pub code: ErrorCode,
    /// The server's message.
    pub message: String,
    /// The request id (the body's `requestId`, else the `X-Request-Id` header).
    pub request_id: Option<String>,
    /// `Retry-After`, when the answer had one in seconds (429, 503).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        /// The error codes of DESIGN §4 (`error.code`).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
            /// A code this version does not know (or none: an empty string).
            Other(String),
        }

        impl ErrorCode {
            /// The code as the API spells it.
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$name => $text,)*
                    Self::Other(s) => s,
                }
            }

            /// The code for its API spelling.
            #[must_use]
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$name,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        /// Every code the API documents, in the order of the spec's `Error` schema.
        pub const ERROR_CODES: &[&str] = &[$($text,)*];
    };
}

codes! {
    /// 400: bad JSON, a bad field.
    InvalidRequest = "invalid_request",
    /// 400: `Authorization` and `X-API-Key` differ, or one is repeated.
    AmbiguousCredentials = "ambiguous_credentials",
    /// 401: no key.
    MissingKey = "missing_key",
    /// 401: not a key of this server.
    InvalidKey = "invalid_key",
    /// 401: the key is revoked.
    KeyRevoked = "key_revoked",
    /// 401: the key has expired.
    KeyExpired = "key_expired",
    /// 401: the key is suspended.
    KeySuspended = "key_suspended",
    /// 401: a signed intake whose signature does not verify.
    InvalidSignature = "invalid_signature",
    /// 403: outside the key's scope, permissions, role, environment or networks.
    Forbidden = "forbidden",
    /// 404: no such object, or not visible to this key.
    NotFound = "not_found",
    /// 409: the change conflicts with the state.
    Conflict = "conflict",
    /// 409: the same `Idempotency-Key` is still in flight.
    IdempotencyConflict = "idempotency_conflict",
    /// 409: the endpoint is disabled.
    EndpointDisabled = "endpoint_disabled",
    /// 409: the key is revoked or expired, which is final.
    KeyNotActive = "key_not_active",
    /// 413: the body is over the limit.
    PayloadTooLarge = "payload_too_large",
    /// 415: the body is not JSON.
    UnsupportedMediaType = "unsupported_media_type",
    /// 422: the `Idempotency-Key` was used for another request.
    IdempotencyKeyReused = "idempotency_key_reused",
    /// 405: the method is not allowed here.
    MethodNotAllowed = "method_not_allowed",
    /// 429: the key's rate limit.
    RateLimit = "rate_limit",
    /// 429: too many requests at once.
    ConcurrencyLimit = "concurrency_limit",
    /// 429: the quota is spent.
    QuotaExceeded = "quota_exceeded",
    /// 503: overloaded or a store unavailable.
    Unavailable = "unavailable",
    /// 504: the handler ran past the request timeout.
    Timeout = "timeout",
    /// 500: a server bug.
    InternalError = "internal_error",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
