//! [`PgSink`]: both streams in PostgreSQL, shared by any number of processes.
//!
//! Each sink group-commits from a task of its own behind a bounded queue, like the SQLite
//! sink. What keeps one chain per stream when several instances append at once is the insert
//! transaction itself: it locks the stream's row in `audit_heads` (`SELECT … FOR UPDATE`),
//! seals the batch onto the head it finds there, inserts the records and moves the head, then
//! commits. Another instance's batch for the same stream waits for that lock and continues
//! from the new head, so sequences stay gap-free and every record links to the one committed
//! just before it, whichever instance wrote that one.

mod ops;
mod schema;
mod staged;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::AuditSink;
use super::writer::{Failures, Waiters};
use crate::anchor::AnchorCheck;
use crate::chain::seal;
use crate::checkpoint::CheckpointKey;
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record, Stream};
use crate::usage::{UsageBucket, UsageQuery};
use crate::verify::{Progress, VerifyReport};

/// How long a batch is retried while PostgreSQL is unreachable or a transaction loses a race
/// (the queue holds callers back meanwhile); past it the batch is reported lost.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// How a [`PgSink`] runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgSinkConfig {
    /// Signs purge checkpoints; needed to purge and to verify a purged stream. Every process
    /// sharing the database must use the same key. Keep it outside the database.
    pub checkpoint_key: Option<CheckpointKey>,
    /// Entries that may wait for the writer before callers are held back (default 4096).
    pub queue_capacity: usize,
    /// Most entries committed in one transaction (default 1024).
    pub max_batch: usize,
}

impl Default for PgSinkConfig {
    fn default() -> Self {
        Self {
            checkpoint_key: None,
            queue_capacity: 4096,
            max_batch: 1024,
        }
    }
}

impl PgSinkConfig {
    /// The defaults with `key` for checkpoints.
    pub fn with_checkpoint_key(key: CheckpointKey) -> Self {
        Self {
            checkpoint_key: Some(key),
            ..Self::default()
        }
    }
}

/// An [`AuditSink`] in a PostgreSQL database (tables prefixed `audit_`; it can share a
/// database and a pool with the other Align crates' stores), for any number of processes
/// appending to the same chains.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use align_audit::{AuditSink, Entry, PgSink, PgSinkConfig};
/// let pool = align_core::postgres::connect("postgres://align@db.internal/align")?;
/// let sink = PgSink::open(pool, PgSinkConfig::default()).await?;
/// sink.append(Entry::audit("api_key.revoked").build()?).await?;
/// # Ok(()) }
/// ```
pub struct PgSink {
    tx: mpsc::Sender<Command>,
    failures: Arc<Failures>,
    pool: Pool,
    config: PgSinkConfig,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").finish_non_exhaustive()
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "appends are nearly every command; boxing them would cost an allocation each"
)]
enum Command {
    Append {
        entry: Entry,
        reply: Option<oneshot::Sender<Result<Receipt>>>,
    },
    /// Answered once everything queued before it is committed (or reported lost).
    Barrier(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

impl PgSink {
    /// A sink over `pool` (see `align_core::postgres::connect`), with its `audit_` tables
    /// brought up to date and its writer task started on the current tokio runtime.
    pub async fn open(pool: Pool, config: PgSinkConfig) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::Worker)?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let failures = Arc::new(Failures::default());
        runtime.spawn(run(
            pool.clone(),
            rx,
            Arc::clone(&failures),
            config.max_batch.max(1),
        ));
        Ok(Self {
            tx,
            failures,
            pool,
            config,
        })
    }

    /// Brings the `audit_` tables of an embedder's own connection up to date.
    pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
        schema::migrate(client).await
    }

    /// Stages `entry` in `tx`, a transaction of another store on the sink's database (the key
    /// store's, for a key change): the entry commits or rolls back with that transaction's
    /// change, and [`commit_staged`](AuditSink::commit_staged) (of any process sharing the
    /// database) later moves it into its chain, exactly once. The `audit_pending` table is
    /// created by [`PgSink::open`] or [`PgSink::migrate`]; before that this fails, and so
    /// does the change.
    pub async fn stage_in_transaction(
        tx: &tokio_postgres::Transaction<'_>,
        entry: &Entry,
    ) -> Result<()> {
        staged::stage(tx, entry).await
    }

    /// The pool the sink runs on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| Error::Closed)
    }

    /// Waits until everything queued before it has been committed or reported lost.
    async fn drain(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Barrier(reply)).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    fn checkpoint_key(&self) -> Result<CheckpointKey> {
        self.config
            .checkpoint_key
            .clone()
            .ok_or(Error::CheckpointKeyMissing)
    }
}

#[async_trait]
impl AuditSink for PgSink {
    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn submit(&self, entry: Entry) -> Result<()> {
        self.send(Command::Append { entry, reply: None }).await
    }

    async fn append(&self, entry: Entry) -> Result<Receipt> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Append {
            entry,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn flush(&self) -> Result<()> {
        self.drain().await?;
        self.failures.take()
    }

    async fn commit_staged(&self) -> Result<u64> {
        staged::commit(&self.pool).await
    }

    async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Close(reply)).await.is_ok() {
            rx.await.map_err(|_| Error::Closed)?;
        }
        self.failures.take()
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        ops::query(&self.pool, query).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageBucket>> {
        ops::usage(&self.pool, query).await
    }

    async fn head(&self, stream: Stream) -> Result<Head> {
        let client = self.pool.get().await?;
        schema::load_head(&**client, stream).await
    }

    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        ops::verify(
            &self.pool,
            stream,
            self.config.checkpoint_key.as_ref(),
            anchor,
            progress,
        )
        .await
    }

    async fn purge(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        let key = self.checkpoint_key()?;
        staged::commit(&self.pool).await?;
        self.drain().await?;
        ops::purge(&self.pool, stream, cutoff, &key).await
    }

    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        staged::commit(&self.pool).await?;
        self.drain().await?;
        ops::anonymise(&self.pool, stream, cutoff).await
    }

    async fn erase_subject(&self, subject: &str) -> Result<u64> {
        staged::commit(&self.pool).await?;
        self.drain().await?;
        ops::erase(&self.pool, subject).await
    }
}

/// The writer task: takes up to `max_batch` queued entries at a time and commits them in one
/// transaction, then answers every durable `append` of the batch.
async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<Command>,
    failures: Arc<Failures>,
    max_batch: usize,
) {
    let mut batch: Vec<Entry> = Vec::with_capacity(max_batch);
    let mut waiters: Waiters = Vec::new();
    let mut closers = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut after = None;
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append { entry, reply } => {
                    if let Some(reply) = reply {
                        waiters.push((batch.len(), reply));
                    }
                    batch.push(entry);
                    if batch.len() < max_batch {
                        next = rx.try_recv().ok();
                    }
                }
                other => after = Some(other),
            }
        }
        if !batch.is_empty() {
            let done = commit_retrying(&pool, &batch).await;
            failures.answer(&mut waiters, batch.len(), done.as_deref());
            batch.clear();
        }
        match after {
            Some(Command::Barrier(reply)) => {
                let _ = reply.send(());
            }
            Some(Command::Close(reply)) => {
                // Refuse new commands but drain (and commit) what is already queued.
                rx.close();
                closers.push(reply);
            }
            Some(Command::Append { .. }) | None => {}
        }
    }
    for reply in closers {
        let _ = reply.send(());
    }
}

/// Why a batch did not commit, and whether trying again could help.
struct Failed {
    error: Error,
    /// The failure came before `COMMIT` was sent (nothing was written) and is of a kind that
    /// passes: no connection to be had, a broken connection, a lost lock race.
    retry: bool,
}

impl Failed {
    /// A failure before `COMMIT` was sent.
    fn before_commit(error: impl Into<Error>) -> Self {
        let error = error.into();
        let retry = match &error {
            Error::Postgres(e) => align_core::postgres::is_transient(e),
            Error::PostgresPool(_) => true,
            _ => false,
        };
        Self { error, retry }
    }
}

/// [`commit`], tried again with growing pauses for up to [`RETRY_FOR`] while the failure is
/// one that passes and nothing was written.
async fn commit_retrying(pool: &Pool, entries: &[Entry]) -> Result<Vec<Record>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match commit(pool, entries).await {
            Ok(records) => return Ok(records),
            Err(f) if f.retry && started.elapsed() + pause < RETRY_FOR => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(f) => return Err(f.error),
        }
    }
}

/// Seals `entries` onto the stored heads of their streams and commits them, in one
/// transaction that holds those heads locked throughout.
async fn commit(pool: &Pool, entries: &[Entry]) -> Result<Vec<Record>, Failed> {
    let mut client = pool.get().await.map_err(Failed::before_commit)?;
    let tx = client.transaction().await.map_err(Failed::before_commit)?;
    let mut streams: Vec<&str> = entries.iter().map(|e| e.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let mut heads: BTreeMap<Stream, Head> = schema::lock_heads(&*tx, &streams)
        .await
        .map_err(Failed::before_commit)?;
    if heads.len() != streams.len() {
        return Err(Failed::before_commit(Error::Corrupt("audit_heads")));
    }
    let mut buf = Vec::with_capacity(512);
    let records: Vec<Record> = entries
        .iter()
        .map(|e| {
            let head = heads.entry(e.stream).or_default();
            seal(e.clone(), head, &mut buf)
        })
        .collect();
    schema::insert(&*tx, &records)
        .await
        .map_err(Failed::before_commit)?;
    schema::store_heads(&*tx, &heads)
        .await
        .map_err(Failed::before_commit)?;
    tx.commit().await.map_err(|e| Failed {
        // The outcome of a COMMIT whose answer was lost is unknown: never write twice.
        error: e.into(),
        retry: false,
    })?;
    Ok(records)
}
