//! The crate's one error type.

use crate::policy::Denial;
use crate::token::TokenDefect;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `align-keys`. No variant ever carries a token or secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The presented string is not a well-formed API key; nothing was looked up.
    #[error("malformed API key: {0}")]
    MalformedToken(TokenDefect),
    /// The policy refuses the operation (scope, permission, role or environment).
    #[error("not allowed: {0}")]
    Forbidden(Denial),
    /// The named object does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(ObjectKind),
    /// The key is revoked or expired (a rotated-out key included): final, nothing makes it
    /// valid again, so it cannot be resumed, rotated or changed.
    #[error("the key is revoked or expired; it cannot be changed")]
    KeyNotActive,
    /// An object with the same identity already exists.
    #[error("{0} already exists")]
    AlreadyExists(ObjectKind),
    /// The generated key prefix is already taken; minting retries with a fresh token.
    #[error("key prefix already in use")]
    PrefixTaken,
    /// A field value is out of range or badly shaped; the message names the field.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field that was rejected.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A permission query is empty or only spaces
    /// ([`PermissionQuery::parse`](crate::PermissionQuery::parse)).
    #[error("the permission query is empty")]
    PermissionQueryEmpty,
    /// A permission query is longer than its limit (as sent, or written canonically).
    #[error("the permission query is longer than {limit} bytes")]
    PermissionQueryTooLong {
        /// The limit, [`permission_query::MAX_QUERY_LEN`](crate::permission_query::MAX_QUERY_LEN).
        limit: usize,
    },
    /// A permission query nests parentheses deeper than its limit.
    #[error("the permission query nests parentheses deeper than {limit} (at byte {at})")]
    PermissionQueryTooDeep {
        /// The byte offset (from 0) of the `(` one level too deep.
        at: usize,
        /// The limit, [`permission_query::MAX_DEPTH`](crate::permission_query::MAX_DEPTH).
        limit: usize,
    },
    /// A permission query names more permissions than its limit.
    #[error("the permission query names more than {limit} permissions (at byte {at})")]
    PermissionQueryTooManyAtoms {
        /// The byte offset (from 0) of the first permission over the limit.
        at: usize,
        /// The limit, [`permission_query::MAX_ATOMS`](crate::permission_query::MAX_ATOMS).
        limit: usize,
    },
    /// A permission query has a `(` never closed or a `)` never opened.
    #[error("the permission query has an unbalanced parenthesis at byte {at}")]
    PermissionQueryUnbalanced {
        /// The byte offset (from 0) of the parenthesis without a partner.
        at: usize,
    },
    /// A permission query has something other than what its grammar allows at a place: an
    /// operator with nothing on one side, two permissions with no operator between them.
    #[error("the permission query expects {expected} at byte {at}")]
    PermissionQuerySyntax {
        /// The byte offset (from 0) where it went wrong (the query's length at its end).
        at: usize,
        /// What would have been valid there.
        expected: &'static str,
    },
    /// A permission query names something that is not a permission name.
    #[error("the permission query has a bad permission name at byte {at}: {reason}")]
    PermissionQueryBadAtom {
        /// The byte offset (from 0) of the name.
        at: usize,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A paging cursor was not produced by this store.
    #[error("invalid paging cursor")]
    InvalidCursor,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Stored data could not be decoded (a corrupt or foreign row).
    #[error("corrupt stored {0}")]
    Corrupt(&'static str),
    /// The SQLite store failed.
    #[cfg(feature = "sqlite")]
    #[error("SQLite key store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store failed (the message never includes the connection URL).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL key store: {}", crate::postgres::describe(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had (the server is unreachable or every
    /// connection stayed busy past the wait).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL connection pool: {0}")]
    PostgresPool(String),
    /// The store's event hook failed to record a change's event; the change was rolled back.
    #[error("recording the key's event failed: {0}")]
    EventHook(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The named limits' counter store (Redis, or the embedder's) failed; nothing was spent.
    #[error("named limits unavailable: {0}")]
    Limiter(String),
    /// A blocking store task could not complete (runtime shutting down or task panicked).
    #[error("key store worker failed")]
    StoreWorker,
}

impl Error {
    /// Whether retrying later may succeed: the store was busy, locked or its worker gone,
    /// as opposed to a request that can never succeed. Servers answer these with `503`.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::StoreWorker | Self::Limiter(_) => true,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            #[cfg(feature = "postgres")]
            Self::Postgres(e) => crate::postgres::is_transient(e),
            #[cfg(feature = "postgres")]
            Self::PostgresPool(_) => true,
            _ => false,
        }
    }
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

impl From<align_core::Error> for Error {
    fn from(e: align_core::Error) -> Self {
        match e {
            #[cfg(feature = "postgres")]
            align_core::Error::Postgres(e) => Self::Postgres(e),
            #[cfg(feature = "postgres")]
            align_core::Error::PostgresPool(e) => Self::PostgresPool(e),
            _ => Self::StoreWorker,
        }
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

/// Kinds of objects the store holds, for [`Error::NotFound`] and [`Error::AlreadyExists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An organisation.
    Organization,
    /// A project.
    Project,
    /// A user.
    User,
    /// An API key.
    ApiKey,
    /// A user's sign-in session.
    Session,
    /// A key space.
    Keyspace,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Organization => "organization",
            Self::Project => "project",
            Self::User => "user",
            Self::ApiKey => "API key",
            Self::Session => "session",
            Self::Keyspace => "key space",
        })
    }
}
