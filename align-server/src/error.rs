//! The crate's error enum, and [`ApiError`]: the one place where HTTP status codes and error
//! codes are decided (DESIGN §4 table).

use std::path::PathBuf;

use http::StatusCode;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for our settings.
    #[error("invalid configuration file {path}: {message}")]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting has a value we cannot use.
    #[error("invalid setting {key}: {reason}")]
    Setting {
        /// The setting (config key or environment variable).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory or the bootstrap key file could not be written.
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secrets key file (`secrets.key_file`) cannot open the webhook signing secrets in
    /// the database, or cannot be read or created.
    #[error("cannot use the secrets key file {path}: {source}")]
    SecretsKey {
        /// The key file.
        path: PathBuf,
        /// Why (it names the key the database needs, never key material).
        source: align_webhooks::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot use the TLS certificate or key {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key store failed.
    #[error(transparent)]
    Keys(#[from] align_keys::Error),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] align_audit::Error),
    /// The webhook store or dispatcher failed.
    #[error(transparent)]
    Webhooks(#[from] align_webhooks::Error),
}

/// An error answer: status, stable code and a message that never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl From<align_core::Error> for Error {
    fn from(e: align_core::Error) -> Self {
        Self::Keys(e.into())
    }
}

impl From<align_keys::Error> for ApiError {
    fn from(e: align_keys::Error) -> Self {
        use align_keys::{Denial, Error as K};
        match e {
            K::MalformedToken(_) => Self::invalid_key(),
            K::Forbidden(Denial::OutsideScope) | K::NotFound(_) => Self::not_found(),
            K::Forbidden(d) => Self::forbidden(d.to_string()),
            K::KeyNotActive => Self::key_not_active(),
            K::InvalidInput { field, reason } => Self::invalid_request(format!("{field} {reason}")),
            K::InvalidCursor => Self::invalid_request("cursor is not valid"),
            K::AlreadyExists(kind) => Self::invalid_request(format!("{kind} already exists")),
            other if other.is_transient() => {
                tracing::warn!(error = %other, "key store busy");
                Self::unavailable()
            }
            K::Sqlite(ref e) if sqlite_unwritable(e) => {
                tracing::error!(error = %e, "key store cannot be written");
                Self::storage_unwritable()
            }
            other => {
                tracing::error!(error = %other, "key store failure");
                Self::internal()
            }
        }
    }
}

impl From<align_webhooks::Error> for ApiError {
    fn from(e: align_webhooks::Error) -> Self {
        use align_webhooks::Error as W;
        match e {
            W::NotFound(_) => Self::not_found(),
            W::UrlRefused(defect) => Self::invalid_request(format!("url refused: {defect}")),
            W::Database(ref d)
                if matches!(
                    d.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                tracing::warn!(error = %e, "webhook store busy");
                Self::unavailable()
            }
            W::Database(ref d) if sqlite_unwritable(d) => {
                tracing::error!(error = %e, "webhook store cannot be written");
                Self::storage_unwritable()
            }
            W::StoreWorker | W::PostgresPool(_) => Self::unavailable(),
            W::Postgres(ref p) if align_keys::postgres::is_transient(p) => {
                tracing::warn!(error = %e, "webhook store unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "webhook store failure");
                Self::internal()
            }
        }
    }
}

/// Whether a SQLite error means the file system refuses writes (full, read-only, failing)
/// rather than a bug: such errors are answered `503`, not `500`.
fn sqlite_unwritable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(C::DiskFull | C::ReadOnly | C::SystemIoFailure | C::CannotOpen)
    )
}
