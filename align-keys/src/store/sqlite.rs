//! A [`KeyStore`](crate::KeyStore) on SQLite: WAL, busy timeout, versioned migrations, tables prefixed `keys_`.
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool, never on a worker.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

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

const KEY_COLUMNS: &str = "seq, id, name, prefix, environment, organization_id, project_id, \
    permissions, created_by, created_at, last_used_at, expires_at, revoked_at, suspended_at, \
    rotated_from, rate_limit_per_minute, allowed_cidrs, owner_id, meta";

/// A [`KeyStore`](crate::KeyStore) in one SQLite file.
#[derive(Clone)]
pub struct SqliteKeyStore {
    conn: Arc<Mutex<Connection>>,
    hook: Option<Arc<dyn SqliteEventHook>>,
    vocabulary: &'static crate::Vocabulary,
}

/// Called inside the transaction of every key change that carries a [`KeyEvent`] (see
/// [`KeyManagement::insert_key_with_event`]): whatever it writes through `tx` (an outbox row)
/// commits with the change, and an error rolls the change back.
pub trait SqliteEventHook: Send + Sync + 'static {
    /// Records `event` for `key` on `tx`.
    fn on_key_event(
        &self,
        tx: &rusqlite::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl std::fmt::Debug for SqliteKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteKeyStore")
    }
}

impl SqliteKeyStore {
    /// Opens (creating if needed) the database at `path` and brings its `keys_` tables up to
    /// date. Other crates may keep their own tables in the same file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let mut conn = crate::sqlite::open(&path)?;
            configure(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(|_| Error::StoreWorker)??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            hook: None,
            vocabulary: &crate::Vocabulary::SERVER,
        })
    }

    /// A private in-memory database (tests, throwaway tools).
    pub async fn open_in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        configure(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            hook: None,
            vocabulary: &crate::Vocabulary::SERVER,
        })
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
    pub fn with_event_hook(mut self, hook: Arc<dyn SqliteEventHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Runs `write` and then the hook for `event`, in one IMMEDIATE transaction when there is
    /// a hook.
    async fn write_with_event(
        &self,
        record: KeyRecord,
        event: KeyEvent,
        write: impl FnOnce(&Connection, &KeyRecord) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let hook = self.hook.clone();
        self.run(move |c| {
            let Some(hook) = hook else {
                return write(c, &record);
            };
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            write(&tx, &record)?;
            hook.on_key_event(&tx, &record, event)
                .map_err(Error::EventHook)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The schema version this store has migrated to.
    pub async fn schema_version(&self) -> Result<i64> {
        self.run(|c| Ok(c.query_row("SELECT MAX(version) FROM keys_migrations", [], |r| r.get(0))?))
            .await
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|_| Error::StoreWorker)?
    }
}

fn configure(conn: &mut Connection) -> Result<()> {
    crate::sqlite::configure(conn, false)?;
    Ok(crate::sqlite::migrate(
        conn,
        "keys",
        super::migrations::SQLITE,
    )?)
}

/// Maps a constraint failure to the store's own error, keeping other SQLite errors as they are.
fn constraint(e: rusqlite::Error, unique: Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            let msg = e.to_string();
            if msg.contains("FOREIGN KEY") {
                Error::NotFound(ObjectKind::Organization)
            } else {
                unique
            }
        }
        _ => Error::Sqlite(e),
    }
}

fn raw_key(r: &Row<'_>) -> rusqlite::Result<RawKey> {
    Ok(RawKey {
        seq: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        environment: r.get(4)?,
        organization_id: r.get(5)?,
        project_id: r.get(6)?,
        permissions: r.get(7)?,
        created_by: r.get(8)?,
        created_at: r.get(9)?,
        last_used_at: r.get(10)?,
        expires_at: r.get(11)?,
        revoked_at: r.get(12)?,
        suspended_at: r.get(13)?,
        rotated_from: r.get(14)?,
        rate_limit_per_minute: r.get(15)?,
        allowed_cidrs: r.get(16)?,
        owner_id: r.get(17)?,
        meta: r.get(18)?,
    })
}

/// Runs a paged query: `sql` must select the `seq` first and take `?1` = after-seq and
/// `?2` = limit + 1 besides `extra` parameters numbered from `?3`.
fn paged<T>(
    conn: &Connection,
    sql: &str,
    req: &PageRequest,
    extra: &[&dyn rusqlite::ToSql],
    decode: impl Fn(&Row<'_>) -> rusqlite::Result<Result<(i64, T)>>,
) -> Result<Page<T>> {
    let after = req.after()?;
    let limit = req.clamped_limit();
    let mut stmt = conn.prepare_cached(sql)?;
    let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&after];
    let fetch = limit as i64 + 1;
    bind.push(&fetch);
    bind.extend_from_slice(extra);
    let mut rows = stmt.query(bind.as_slice())?;
    let mut data = Vec::with_capacity(limit);
    let mut last = None;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if data.len() == limit {
            more = true;
            break;
        }
        let (seq, item) = decode(row)??;
        data.push(item);
        last = Some(seq);
    }
    Ok(Page {
        data,
        next_cursor: if more { last.map(encode_cursor) } else { None },
    })
}

/// The organisation columns `org_from` reads, in order.
const ORG_COLUMNS: &str = "seq, id, name, security_contact, created_at, leaked_key_action, leaked_sandbox_key_action, \
     privacy_contact";

fn org_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, Organization)>> {
    let (seq, id, name, contact, created): (i64, String, String, Option<String>, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (live, sandbox): (String, String) = (r.get(5)?, r.get(6)?);
    let privacy_contact: Option<String> = r.get(7)?;
    Ok((|| {
        Ok((
            seq,
            Organization {
                id: OrganizationId(uuid(&id)?),
                name,
                security_contact: contact,
                leak_policy: leak_policy(&live, &sandbox)?,
                privacy_contact,
                created_at: time(created)?,
            },
        ))
    })())
}

fn leak_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, LeakReport)>> {
    let raw = RawLeak {
        seq: r.get(0)?,
        id: r.get(1)?,
        fingerprint: r.get(2)?,
        organization_id: r.get(3)?,
        project_id: r.get(4)?,
        key_id: r.get(5)?,
        key_prefix: r.get(6)?,
        environment: r.get(7)?,
        reporter: r.get(8)?,
        token_type: r.get(9)?,
        url: r.get(10)?,
        source: r.get(11)?,
        reason: r.get(12)?,
        reported_at: r.get(13)?,
        action: r.get(14)?,
    };
    let seq = raw.seq;
    Ok(raw.into_report().map(|l| (seq, l)))
}

fn project_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, Project)>> {
    let (seq, id, org, name, created): (i64, String, String, String, i64) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok((
            seq,
            Project {
                id: ProjectId(uuid(&id)?),
                organization_id: OrganizationId(uuid(&org)?),
                name,
                created_at: time(created)?,
            },
        ))
    })())
}

fn user_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, User)>> {
    let (seq, id, org, email, role, created): (i64, String, String, String, String, i64) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    let name: Option<String> = r.get(6)?;
    Ok((|| {
        Ok((
            seq,
            User {
                id: UserId(uuid(&id)?),
                organization_id: OrganizationId(uuid(&org)?),
                email,
                name,
                role: Role::from_name(&role).ok_or(Error::Corrupt("role"))?,
                created_at: time(created)?,
            },
        ))
    })())
}

/// Decodes key rows with `vocabulary`.
fn key_from(
    vocabulary: &'static crate::Vocabulary,
) -> impl Fn(&Row<'_>) -> rusqlite::Result<Result<(i64, KeyRecord)>> {
    move |r| {
        let raw = raw_key(r)?;
        let seq = raw.seq;
        Ok(raw.into_record(vocabulary).map(|k| (seq, k)))
    }
}

fn first<T>(
    conn: &Connection,
    sql: &str,
    param: &dyn rusqlite::ToSql,
    decode: impl Fn(&Row<'_>) -> rusqlite::Result<Result<(i64, T)>>,
) -> Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let found = stmt.query_row([param], |r| decode(r)).optional()?;
    found.transpose().map(|o| o.map(|(_, v)| v))
}

#[async_trait]
impl Directory for SqliteKeyStore {
    async fn create_organization(&self, org: &Organization) -> Result<()> {
        let org = org.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO keys_organizations (id, name, security_contact, created_at,
                     leaked_key_action, leaked_sandbox_key_action, privacy_contact)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    org.id.to_string(),
                    org.name,
                    org.security_contact,
                    ms(org.created_at),
                    org.leak_policy.live.as_str(),
                    org.leak_policy.sandbox.as_str(),
                    org.privacy_contact,
                ],
            )
            .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::Organization)))?;
            Ok(())
        })
        .await
    }

    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {ORG_COLUMNS} FROM keys_organizations WHERE id = ?1"),
                &id.to_string(),
                org_from,
            )
        })
        .await
    }

    async fn list_organizations(&self, req: &PageRequest) -> Result<Page<Organization>> {
        let req = req.clone();
        self.run(move |c| {
            paged(
                c,
                &format!(
                    "SELECT {ORG_COLUMNS} FROM keys_organizations
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ),
                &req,
                &[],
                org_from,
            )
        })
        .await
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        let org = org.clone();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE keys_organizations SET name = ?2, security_contact = ?3,
                     leaked_key_action = ?4, leaked_sandbox_key_action = ?5,
                     privacy_contact = ?6
                 WHERE id = ?1",
                params![
                    org.id.to_string(),
                    org.name,
                    org.security_contact,
                    org.leak_policy.live.as_str(),
                    org.leak_policy.sandbox.as_str(),
                    org.privacy_contact,
                ],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::Organization));
            }
            Ok(())
        })
        .await
    }

    async fn create_project(&self, p: &Project) -> Result<()> {
        let p = p.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO keys_projects (id, organization_id, name, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    p.id.to_string(),
                    p.organization_id.to_string(),
                    p.name,
                    ms(p.created_at)
                ],
            )
            .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::Project)))?;
            Ok(())
        })
        .await
    }

    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>> {
        self.run(move |c| {
            first(
                c,
                "SELECT seq, id, organization_id, name, created_at FROM keys_projects WHERE id = ?1",
                &id.to_string(),
                project_from,
            )
        })
        .await
    }

    async fn list_projects(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<Project>> {
        let req = req.clone();
        self.run(move |c| {
            paged(
                c,
                "SELECT seq, id, organization_id, name, created_at FROM keys_projects
                 WHERE seq > ?1 AND organization_id = ?3 ORDER BY seq LIMIT ?2",
                &req,
                &[&org.to_string()],
                project_from,
            )
        })
        .await
    }

    async fn create_user(&self, u: &User) -> Result<()> {
        let u = u.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO keys_users (id, organization_id, email, role, created_at, name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    u.id.to_string(),
                    u.organization_id.to_string(),
                    u.email,
                    u.role.as_str(),
                    ms(u.created_at),
                    u.name
                ],
            )
            .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::User)))?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.run(move |c| {
            first(
                c,
                "SELECT seq, id, organization_id, email, role, created_at, name FROM keys_users
                 WHERE id = ?1",
                &id.to_string(),
                user_from,
            )
        })
        .await
    }

    async fn list_users(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<User>> {
        let req = req.clone();
        self.run(move |c| {
            paged(
                c,
                "SELECT seq, id, organization_id, email, role, created_at, name FROM keys_users
                 WHERE seq > ?1 AND organization_id = ?3 ORDER BY seq LIMIT ?2",
                &req,
                &[&org.to_string()],
                user_from,
            )
        })
        .await
    }

    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()> {
        self.run(move |c| {
            let n = c.execute(
                "UPDATE keys_users SET role = ?2 WHERE id = ?1",
                params![id.to_string(), role.as_str()],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::User));
            }
            Ok(())
        })
        .await
    }

    async fn update_user_profile(&self, id: UserId, email: &str, name: Option<&str>) -> Result<()> {
        let (email, name) = (email.to_owned(), name.map(str::to_owned));
        self.run(move |c| {
            let n = c
                .execute(
                    "UPDATE keys_users SET email = ?2, name = ?3 WHERE id = ?1",
                    params![id.to_string(), email, name],
                )
                .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::User)))?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::User));
            }
            Ok(())
        })
        .await
    }

    async fn transfer_keys(&self, from: UserId, to: UserId) -> Result<u64> {
        self.run(move |c| {
            let tx = c.transaction()?;
            // The change log names each key, so caches holding the old creator's role follow.
            tx.execute(
                "INSERT INTO keys_changes (key_id) SELECT id FROM keys_api_keys WHERE created_by = ?1",
                [from.to_string()],
            )?;
            let n = tx.execute(
                "UPDATE keys_api_keys SET created_by = ?2 WHERE created_by = ?1",
                params![from.to_string(), to.to_string()],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete_user_sessions(&self, id: UserId) -> Result<u64> {
        self.run(move |c| {
            let n = c.execute(
                "DELETE FROM keys_user_sessions WHERE user_id = ?1",
                [id.to_string()],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM keys_user_sessions WHERE user_id = ?1",
                [id.to_string()],
            )?;
            tx.execute(
                "INSERT INTO keys_changes (key_id) SELECT id FROM keys_api_keys WHERE created_by = ?1",
                [id.to_string()],
            )?;
            let n = tx.execute("DELETE FROM keys_users WHERE id = ?1", [id.to_string()])?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::User));
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        self.run(move |c| {
            let n = c.execute("DELETE FROM keys_projects WHERE id = ?1", [id.to_string()])?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::Project));
            }
            Ok(())
        })
        .await
    }

    async fn set_user_password(&self, id: UserId, hash: &PasswordHash) -> Result<()> {
        let encoded = hash.encode();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE keys_users SET password_hash = ?2 WHERE id = ?1",
                params![id.to_string(), encoded],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::User));
            }
            tx.execute(
                "DELETE FROM keys_user_sessions WHERE user_id = ?1",
                [id.to_string()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_credentials(&self, email: &str) -> Result<Vec<(User, PasswordHash)>> {
        let email = email.to_owned();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, organization_id, email, role, created_at, name, password_hash
                 FROM keys_users WHERE email = ?1 AND password_hash IS NOT NULL ORDER BY seq",
            )?;
            let mut rows = stmt.query([&email])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let (_, user) = user_from(row)??;
                let hash: String = row.get(7)?;
                out.push((user, PasswordHash::parse(&hash)?));
            }
            Ok(out)
        })
        .await
    }

    async fn create_session(&self, hash: &SessionHash, session: &UserSession) -> Result<()> {
        let (hash, s) = (*hash, session.clone());
        self.run(move |c| {
            c.execute(
                "INSERT INTO keys_user_sessions (hash, user_id, csrf, created_at, expires_at)
                 SELECT ?1, id, ?3, ?4, ?5 FROM keys_users WHERE id = ?2",
                params![
                    &hash.as_bytes()[..],
                    s.user_id.to_string(),
                    &s.csrf[..],
                    ms(s.created_at),
                    ms(s.expires_at)
                ],
            )
            .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::Session)))
            .and_then(|n| match n {
                0 => Err(Error::NotFound(ObjectKind::User)),
                _ => Ok(()),
            })
        })
        .await
    }

    async fn get_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserSession>> {
        let hash = *hash;
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT user_id, csrf, created_at, expires_at FROM keys_user_sessions
                 WHERE hash = ?1 AND expires_at > ?2",
            )?;
            let row = stmt
                .query_row(params![&hash.as_bytes()[..], ms(now)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .optional()?;
            row.map(|(user, csrf, created, expires)| session_from(&user, &csrf, created, expires))
                .transpose()
        })
        .await
    }

    async fn delete_session(&self, hash: &SessionHash) -> Result<()> {
        let hash = *hash;
        self.run(move |c| {
            c.execute(
                "DELETE FROM keys_user_sessions WHERE hash = ?1",
                [&hash.as_bytes()[..]],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.run(move |c| {
            let n = c.execute(
                "DELETE FROM keys_user_sessions WHERE expires_at <= ?1",
                [ms(now)],
            )?;
            Ok(n as u64)
        })
        .await
    }
}

#[async_trait]
impl KeyLookup for SqliteKeyStore {
    fn vocabulary(&self) -> &'static crate::Vocabulary {
        self.vocabulary
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let hash = *hash;
        let vocabulary = self.vocabulary;
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {KEY_COLUMNS} FROM keys_api_keys WHERE hash = ?1"),
                &&hash.as_bytes()[..],
                key_from(vocabulary),
            )
        })
        .await
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        let vocabulary = self.vocabulary;
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {KEY_COLUMNS} FROM keys_api_keys WHERE id = ?1"),
                &id.to_string(),
                key_from(vocabulary),
            )
        })
        .await
    }

    async fn key_changes_since(&self, after: i64) -> Result<(Vec<KeyId>, i64)> {
        self.run(move |c| {
            if after < 0 {
                let end: i64 =
                    c.query_row("SELECT COALESCE(MAX(seq), 0) FROM keys_changes", [], |r| {
                        r.get(0)
                    })?;
                return Ok((Vec::new(), end));
            }
            let mut stmt = c.prepare_cached(
                "SELECT seq, key_id FROM keys_changes WHERE seq > ?1 ORDER BY seq LIMIT 1000",
            )?;
            let rows = stmt.query_map([after], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut ids = Vec::new();
            let mut last = after;
            for row in rows {
                let (seq, id) = row?;
                ids.push(KeyId(uuid(&id)?));
                last = seq;
            }
            Ok((ids, last))
        })
        .await
    }

    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch: Vec<(String, i64)> = batch
            .iter()
            .map(|(id, at)| (id.to_string(), ms(*at)))
            .collect();
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE keys_api_keys SET last_used_at = ?2
                     WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                )?;
                for (id, at) in &batch {
                    stmt.execute(params![id, at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl KeyManagement for SqliteKeyStore {
    async fn insert_key(&self, k: &KeyRecord, hash: &KeyHash) -> Result<()> {
        let k = k.clone();
        let hash = *hash;
        self.run(move |c| insert_key_on(c, &k, &hash)).await
    }

    async fn insert_key_with_event(
        &self,
        k: &KeyRecord,
        hash: &KeyHash,
        event: KeyEvent,
    ) -> Result<()> {
        let hash = *hash;
        self.write_with_event(k.clone(), event, move |c, k| insert_key_on(c, k, &hash))
            .await
    }

    async fn list_keys(&self, filter: &KeyFilter, req: &PageRequest) -> Result<Page<KeyRecord>> {
        let f = *filter;
        let req = req.clone();
        let vocabulary = self.vocabulary;
        self.run(move |c| {
            paged(
                c,
                &format!(
                    "SELECT {KEY_COLUMNS} FROM keys_api_keys
                     WHERE seq > ?1 AND organization_id = ?3
                       AND (?4 IS NULL OR project_id = ?4)
                       AND (?5 IS NULL OR environment = ?5)
                       AND (?6 OR revoked_at IS NULL)
                     ORDER BY seq LIMIT ?2"
                ),
                &req,
                &[
                    &f.organization_id.to_string(),
                    &f.project_id.map(|p| p.to_string()),
                    &f.environment.map(Environment::as_str),
                    &f.include_revoked,
                ],
                key_from(vocabulary),
            )
        })
        .await
    }

    async fn update_key(&self, k: &KeyRecord) -> Result<()> {
        let k = k.clone();
        self.run(move |c| update_key_on(c, &k)).await
    }

    async fn update_key_with_event(&self, k: &KeyRecord, event: KeyEvent) -> Result<()> {
        self.write_with_event(k.clone(), event, update_key_on).await
    }
}

fn insert_key_on(c: &Connection, k: &KeyRecord, hash: &KeyHash) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO keys_api_keys (hash, {}) VALUES \
                 (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                  ?16, ?17, ?18, ?19)",
            KEY_COLUMNS
        ),
        params![
            &hash.as_bytes()[..],
            k.id.to_string(),
            k.name,
            k.prefix,
            k.environment.as_str(),
            k.organization_id.to_string(),
            k.scope.project_id().map(|p| p.to_string()),
            permissions_text(k),
            k.created_by.to_string(),
            ms(k.created_at),
            opt_ms(k.last_used_at),
            opt_ms(k.expires_at),
            opt_ms(k.revoked_at),
            opt_ms(k.suspended_at),
            k.rotated_from.map(|r| r.to_string()),
            k.rate_limit_per_minute,
            cidrs_text(&k.allowed_cidrs),
            k.owner_id,
            meta_text(k.meta.as_ref()),
        ],
    )
    .map_err(|e| {
        let prefix_clash = e.to_string().contains("keys_api_keys.prefix");
        constraint(
            e,
            if prefix_clash {
                Error::PrefixTaken
            } else {
                Error::AlreadyExists(ObjectKind::ApiKey)
            },
        )
    })?;
    Ok(())
}

fn update_key_on(c: &Connection, k: &KeyRecord) -> Result<()> {
    let n = c.execute(
        "UPDATE keys_api_keys SET name = ?2, expires_at = ?3,
                 revoked_at = COALESCE(revoked_at, ?4), suspended_at = ?5,
                 rate_limit_per_minute = ?6, allowed_cidrs = ?7, owner_id = ?8, meta = ?9
             WHERE id = ?1",
        params![
            k.id.to_string(),
            k.name,
            opt_ms(k.expires_at),
            opt_ms(k.revoked_at),
            opt_ms(k.suspended_at),
            k.rate_limit_per_minute,
            cidrs_text(&k.allowed_cidrs),
            k.owner_id,
            meta_text(k.meta.as_ref()),
        ],
    )?;
    if n == 0 {
        return Err(Error::NotFound(ObjectKind::ApiKey));
    }
    Ok(())
}

#[async_trait]
impl LeakStore for SqliteKeyStore {
    async fn record_leak(&self, report: &LeakReport) -> Result<(LeakReport, bool)> {
        let l = report.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let added = tx.execute(
                "INSERT INTO keys_leak_reports (id, fingerprint, organization_id, project_id,
                     key_id, key_prefix, environment, reporter, token_type, url, source, reason,
                     reported_at, action)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (fingerprint) DO NOTHING",
                params![
                    l.id.to_string(),
                    l.fingerprint.as_slice(),
                    l.organization_id.to_string(),
                    l.project_id.map(|p| p.to_string()),
                    l.key_id.to_string(),
                    l.key_prefix,
                    l.environment.as_str(),
                    l.reporter.as_str(),
                    l.token_type,
                    l.url,
                    l.source,
                    l.reason,
                    ms(l.reported_at),
                    l.action.as_str(),
                ],
            )? == 1;
            let stored = first(
                &tx,
                &format!("SELECT {LEAK_COLUMNS} FROM keys_leak_reports WHERE fingerprint = ?1"),
                &l.fingerprint.as_slice(),
                leak_from,
            )?
            .ok_or(Error::Corrupt("leak report"))?;
            tx.commit()?;
            Ok((stored, added))
        })
        .await
    }

    async fn delete_leak(&self, id: LeakReportId) -> Result<()> {
        self.run(move |c| {
            c.execute(
                "DELETE FROM keys_leak_reports WHERE id = ?1",
                [id.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_leaks(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<LeakReport>> {
        let req = req.clone();
        self.run(move |c| {
            paged(
                c,
                &format!(
                    "SELECT {LEAK_COLUMNS} FROM keys_leak_reports
                     WHERE seq > ?1 AND organization_id = ?3 ORDER BY seq LIMIT ?2"
                ),
                &req,
                &[&organization.to_string()],
                leak_from,
            )
        })
        .await
    }
}
