//! The async store traits and their back-ends: [`MemoryKeyStore`], with the `sqlite` feature
//! `SqliteKeyStore`, and with the `postgres` feature `PgKeyStore`.
//!
//! The store is split by who uses it:
//! - [`KeyLookup`]: what a [`KeyVerifier`](crate::KeyVerifier) needs (a key by hash or id, the
//!   change feed, and the batched last-used write-back). A service that only verifies keys kept
//!   elsewhere implements just this.
//! - [`KeyManagement`]: minting, listing and changing keys (with their events).
//! - [`Directory`]: organisations, projects, users, passwords and sign-in sessions (a console).
//!
//! [`KeyStore`] is all three, implemented for every type that implements each; every back-end
//! here does, as does the [`Instrumented`] wrapper (for each trait its inner store has).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    KeyEvent, KeyId, KeyRecord, Organization, OrganizationId, Project, ProjectId, Role, User,
    UserId,
};
use crate::error::{Error, Result};
use crate::hash::KeyHash;
use crate::password::{PasswordHash, SessionHash, UserSession};
use crate::token::Environment;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
mod instrumented;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod keyspace_codec;
mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use instrumented::{Instrumented, StoreCounts};
pub use memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgEventHook, PgKeyStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteEventHook, SqliteKeyStore};

/// Largest page a list call returns.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Which page of a list to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (clamped to 1..=[`MAX_PAGE_SIZE`]).
    pub limit: u32,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: 50,
            cursor: None,
        }
    }
}

impl PageRequest {
    /// The limit, clamped to 1..=[`MAX_PAGE_SIZE`].
    pub fn clamped_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_SIZE) as usize
    }

    /// The position to continue after (0 for the first page).
    pub(crate) fn after(&self) -> Result<i64> {
        self.cursor.as_deref().map_or(Ok(0), decode_cursor)
    }
}

/// One page of a list, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass this as [`PageRequest::cursor`] to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

// Cursors are opaque to clients; they encode the store's insertion sequence.
pub(crate) fn encode_cursor(seq: i64) -> String {
    format!("c{seq:x}")
}

fn decode_cursor(cursor: &str) -> Result<i64> {
    cursor
        .strip_prefix('c')
        .filter(|hex| (1..=15).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
        .filter(|seq| *seq >= 0)
        .ok_or(Error::InvalidCursor)
}

/// Which keys a list call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFilter {
    /// Keys of this organisation.
    pub organization_id: OrganizationId,
    /// Only keys scoped to this project.
    pub project_id: Option<ProjectId>,
    /// Only keys of this environment.
    pub environment: Option<Environment>,
    /// Include revoked keys.
    pub include_revoked: bool,
}

/// Organisations, projects, users, their passwords and sign-in sessions: what a console
/// needs, and what a key's creator and role are read from.
///
/// Every method is async so that SQLite and PostgreSQL back-ends fit behind it; SQLite work
/// runs off the tokio worker threads.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Adds an organisation.
    async fn create_organization(&self, org: &Organization) -> Result<()>;
    /// Finds an organisation.
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>>;
    /// Every organisation, oldest first.
    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>>;
    /// Replaces an organisation's name, security contact, privacy contact and leak policy.
    async fn update_organization(&self, org: &Organization) -> Result<()>;

    /// Adds a project to an existing organisation.
    async fn create_project(&self, project: &Project) -> Result<()>;
    /// Finds a project.
    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>>;
    /// Projects of an organisation, oldest first.
    async fn list_projects(&self, org: OrganizationId, page: &PageRequest)
    -> Result<Page<Project>>;

    /// Adds a user to an existing organisation (e-mail unique per organisation).
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Finds a user.
    async fn get_user(&self, id: UserId) -> Result<Option<User>>;
    /// Users of an organisation, oldest first.
    async fn list_users(&self, org: OrganizationId, page: &PageRequest) -> Result<Page<User>>;
    /// Changes a user's role; their keys follow at once.
    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()>;
    /// Corrects a user's e-mail and display name (their role and password stay). Fails with
    /// [`Error::NotFound`] for an unknown user and [`Error::AlreadyExists`] when another user
    /// of the organisation has the e-mail.
    async fn update_user_profile(&self, id: UserId, email: &str, name: Option<&str>) -> Result<()>;
    /// Gives every key `from` created to `to` (the keys are bounded by `to`'s role from now
    /// on, and the change log names each of them), returning how many moved.
    async fn transfer_keys(&self, from: UserId, to: UserId) -> Result<u64>;
    /// Ends every sign-in session of a user, returning how many.
    async fn delete_user_sessions(&self, id: UserId) -> Result<u64>;
    /// Deletes a user with their password and sessions: nothing personal stays in the store.
    /// The keys they created stay (revoke or [transfer](Self::transfer_keys) them first);
    /// without their creator they hold a viewer's powers at most. Fails with
    /// [`Error::NotFound`] for an unknown user.
    async fn delete_user(&self, id: UserId) -> Result<()>;
    /// Deletes a project. Its keys stay as they are (the caller checks that none is active).
    /// Fails with [`Error::NotFound`] for an unknown project.
    async fn delete_project(&self, id: ProjectId) -> Result<()>;

    /// Sets or replaces a user's password hash, and ends every session of theirs in the same
    /// write, so a changed password signs the user out everywhere.
    async fn set_user_password(&self, id: UserId, hash: &PasswordHash) -> Result<()>;
    /// Every user with exactly this e-mail who has a password, with its hash, oldest first.
    /// E-mails are unique per organisation, so there is at most one per organisation.
    async fn user_credentials(&self, email: &str) -> Result<Vec<(User, PasswordHash)>>;

    /// Stores a new sign-in session under the hash of its token. Fails with
    /// [`Error::NotFound`] for an unknown user.
    async fn create_session(&self, hash: &SessionHash, session: &UserSession) -> Result<()>;
    /// The session stored under `hash`, if there is one and it has not expired at `now`.
    async fn get_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserSession>>;
    /// Ends the session stored under `hash` (nothing happens if there is none).
    async fn delete_session(&self, hash: &SessionHash) -> Result<()>;
    /// Deletes every session expired at `now`, returning how many.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;
}

/// What a [`KeyVerifier`](crate::KeyVerifier) needs: a key by the hash of its token or by id,
/// the change feed that keeps its cache in step, and the batched write-back of last-used times.
///
/// Implementations must keep the hash unique.
#[async_trait]
pub trait KeyLookup: Send + Sync + 'static {
    /// The permission vocabulary its key records are read with (and that keys minted over it
    /// use): [`Vocabulary::SERVER`](crate::Vocabulary::SERVER) unless the store was given
    /// another (`with_vocabulary`).
    fn vocabulary(&self) -> &'static crate::Vocabulary {
        &crate::Vocabulary::SERVER
    }

    /// The key stored under `hash`, if any.
    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>>;
    /// A key by id.
    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>>;
    /// Applies a batch of last-used times, each only if newer than the stored one.
    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<()>;

    /// Keys whose state (name, expiry, revocation, suspension, limits) changed after position
    /// `after` in the store's change log, and the position to ask from next time. `after < 0`
    /// means "from now": no ids, just the current position. Other processes sharing the store
    /// (an operator CLI, other server instances) are seen here; verifiers poll it so their
    /// caches follow (see [`crate::KeyVerifier::spawn_change_watcher`]).
    async fn key_changes_since(&self, after: i64) -> Result<(Vec<KeyId>, i64)>;

    /// Resolves when the change log may have grown (a store that hears of changes, such as
    /// PostgreSQL's LISTEN/NOTIFY, wakes at once), or after `timeout` at the latest. Watchers
    /// call [`KeyLookup::key_changes_since`] after each wake. The default just waits `timeout`,
    /// which makes watching plain polling.
    async fn wait_for_changes(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await;
    }
}

/// Minting, listing and changing keys, each change with its event.
///
/// Implementations must keep the hash unique and the key prefix unique per environment,
/// answering [`Error::PrefixTaken`] on a prefix collision.
#[async_trait]
pub trait KeyManagement: Send + Sync + 'static {
    /// Stores a new key under `hash`. Fails with [`Error::PrefixTaken`] if the prefix is used.
    async fn insert_key(&self, record: &KeyRecord, hash: &KeyHash) -> Result<()>;
    /// Keys matching `filter`, oldest first.
    async fn list_keys(&self, filter: &KeyFilter, page: &PageRequest) -> Result<Page<KeyRecord>>;
    /// Writes a key's mutable fields (name, expiry, revoked, suspended, rate-limit override,
    /// allowed networks); `last_used_at` is
    /// left to [`KeyLookup::record_last_used`]. Revocation is never undone by an update.
    async fn update_key(&self, record: &KeyRecord) -> Result<()>;
    /// [`KeyManagement::insert_key`], recording `event` with it: a store with an event hook (an
    /// outbox) writes both in one transaction. The default ignores the event.
    async fn insert_key_with_event(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        event: KeyEvent,
    ) -> Result<()> {
        let _ = event;
        self.insert_key(record, hash).await
    }
    /// [`KeyManagement::update_key`], recording `event` with it (see
    /// [`KeyManagement::insert_key_with_event`]). The default ignores the event.
    async fn update_key_with_event(&self, record: &KeyRecord, event: KeyEvent) -> Result<()> {
        let _ = event;
        self.update_key(record).await
    }
}

/// Why a change to a user is refused when it would leave their organisation without an admin
/// (see [`takes_last_admin`]).
pub const LAST_ADMIN: &str = "this is the organisation's last admin: make another user admin first";

/// Whether giving `user` the role `to`, or deleting them (`to` is `None`), would leave their
/// organisation without an admin. An organisation always keeps one: every door (the API, the
/// console, the operator CLI) asks this before [`Directory::set_user_role`] or
/// [`Directory::delete_user`], and refuses with [`LAST_ADMIN`].
pub async fn takes_last_admin<D>(directory: &D, user: &User, to: Option<Role>) -> Result<bool>
where
    D: Directory + ?Sized,
{
    if user.role != Role::Admin || to == Some(Role::Admin) {
        return Ok(false);
    }
    let mut page = PageRequest {
        limit: MAX_PAGE_SIZE,
        cursor: None,
    };
    let mut admins = 0usize;
    loop {
        let got = directory.list_users(user.organization_id, &page).await?;
        admins += got.data.iter().filter(|u| u.role == Role::Admin).count();
        if admins > 1 {
            return Ok(false);
        }
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(true),
        }
    }
}

/// Where organisations, projects, users and key records live: [`KeyLookup`],
/// [`KeyManagement`] and [`Directory`] together, implemented for every type that implements
/// the three. Servers and tools that do everything hold an `Arc<dyn KeyStore>`.
pub trait KeyStore: KeyLookup + KeyManagement + Directory {
    /// This store as the [`KeyLookup`] a [`KeyVerifier`](crate::KeyVerifier) takes
    /// (`Arc<dyn KeyStore>` → `Arc<dyn KeyLookup>`).
    fn into_lookup(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn KeyLookup>;
}

impl<T: KeyLookup + KeyManagement + Directory> KeyStore for T {
    fn into_lookup(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn KeyLookup> {
        self
    }
}
