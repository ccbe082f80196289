//! The crate's one error type.

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in `align-core`'s helpers. No variant carries a password or secret: a
/// PostgreSQL URL is never part of the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PostgreSQL refused or failed (the URL did not parse, the server is unreachable, a
    /// statement failed).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {}", crate::postgres::describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL connection pool: {0}")]
    PostgresPool(String),
    /// A helper thread could not be started.
    #[error("cannot start a helper thread")]
    Worker,
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}
