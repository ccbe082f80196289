//! A [`KeyStore`](crate::KeyStore) on PostgreSQL: a `deadpool-postgres` pool, versioned migrations in
//! `keys_migrations`, tables prefixed `keys_`, the same columns as the SQLite store (times in
//! Unix milliseconds, ids as text).
//!
//! Key changes go to `keys_changes` through a trigger, which also sends `NOTIFY
//! align_keys_changed` (payload: the schema) in the same transaction, so every instance's
//! verifier hears of a revocation as soon as it commits. The trigger takes a
//! transaction-scoped advisory lock first: change-log positions are then handed out in commit
//! order, and a reader that has seen position `n` can never later find an older one appear
//! (a plain sequence would let a slow transaction commit a smaller position after a reader
//! moved past it, and that revocation would be missed).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, GenericClient, NoTls, Row};

use super::codec::{
    LEAK_COLUMNS, RawKey, RawLeak, cidrs_text, leak_policy, meta_text, ms, opt_ms,
    permissions_text, session_from, time, uuid,
};
use super::{Directory, KeyFilter, KeyLookup, KeyManagement, Page, PageRequest, encode_cursor};
use crate::domain::{
    KeyEvent, KeyId, KeyRecord, Organization, OrganizationId, Project, ProjectId, Role, User,
    UserId,
};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHash;
use crate::leak::{LeakReport, LeakReportId, LeakStore};
use crate::password::{PasswordHash, SessionHash, UserSession};
use crate::token::Environment;

mod keyspace;

/// The channel key changes are announced on; the payload is the schema of the changed table.
const CHANGE_CHANNEL: &str = "align_keys_changed";

const KEY_COLUMNS: &str = "seq, id, name, prefix, environment, organization_id, project_id, \
    permissions, created_by, created_at, last_used_at, expires_at, revoked_at, suspended_at, \
    rotated_from, rate_limit_per_minute, allowed_cidrs, owner_id, meta";

/// Called inside the transaction of every key change that carries a [`KeyEvent`] (see
/// [`KeyManagement::insert_key_with_event`]): whatever it writes through `tx` (an outbox row)
/// commits with the change, and an error rolls the change back. The PostgreSQL counterpart
/// of `SqliteEventHook` (feature `sqlite`).
#[async_trait]
pub trait PgEventHook: Send + Sync + 'static {
    /// Records `event` for `key` on `tx`.
    async fn on_key_event(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

/// A [`KeyStore`](crate::KeyStore) in a PostgreSQL database, shared by any number of server instances.
///
/// ```no_run
/// # async fn demo() -> Result<(), align_keys::Error> {
/// use align_keys::PgKeyStore;
/// let store = PgKeyStore::connect("postgres://align@db.internal/align").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
    hook: Option<Arc<dyn PgEventHook>>,
    changes: Option<Arc<Listener>>,
    vocabulary: &'static crate::Vocabulary,
}

impl std::fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("listening", &self.changes.is_some())
            .finish_non_exhaustive()
    }
}

/// The LISTEN connection's task and the signal it raises; the task ends with the store.
struct Listener {
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PgKeyStore {
    /// Connects to the database at `url` (see [`crate::postgres::parse_url`]), brings its
    /// `keys_` tables up to date and listens for key changes made by other instances.
    pub async fn connect(url: &str) -> Result<Self> {
        let config = crate::postgres::parse_url(url)?;
        let store = Self::open(crate::postgres::pool(config.clone())?).await?;
        store.listen_for_changes(config)
    }

    /// A store over `pool` (which other crates' stores may share), with its `keys_` tables
    /// brought up to date. Without [`PgKeyStore::listen_for_changes`], watchers poll.
    pub async fn open(pool: Pool) -> Result<Self> {
        let mut client = pool.get().await?;
        crate::postgres::migrate(&mut client, "keys", super::migrations::POSTGRES).await?;
        Ok(Self {
            pool,
            hook: None,
            changes: None,
            vocabulary: &crate::Vocabulary::SERVER,
        })
    }

    /// The same store, holding one extra connection (made with `config`, which must reach
    /// the same database and schema as the pool) that LISTENs for key changes, so that
    /// [`KeyLookup::wait_for_changes`] wakes as soon as any instance commits one. The
    /// connection is re-made after a failure. Must be called within a tokio runtime.
    pub fn listen_for_changes(mut self, config: tokio_postgres::Config) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::StoreWorker)?;
        let wake = Arc::new(Notify::new());
        let task = runtime.spawn(listen(config, Arc::clone(&wake)));
        self.changes = Some(Arc::new(Listener { wake, task }));
        Ok(self)
    }

    /// The same store, reading its keys' permissions with `vocabulary` (the reference
    /// server's, [`Vocabulary::SERVER`](crate::Vocabulary::SERVER), unless given). A stored
    /// name it does not declare grants nothing and is kept
    /// ([`KeyRecord::unrecognized_permissions`]).
    #[must_use]
    pub fn with_vocabulary(mut self, vocabulary: &'static crate::Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }

    /// The same store, calling `hook` inside the transaction of every change made with an
    /// event, so an embedder's outbox row commits with the change.
    #[must_use]
    pub fn with_event_hook(mut self, hook: Arc<dyn PgEventHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The schema version this store has migrated to.
    pub async fn schema_version(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(crate::postgres::schema_version(&client, "keys").await?)
    }

    /// Runs the hook for `event` on `tx` (when there is one) and commits: the change and its
    /// event land together or not at all.
    async fn commit_with_event(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        record: &KeyRecord,
        event: KeyEvent,
    ) -> Result<()> {
        if let Some(hook) = &self.hook {
            hook.on_key_event(&tx, record, event)
                .await
                .map_err(Error::EventHook)?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Keeps one LISTEN connection up, raising `wake` on every notification for this schema and
/// after every (re)connect (changes may have been missed while disconnected).
async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>) {
    loop {
        // A failure is retried after a pause; the watcher's timeout covers the gap.
        let _ = listen_once(&config, &wake).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(config: &tokio_postgres::Config, wake: &Notify) -> Result<()> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await?
        .try_get(0)?;
    client
        .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
        .await?;
    wake.notify_one();
    while let Some(payload) = notes.recv().await {
        if payload == schema {
            wake.notify_one();
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Maps a constraint violation to the store's own error, keeping other errors as they are.
fn constraint(e: tokio_postgres::Error, unique: impl FnOnce(Option<&str>) -> Error) -> Error {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            unique(e.as_db_error().and_then(|d| d.constraint()))
        }
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
            Error::NotFound(ObjectKind::Organization)
        }
        _ => Error::Postgres(e),
    }
}

fn raw_key(r: &Row) -> Result<RawKey> {
    Ok(RawKey {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        name: r.try_get(2)?,
        prefix: r.try_get(3)?,
        environment: r.try_get(4)?,
        organization_id: r.try_get(5)?,
        project_id: r.try_get(6)?,
        permissions: r.try_get(7)?,
        created_by: r.try_get(8)?,
        created_at: r.try_get(9)?,
        last_used_at: r.try_get(10)?,
        expires_at: r.try_get(11)?,
        revoked_at: r.try_get(12)?,
        suspended_at: r.try_get(13)?,
        rotated_from: r.try_get(14)?,
        rate_limit_per_minute: r.try_get(15)?,
        allowed_cidrs: r.try_get(16)?,
        owner_id: r.try_get(17)?,
        meta: r.try_get(18)?,
    })
}

/// Decodes key rows with `vocabulary`.
fn key_from(vocabulary: &'static crate::Vocabulary) -> impl Fn(&Row) -> Result<(i64, KeyRecord)> {
    move |r| {
        let raw = raw_key(r)?;
        let seq = raw.seq;
        Ok((seq, raw.into_record(vocabulary)?))
    }
}

/// The organisation columns `org_from` reads, in order.
const ORG_COLUMNS: &str = "seq, id, name, security_contact, created_at, leaked_key_action, leaked_sandbox_key_action, \
     privacy_contact";

fn org_from(r: &Row) -> Result<(i64, Organization)> {
    Ok((
        r.try_get(0)?,
        Organization {
            id: OrganizationId(uuid(r.try_get(1)?)?),
            name: r.try_get(2)?,
            security_contact: r.try_get(3)?,
            leak_policy: leak_policy(r.try_get(5)?, r.try_get(6)?)?,
            privacy_contact: r.try_get(7)?,
            created_at: time(r.try_get(4)?)?,
        },
    ))
}

fn leak_from(r: &Row) -> Result<(i64, LeakReport)> {
    let raw = RawLeak {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        fingerprint: r.try_get(2)?,
        organization_id: r.try_get(3)?,
        project_id: r.try_get(4)?,
        key_id: r.try_get(5)?,
        key_prefix: r.try_get(6)?,
        environment: r.try_get(7)?,
        reporter: r.try_get(8)?,
        token_type: r.try_get(9)?,
        url: r.try_get(10)?,
        source: r.try_get(11)?,
        reason: r.try_get(12)?,
        reported_at: r.try_get(13)?,
        action: r.try_get(14)?,
    };
    let seq = raw.seq;
    Ok((seq, raw.into_report()?))
}

fn project_from(r: &Row) -> Result<(i64, Project)> {
    Ok((
        r.try_get(0)?,
        Project {
            id: ProjectId(uuid(r.try_get(1)?)?),
            organization_id: OrganizationId(uuid(r.try_get(2)?)?),
            name: r.try_get(3)?,
            created_at: time(r.try_get(4)?)?,
        },
    ))
}

fn user_from(r: &Row) -> Result<(i64, User)> {
    Ok((
        r.try_get(0)?,
        User {
            id: UserId(uuid(r.try_get(1)?)?),
            organization_id: OrganizationId(uuid(r.try_get(2)?)?),
            email: r.try_get(3)?,
            name: r.try_get(6)?,
            role: Role::from_name(r.try_get(4)?).ok_or(Error::Corrupt("role"))?,
            created_at: time(r.try_get(5)?)?,
        },
    ))
}

impl PgKeyStore {
    /// Runs a paged query: `sql` must select the `seq` first and take `$1` = after-seq and
    /// `$2` = limit + 1 besides `extra` parameters numbered from `$3`.
    async fn paged<T>(
        &self,
        sql: &str,
        req: &PageRequest,
        extra: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Result<(i64, T)>,
    ) -> Result<Page<T>> {
        let after = req.after()?;
        let limit = req.clamped_limit();
        let fetch = limit as i64 + 1;
        let mut bind: Vec<&(dyn ToSql + Sync)> = vec![&after, &fetch];
        bind.extend_from_slice(extra);
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, &bind).await?;
        let more = rows.len() > limit;
        let mut data = Vec::with_capacity(limit);
        let mut last = None;
        for row in rows.iter().take(limit) {
            let (seq, item) = decode(row)?;
            data.push(item);
            last = Some(seq);
        }
        Ok(Page {
            data,
            next_cursor: if more { last.map(encode_cursor) } else { None },
        })
    }

    async fn first<T>(
        &self,
        sql: &str,
        param: &(dyn ToSql + Sync),
        decode: impl Fn(&Row) -> Result<(i64, T)>,
    ) -> Result<Option<T>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let row = client.query_opt(&stmt, &[param]).await?;
        row.as_ref().map(|r| decode(r).map(|(_, v)| v)).transpose()
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

#[async_trait]
impl Directory for PgKeyStore {
    async fn create_organization(&self, org: &Organization) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO keys_organizations (id, name, security_contact, created_at,
                     leaked_key_action, leaked_sandbox_key_action, privacy_contact)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &org.id.to_string(),
                    &org.name,
                    &org.security_contact,
                    &ms(org.created_at),
                    &org.leak_policy.live.as_str(),
                    &org.leak_policy.sandbox.as_str(),
                    &org.privacy_contact,
                ],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::Organization)))?;
        Ok(())
    }

    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        self.first(
            &format!("SELECT {ORG_COLUMNS} FROM keys_organizations WHERE id = $1"),
            &id.to_string(),
            org_from,
        )
        .await
    }

    async fn list_organizations(&self, req: &PageRequest) -> Result<Page<Organization>> {
        self.paged(
            &format!(
                "SELECT {ORG_COLUMNS} FROM keys_organizations
                 WHERE seq > $1 ORDER BY seq LIMIT $2"
            ),
            req,
            &[],
            org_from,
        )
        .await
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        let n = self
            .execute(
                "UPDATE keys_organizations SET name = $2, security_contact = $3,
                     leaked_key_action = $4, leaked_sandbox_key_action = $5,
                     privacy_contact = $6
                 WHERE id = $1",
                &[
                    &org.id.to_string(),
                    &org.name,
                    &org.security_contact,
                    &org.leak_policy.live.as_str(),
                    &org.leak_policy.sandbox.as_str(),
                    &org.privacy_contact,
                ],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Organization));
        }
        Ok(())
    }

    async fn create_project(&self, p: &Project) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO keys_projects (id, organization_id, name, created_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &p.id.to_string(),
                    &p.organization_id.to_string(),
                    &p.name,
                    &ms(p.created_at),
                ],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::Project)))?;
        Ok(())
    }

    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>> {
        self.first(
            "SELECT seq, id, organization_id, name, created_at FROM keys_projects WHERE id = $1",
            &id.to_string(),
            project_from,
        )
        .await
    }

    async fn list_projects(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<Project>> {
        self.paged(
            "SELECT seq, id, organization_id, name, created_at FROM keys_projects
             WHERE seq > $1 AND organization_id = $3 ORDER BY seq LIMIT $2",
            req,
            &[&org.to_string()],
            project_from,
        )
        .await
    }

    async fn create_user(&self, u: &User) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO keys_users (id, organization_id, email, role, created_at, name)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &u.id.to_string(),
                    &u.organization_id.to_string(),
                    &u.email,
                    &u.role.as_str(),
                    &ms(u.created_at),
                    &u.name,
                ],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::User)))?;
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.first(
            "SELECT seq, id, organization_id, email, role, created_at, name FROM keys_users
             WHERE id = $1",
            &id.to_string(),
            user_from,
        )
        .await
    }

    async fn list_users(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<User>> {
        self.paged(
            "SELECT seq, id, organization_id, email, role, created_at, name FROM keys_users
             WHERE seq > $1 AND organization_id = $3 ORDER BY seq LIMIT $2",
            req,
            &[&org.to_string()],
            user_from,
        )
        .await
    }

    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()> {
        let n = self
            .execute(
                "UPDATE keys_users SET role = $2 WHERE id = $1",
                &[&id.to_string(), &role.as_str()],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::User));
        }
        Ok(())
    }

    async fn update_user_profile(&self, id: UserId, email: &str, name: Option<&str>) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE keys_users SET email = $2, name = $3 WHERE id = $1",
                &[&id.to_string(), &email, &name],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::User)))?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::User));
        }
        Ok(())
    }

    async fn transfer_keys(&self, from: UserId, to: UserId) -> Result<u64> {
        // The creator-changed trigger names each key in the change log.
        self.execute(
            "UPDATE keys_api_keys SET created_by = $2 WHERE created_by = $1",
            &[&from.to_string(), &to.to_string()],
        )
        .await
    }

    async fn delete_user_sessions(&self, id: UserId) -> Result<u64> {
        self.execute(
            "DELETE FROM keys_user_sessions WHERE user_id = $1",
            &[&id.to_string()],
        )
        .await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM keys_user_sessions WHERE user_id = $1",
            &[&id.to_string()],
        )
        .await?;
        // The deletion trigger names each of the user's keys in the change log.
        let n = tx
            .execute("DELETE FROM keys_users WHERE id = $1", &[&id.to_string()])
            .await?;
        if n == 0 {
            tx.rollback().await?;
            return Err(Error::NotFound(ObjectKind::User));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        let n = self
            .execute(
                "DELETE FROM keys_projects WHERE id = $1",
                &[&id.to_string()],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Project));
        }
        Ok(())
    }

    async fn set_user_password(&self, id: UserId, hash: &PasswordHash) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE keys_users SET password_hash = $2 WHERE id = $1",
                &[&id.to_string(), &hash.encode()],
            )
            .await?;
        if n == 0 {
            // Rolled back explicitly: a dropped transaction's rollback would only be queued.
            tx.rollback().await?;
            return Err(Error::NotFound(ObjectKind::User));
        }
        tx.execute(
            "DELETE FROM keys_user_sessions WHERE user_id = $1",
            &[&id.to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_credentials(&self, email: &str) -> Result<Vec<(User, PasswordHash)>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT seq, id, organization_id, email, role, created_at, name, password_hash
                 FROM keys_users WHERE email = $1 AND password_hash IS NOT NULL ORDER BY seq",
            )
            .await?;
        let rows = client.query(&stmt, &[&email]).await?;
        rows.iter()
            .map(|r| {
                let (_, user) = user_from(r)?;
                Ok((user, PasswordHash::parse(r.try_get(7)?)?))
            })
            .collect()
    }

    async fn create_session(&self, hash: &SessionHash, s: &UserSession) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO keys_user_sessions (hash, user_id, csrf, created_at, expires_at)
                 SELECT $1, id, $3, $4, $5 FROM keys_users WHERE id = $2",
                &[
                    &&hash.as_bytes()[..],
                    &s.user_id.to_string(),
                    &&s.csrf[..],
                    &ms(s.created_at),
                    &ms(s.expires_at),
                ],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::Session)))?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::User));
        }
        Ok(())
    }

    async fn get_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserSession>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT user_id, csrf, created_at, expires_at FROM keys_user_sessions
                 WHERE hash = $1 AND expires_at > $2",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&&hash.as_bytes()[..], &ms(now)])
            .await?;
        row.map(|r| {
            let csrf: &[u8] = r.try_get(1)?;
            session_from(r.try_get(0)?, csrf, r.try_get(2)?, r.try_get(3)?)
        })
        .transpose()
    }

    async fn delete_session(&self, hash: &SessionHash) -> Result<()> {
        self.execute(
            "DELETE FROM keys_user_sessions WHERE hash = $1",
            &[&&hash.as_bytes()[..]],
        )
        .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.execute(
            "DELETE FROM keys_user_sessions WHERE expires_at <= $1",
            &[&ms(now)],
        )
        .await
    }
}

#[async_trait]
impl KeyLookup for PgKeyStore {
    fn vocabulary(&self) -> &'static crate::Vocabulary {
        self.vocabulary
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        self.first(
            &format!("SELECT {KEY_COLUMNS} FROM keys_api_keys WHERE hash = $1"),
            &&hash.as_bytes()[..],
            key_from(self.vocabulary),
        )
        .await
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        self.first(
            &format!("SELECT {KEY_COLUMNS} FROM keys_api_keys WHERE id = $1"),
            &id.to_string(),
            key_from(self.vocabulary),
        )
        .await
    }

    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // One row per key (the latest time), so the UPDATE … FROM sees each key once.
        let mut latest: std::collections::HashMap<KeyId, i64> = std::collections::HashMap::new();
        for (id, at) in batch {
            let at = ms(*at);
            latest
                .entry(*id)
                .and_modify(|t| *t = (*t).max(at))
                .or_insert(at);
        }
        let (ids, times): (Vec<String>, Vec<i64>) = latest
            .into_iter()
            .map(|(id, at)| (id.to_string(), at))
            .unzip();
        self.execute(
            "UPDATE keys_api_keys k SET last_used_at = b.at
             FROM unnest($1::text[], $2::bigint[]) AS b(id, at)
             WHERE k.id = b.id AND (k.last_used_at IS NULL OR k.last_used_at < b.at)",
            &[&ids, &times],
        )
        .await?;
        Ok(())
    }

    async fn key_changes_since(&self, after: i64) -> Result<(Vec<KeyId>, i64)> {
        let client = self.pool.get().await?;
        if after < 0 {
            let end: i64 = client
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0)::bigint FROM keys_changes",
                    &[],
                )
                .await?
                .try_get(0)?;
            return Ok((Vec::new(), end));
        }
        let stmt = client
            .prepare_cached(
                "SELECT seq, key_id FROM keys_changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
            )
            .await?;
        let rows = client.query(&stmt, &[&after]).await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut last = after;
        for row in &rows {
            last = row.try_get(0)?;
            ids.push(KeyId(uuid(row.try_get(1)?)?));
        }
        Ok((ids, last))
    }

    async fn wait_for_changes(&self, timeout: Duration) {
        match &self.changes {
            Some(listener) => {
                let _ = tokio::time::timeout(timeout, listener.wake.notified()).await;
            }
            None => tokio::time::sleep(timeout).await,
        }
    }
}

#[async_trait]
impl KeyManagement for PgKeyStore {
    async fn insert_key(&self, k: &KeyRecord, hash: &KeyHash) -> Result<()> {
        let client = self.pool.get().await?;
        insert_key_on(&**client, k, hash).await
    }

    async fn insert_key_with_event(
        &self,
        k: &KeyRecord,
        hash: &KeyHash,
        event: KeyEvent,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_key_on(&*tx, k, hash).await?;
        self.commit_with_event(tx, k, event).await
    }

    async fn list_keys(&self, filter: &KeyFilter, req: &PageRequest) -> Result<Page<KeyRecord>> {
        let f = *filter;
        self.paged(
            &format!(
                "SELECT {KEY_COLUMNS} FROM keys_api_keys
                 WHERE seq > $1 AND organization_id = $3
                   AND ($4::text IS NULL OR project_id = $4)
                   AND ($5::text IS NULL OR environment = $5)
                   AND ($6::boolean OR revoked_at IS NULL)
                 ORDER BY seq LIMIT $2"
            ),
            req,
            &[
                &f.organization_id.to_string(),
                &f.project_id.map(|p| p.to_string()),
                &f.environment.map(Environment::as_str),
                &f.include_revoked,
            ],
            key_from(self.vocabulary),
        )
        .await
    }

    async fn update_key(&self, k: &KeyRecord) -> Result<()> {
        let client = self.pool.get().await?;
        update_key_on(&**client, k).await
    }

    async fn update_key_with_event(&self, k: &KeyRecord, event: KeyEvent) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        update_key_on(&*tx, k).await?;
        self.commit_with_event(tx, k, event).await
    }
}

async fn insert_key_on(c: &impl GenericClient, k: &KeyRecord, hash: &KeyHash) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO keys_api_keys (hash, {KEY_COLUMNS}) VALUES
             ($1, DEFAULT, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
              $18, $19)"
        ),
        &[
            &&hash.as_bytes()[..],
            &k.id.to_string(),
            &k.name,
            &k.prefix,
            &k.environment.as_str(),
            &k.organization_id.to_string(),
            &k.scope.project_id().map(|p| p.to_string()),
            &permissions_text(k),
            &k.created_by.to_string(),
            &ms(k.created_at),
            &opt_ms(k.last_used_at),
            &opt_ms(k.expires_at),
            &opt_ms(k.revoked_at),
            &opt_ms(k.suspended_at),
            &k.rotated_from.map(|r| r.to_string()),
            &k.rate_limit_per_minute.map(i64::from),
            &cidrs_text(&k.allowed_cidrs),
            &k.owner_id,
            &meta_text(k.meta.as_ref()),
        ],
    )
    .await
    .map_err(|e| {
        constraint(e, |name| {
            if name == Some("keys_api_keys_prefix_unique") {
                Error::PrefixTaken
            } else {
                Error::AlreadyExists(ObjectKind::ApiKey)
            }
        })
    })?;
    Ok(())
}

async fn update_key_on(c: &impl GenericClient, k: &KeyRecord) -> Result<()> {
    let n = c
        .execute(
            "UPDATE keys_api_keys SET name = $2, expires_at = $3,
                 revoked_at = COALESCE(revoked_at, $4), suspended_at = $5,
                 rate_limit_per_minute = $6, allowed_cidrs = $7, owner_id = $8, meta = $9
             WHERE id = $1",
            &[
                &k.id.to_string(),
                &k.name,
                &opt_ms(k.expires_at),
                &opt_ms(k.revoked_at),
                &opt_ms(k.suspended_at),
                &k.rate_limit_per_minute.map(i64::from),
                &cidrs_text(&k.allowed_cidrs),
                &k.owner_id,
                &meta_text(k.meta.as_ref()),
            ],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound(ObjectKind::ApiKey));
    }
    Ok(())
}

#[async_trait]
impl LeakStore for PgKeyStore {
    async fn record_leak(&self, report: &LeakReport) -> Result<(LeakReport, bool)> {
        let l = report;
        let client = self.pool.get().await?;
        let added = client
            .execute(
                "INSERT INTO keys_leak_reports (id, fingerprint, organization_id, project_id,
                     key_id, key_prefix, environment, reporter, token_type, url, source, reason,
                     reported_at, action)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (fingerprint) DO NOTHING",
                &[
                    &l.id.to_string(),
                    &l.fingerprint.as_slice(),
                    &l.organization_id.to_string(),
                    &l.project_id.map(|p| p.to_string()),
                    &l.key_id.to_string(),
                    &l.key_prefix,
                    &l.environment.as_str(),
                    &l.reporter.as_str(),
                    &l.token_type,
                    &l.url,
                    &l.source,
                    &l.reason,
                    &ms(l.reported_at),
                    &l.action.as_str(),
                ],
            )
            .await?
            == 1;
        drop(client);
        let stored = self
            .first(
                &format!("SELECT {LEAK_COLUMNS} FROM keys_leak_reports WHERE fingerprint = $1"),
                &l.fingerprint.as_slice(),
                leak_from,
            )
            .await?
            .ok_or(Error::Corrupt("leak report"))?;
        Ok((stored, added))
    }

    async fn delete_leak(&self, id: LeakReportId) -> Result<()> {
        self.execute(
            "DELETE FROM keys_leak_reports WHERE id = $1",
            &[&id.to_string()],
        )
        .await?;
        Ok(())
    }

    async fn list_leaks(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<LeakReport>> {
        self.paged(
            &format!(
                "SELECT {LEAK_COLUMNS} FROM keys_leak_reports
                 WHERE seq > $1 AND organization_id = $3 ORDER BY seq LIMIT $2"
            ),
            req,
            &[&organization.to_string()],
            leak_from,
        )
        .await
    }
}
