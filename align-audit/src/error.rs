//! The crate's one error type.

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `align-audit`.
///
/// No variant carries record contents, so an error can be logged without leaking what a record
/// holds. A broken hash chain is not an error: [`verify`](crate::AuditSink::verify) reports it
/// in its [`VerifyReport`](crate::VerifyReport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given to a builder or query is out of range; the message names the field.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field that was rejected.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A paging cursor was not produced by this crate.
    #[error("invalid paging cursor")]
    InvalidCursor,
    /// The operating system's random number generator failed (salts cannot be drawn).
    #[error("the system random number generator failed")]
    Random,
    /// Pruning, or verifying a pruned stream, needs the operator's checkpoint key.
    #[error("no checkpoint key configured: pruning and verifying pruned streams need one")]
    CheckpointKeyMissing,
    /// The checkpoint key is too short to be a secret.
    #[error("checkpoint key must be at least 32 bytes")]
    WeakCheckpointKey,
    /// The anchor signing key is not an Ed25519 key in PKCS#8 (v2) form, as
    /// [`AnchorKey::generate_pkcs8`](crate::AnchorKey::generate_pkcs8) makes them.
    #[error("the audit anchor key is not an Ed25519 PKCS#8 document")]
    InvalidAnchorKey,
    /// A line of an anchor file is neither an anchor nor an event whose `data` is one.
    #[error("line {line} of the anchor file is not an anchor")]
    InvalidAnchorLine {
        /// The line number, from 1.
        line: u64,
    },
    /// Stored data could not be decoded; the message says which part.
    #[error("corrupt stored {0}")]
    Corrupt(&'static str),
    /// Reading or writing a log file failed.
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The SQLite sink failed.
    #[cfg(feature = "sqlite")]
    #[error("SQLite audit sink: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL sink failed (the message never includes the connection URL).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL audit sink: {}", align_core::postgres::describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had (the server is unreachable or every
    /// connection stayed busy past the wait).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL connection pool: {0}")]
    PostgresPool(String),
    /// Records could not be committed; they are lost. `records` says how many, `cause` why.
    #[error("{records} audit record(s) could not be written: {cause}")]
    WriteFailed {
        /// How many records were lost.
        records: u64,
        /// The underlying failure.
        cause: String,
    },
    /// The sink has been closed (or its writer stopped); nothing more can be written.
    #[error("audit sink is closed")]
    Closed,
    /// A background task could not complete (runtime shutting down or task panicked).
    #[error("audit worker failed")]
    Worker,
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
