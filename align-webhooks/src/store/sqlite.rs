//! A [`WebhookStore`] on SQLite: WAL, busy timeout, versioned migrations in
//! `webhooks_migrations`, tables prefixed `webhooks_`. Endpoint keys are stored sealed by the
//! store's [`Sealer`] (see `sealed`); the database file is created `0600`.
//!
//! One connection, owned by a thread of its own that runs every call (see `worker`), never
//! on a tokio worker. [`enqueue_in_transaction`] lets a caller write its own change and the
//! webhook in one SQLite transaction.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use align_core::Environment;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::rules::{failing_since_after_attempt, failing_since_after_update, next_state};
use super::sealed;
use super::worker::{self, AttemptJob, Job};
use super::{ClaimSkip, MessagePage, MessageQuery, OutboxStats, Purged, WebhookStore, erasable};
use crate::error::{Error, ObjectKind, Result};
use crate::model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, DueDelivery, Endpoint, EndpointId, Enqueued,
    EventFilter, Message, MessageId, NewMessage, Next, Owner, Route, millis,
};
use crate::rotation::EndpointSecrets;
use crate::sealing::Sealer;

/// WAL pages between automatic checkpoints on the store's connection (SQLite's default is
/// 1000). A checkpoint costs two fsyncs plus a copy of every distinct page in the WAL, and
/// runs inline in the commit that crosses the threshold: at 1000 pages the outbox's small,
/// frequent commits paid for one every few hundred deliveries (4–9 ms each on the
/// development machine, a third of a delivery burst's time). Outbox writes rewrite the same
/// few pages, so a longer interval copies far fewer pages per delivery. The WAL grows to
/// about 32 MB (at 4 KiB pages) between checkpoints. Durability is unchanged: commits are as
/// durable in the WAL as in the database file.
const WAL_AUTOCHECKPOINT: u32 = 8000;

const ENDPOINT_COLUMNS: &str = "e.id, e.environment, e.url, e.event_types, e.enabled, \
    e.disabled_reason, e.secrets, e.max_per_second, e.failing_since, e.created_at, \
    e.owner_org, e.owner_project";
/// What fan-out reads of an endpoint (no keys).
const ROUTE_COLUMNS: &str = "e.id, e.environment, e.event_types, e.enabled, e.owner_org, \
    e.owner_project";
const MESSAGE_COLUMNS: &str =
    "m.id, m.event_id, m.event_type, m.environment, m.payload, m.created_at";
const DELIVERY_COLUMNS: &str =
    "d.id, d.message_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.created_at";
const ATTEMPT_COLUMNS: &str = "attempted_at, status, latency_ms, response_body, error";

/// A [`WebhookStore`] in one SQLite file (which other crates' tables may share), keeping
/// endpoint keys sealed by a [`Sealer`].
#[derive(Clone)]
pub struct SqliteWebhookStore {
    jobs: mpsc::Sender<Job>,
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for SqliteWebhookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteWebhookStore")
    }
}

impl SqliteWebhookStore {
    /// Opens (creating it `0600` if needed) the database at `path`, brings its `webhooks_`
    /// tables up to date, and seals any endpoint keys stored in plaintext by earlier versions.
    ///
    /// `sealer` seals and opens endpoint keys. The store records the id of the key its
    /// values are sealed with; a sealer that does not hold that key, or the key of any stored
    /// value, is refused ([`Error::UnknownSealingKey`]) before anything is written.
    ///
    /// ```no_run
    /// # async fn demo() -> align_webhooks::Result<()> {
    /// use align_webhooks::{Sealer, SqliteWebhookStore};
    /// let (sealer, _created) = Sealer::load_or_create("data/secrets-key".as_ref())?;
    /// let store = SqliteWebhookStore::open("data/align.db", sealer).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>, sealer: Sealer) -> Result<Self> {
        Self::open_with(path.as_ref(), Some(sealer)).await
    }

    /// The store of `path` for a [`SqliteDeduplicator`](crate::SqliteDeduplicator), which
    /// reads no endpoint and so needs no sealer.
    pub(super) async fn open_unsealed(path: &Path) -> Result<Self> {
        Self::open_with(path, None).await
    }

    async fn open_with(path: &Path, sealer: Option<Sealer>) -> Result<Self> {
        let path = path.to_owned();
        let check = sealer.clone();
        let jobs = worker::start(move || {
            let mut conn = align_core::sqlite::open(&path)?;
            configure(&mut conn)?;
            if let Some(sealer) = &check {
                seal_on_open(&conn, sealer)?;
            }
            Ok(conn)
        })
        .await?;
        Ok(Self { jobs, sealer })
    }

    /// A private in-memory database (tests), sealing with a key of its own that lives as
    /// long as the store.
    pub async fn open_in_memory() -> Result<Self> {
        let sealer = Sealer::new(crate::SealingKey::generate()?);
        let check = sealer.clone();
        let jobs = worker::start(move || {
            let mut conn = Connection::open_in_memory()?;
            configure(&mut conn)?;
            seal_on_open(&conn, &check)?;
            Ok(conn)
        })
        .await?;
        Ok(Self {
            jobs,
            sealer: Some(sealer),
        })
    }

    /// The sealer the store needs for endpoints (a clone, for the store's thread).
    fn sealer(&self) -> Result<Sealer> {
        sealed::required(self.sealer.as_ref()).cloned()
    }

    /// Brings the `webhooks_` tables of an embedder's own connection up to date, so that it
    /// can call [`enqueue_in_transaction`].
    pub fn migrate(conn: &mut Connection) -> Result<()> {
        migrate(conn)
    }

    /// The schema version this store has migrated to.
    pub async fn schema_version(&self) -> Result<i64> {
        self.run(|c| {
            Ok(
                c.query_row("SELECT MAX(version) FROM webhooks_migrations", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    /// Runs `f` on the store's thread and returns its answer.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job = Job::Run(Box::new(
            move |c: &mut Connection, _: &mut worker::Claimed| {
                let _ = answer.send(f(c));
            },
        ));
        self.jobs.send(job).map_err(|_| Error::StoreWorker)?;
        answered.await.map_err(|_| Error::StoreWorker)?
    }

    /// [`SqliteWebhookStore::run`] with the worker's [`worker::Claimed`] at hand.
    async fn run_claiming<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut worker::Claimed) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job = Job::Run(Box::new(
            move |c: &mut Connection, claimed: &mut worker::Claimed| {
                let _ = answer.send(f(c, claimed));
            },
        ));
        self.jobs.send(job).map_err(|_| Error::StoreWorker)?;
        answered.await.map_err(|_| Error::StoreWorker)?
    }

    /// Records attempts on the store's thread, committed with every other record waiting.
    async fn record(&self, jobs: Vec<AttemptJob>) -> Result<worker::Recorded> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job::Record(jobs, answer))
            .map_err(|_| Error::StoreWorker)?;
        answered.await.map_err(|_| Error::StoreWorker)
    }
}

/// Runs `f` in an immediate (write-locking) transaction: committed if it succeeds, rolled
/// back if it or the commit fails. `BEGIN` and `COMMIT` are cached statements: rusqlite's
/// `Transaction` parses them on every call, which showed in profiles of the dispatcher.
pub(super) fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    if !conn.is_autocommit() {
        // A transaction left open by a call that panicked.
        conn.execute_batch("ROLLBACK")?;
    }
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let out = f(conn).and_then(|v| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(v)
    });
    if out.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    out
}

/// A page cut from `rows`, read one past it (`LIMIT limit + 1`) each with its `seq`: the first
/// `limit` items and, when another row followed, the last one's `seq` to continue from.
fn seq_page<T>(mut rows: Vec<(T, i64)>, limit: usize) -> (Vec<T>, Option<u64>) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().and_then(|(_, seq)| u64::try_from(*seq).ok())
    } else {
        None
    };
    (rows.into_iter().map(|(item, _)| item).collect(), next)
}

fn configure(conn: &mut Connection) -> Result<()> {
    align_core::sqlite::configure(conn, false)?;
    // Room for every statement the store prepares with `prepare_cached` (rusqlite keeps 16
    // by default; claiming and recording alone use a dozen).
    conn.set_prepared_statement_cache_capacity(64);
    // Query planner stability: plans do not depend on bound values. Without it SQLite
    // re-prepares a cached statement whenever a parameter it peeked at is bound again
    // (the claim's `LIMIT ?2`: a parse and plan on every claim, about a tenth of the
    // store's time in profiles of the dispatcher).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // The tables' CHECK constraints hold the enumerations (`status IN ('pending',
    // 'succeeded', 'failed')`, environments), which SQLite evaluates through a temporary
    // b-tree built on every write that sets such a column (skipping them cut the store's
    // time per delivery by about a quarter). This connection writes those columns only from
    // the crate's enums (`as_str`), so it skips them; other connections to the file (an
    // embedder calling `enqueue_in_transaction`) still enforce them.
    conn.pragma_update(None, "ignore_check_constraints", true)?;
    // Checkpoint every WAL_AUTOCHECKPOINT pages instead of SQLite's 1000 (see there).
    conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}"))?;
    migrate(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    Ok(align_core::sqlite::migrate(
        conn,
        "webhooks",
        super::migrations::SQLITE,
    )?)
}

/// When the store opens: refuses a sealer that does not hold the recorded key or the key of
/// any stored value, seals plaintext values (written before sealing existed), and records
/// the key if none is recorded yet. One transaction: all of it, or nothing.
fn seal_on_open(conn: &Connection, sealer: &Sealer) -> Result<()> {
    let changed = scrubbing(conn, |c| {
        // Write-locked from the start: of two processes opening a new database at once with
        // different keys, the first records its key and the second is refused.
        immediate(c, |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO webhooks_sealing (singleton, key_id) VALUES (1, ?1)",
                [sealer.current_id()],
            )?;
            let recorded: String = tx.query_row(
                "SELECT key_id FROM webhooks_sealing WHERE singleton = 1",
                [],
                |r| r.get(0),
            )?;
            sealed::check_recorded(&recorded, sealer)?;
            reseal_rows(tx, sealer, false)
        })
    })?;
    if changed > 0 {
        checkpoint(conn);
    }
    Ok(())
}

/// Re-seals stored endpoint keys inside `tx` (see `sealed::reseal`); returns how many
/// rows it rewrote.
fn reseal_rows(tx: &Connection, sealer: &Sealer, all: bool) -> Result<u64> {
    let rows = {
        let mut stmt = tx.prepare("SELECT seq, id, secrets FROM webhooks_endpoints")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                uuid_col(r, 1, 3)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut n = 0;
    for (seq, id, stored) in rows {
        if let Some(sealed) = sealed::reseal(EndpointId(id), &stored, sealer, all)? {
            tx.execute(
                "UPDATE webhooks_endpoints SET secrets = ?2 WHERE seq = ?1",
                params![seq, sealed],
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// Runs `f` with SQLite's `secure_delete` on, so the values it replaces are overwritten with
/// zeros in the database's pages instead of lingering there.
fn scrubbing<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.pragma_update(None, "secure_delete", true)?;
    let out = f(conn);
    let off = conn.pragma_update(None, "secure_delete", false);
    let out = out?;
    off?;
    Ok(out)
}

/// Copies the WAL into the database file and empties it, so replaced values are gone from
/// the WAL too. Best effort: a reader in another process may hold the WAL (then its old
/// frames are overwritten as it is reused).
fn checkpoint(conn: &Connection) {
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, v))
}

fn opt_ms(v: Option<i64>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

fn corrupt(what: &'static str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(Error::Corrupt(what)))
}

fn uuid_col(row: &Row<'_>, i: usize, prefix_len: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(i)?;
    Uuid::parse_str(text.get(prefix_len..).unwrap_or_default()).map_err(|_| corrupt("id"))
}

fn env_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Environment> {
    let text: String = row.get(i)?;
    Environment::from_name(&text).ok_or_else(|| corrupt("environment"))
}

fn filter_col(row: &Row<'_>, i: usize) -> rusqlite::Result<EventFilter> {
    Ok(match row.get::<_, Option<String>>(i)? {
        None => EventFilter::All,
        Some(json) => {
            EventFilter::Only(serde_json::from_str(&json).map_err(|_| corrupt("event types"))?)
        }
    })
}

/// An endpoint row as read ([`ENDPOINT_COLUMNS`]), its keys still sealed.
struct EndpointRow {
    id: EndpointId,
    environment: Environment,
    url: String,
    filter: EventFilter,
    enabled: bool,
    disabled_reason: Option<String>,
    sealed: String,
    max_per_second: Option<u32>,
    failing_since: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    owner: Owner,
}

impl EndpointRow {
    /// The endpoint, its keys opened by `sealer`.
    fn open(self, sealer: &Sealer) -> Result<Endpoint> {
        Ok(Endpoint {
            secrets: EndpointSecrets::from_sealed(&self.sealed, self.id, sealer)?,
            id: self.id,
            environment: self.environment,
            url: self.url,
            filter: self.filter,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            max_per_second: self.max_per_second,
            failing_since: self.failing_since,
            created_at: self.created_at,
            owner: self.owner,
        })
    }
}

fn endpoint_at(row: &Row<'_>, o: usize) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        id: EndpointId(uuid_col(row, o, 3)?),
        environment: env_col(row, o + 1)?,
        url: row.get(o + 2)?,
        filter: filter_col(row, o + 3)?,
        enabled: row.get(o + 4)?,
        disabled_reason: row.get(o + 5)?,
        sealed: row.get(o + 6)?,
        max_per_second: row.get(o + 7)?,
        failing_since: opt_ms(row.get(o + 8)?)?,
        created_at: from_ms(row.get(o + 9)?)?,
        owner: Owner {
            organization: row.get(o + 10)?,
            project: row.get(o + 11)?,
        },
    })
}

/// What fan-out needs of an endpoint row ([`ROUTE_COLUMNS`]): id, environment, filter,
/// enabled, owner.
type RouteRow = (EndpointId, Environment, EventFilter, bool, Owner);

fn route_at(row: &Row<'_>) -> rusqlite::Result<RouteRow> {
    Ok((
        EndpointId(uuid_col(row, 0, 3)?),
        env_col(row, 1)?,
        filter_col(row, 2)?,
        row.get(3)?,
        Owner {
            organization: row.get(4)?,
            project: row.get(5)?,
        },
    ))
}

fn message_at(row: &Row<'_>, o: usize) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId(row.get(o)?),
        event_id: row.get(o + 1)?,
        event_type: row.get(o + 2)?,
        environment: env_col(row, o + 3)?,
        payload: row.get(o + 4)?,
        created_at: from_ms(row.get(o + 5)?)?,
    })
}

fn delivery_at(row: &Row<'_>, o: usize) -> rusqlite::Result<Delivery> {
    let status: String = row.get(o + 3)?;
    Ok(Delivery {
        id: DeliveryId(uuid_col(row, o, 4)?),
        message_id: MessageId(row.get(o + 1)?),
        endpoint_id: EndpointId(uuid_col(row, o + 2, 3)?),
        status: DeliveryStatus::from_name(&status).ok_or_else(|| corrupt("status"))?,
        attempts: row.get(o + 4)?,
        next_attempt_at: opt_ms(row.get(o + 5)?)?,
        created_at: from_ms(row.get(o + 6)?)?,
    })
}

fn attempt_at(row: &Row<'_>, o: usize) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        at: from_ms(row.get(o)?)?,
        status: row.get(o + 1)?,
        latency_ms: row.get::<_, i64>(o + 2)?.try_into().unwrap_or(0),
        response_body: row.get(o + 3)?,
        error: row.get(o + 4)?,
    })
}

fn filter_json(filter: &EventFilter) -> Result<Option<String>> {
    match filter {
        EventFilter::All => Ok(None),
        EventFilter::Only(types) => Ok(Some(serde_json::to_string(types)?)),
    }
}

/// Enqueues `message` inside the caller's transaction, so the change that caused the event
/// and the event itself commit (or roll back) together. The connection must have been
/// migrated ([`SqliteWebhookStore::open`] on the same file, or
/// [`SqliteWebhookStore::migrate`]). Same semantics as [`WebhookStore::enqueue`].
pub fn enqueue_in_transaction(
    tx: &Transaction<'_>,
    message: &NewMessage,
    now: DateTime<Utc>,
) -> Result<Enqueued> {
    enqueue_on(tx, message, now)
}

/// [`enqueue_in_transaction`] on a connection inside a transaction.
fn enqueue_on(tx: &Connection, message: &NewMessage, now: DateTime<Utc>) -> Result<Enqueued> {
    let now = millis(now);
    let existing = tx
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} FROM webhooks_messages m WHERE m.event_id = ?1"),
            [&message.event_id],
            |r| message_at(r, 0),
        )
        .optional()?;
    if let Some(message) = existing {
        return Ok(Enqueued::repeat(message));
    }
    let stored = message.stored(now);
    tx.execute(
        "INSERT INTO webhooks_messages (id, event_id, event_type, environment, payload, created_at,
         owner_org, owner_project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            stored.id.0,
            stored.event_id,
            stored.event_type,
            stored.environment.as_str(),
            stored.payload,
            ms(now),
            message.owner.organization,
            message.owner.project,
        ],
    )?;
    let message_seq = tx.last_insert_rowid();
    let routes = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {ROUTE_COLUMNS} FROM webhooks_endpoints e
             WHERE e.owner_org = ?1 AND e.environment = ?2 AND e.enabled = 1
             ORDER BY e.seq"
        ))?;
        let rows = stmt.query_map(
            [
                message.owner.organization.as_str(),
                message.environment.as_str(),
            ],
            route_at,
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut deliveries = Vec::new();
    for (endpoint, environment, filter, enabled, owner) in &routes {
        let route = Route {
            id: *endpoint,
            environment: *environment,
            filter,
            enabled: *enabled,
            owner,
        };
        if !route.wants(message) {
            continue;
        }
        let id = DeliveryId::new();
        tx.execute(
            "INSERT INTO webhooks_deliveries (id, message_id, message_seq, endpoint_id,
             status, attempts, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
            params![
                id.to_string(),
                stored.id.0,
                message_seq,
                endpoint.to_string(),
                ms(now)
            ],
        )?;
        deliveries.push(id);
    }
    Ok(Enqueued {
        message: stored,
        deliveries,
        created: true,
    })
}

fn not_found(kind: ObjectKind) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| match e {
        rusqlite::Error::QueryReturnedNoRows => Error::NotFound(kind),
        other => Error::Database(other),
    }
}

/// Endpoint rows read while recording one round of attempts: text id → (rowid,
/// `failing_since`), kept up to date by the round's own writes.
pub(super) type EndpointStates = HashMap<String, (i64, Option<i64>)>;

/// Records one attempt on `tx` (see [`WebhookStore::record_attempt`]); returns the
/// endpoint's `failing_since` after the update.
///
/// The inner error is this attempt's alone, and comes before anything was written (an
/// unknown delivery); the outer one is a failed write, after which the transaction must be
/// rolled back. So attempts recorded together need no savepoint each.
///
/// `known` is the delivery's rowid and endpoint when the claim that handed it out is still
/// remembered (see `worker::Claimed`); otherwise the id index finds them. Rows are written by
/// rowid. The endpoint row is read once per round (`endpoints`) and written only when
/// `failing_since` changes: after a success on a healthy endpoint (the usual case) it is
/// only read, so a commit does not rewrite its page.
pub(super) fn record_one(
    tx: &Connection,
    job: &AttemptJob,
    known: Option<(i64, String)>,
    endpoints: &mut EndpointStates,
) -> Result<Result<Option<DateTime<Utc>>>> {
    let AttemptJob {
        delivery,
        attempt,
        next,
    } = job;
    let id = delivery.to_string();
    let (status, due) = next_state(*next);
    let found = match known {
        Some(row) => Some(row),
        None => tx
            .prepare_cached("SELECT seq, endpoint_id FROM webhooks_deliveries WHERE id = ?1")?
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    };
    let Some((seq, endpoint)) = found else {
        return Ok(Err(Error::NotFound(ObjectKind::Delivery)));
    };
    let moved = tx
        .prepare_cached(
            "UPDATE webhooks_deliveries SET attempts = attempts + 1, status = ?2,
             next_attempt_at = ?3 WHERE seq = ?1",
        )?
        .execute(params![seq, status.as_str(), due.map(ms)])?;
    if moved == 0 {
        // Deleted since it was claimed (its endpoint was deleted).
        return Ok(Err(Error::NotFound(ObjectKind::Delivery)));
    }
    tx.prepare_cached(
        "INSERT INTO webhooks_attempts
         (delivery_id, delivery_seq, attempted_at, status, latency_ms, response_body, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        seq,
        ms(attempt.at),
        attempt.status,
        i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX),
        &attempt.response_body,
        &attempt.error
    ])?;
    let (endpoint_seq, failing) = match endpoints.get(&endpoint) {
        Some(state) => *state,
        None => tx
            .prepare_cached("SELECT seq, failing_since FROM webhooks_endpoints WHERE id = ?1")?
            .query_row([&endpoint], |r| Ok((r.get(0)?, r.get(1)?)))?,
    };
    let after = failing_since_after_attempt(failing, *next, ms(attempt.at));
    if after != failing {
        tx.prepare_cached("UPDATE webhooks_endpoints SET failing_since = ?2 WHERE seq = ?1")?
            .execute(params![endpoint_seq, after])?;
    }
    endpoints.insert(endpoint, (endpoint_seq, after));
    Ok(opt_ms(after).map_err(Error::from))
}

/// Where the claim's rows come from: pending deliveries due at `?1` to enabled endpoints
/// of organisations not in the JSON array `?3`, themselves not in the JSON array `?4`,
/// oldest due first, at most `?2`, with their messages.
const CLAIM_FROM: &str = "FROM webhooks_deliveries d
    JOIN webhooks_messages m ON m.seq = d.message_seq
    JOIN webhooks_endpoints e ON e.id = d.endpoint_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND e.enabled = 1
      AND e.owner_org NOT IN (SELECT value FROM json_each(?3))
      AND e.id NOT IN (SELECT value FROM json_each(?4))
    ORDER BY d.next_attempt_at LIMIT ?2";

/// Selects and leases the due deliveries (see [`WebhookStore::claim_due`]) inside `tx`.
///
/// Each endpoint is read (and its keys parsed) once per claim, not once per delivery, and
/// the lease is written by rowid.
fn claim_in(
    tx: &Connection,
    sealer: &Sealer,
    now: i64,
    limit: i64,
    until: i64,
    (organizations, endpoints): &(String, String),
) -> Result<Vec<(i64, DueDelivery)>> {
    let rows = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT d.seq, {DELIVERY_COLUMNS}, {MESSAGE_COLUMNS} {CLAIM_FROM}"
        ))?;
        let rows = stmt.query_map(params![now, limit, organizations, endpoints], |r| {
            Ok((r.get::<_, i64>(0)?, delivery_at(r, 1)?, message_at(r, 8)?))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut lease =
        tx.prepare_cached("UPDATE webhooks_deliveries SET next_attempt_at = ?2 WHERE seq = ?1")?;
    for (seq, _, _) in &rows {
        lease.execute(params![seq, until])?;
    }
    let mut endpoint = tx.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e WHERE e.id = ?1"
    ))?;
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut due = Vec::with_capacity(rows.len());
    for (seq, delivery, message) in rows {
        let ep = match endpoints.iter().find(|e| e.id == delivery.endpoint_id) {
            Some(ep) => ep.clone(),
            None => {
                let ep = endpoint
                    .query_row([delivery.endpoint_id.to_string()], |r| endpoint_at(r, 0))?
                    .open(sealer)?;
                endpoints.push(ep.clone());
                ep
            }
        };
        due.push((
            seq,
            DueDelivery {
                delivery,
                message,
                endpoint: ep,
            },
        ));
    }
    Ok(due)
}

/// Inserts `ep` with its keys already `sealed`.
fn insert_endpoint(
    tx: &Connection,
    ep: &Endpoint,
    sealed: &str,
    filter: Option<String>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO webhooks_endpoints (id, environment, url, event_types, enabled,
         disabled_reason, secrets, max_per_second, failing_since, created_at,
         owner_org, owner_project)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            ep.id.to_string(),
            ep.environment.as_str(),
            ep.url,
            filter,
            ep.enabled,
            ep.disabled_reason,
            sealed,
            ep.max_per_second,
            ep.failing_since.map(ms),
            ms(ep.created_at),
            ep.owner.organization,
            ep.owner.project,
        ],
    )?;
    Ok(())
}

#[async_trait]
impl WebhookStore for SqliteWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let ep = endpoint.clone();
        let sealer = self.sealer()?;
        let filter = filter_json(&ep.filter)?;
        // Sealed inside the write transaction: a rotation committed before it has its key
        // current by then (the sealer reads a changed key file before it seals).
        self.run(move |c| {
            immediate(c, |tx| {
                insert_endpoint(tx, &ep, &ep.secrets.seal(ep.id, &sealer)?, filter)
            })
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let ep = endpoint.clone();
        let sealer = self.sealer()?;
        let filter = filter_json(&ep.filter)?;
        self.run(move |c| {
            immediate(c, |tx| {
                let sealed = ep.secrets.seal(ep.id, &sealer)?;
                let id = ep.id.to_string();
                let (was_enabled, failing): (bool, Option<i64>) = tx
                    .query_row(
                        "SELECT enabled, failing_since FROM webhooks_endpoints WHERE id = ?1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .ok_or(Error::NotFound(ObjectKind::Endpoint))?;
                tx.execute(
                    "UPDATE webhooks_endpoints SET url = ?2, event_types = ?3, failing_since = ?8,
                     enabled = ?4, disabled_reason = ?5, secrets = ?6, max_per_second = ?7
                     WHERE id = ?1",
                    params![
                        id,
                        ep.url,
                        filter,
                        ep.enabled,
                        ep.disabled_reason,
                        sealed,
                        ep.max_per_second,
                        failing_since_after_update(was_enabled, ep.enabled, failing)
                    ],
                )?;
                Ok(())
            })
        })
        .await
    }

    async fn reseal_secrets(&self) -> Result<u64> {
        let sealer = self.sealer()?;
        self.run(move |c| {
            let n = scrubbing(c, |c| {
                immediate(c, |tx| {
                    let n = reseal_rows(tx, &sealer, true)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO webhooks_sealing (singleton, key_id)
                         VALUES (1, ?1)",
                        [sealer.current_id()],
                    )?;
                    Ok(n)
                })
            })?;
            checkpoint(c);
            Ok(n)
        })
        .await
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Endpoint> {
        let sealer = self.sealer()?;
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e WHERE e.id = ?1"),
                [id.to_string()],
                |r| endpoint_at(r, 0),
            )
            .map_err(not_found(ObjectKind::Endpoint))?
            .open(&sealer)
        })
        .await
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let sealer = self.sealer()?;
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e ORDER BY e.seq"
            ))?;
            let rows = stmt.query_map([], |r| endpoint_at(r, 0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .map(|row| row.open(&sealer))
                .collect()
        })
        .await
    }

    async fn organization_endpoints(&self, organization: &str) -> Result<Vec<Endpoint>> {
        let sealer = self.sealer()?;
        let organization = organization.to_owned();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e
                 WHERE e.owner_org = ?1 ORDER BY e.seq"
            ))?;
            let rows = stmt.query_map([&organization], |r| endpoint_at(r, 0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .map(|row| row.open(&sealer))
                .collect()
        })
        .await
    }

    async fn organization_endpoint_count(&self, organization: &str) -> Result<u64> {
        let organization = organization.to_owned();
        self.run(move |c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM webhooks_endpoints WHERE owner_org = ?1")?
                .query_row([&organization], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn enqueue(&self, message: NewMessage, now: DateTime<Utc>) -> Result<Enqueued> {
        self.run(move |c| immediate(c, |tx| enqueue_on(tx, &message, now)))
            .await
    }

    async fn message(&self, id: &MessageId) -> Result<Message> {
        let id = id.0.clone();
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM webhooks_messages m WHERE m.id = ?1"),
                [id],
                |r| message_at(r, 0),
            )
            .map_err(not_found(ObjectKind::Message))
        })
        .await
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhooks_deliveries d WHERE d.id = ?1"),
                [id.to_string()],
                |r| delivery_at(r, 0),
            )
            .map_err(not_found(ObjectKind::Delivery))
        })
        .await
    }

    async fn deliveries(&self, endpoint: EndpointId, limit: usize) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhooks_deliveries d
                 WHERE d.endpoint_id = ?1 ORDER BY d.seq DESC LIMIT ?2"
            ))?;
            let rows =
                stmt.query_map(params![endpoint.to_string(), limit], |r| delivery_at(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn latest_attempts(&self, delivery: DeliveryId, limit: usize) -> Result<Vec<Attempt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ATTEMPT_COLUMNS} FROM (
                   SELECT seq, attempted_at, status, latency_ms, response_body, error
                   FROM webhooks_attempts WHERE delivery_seq =
                     (SELECT seq FROM webhooks_deliveries WHERE id = ?1)
                   ORDER BY seq DESC LIMIT ?2
                 ) ORDER BY seq"
            ))?;
            let rows =
                stmt.query_map(params![delivery.to_string(), limit], |r| attempt_at(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn attempt_page(
        &self,
        delivery: DeliveryId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Attempt>, Option<u64>)> {
        let limit = limit.clamp(1, 1000);
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        self.run(move |c| {
            // One more than the page, to know whether another follows; the index on
            // (delivery_seq, seq) serves it from the page's end.
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLUMNS}, seq FROM webhooks_attempts
                 WHERE delivery_seq = (SELECT seq FROM webhooks_deliveries WHERE id = ?1)
                   AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    delivery.to_string(),
                    before,
                    i64::try_from(limit + 1).unwrap_or(i64::MAX)
                ],
                |r| Ok((attempt_at(r, 0)?, r.get::<_, i64>(5)?)),
            )?;
            Ok(seq_page(rows.collect::<rusqlite::Result<_>>()?, limit))
        })
        .await
    }

    async fn claim_due_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        skip: &ClaimSkip,
    ) -> Result<Vec<DueDelivery>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sealer = self.sealer()?;
        let endpoints: Vec<String> = skip.endpoints.iter().map(ToString::to_string).collect();
        let skip = (
            serde_json::to_string(&skip.organizations)?,
            serde_json::to_string(&endpoints)?,
        );
        self.run_claiming(move |c, claimed| {
            let due = immediate(c, |tx| {
                claim_in(tx, &sealer, ms(now), limit, ms(until), &skip)
            })?;
            for (seq, d) in &due {
                claimed.insert(d.delivery.id, (*seq, d.delivery.endpoint_id.to_string()));
            }
            Ok(due.into_iter().map(|(_, d)| d).collect())
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery: DeliveryId,
        attempt: Attempt,
        next: Next,
    ) -> Result<Option<DateTime<Utc>>> {
        let job = AttemptJob {
            delivery,
            attempt,
            next,
        };
        self.record(vec![job])
            .await?
            .pop()
            .unwrap_or(Err(Error::StoreWorker))
    }

    async fn record_attempts(
        &self,
        attempts: Vec<(DeliveryId, Attempt, Next)>,
    ) -> Vec<Result<Option<DateTime<Utc>>>> {
        let n = attempts.len();
        let jobs = attempts
            .into_iter()
            .map(|(delivery, attempt, next)| AttemptJob {
                delivery,
                attempt,
                next,
            })
            .collect();
        match self.record(jobs).await {
            Ok(results) => results,
            Err(_) => (0..n).map(|_| Err(Error::StoreWorker)).collect(),
        }
    }

    async fn postpone(&self, delivery: DeliveryId, at: DateTime<Utc>) -> Result<()> {
        self.run(move |c| {
            c.execute(
                "UPDATE webhooks_deliveries SET next_attempt_at = ?2
                 WHERE id = ?1 AND status = 'pending'",
                params![delivery.to_string(), ms(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn retry(&self, delivery: DeliveryId, now: DateTime<Utc>) -> Result<()> {
        self.run(move |c| {
            let n = c.execute(
                "UPDATE webhooks_deliveries SET status = 'pending', next_attempt_at = ?2
                 WHERE id = ?1",
                params![delivery.to_string(), ms(now)],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::Delivery));
            }
            Ok(())
        })
        .await
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<()> {
        self.run(move |c| {
            let id = id.to_string();
            immediate(c, |tx| {
                tx.execute(
                    "DELETE FROM webhooks_attempts WHERE delivery_seq IN
                 (SELECT seq FROM webhooks_deliveries WHERE endpoint_id = ?1)",
                    [&id],
                )?;
                tx.execute(
                    "DELETE FROM webhooks_deliveries WHERE endpoint_id = ?1",
                    [&id],
                )?;
                let n = tx.execute("DELETE FROM webhooks_endpoints WHERE id = ?1", [&id])?;
                if n == 0 {
                    return Err(Error::NotFound(ObjectKind::Endpoint));
                }
                Ok(())
            })
        })
        .await
    }

    async fn delivery_page(
        &self,
        endpoint: EndpointId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<u64>)> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        self.run(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS}, d.seq FROM webhooks_deliveries d
                 WHERE d.endpoint_id = ?1 AND d.seq < ?2 ORDER BY d.seq DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![endpoint.to_string(), before, limit + 1], |r| {
                Ok((delivery_at(r, 0)?, r.get::<_, i64>(7)?))
            })?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            Ok(seq_page(rows.collect::<rusqlite::Result<_>>()?, limit))
        })
        .await
    }

    async fn messages(&self, query: &MessageQuery) -> Result<MessagePage> {
        let q = query.clone();
        let limit = q.clamped_limit();
        self.run(move |c| {
            // A family filter (`api_key.*`) compares the leading characters; LIKE would treat
            // the `_` in event names as a wildcard.
            let (exact, family) = match &q.event_type {
                None => (None, None),
                Some(t) => match t.strip_suffix('*') {
                    Some(prefix) => (None, Some(prefix.to_owned())),
                    None => (Some(t.clone()), None),
                },
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS}, m.seq FROM webhooks_messages m
                 WHERE m.seq > ?1 AND m.owner_org = ?2
                   AND (?3 IS NULL OR m.owner_project = ?3)
                   AND m.environment = ?4
                   AND (?5 IS NULL OR m.event_type = ?5)
                   AND (?6 IS NULL OR substr(m.event_type, 1, length(?6)) = ?6)
                   AND (?7 IS NULL OR m.created_at >= ?7)
                   AND (?8 IS NULL OR m.created_at < ?8)
                 ORDER BY m.seq LIMIT ?9"
            ))?;
            let rows = stmt.query_map(
                params![
                    i64::try_from(q.after).unwrap_or(i64::MAX),
                    q.organization,
                    q.project,
                    q.environment.as_str(),
                    exact,
                    family,
                    q.since.map(ms),
                    q.until.map(ms),
                    i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
                |r| Ok((message_at(r, 0)?, r.get::<_, i64>(6)?)),
            )?;
            let (messages, next) = seq_page(rows.collect::<rusqlite::Result<_>>()?, limit);
            Ok(MessagePage { messages, next })
        })
        .await
    }

    async fn purge(
        &self,
        deliveries_before: DateTime<Utc>,
        messages_before: DateTime<Utc>,
    ) -> Result<Purged> {
        let (d, m) = (ms(deliveries_before), ms(messages_before));
        self.run(move |c| {
            immediate(c, |tx| {
                const EXPIRED: &str = "(d.status <> 'pending' AND d.created_at < ?1)
                     OR d.message_id IN (SELECT id FROM webhooks_messages WHERE created_at < ?2)";
                let attempts = tx.execute(
                    &format!(
                        "DELETE FROM webhooks_attempts WHERE delivery_seq IN
                         (SELECT d.seq FROM webhooks_deliveries d WHERE {EXPIRED})"
                    ),
                    params![d, m],
                )?;
                let deliveries = tx.execute(
                    &format!(
                        "DELETE FROM webhooks_deliveries WHERE seq IN
                         (SELECT d.seq FROM webhooks_deliveries d WHERE {EXPIRED})"
                    ),
                    params![d, m],
                )?;
                let messages =
                    tx.execute("DELETE FROM webhooks_messages WHERE created_at < ?1", [m])?;
                Ok(Purged {
                    messages: messages as u64,
                    deliveries: deliveries as u64,
                    attempts: attempts as u64,
                })
            })
        })
        .await
    }

    async fn erase_values(&self, organization: &str, values: &[String]) -> Result<u64> {
        let values = erasable(values);
        let org = organization.to_owned();
        self.run(move |c| {
            immediate(c, |tx| {
                let mut n = 0;
                for (v, with) in &values {
                    n += tx.execute(
                        "UPDATE webhooks_messages SET payload = replace(payload, ?1, ?2)
                         WHERE owner_org = ?3 AND instr(payload, ?1) > 0",
                        params![v, with, org],
                    )? as u64;
                    n += tx.execute(
                        "UPDATE webhooks_attempts SET
                           response_body = replace(response_body, ?1, ?2),
                           error = replace(error, ?1, ?2)
                         WHERE (instr(response_body, ?1) > 0 OR instr(error, ?1) > 0)
                           AND delivery_seq IN (SELECT d.seq FROM webhooks_deliveries d
                             JOIN webhooks_messages m ON m.id = d.message_id
                             WHERE m.owner_org = ?3)",
                        params![v, with, org],
                    )? as u64;
                }
                Ok(n)
            })
        })
        .await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.run(|c| {
            // Pending and failed are counted on their own (partial) indexes; succeeded, the
            // bulk, is the rest of the table.
            let (pending, failed, all): (i64, i64, i64) = c
                .prepare_cached(
                    "SELECT
                       (SELECT COUNT(*) FROM webhooks_deliveries WHERE status = 'pending'),
                       (SELECT COUNT(*) FROM webhooks_deliveries WHERE status = 'failed'),
                       (SELECT COUNT(*) FROM webhooks_deliveries)",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            let stats = OutboxStats {
                pending: count(pending),
                succeeded: count(all - pending - failed),
                failed: count(failed),
            };
            Ok(stats)
        })
        .await
    }

    async fn recover_failed_since(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.run(move |c| {
            let n = c.execute(
                "UPDATE webhooks_deliveries SET status = 'pending', next_attempt_at = ?3
                 WHERE endpoint_id = ?1 AND status = 'failed' AND created_at >= ?2",
                params![endpoint.to_string(), ms(since), ms(now)],
            )?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use align_core::Environment;
    use chrono::Utc;
    use rusqlite::{Connection, params};

    use super::SqliteWebhookStore;
    use crate::model::{Attempt, DeliveryId, Endpoint, Next};
    use crate::store::WebhookStore;
    use crate::store::migrations::SQLITE;
    use crate::{EndpointKey, EndpointSecrets, SigningSecret};

    /// A database written by an earlier schema (version 4), with a delivery that has two
    /// attempts and one still pending, opens at the current version with everything readable
    /// and writable.
    #[tokio::test]
    async fn a_version_4_outbox_migrates_with_its_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let ep = Endpoint::new(
            Environment::Sandbox,
            "http://127.0.0.1:9/".to_owned(),
            EndpointSecrets::new(EndpointKey::Symmetric(SigningSecret::generate().unwrap())),
        );
        let (done, pending) = (DeliveryId::new(), DeliveryId::new());
        {
            let mut c = Connection::open(&path).unwrap();
            align_core::sqlite::configure(&c, false).unwrap();
            align_core::sqlite::migrate(&mut c, "webhooks", &SQLITE[..4]).unwrap();
            c.execute(
                "INSERT INTO webhooks_endpoints (id, environment, url, enabled, secrets,
                 created_at) VALUES (?1, 'sandbox', ?2, 1, ?3, 0)",
                params![
                    ep.id.to_string(),
                    ep.url,
                    ep.secrets.to_stored().unwrap().expose()
                ],
            )
            .unwrap();
            for (i, (delivery, status, due)) in
                [(done, "succeeded", None), (pending, "pending", Some(1_i64))]
                    .into_iter()
                    .enumerate()
            {
                c.execute(
                    "INSERT INTO webhooks_messages (id, event_id, event_type, environment,
                     payload, created_at) VALUES (?1, ?1, 'x.y', 'sandbox', '{}', 0)",
                    [format!("msg_{i}")],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO webhooks_deliveries (id, message_id, endpoint_id, status,
                     attempts, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, 0)",
                    params![
                        delivery.to_string(),
                        format!("msg_{i}"),
                        ep.id.to_string(),
                        status,
                        due
                    ],
                )
                .unwrap();
            }
            for (at, status) in [(10_i64, 500), (20, 204)] {
                c.execute(
                    "INSERT INTO webhooks_attempts (delivery_id, attempted_at, status,
                     latency_ms) VALUES (?1, ?2, ?3, 1)",
                    params![done.to_string(), at, status],
                )
                .unwrap();
            }
        }

        let sealer = crate::Sealer::new(crate::SealingKey::generate().unwrap());
        let store = SqliteWebhookStore::open(&path, sealer).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 7);
        // The endpoint's plaintext keys were sealed as the store opened.
        let stored: String = store
            .run(|c| Ok(c.query_row("SELECT secrets FROM webhooks_endpoints", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert!(crate::is_sealed(&stored));
        let opened = store.endpoint(ep.id).await.unwrap();
        assert_eq!(
            opened.secrets.current().expose().expose(),
            ep.secrets.current().expose().expose()
        );
        let attempts = store.attempts(done).await.unwrap();
        let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(500), Some(204)]);
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.pending, stats.succeeded, stats.failed), (1, 1, 0));
        let due = store
            .claim_due(Utc::now(), 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].delivery.id, pending);
        let attempt = Attempt {
            at: Utc::now(),
            status: Some(204),
            latency_ms: 3,
            response_body: None,
            error: None,
        };
        store
            .record_attempt(pending, attempt, Next::Succeeded)
            .await
            .unwrap();
        assert_eq!(store.attempts(pending).await.unwrap().len(), 1);
        // New attempts come after the migrated ones.
        let next = Attempt {
            at: Utc::now(),
            status: Some(503),
            latency_ms: 3,
            response_body: None,
            error: None,
        };
        store
            .record_attempt(done, next, Next::Failed)
            .await
            .unwrap();
        let statuses: Vec<_> = store
            .attempts(done)
            .await
            .unwrap()
            .iter()
            .map(|a| a.status)
            .collect();
        assert_eq!(statuses, [Some(500), Some(204), Some(503)]);
        let stats = store.outbox_stats().await.unwrap();
        assert_eq!((stats.pending, stats.succeeded, stats.failed), (0, 1, 1));
        store.delete_endpoint(ep.id).await.unwrap();
        assert!(store.attempts(done).await.unwrap().is_empty());
    }

    /// Issue 21, finding 3: fan-out and an organisation's list read its endpoints through
    /// the owner index, not every organisation's.
    #[tokio::test]
    async fn endpoints_are_found_through_the_owner_index() {
        let store = SqliteWebhookStore::open_in_memory().await.unwrap();
        let plan = store
            .run(|c| {
                let mut out = Vec::new();
                for sql in [
                    "EXPLAIN QUERY PLAN SELECT e.id FROM webhooks_endpoints e
                     WHERE e.owner_org = ?1 AND e.environment = ?2 AND e.enabled = 1
                     ORDER BY e.seq",
                    "EXPLAIN QUERY PLAN SELECT e.id FROM webhooks_endpoints e
                     WHERE e.owner_org = ?1 AND ?2 = ?2 ORDER BY e.seq",
                ] {
                    let mut stmt = c.prepare(sql)?;
                    let rows = stmt.query_map(params!["org", "live"], |r| r.get::<_, String>(3))?;
                    out.push(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"));
                }
                Ok(out)
            })
            .await
            .unwrap();
        for p in plan {
            assert!(p.contains("webhooks_endpoints_by_owner"), "{p}");
        }
    }

    /// The claim reads the small index of pending deliveries, not the whole table.
    #[tokio::test]
    async fn the_claim_uses_the_pending_index() {
        let store = SqliteWebhookStore::open_in_memory().await.unwrap();
        let plan = store
            .run(|c| {
                let mut stmt = c.prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT d.seq, m.payload {}",
                    super::CLAIM_FROM
                ))?;
                let rows = stmt.query_map(params![1_i64, 10_i64, "[\"org\"]", "[]"], |r| {
                    r.get::<_, String>(3)
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
            })
            .await
            .unwrap();
        assert!(plan.contains("webhooks_deliveries_pending"), "{plan}");
    }
}
