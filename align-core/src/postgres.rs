//! The PostgreSQL conventions every Align crate follows (feature `postgres`), in one place:
//! a `deadpool-postgres` pool built from a `postgres://` URL, versioned migrations recorded in
//! a per-crate table (`keys_migrations`, `webhooks_migrations`, …) and serialised across
//! instances that start at once, error text that never carries the URL's password, and
//! [`ScratchSchema`] for tests that share one database.
//!
//! Connections are plain TCP (or a Unix socket): the URL's `sslmode` must be `disable` or
//! `prefer` (the default). Put the database on a trusted network or behind a TLS tunnel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), align_core::Error> {
//! let pool = align_core::postgres::connect("postgres://align@db.internal/align")?;
//! let client = pool.get().await.map_err(|e| align_core::Error::PostgresPool(e.to_string()))?;
//! # Ok(()) }
//! ```

use std::time::Duration;

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};

/// Connections a pool opens at most, unless the URL's caller builds its own [`Pool`].
pub const POOL_SIZE: usize = 16;
/// How long a caller waits for a free pooled connection before the call fails (transiently).
pub const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long opening one connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a `postgres://` URL (or a `key=value` connection string). The error names what is
/// wrong, never the URL itself, so no password reaches a log.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().map_err(Error::Postgres)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// A pool over the database at `url` (see [`parse_url`]). Connects lazily: the first query
/// tells whether the server is reachable.
pub fn connect(url: &str) -> Result<Pool> {
    pool(parse_url(url)?)
}

/// A pool of at most [`POOL_SIZE`] connections made with `config`.
pub fn pool(config: tokio_postgres::Config) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::PostgresPool(e.to_string()))
}

/// A PostgreSQL error as one line: the kind, then every cause (a server error's message,
/// detail and hint). `tokio-postgres` itself prints only the kind (`db error`).
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `e` is worth retrying later: the connection broke, the server is shutting down or
/// out of resources, or the transaction lost a serialisation or deadlock race.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => e.as_db_error().is_none(),
        Some(code) => {
            let class = &code.code()[..2.min(code.code().len())];
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
                || class == "08" // connection exception
                || class == "53" // insufficient resources
                || class == "57" // operator intervention (shutdown)
        }
    }
}

/// Applies the `migrations` not yet recorded in table `{prefix}_migrations`, in order, in one
/// transaction; entry `i` brings the schema to version `i + 1`. Instances starting together
/// take turns (a transaction-scoped advisory lock), so each migration runs once.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    prefix: &str,
    migrations: &[&str],
) -> Result<(), tokio_postgres::Error> {
    let table = format!("{prefix}_migrations");
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('align.migrations'), hashtext(current_schema()))",
        &[],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"
    ))
    .await?;
    let current: i64 = tx
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
            &[],
        )
        .await?
        .try_get(0)?;
    for (version, sql) in (1i64..).zip(migrations) {
        if version > current {
            tx.batch_execute(sql).await?;
            tx.execute(
                &format!("INSERT INTO {table} (version, applied_at) VALUES ($1, $2)"),
                &[&version, &chrono::Utc::now().timestamp_millis()],
            )
            .await?;
        }
    }
    tx.commit().await
}

/// The highest migration recorded in `{prefix}_migrations`.
pub async fn schema_version(
    client: &tokio_postgres::Client,
    prefix: &str,
) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            &format!("SELECT COALESCE(MAX(version), 0) FROM {prefix}_migrations"),
            &[],
        )
        .await?
        .try_get(0)
}

/// The current schema's tables, columns, constraints, indexes, triggers and functions as
/// text, one line each in a stable order, to compare two databases' schemas.
pub async fn schema(client: &tokio_postgres::Client) -> Result<Vec<String>, tokio_postgres::Error> {
    // Definitions name the schema; two databases' schemas are compared without it.
    const PARTS: &str = "
        WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema()),
        parts AS (
            SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
                   || CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END
                   || COALESCE(' DEFAULT ' || column_default, '') AS line
            FROM information_schema.columns WHERE table_schema = current_schema()
            UNION ALL
            SELECT 'constraint ' || r.relname || '.' || c.conname || ' '
                   || pg_get_constraintdef(c.oid)
            FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
            WHERE c.connamespace IN (SELECT oid FROM ns)
            UNION ALL
            SELECT 'index ' || indexname || ' ' || indexdef
            FROM pg_indexes WHERE schemaname = current_schema()
            UNION ALL
            SELECT 'trigger ' || pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid
            WHERE r.relnamespace IN (SELECT oid FROM ns) AND NOT t.tgisinternal
            UNION ALL
            SELECT 'function ' || pg_get_functiondef(p.oid)
            FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
        )
        SELECT replace(line, current_schema() || '.', '') AS line FROM parts ORDER BY line";
    let rows = client.query(PARTS, &[]).await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// A schema of its own in a shared database, for a test or a trial run: created by
/// [`ScratchSchema::create`], dropped with everything in it when the value is dropped.
/// Pools from [`ScratchSchema::pool`] put it first on every connection's `search_path`, so
/// the stores' tables land in it and parallel tests never see each other's rows.
///
/// ```no_run
/// # async fn demo() -> Result<(), align_core::Error> {
/// let scratch = align_core::postgres::ScratchSchema::create("postgres://postgres@127.0.0.1/test").await?;
/// let pool = scratch.pool()?;
/// # Ok(()) }
/// ```
pub struct ScratchSchema {
    config: tokio_postgres::Config,
    name: String,
}

impl std::fmt::Debug for ScratchSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchSchema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScratchSchema {
    /// Creates a fresh schema, named `align_t_` and 32 random hex digits, in the database at
    /// `url`.
    pub async fn create(url: &str) -> Result<Self> {
        let mut config = parse_url(url)?;
        let name = format!("align_t_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(connection);
        let created = client.batch_execute(&format!("CREATE SCHEMA {name}")).await;
        drop(client);
        let _ = task.await;
        created?;
        config.options(format!("-c search_path={name}"));
        Ok(Self { config, name })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings whose `search_path` is this schema.
    pub fn config(&self) -> tokio_postgres::Config {
        self.config.clone()
    }

    /// A new pool whose connections use this schema.
    pub fn pool(&self) -> Result<Pool> {
        pool(self.config())
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        // Drop runs inside async code; the schema goes on a thread with its own runtime.
        let config = self.config.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|_| Error::Worker)?;
            rt.block_on(async move {
                let (client, connection) = config.connect(NoTls).await?;
                let task = tokio::spawn(connection);
                let done = client.batch_execute(&sql).await;
                drop(client);
                let _ = task.await;
                Ok(done?)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop scratch schema {}", self.name);
        }
    }
}
