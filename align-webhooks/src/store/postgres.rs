//! A [`WebhookStore`] on PostgreSQL, shared by several dispatchers: a `deadpool-postgres`
//! pool, versioned migrations in `webhooks_migrations`, tables prefixed `webhooks_` with the
//! same columns as the SQLite store (times in Unix milliseconds, ids as text).
//!
//! [`WebhookStore::claim_due`] takes due deliveries with `FOR UPDATE SKIP LOCKED` and leases
//! them in the same transaction, so dispatchers on several instances never claim the same
//! delivery twice while a lease runs; a dispatcher that dies mid-delivery leaves its claims to
//! come due again when their leases end (at-least-once, never lost).
//!
//! Enqueueing takes a transaction-scoped advisory lock before it writes the message: messages
//! (and their deliveries) get their positions in commit order, so a reader of the event log
//! that pages by position never skips a message committed late by a slower transaction.
//!
//! Endpoint keys are stored sealed by the store's [`Sealer`] (see `sealed`). Writes of
//! endpoints take a `ROW EXCLUSIVE` lock on the endpoints table before they seal, and
//! re-sealing takes an `EXCLUSIVE` one, so no endpoint written during a rotation is sealed
//! under a key the rotation is retiring.

use std::time::Duration;

use align_core::Environment;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::rules::{failing_since_after_attempt, failing_since_after_update, next_state};
use super::sealed;
use super::{ClaimSkip, MessagePage, MessageQuery, OutboxStats, Purged, WebhookStore, erasable};
use crate::error::{Error, ObjectKind, Result};
use crate::model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, DueDelivery, Endpoint, EndpointId, Enqueued,
    EventFilter, Message, MessageId, NewMessage, Next, Owner, Route, millis,
};
use crate::rotation::EndpointSecrets;
use crate::sealing::Sealer;

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

/// A [`WebhookStore`] in a PostgreSQL database (which the key store may share), for any
/// number of server instances and dispatchers, keeping endpoint keys sealed by a [`Sealer`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = align_core::postgres::connect("postgres://align@db.internal/align")?;
/// // Every instance needs the same key file.
/// let sealer = align_webhooks::Sealer::load("/etc/align/secrets-key".as_ref())?;
/// let store = align_webhooks::PgWebhookStore::open(pool, sealer).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgWebhookStore {
    pool: Pool,
    sealer: Sealer,
}

impl std::fmt::Debug for PgWebhookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgWebhookStore")
    }
}

impl PgWebhookStore {
    /// A store over `pool`, with its `webhooks_` tables brought up to date and any endpoint
    /// keys stored in plaintext by earlier versions sealed.
    ///
    /// The store records the id of the key its values are sealed with; a `sealer` that does
    /// not hold that key (another instance's, or a new key file where the old one was lost),
    /// or the key of any stored value, is refused ([`Error::UnknownSealingKey`]) before
    /// anything is written.
    pub async fn open(pool: Pool, sealer: Sealer) -> Result<Self> {
        let mut client = pool.get().await?;
        Self::migrate(&mut client).await?;
        seal_on_open(&mut client, &sealer).await?;
        drop(client);
        Ok(Self { pool, sealer })
    }

    /// Brings the `webhooks_` tables of an embedder's own connection up to date, so that it
    /// can call [`PgWebhookStore::enqueue_in_transaction`].
    pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
        Ok(align_core::postgres::migrate(client, "webhooks", super::migrations::POSTGRES).await?)
    }

    /// The schema version this store has migrated to.
    pub async fn schema_version(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(align_core::postgres::schema_version(&client, "webhooks").await?)
    }

    /// Enqueues `message` inside the caller's transaction, so the change that caused the
    /// event and the event itself commit (or roll back) together. The database must have
    /// been migrated ([`PgWebhookStore::open`] or [`PgWebhookStore::migrate`]). Same
    /// semantics as [`WebhookStore::enqueue`].
    pub async fn enqueue_in_transaction(
        tx: &tokio_postgres::Transaction<'_>,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Enqueued> {
        enqueue_on(tx, message, now).await
    }
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what)
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or(corrupt("timestamp"))
}

fn opt_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn uuid_col(row: &Row, i: usize, prefix_len: usize) -> Result<Uuid> {
    let text: &str = row.try_get(i)?;
    Uuid::parse_str(text.get(prefix_len..).unwrap_or_default()).map_err(|_| corrupt("id"))
}

fn env_col(row: &Row, i: usize) -> Result<Environment> {
    Environment::from_name(row.try_get(i)?).ok_or(corrupt("environment"))
}

fn filter_col(row: &Row, i: usize) -> Result<EventFilter> {
    Ok(match row.try_get::<_, Option<&str>>(i)? {
        None => EventFilter::All,
        Some(json) => {
            EventFilter::Only(serde_json::from_str(json).map_err(|_| corrupt("event types"))?)
        }
    })
}

/// An endpoint from a row of [`ENDPOINT_COLUMNS`] at `o`, its keys opened by `sealer`.
fn endpoint_at(row: &Row, o: usize, sealer: &Sealer) -> Result<Endpoint> {
    let id = EndpointId(uuid_col(row, o, 3)?);
    let secrets = EndpointSecrets::from_sealed(row.try_get(o + 6)?, id, sealer)?;
    let max_per_second: Option<i64> = row.try_get(o + 7)?;
    Ok(Endpoint {
        id,
        environment: env_col(row, o + 1)?,
        url: row.try_get(o + 2)?,
        filter: filter_col(row, o + 3)?,
        enabled: row.try_get(o + 4)?,
        disabled_reason: row.try_get(o + 5)?,
        secrets,
        max_per_second: max_per_second
            .map(|n| u32::try_from(n).map_err(|_| corrupt("max per second")))
            .transpose()?,
        failing_since: opt_ms(row.try_get(o + 8)?)?,
        created_at: from_ms(row.try_get(o + 9)?)?,
        owner: Owner {
            organization: row.try_get(o + 10)?,
            project: row.try_get(o + 11)?,
        },
    })
}

fn message_at(row: &Row, o: usize) -> Result<Message> {
    Ok(Message {
        id: MessageId(row.try_get(o)?),
        event_id: row.try_get(o + 1)?,
        event_type: row.try_get(o + 2)?,
        environment: env_col(row, o + 3)?,
        payload: row.try_get(o + 4)?,
        created_at: from_ms(row.try_get(o + 5)?)?,
    })
}

fn attempt_at(row: &Row, o: usize) -> Result<Attempt> {
    let status: Option<i32> = row.try_get(o + 1)?;
    let latency: i64 = row.try_get(o + 2)?;
    Ok(Attempt {
        at: from_ms(row.try_get(o)?)?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| corrupt("status")))
            .transpose()?,
        latency_ms: u64::try_from(latency).unwrap_or(0),
        response_body: row.try_get(o + 3)?,
        error: row.try_get(o + 4)?,
    })
}

fn delivery_at(row: &Row, o: usize) -> Result<Delivery> {
    let attempts: i64 = row.try_get(o + 4)?;
    Ok(Delivery {
        id: DeliveryId(uuid_col(row, o, 4)?),
        message_id: MessageId(row.try_get(o + 1)?),
        endpoint_id: EndpointId(uuid_col(row, o + 2, 3)?),
        status: DeliveryStatus::from_name(row.try_get(o + 3)?).ok_or(corrupt("status"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        next_attempt_at: opt_ms(row.try_get(o + 5)?)?,
        created_at: from_ms(row.try_get(o + 6)?)?,
    })
}

/// A page cut from `rows`, read one past it (`LIMIT limit + 1`): the first `limit` rows
/// decoded with `item` and, when another row followed, the last one's `seq` (column
/// `seq_at`) to continue from.
fn seq_page<T>(
    rows: &[Row],
    limit: usize,
    seq_at: usize,
    item: impl Fn(&Row) -> Result<T>,
) -> Result<(Vec<T>, Option<u64>)> {
    let mut page = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    for row in rows.iter().take(limit) {
        page.push(item(row)?);
        last = Some(row.try_get::<_, i64>(seq_at)?);
    }
    let next = if rows.len() > limit {
        last.and_then(|seq| u64::try_from(seq).ok())
    } else {
        None
    };
    Ok((page, next))
}

fn filter_json(filter: &EventFilter) -> Result<Option<String>> {
    match filter {
        EventFilter::All => Ok(None),
        EventFilter::Only(types) => Ok(Some(serde_json::to_string(types)?)),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

async fn enqueue_on(
    tx: &impl GenericClient,
    message: &NewMessage,
    now: DateTime<Utc>,
) -> Result<Enqueued> {
    let now = millis(now);
    // Positions in commit order (see the module docs); held until the caller commits.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('align.webhooks_messages'), \
         hashtext(current_schema()))",
        &[],
    )
    .await?;
    let existing = tx
        .query_opt(
            &format!("SELECT {MESSAGE_COLUMNS} FROM webhooks_messages m WHERE m.event_id = $1"),
            &[&message.event_id],
        )
        .await?;
    if let Some(row) = existing {
        return Ok(Enqueued::repeat(message_at(&row, 0)?));
    }
    let stored = message.stored(now);
    tx.execute(
        "INSERT INTO webhooks_messages (id, event_id, event_type, environment, payload,
         created_at, owner_org, owner_project)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &stored.id.0,
            &stored.event_id,
            &stored.event_type,
            &stored.environment.as_str(),
            &stored.payload,
            &ms(now),
            &message.owner.organization,
            &message.owner.project,
        ],
    )
    .await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {ROUTE_COLUMNS} FROM webhooks_endpoints e
                 WHERE e.owner_org = $1 AND e.environment = $2 AND e.enabled
                 ORDER BY e.seq"
            ),
            &[&message.owner.organization, &message.environment.as_str()],
        )
        .await?;
    let mut deliveries = Vec::new();
    for row in &rows {
        let endpoint = EndpointId(uuid_col(row, 0, 3)?);
        let owner = Owner {
            organization: row.try_get(4)?,
            project: row.try_get(5)?,
        };
        let route = Route {
            id: endpoint,
            environment: env_col(row, 1)?,
            filter: &filter_col(row, 2)?,
            enabled: row.try_get(3)?,
            owner: &owner,
        };
        if !route.wants(message) {
            continue;
        }
        let id = DeliveryId::new();
        tx.execute(
            "INSERT INTO webhooks_deliveries
             (id, message_id, endpoint_id, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
            &[
                &id.to_string(),
                &stored.id.0,
                &endpoint.to_string(),
                &ms(now),
            ],
        )
        .await?;
        deliveries.push(id);
    }
    Ok(Enqueued {
        message: stored,
        deliveries,
        created: true,
    })
}

/// When a store opens: see `SqliteWebhookStore`'s `seal_on_open`. The table lock makes
/// instances starting together take turns; the first records its key, and one holding another
/// key is refused.
async fn seal_on_open(client: &mut tokio_postgres::Client, sealer: &Sealer) -> Result<()> {
    let tx = client.transaction().await?;
    let done = async {
        tx.batch_execute("LOCK TABLE webhooks_endpoints IN EXCLUSIVE MODE")
            .await?;
        tx.execute(
            "INSERT INTO webhooks_sealing (singleton, key_id) VALUES (1, $1)
             ON CONFLICT (singleton) DO NOTHING",
            &[&sealer.current_id()],
        )
        .await?;
        let recorded: String = tx
            .query_one(
                "SELECT key_id FROM webhooks_sealing WHERE singleton = 1",
                &[],
            )
            .await?
            .try_get(0)?;
        sealed::check_recorded(&recorded, sealer)?;
        reseal_rows(&tx, sealer, false).await
    }
    .await;
    finish(tx, done).await.map(drop)
}

/// Commits `tx` after `done` succeeded; otherwise rolls it back before answering, so the
/// table lock it holds is released at once (a transaction merely dropped is rolled back only
/// when its connection is next polled).
async fn finish<T>(tx: tokio_postgres::Transaction<'_>, done: Result<T>) -> Result<T> {
    match done {
        Ok(v) => {
            tx.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Re-seals stored endpoint keys inside `tx` (see `sealed::reseal`); returns how many
/// rows it rewrote.
async fn reseal_rows(
    tx: &tokio_postgres::Transaction<'_>,
    sealer: &Sealer,
    all: bool,
) -> Result<u64> {
    let rows = tx
        .query("SELECT seq, id, secrets FROM webhooks_endpoints", &[])
        .await?;
    let mut n = 0;
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        let id = EndpointId(uuid_col(row, 1, 3)?);
        if let Some(sealed) = sealed::reseal(id, row.try_get(2)?, sealer, all)? {
            tx.execute(
                "UPDATE webhooks_endpoints SET secrets = $2 WHERE seq = $1",
                &[&seq, &sealed],
            )
            .await?;
            n += 1;
        }
    }
    Ok(n)
}

impl PgWebhookStore {
    /// `ep`'s keys sealed inside `tx`, after locking out a rotation (see the module docs).
    async fn seal_locked(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        ep: &Endpoint,
    ) -> Result<String> {
        tx.batch_execute("LOCK TABLE webhooks_endpoints IN ROW EXCLUSIVE MODE")
            .await?;
        ep.secrets.seal(ep.id, &self.sealer)
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.query(&stmt, params).await?)
    }

    async fn one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        missing: ObjectKind,
    ) -> Result<Row> {
        self.query(sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or(Error::NotFound(missing))
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    }
}

#[async_trait]
impl WebhookStore for PgWebhookStore {
    async fn create_endpoint(&self, ep: &Endpoint) -> Result<()> {
        let filter = filter_json(&ep.filter)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sealed = self.seal_locked(&tx, ep).await?;
        tx.execute(
            "INSERT INTO webhooks_endpoints (id, environment, url, event_types, enabled,
             disabled_reason, secrets, max_per_second, failing_since, created_at,
             owner_org, owner_project)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &ep.id.to_string(),
                &ep.environment.as_str(),
                &ep.url,
                &filter,
                &ep.enabled,
                &ep.disabled_reason,
                &sealed,
                &ep.max_per_second.map(i64::from),
                &ep.failing_since.map(ms),
                &ms(ep.created_at),
                &ep.owner.organization,
                &ep.owner.project,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> Result<()> {
        let filter = filter_json(&ep.filter)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let sealed = self.seal_locked(&tx, ep).await?;
        let id = ep.id.to_string();
        let row = tx
            .query_opt(
                "SELECT enabled, failing_since FROM webhooks_endpoints WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
            .ok_or(Error::NotFound(ObjectKind::Endpoint))?;
        let failing: Option<i64> = row.try_get(1)?;
        let failing = failing_since_after_update(row.try_get(0)?, ep.enabled, failing);
        tx.execute(
            "UPDATE webhooks_endpoints SET url = $2, event_types = $3, failing_since = $8,
             enabled = $4, disabled_reason = $5, secrets = $6, max_per_second = $7
             WHERE id = $1",
            &[
                &id,
                &ep.url,
                &filter,
                &ep.enabled,
                &ep.disabled_reason,
                &sealed,
                &ep.max_per_second.map(i64::from),
                &failing,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reseal_secrets(&self) -> Result<u64> {
        let mut client = self.pool.get().await?;
        let tx = tokio_postgres::Client::transaction(&mut client).await?;
        let done = async {
            // Readers go on; writers of endpoints wait until every value is re-sealed.
            tx.batch_execute("LOCK TABLE webhooks_endpoints IN EXCLUSIVE MODE")
                .await?;
            let n = reseal_rows(&tx, &self.sealer, true).await?;
            tx.execute(
                "INSERT INTO webhooks_sealing (singleton, key_id) VALUES (1, $1)
                 ON CONFLICT (singleton) DO UPDATE SET key_id = EXCLUDED.key_id",
                &[&self.sealer.current_id()],
            )
            .await?;
            Ok(n)
        }
        .await;
        finish(tx, done).await
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Endpoint> {
        let row = self
            .one(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e WHERE e.id = $1"),
                &[&id.to_string()],
                ObjectKind::Endpoint,
            )
            .await?;
        endpoint_at(&row, 0, &self.sealer)
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows = self
            .query(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e ORDER BY e.seq"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| endpoint_at(r, 0, &self.sealer))
            .collect()
    }

    async fn organization_endpoints(&self, organization: &str) -> Result<Vec<Endpoint>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhooks_endpoints e
                     WHERE e.owner_org = $1 ORDER BY e.seq"
                ),
                &[&organization],
            )
            .await?;
        rows.iter()
            .map(|r| endpoint_at(r, 0, &self.sealer))
            .collect()
    }

    async fn organization_endpoint_count(&self, organization: &str) -> Result<u64> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM webhooks_endpoints WHERE owner_org = $1",
                &[&organization],
            )
            .await?;
        let n: i64 = rows.first().map_or(Ok(0), |r| r.try_get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn enqueue(&self, message: NewMessage, now: DateTime<Utc>) -> Result<Enqueued> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let out = enqueue_on(&*tx, &message, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn message(&self, id: &MessageId) -> Result<Message> {
        let row = self
            .one(
                &format!("SELECT {MESSAGE_COLUMNS} FROM webhooks_messages m WHERE m.id = $1"),
                &[&id.0],
                ObjectKind::Message,
            )
            .await?;
        message_at(&row, 0)
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        let row = self
            .one(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhooks_deliveries d WHERE d.id = $1"),
                &[&id.to_string()],
                ObjectKind::Delivery,
            )
            .await?;
        delivery_at(&row, 0)
    }

    async fn deliveries(&self, endpoint: EndpointId, limit: usize) -> Result<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhooks_deliveries d
                     WHERE d.endpoint_id = $1 ORDER BY d.seq DESC LIMIT $2"
                ),
                &[&endpoint.to_string(), &limit],
            )
            .await?;
        rows.iter().map(|r| delivery_at(r, 0)).collect()
    }

    async fn latest_attempts(&self, delivery: DeliveryId, limit: usize) -> Result<Vec<Attempt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT attempted_at, status, latency_ms, response_body, error FROM (
                   SELECT seq, attempted_at, status, latency_ms, response_body, error
                   FROM webhooks_attempts WHERE delivery_id = $1 ORDER BY seq DESC LIMIT $2
                 ) latest ORDER BY seq",
                &[&delivery.to_string(), &limit],
            )
            .await?;
        rows.iter().map(|r| attempt_at(r, 0)).collect()
    }

    async fn attempt_page(
        &self,
        delivery: DeliveryId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Attempt>, Option<u64>)> {
        let limit = limit.clamp(1, 1000);
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        // One more than the page, to know whether another follows; the index on
        // (delivery_id, seq) serves it from the page's end.
        let rows = self
            .query(
                "SELECT attempted_at, status, latency_ms, response_body, error, seq
                 FROM webhooks_attempts WHERE delivery_id = $1 AND seq < $2
                 ORDER BY seq DESC LIMIT $3",
                &[
                    &delivery.to_string(),
                    &before,
                    &i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        seq_page(&rows, limit, 5, |row| attempt_at(row, 0))
    }

    async fn claim_due_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        skip: &ClaimSkip,
    ) -> Result<Vec<DueDelivery>> {
        let endpoints: Vec<String> = skip.endpoints.iter().map(ToString::to_string).collect();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Rows another dispatcher is claiming right now are skipped, not waited for.
        let rows = tx
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, {MESSAGE_COLUMNS}, {ENDPOINT_COLUMNS}
                     FROM webhooks_deliveries d
                     JOIN webhooks_messages m ON m.id = d.message_id
                     JOIN webhooks_endpoints e ON e.id = d.endpoint_id
                     WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND e.enabled
                       AND NOT (e.owner_org = ANY($3)) AND NOT (e.id = ANY($4))
                     ORDER BY d.next_attempt_at LIMIT $2
                     FOR UPDATE OF d SKIP LOCKED"
                ),
                &[&ms(now), &limit, &skip.organizations, &endpoints],
            )
            .await?;
        let due = rows
            .iter()
            .map(|r| {
                Ok(DueDelivery {
                    delivery: delivery_at(r, 0)?,
                    message: message_at(r, 7)?,
                    endpoint: endpoint_at(r, 13, &self.sealer)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !due.is_empty() {
            let ids: Vec<String> = due.iter().map(|d| d.delivery.id.to_string()).collect();
            tx.execute(
                "UPDATE webhooks_deliveries SET next_attempt_at = $2 WHERE id = ANY($1)",
                &[&ids, &ms(until)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn record_attempt(
        &self,
        delivery: DeliveryId,
        attempt: Attempt,
        next: Next,
    ) -> Result<Option<DateTime<Utc>>> {
        let (status, due) = next_state(next);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id = delivery.to_string();
        let endpoint: String = tx
            .query_opt(
                "UPDATE webhooks_deliveries SET attempts = attempts + 1, status = $2,
                 next_attempt_at = $3 WHERE id = $1 RETURNING endpoint_id",
                &[&id, &status.as_str(), &due.map(ms)],
            )
            .await?
            .ok_or(Error::NotFound(ObjectKind::Delivery))?
            .try_get(0)?;
        tx.execute(
            "INSERT INTO webhooks_attempts
             (delivery_id, attempted_at, status, latency_ms, response_body, error)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &ms(attempt.at),
                &attempt.status.map(i32::from),
                &i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX),
                &attempt.response_body,
                &attempt.error,
            ],
        )
        .await?;
        // The endpoint's row stays locked until the commit, as the update alone locked it.
        let before: Option<i64> = tx
            .query_one(
                "SELECT failing_since FROM webhooks_endpoints WHERE id = $1 FOR UPDATE",
                &[&endpoint],
            )
            .await?
            .try_get(0)?;
        let failing = failing_since_after_attempt(before, next, ms(attempt.at));
        if failing != before {
            tx.execute(
                "UPDATE webhooks_endpoints SET failing_since = $2 WHERE id = $1",
                &[&endpoint, &failing],
            )
            .await?;
        }
        tx.commit().await?;
        opt_ms(failing)
    }

    async fn postpone(&self, delivery: DeliveryId, at: DateTime<Utc>) -> Result<()> {
        self.execute(
            "UPDATE webhooks_deliveries SET next_attempt_at = $2
             WHERE id = $1 AND status = 'pending'",
            &[&delivery.to_string(), &ms(at)],
        )
        .await?;
        Ok(())
    }

    async fn retry(&self, delivery: DeliveryId, now: DateTime<Utc>) -> Result<()> {
        let n = self
            .execute(
                "UPDATE webhooks_deliveries SET status = 'pending', next_attempt_at = $2
                 WHERE id = $1",
                &[&delivery.to_string(), &ms(now)],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Delivery));
        }
        Ok(())
    }

    async fn recover_failed_since(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.execute(
            "UPDATE webhooks_deliveries SET status = 'pending', next_attempt_at = $3
             WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2",
            &[&endpoint.to_string(), &ms(since), &ms(now)],
        )
        .await
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<()> {
        let id = id.to_string();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM webhooks_attempts WHERE delivery_id IN
             (SELECT id FROM webhooks_deliveries WHERE endpoint_id = $1)",
            &[&id],
        )
        .await?;
        tx.execute(
            "DELETE FROM webhooks_deliveries WHERE endpoint_id = $1",
            &[&id],
        )
        .await?;
        let n = tx
            .execute("DELETE FROM webhooks_endpoints WHERE id = $1", &[&id])
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Endpoint));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delivery_page(
        &self,
        endpoint: EndpointId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<u64>)> {
        let limit = limit.clamp(1, 1000);
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows = self
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, d.seq FROM webhooks_deliveries d
                     WHERE d.endpoint_id = $1 AND d.seq < $2 ORDER BY d.seq DESC LIMIT $3"
                ),
                &[
                    &endpoint.to_string(),
                    &before,
                    &i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        seq_page(&rows, limit, 7, |row| delivery_at(row, 0))
    }

    async fn messages(&self, query: &MessageQuery) -> Result<MessagePage> {
        let q = query;
        let limit = q.clamped_limit();
        // A family filter (`api_key.*`) compares the leading characters; LIKE would treat the
        // `_` in event names as a wildcard.
        let (exact, family) = match &q.event_type {
            None => (None, None),
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix.to_owned())),
                None => (Some(t.clone()), None),
            },
        };
        let rows = self
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS}, m.seq FROM webhooks_messages m
                     WHERE m.seq > $1 AND m.owner_org = $2
                       AND ($3::text IS NULL OR m.owner_project = $3)
                       AND m.environment = $4
                       AND ($5::text IS NULL OR m.event_type = $5)
                       AND ($6::text IS NULL OR starts_with(m.event_type, $6))
                       AND ($7::bigint IS NULL OR m.created_at >= $7)
                       AND ($8::bigint IS NULL OR m.created_at < $8)
                     ORDER BY m.seq LIMIT $9"
                ),
                &[
                    &i64::try_from(q.after).unwrap_or(i64::MAX),
                    &q.organization,
                    &q.project,
                    &q.environment.as_str(),
                    &exact,
                    &family,
                    &q.since.map(ms),
                    &q.until.map(ms),
                    &i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        let (messages, next) = seq_page(&rows, limit, 6, |row| message_at(row, 0))?;
        Ok(MessagePage { messages, next })
    }

    async fn purge(
        &self,
        deliveries_before: DateTime<Utc>,
        messages_before: DateTime<Utc>,
    ) -> Result<Purged> {
        const EXPIRED: &str = "(d.status <> 'pending' AND d.created_at < $1)
             OR d.message_id IN (SELECT id FROM webhooks_messages WHERE created_at < $2)";
        let (d, m) = (ms(deliveries_before), ms(messages_before));
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let attempts = tx
            .execute(
                &format!(
                    "DELETE FROM webhooks_attempts WHERE delivery_id IN
                     (SELECT d.id FROM webhooks_deliveries d WHERE {EXPIRED})"
                ),
                &[&d, &m],
            )
            .await?;
        let deliveries = tx
            .execute(
                &format!(
                    "DELETE FROM webhooks_deliveries WHERE id IN
                     (SELECT d.id FROM webhooks_deliveries d WHERE {EXPIRED})"
                ),
                &[&d, &m],
            )
            .await?;
        let messages = tx
            .execute("DELETE FROM webhooks_messages WHERE created_at < $1", &[&m])
            .await?;
        tx.commit().await?;
        Ok(Purged {
            messages,
            deliveries,
            attempts,
        })
    }

    async fn erase_values(&self, organization: &str, values: &[String]) -> Result<u64> {
        let values = erasable(values);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut n = 0;
        for (v, with) in &values {
            n += tx
                .execute(
                    "UPDATE webhooks_messages SET payload = replace(payload, $1, $2)
                     WHERE owner_org = $3 AND strpos(payload, $1) > 0",
                    &[v, with, &organization],
                )
                .await?;
            n += tx
                .execute(
                    "UPDATE webhooks_attempts SET
                       response_body = replace(response_body, $1, $2),
                       error = replace(error, $1, $2)
                     WHERE (strpos(response_body, $1) > 0 OR strpos(error, $1) > 0)
                       AND delivery_id IN (SELECT d.id FROM webhooks_deliveries d
                         JOIN webhooks_messages m ON m.id = d.message_id
                         WHERE m.owner_org = $3)",
                    &[v, with, &organization],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let rows = self
            .query(
                "SELECT status, COUNT(*) FROM webhooks_deliveries GROUP BY status",
                &[],
            )
            .await?;
        let mut stats = OutboxStats::default();
        for row in &rows {
            let n = count(row.try_get(1)?);
            match DeliveryStatus::from_name(row.try_get(0)?) {
                Some(DeliveryStatus::Pending) => stats.pending = n,
                Some(DeliveryStatus::Succeeded) => stats.succeeded = n,
                Some(DeliveryStatus::Failed) => stats.failed = n,
                None => return Err(corrupt("status")),
            }
        }
        Ok(stats)
    }
}
