//! API keys done properly: minted once, stored only as hashes, scoped, revocable, rotatable.
//!
//! - [`token`]: the `ako_`/`akt_` token format, minting and a parser that rejects malformed
//!   keys before any lookup;
//! - [`keyspace_token`]: the same format under a key space's own tag (`acme_…`), for the keys
//!   an organisation issues to its customers;
//! - [`permission_query`]: `invoices:read AND (invoices:write OR admin)`, the permission
//!   queries a verification asks about;
//! - [`Secret`], [`KeyHasher`]: secrets that never print, hashes that are all the store keeps;
//! - [`Redactor`]: masks keys, webhook secrets and credential headers in logs and records;
//! - [`domain`], [`policy`]: organisations, projects, users, roles, scopes, permissions, and
//!   the least-privilege rules for minting and acting;
//! - [`vocabulary`]: the permission names a deployment declares (the server's, or an
//!   embedder's own such as `invoices:read`), with `resource:*` wildcards;
//! - [`KeyStore`] with [`MemoryKeyStore`], (feature `sqlite`) `SqliteKeyStore` and (feature
//!   `postgres`) `PgKeyStore`, split by who uses it: [`KeyLookup`] (the verifier),
//!   [`KeyManagement`] (minting and changing keys), [`Directory`] (organisations, users,
//!   sessions);
//! - [`PasswordHash`], [`UserSession`]: users' PBKDF2 password hashes and sign-in sessions
//!   (stored under the [`SessionHash`] of their token), for a console's sign-in;
//! - [`KeyVerifier`] and [`KeyManager`]: verification with an in-process cache that revocation
//!   reaches at once, and the operations that change keys;
//! - [`leak`]: what an organisation wants done with a leaked key, and the [`LeakStore`] of
//!   leak reports that every key store also is;
//! - [`files`]: files created `0600` and directories `0700` from the start, the one way every
//!   Align crate writes its data directory, backups and key files.
//!
//! See the crate README for an embedding example.

pub mod domain;
mod error;
mod hash;
#[cfg(feature = "http")]
pub mod http;
pub mod judge;
pub mod keyspace;
pub mod keyspace_token;
#[cfg(feature = "tower")]
pub mod layer;
pub mod leak;
mod manager;
mod password;
pub mod permission_query;
pub mod policy;
/// Files created `0600` and directories `0700` (from `align-core`).
pub use align_core::files;
/// The PostgreSQL conventions every Align crate follows (from `align-core`).
#[cfg(feature = "postgres")]
pub use align_core::postgres;
/// The SQLite conventions every Align crate follows (from `align-core`).
#[cfg(feature = "sqlite")]
pub use align_core::sqlite;
pub mod store;
mod tasks;
pub mod token;
mod verifier;
pub mod vocabulary;

pub use align_core::{Environment, MASK, Redactor, Secret, is_sensitive_name};
pub use domain::{
    Attachment, IpNet, KeyEvent, KeyEventKind, KeyId, KeyRecord, KeyStatus, MAX_META_BYTES,
    MAX_OWNER_ID_LEN, Meta, Organization, OrganizationId, Permission, PermissionSet, Project,
    ProjectId, Role, Scope, User, UserId, parse_network,
};
pub use error::{Error, ObjectKind, Result};
pub use hash::{HmacSha256Hasher, KeyHash, KeyHasher, Sha256Hasher};
pub use judge::{Grant, Producer, Unset, judge};
pub use keyspace::{
    KeyspaceId, KeyspaceKey, KeyspaceStore, Keyspaces, NamedLimit, NamedLimiter, VerifyCode,
};
pub use keyspace_token::{
    KeyspaceTag, MintedKeyspaceToken, ParsedKeyspaceToken, generate_keyspace_token,
    parse_keyspace_token,
};
pub use leak::{
    LeakAction, LeakPolicy, LeakReport, LeakReportId, LeakStore, LeakedKeyAction, Reporter,
};
pub use manager::{
    DEFAULT_RATE_LIMIT_PER_MINUTE, KeyChanges, KeyManager, MAX_ALLOWED_CIDRS, MAX_NAME_LEN,
    MintedKey, NewKey, Rotation,
};
pub use password::{
    DEFAULT_PBKDF2_ITERATIONS, MAX_PASSWORD_LEN, MAX_PBKDF2_ITERATIONS, MIN_PASSWORD_LEN,
    MIN_PBKDF2_ITERATIONS, PasswordHash, SessionHash, UserSession, validate_password,
};
pub use permission_query::{PermissionAtom, PermissionQuery};
pub use policy::{Caller, Denial, KeySpec, Target, UserCaller};
pub use store::{
    Directory, KeyFilter, KeyLookup, KeyManagement, KeyStore, MemoryKeyStore, Page, PageRequest,
};
#[cfg(feature = "postgres")]
pub use store::{PgEventHook, PgKeyStore};
#[cfg(feature = "sqlite")]
pub use store::{SqliteEventHook, SqliteKeyStore};
pub use tasks::KeyTasks;
pub use token::{MintedToken, ParsedToken, TokenDefect};
pub use verifier::{
    Cached, ChangeListener, InvalidKey, KeyVerifier, Verification, VerifiedKey, VerifierConfig,
};
pub use vocabulary::{UnknownPermission, Vocabulary, VocabularyError};

// Compiles and runs the README's example as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
