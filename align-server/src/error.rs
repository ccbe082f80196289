//! The crate's error enum; error answers are `align-http`'s [`ApiError`] (the one place where
//! HTTP status codes and error codes are decided, DESIGN §4 table).

use std::path::PathBuf;

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
    /// The shared `Idempotency-Key` reply store could not be opened.
    #[error(transparent)]
    Http(#[from] align_http::Error),
}

pub use align_http::ApiError;
impl From<align_core::Error> for Error {
    fn from(e: align_core::Error) -> Self {
        Self::Keys(e.into())
    }
}
