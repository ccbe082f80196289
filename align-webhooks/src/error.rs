//! The crate's one error type.

use std::fmt;

/// What kind of stored object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A webhook endpoint.
    Endpoint,
    /// A message (one event, fanned out to endpoints).
    Message,
    /// A delivery of one message to one endpoint.
    Delivery,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Endpoint => "endpoint",
            Self::Message => "message",
            Self::Delivery => "delivery",
        })
    }
}

/// Everything that can go wrong in this crate. No variant ever carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `whsec_` secret did not parse: it must be `whsec_` followed by standard base64 of
    /// 24 to 64 bytes.
    #[error("malformed signing secret: expected `whsec_` + base64 of 24 to 64 bytes")]
    MalformedSecret,
    /// A `whsk_` or `whpk_` key did not parse.
    #[error(
        "malformed ed25519 key: expected `whsk_` + base64 of 32 or 64 bytes, or `whpk_` + base64 of 32 bytes"
    )]
    MalformedKey,
    /// The system random number generator failed; retry, and check the host if it persists.
    #[error("the system random number generator failed")]
    Random,
    /// A Standard Webhooks header is absent from the request.
    #[error("missing `{0}` header")]
    MissingHeader(&'static str),
    /// A Standard Webhooks header is present but not well formed.
    #[error("invalid `{0}` header")]
    InvalidHeader(&'static str),
    /// The `webhook-timestamp` is older than the tolerance allows (a possible replay).
    #[error("webhook timestamp is too old")]
    TimestampTooOld,
    /// The `webhook-timestamp` is further in the future than the tolerance allows.
    #[error("webhook timestamp is too far in the future")]
    TimestampTooNew,
    /// No signature in `webhook-signature` matched any key the verifier holds.
    #[error("no matching webhook signature")]
    InvalidSignature,
    /// An endpoint URL was refused by the [`UrlPolicy`](crate::UrlPolicy).
    #[error("endpoint URL refused: {0}")]
    UrlRefused(#[from] crate::policy::UrlDefect),
    /// The stored object does not exist.
    #[error("{0} not found")]
    NotFound(ObjectKind),
    /// A value could not be encoded or decoded as JSON.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// The SQLite database failed.
    #[cfg(feature = "sqlite")]
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The PostgreSQL database failed (the message never includes the connection URL).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL webhook store: {}", align_core::postgres::describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had (the server is unreachable or every
    /// connection stayed busy past the wait).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL connection pool: {0}")]
    PostgresPool(String),
    /// A setting (environment variable) has a value this crate cannot use.
    #[error("invalid value for {0}")]
    InvalidSetting(&'static str),
    /// Stored data is not in the shape this version of the crate expects.
    #[error("corrupt stored data: {0}")]
    Corrupt(&'static str),
    /// The transaction holding a batch of attempt records failed to commit; none of them
    /// was recorded, and the deliveries will be attempted again when their lease ends.
    #[error("recording attempts failed: {0}")]
    BatchCommit(String),
    /// A background store worker stopped (it panicked or the runtime is shutting down).
    #[error("the store worker stopped unexpectedly")]
    StoreWorker,
    /// A sealing key is not 32 bytes.
    #[error("malformed sealing key: expected 32 bytes")]
    MalformedSealingKey,
    /// The secrets key file could not be read, written or parsed.
    #[error("secrets key file {path}: {reason}")]
    SecretsKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong (never any key material).
        reason: String,
    },
    /// A stored webhook secret is sealed under a key the [`Sealer`](crate::Sealer) does not
    /// hold: the key file is missing that key (a lost or replaced file, or one from another
    /// deployment). Restore the key file that holds it; see `docs/security.md`.
    #[error(
        "webhook secrets in the database are sealed with secrets key {key_id}, which the secrets key file does not hold: restore the key file that holds it (docs/security.md)"
    )]
    UnknownSealingKey {
        /// The id of the key the stored values need.
        key_id: String,
    },
    /// A sealed webhook secret did not open: it was altered, moved from another endpoint's
    /// row, or sealed under another key with the same id.
    #[error("a sealed webhook secret did not open: it was altered, or moved from another endpoint")]
    Unseal,
    /// The store was opened without a [`Sealer`](crate::Sealer) (a deduplicator's store), so
    /// it cannot read or write endpoint secrets.
    #[error(
        "this webhook store was opened without a secrets key; it cannot read or write endpoints"
    )]
    NoSealer,
    /// The HTTP client could not be built (TLS set-up).
    #[error("HTTP client set-up failed: {0}")]
    Client(String),
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::Postgres(e),
            other => Self::PostgresPool(other.to_string()),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a webhook-store error is answered over HTTP (feature `http`): a missing object `404`, a
/// refused URL `400`, a busy or unreachable store `503`, a store that cannot be written `503`
/// with `Retry-After: 5`, anything else `500`, logged.
#[cfg(feature = "http")]
impl From<Error> for align_http::ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Self::not_found(),
            Error::UrlRefused(defect) => Self::invalid_request(format!("url refused: {defect}")),
            #[cfg(feature = "sqlite")]
            Error::Database(ref d)
                if matches!(
                    d.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                tracing::warn!(error = %e, "webhook store busy");
                Self::unavailable()
            }
            #[cfg(feature = "sqlite")]
            Error::Database(ref d) if align_core::sqlite::is_unwritable(d) => {
                tracing::error!(error = %e, "webhook store cannot be written");
                Self::storage_unwritable()
            }
            Error::StoreWorker => Self::unavailable(),
            #[cfg(feature = "postgres")]
            Error::PostgresPool(_) => Self::unavailable(),
            #[cfg(feature = "postgres")]
            Error::Postgres(ref p) if align_core::postgres::is_transient(p) => {
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
