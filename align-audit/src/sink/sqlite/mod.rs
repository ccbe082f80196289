//! [`SqliteSink`]: both streams in SQLite, group-committed by a dedicated writer thread.
//!
//! Writes (appends and every privacy operation) go through the writer thread's connection;
//! queries run on tokio's blocking pool over a second connection, and `verify` opens its own,
//! so a long verification holds up neither. WAL mode lets them all read while the writer
//! commits.

mod ops;
mod schema;
mod staged;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::AuditSink;
use super::writer::{Backend, Limits, Writer};
use crate::anchor::AnchorCheck;
use crate::checkpoint::CheckpointKey;
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record, Stream};
use crate::verify::{Progress, VerifyReport, verify_blocking};

pub use staged::stage_in_transaction;

/// How a [`SqliteSink`] runs. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteSinkConfig {
    /// Signs purge checkpoints; needed to purge and to verify a purged stream. Keep it outside
    /// the database.
    pub checkpoint_key: Option<CheckpointKey>,
    /// Entries that may wait for the writer before callers are held back (default 4096).
    pub queue_capacity: usize,
    /// Most entries committed in one transaction (default 1024).
    pub max_batch: usize,
    /// How long the writer waits for more submitted entries before it commits a batch that
    /// is not full (default 20 ms; zero commits at once). Larger transactions cost less per
    /// entry; submitted entries wait this much longer in memory, where a crash of the process
    /// loses them (see the crate README). Durable appends, flushes and the privacy operations
    /// never wait for it.
    pub commit_delay: Duration,
    /// `true` (default): every commit is `fsync`ed (`synchronous = FULL`), so an acknowledged
    /// append survives power loss. `false`: `synchronous = NORMAL`, which survives a crash of
    /// the process but not of the machine.
    pub sync_to_disk: bool,
}

impl Default for SqliteSinkConfig {
    fn default() -> Self {
        Self {
            checkpoint_key: None,
            queue_capacity: 4096,
            max_batch: 1024,
            commit_delay: Duration::from_millis(20),
            sync_to_disk: true,
        }
    }
}

impl SqliteSinkConfig {
    /// The defaults with `key` for checkpoints.
    pub fn with_checkpoint_key(key: CheckpointKey) -> Self {
        Self {
            checkpoint_key: Some(key),
            ..Self::default()
        }
    }
}

/// An [`AuditSink`] in one SQLite file (tables prefixed `audit_`; it can share a file with
/// the other Align crates).
pub struct SqliteSink {
    writer: Writer<WriterConn>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    config: SqliteSinkConfig,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct WriterConn(Connection);

impl Backend for WriterConn {
    fn commit(
        &mut self,
        records: &mut [Record],
        heads: &mut BTreeMap<Stream, Head>,
        base: &BTreeMap<Stream, Head>,
    ) -> Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process (an operator CLI next to the server) may have appended since this
        // writer last looked: continue the chain from what is stored, not from memory.
        let stored = schema::load_heads(&tx)?;
        if stored != *base {
            let mut fresh = stored;
            let mut buf = Vec::with_capacity(512);
            for record in records.iter_mut() {
                let entry = record.entry.clone();
                let head = fresh.entry(entry.stream).or_default();
                *record = crate::chain::seal(entry, head, &mut buf);
            }
            *heads = fresh;
        }
        {
            let mut stmt = tx.prepare_cached(schema::INSERT)?;
            let mut scratch = Vec::with_capacity(512);
            for r in records.iter() {
                schema::insert_record(&mut stmt, r, &mut scratch)?;
            }
        }
        schema::store_heads(&tx, heads)?;
        tx.commit()?;
        Ok(())
    }

    fn commit_staged(&mut self, heads: &mut BTreeMap<Stream, Head>) -> Result<u64> {
        staged::commit(&mut self.0, heads)
    }
}

impl SqliteSink {
    /// Opens (or creates) the database at `path`, migrates it and starts the writer thread.
    pub async fn open(path: impl AsRef<Path>, config: SqliteSinkConfig) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let sync = config.sync_to_disk;
        let (writer_conn, reader, heads) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = schema::connect(&p, sync)?;
            schema::migrate(&mut conn)?;
            let heads = schema::load_heads(&conn)?;
            let reader = schema::connect(&p, sync)?;
            Ok((conn, reader, heads))
        })
        .await
        .map_err(|_| Error::Worker)??;
        let limits = Limits {
            capacity: config.queue_capacity,
            max_batch: config.max_batch,
            commit_delay: config.commit_delay,
        };
        Ok(Self {
            writer: Writer::spawn("align-audit-sqlite", WriterConn(writer_conn), heads, limits)?,
            reader: Arc::new(Mutex::new(reader)),
            path,
            config,
        })
    }

    /// Runs `f` with the reader connection on tokio's blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|_| Error::Worker)?
    }
}

#[async_trait]
impl AuditSink for SqliteSink {
    fn queued(&self) -> usize {
        self.writer.queued()
    }

    async fn submit(&self, entry: Entry) -> Result<()> {
        self.writer.submit(entry).await
    }

    async fn append(&self, entry: Entry) -> Result<Receipt> {
        self.writer.append(entry).await
    }

    async fn flush(&self) -> Result<()> {
        self.writer.flush().await
    }

    async fn commit_staged(&self) -> Result<u64> {
        self.writer.commit_staged().await
    }

    async fn close(&self) -> Result<()> {
        self.writer.close().await
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        let query = query.clone();
        self.read(move |conn| ops::query(conn, &query)).await
    }

    async fn head(&self, stream: Stream) -> Result<Head> {
        self.read(move |conn| Ok(schema::load_head(conn, stream)?.unwrap_or_default()))
            .await
    }

    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        let path = self.path.clone();
        let key = self.config.checkpoint_key.clone();
        let sync = self.config.sync_to_disk;
        let anchor = anchor.cloned();
        verify_blocking(
            move |p| {
                let mut conn = schema::connect(&path, sync)?;
                ops::verify(&mut conn, stream, key.as_ref(), anchor.as_ref(), p)
            },
            progress,
        )
        .await
    }

    async fn purge(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        let key = self
            .config
            .checkpoint_key
            .clone()
            .ok_or(Error::CheckpointKeyMissing)?;
        self.writer.commit_staged().await?;
        self.writer
            .job(move |w: &mut WriterConn, _| ops::purge(&mut w.0, stream, cutoff, &key))
            .await
    }

    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        self.writer.commit_staged().await?;
        self.writer
            .job(move |w: &mut WriterConn, _| ops::anonymise(&mut w.0, stream, cutoff))
            .await
    }

    /// Erases `subject`'s personal data in the records committed or staged before the call: in the
    /// audit log through its indexes, in the request log (which has no actor index) by walking
    /// the stream in slices of 20,000 sequences, each its own transaction, so
    /// that request logging goes on meanwhile.
    async fn erase_subject(&self, subject: &str) -> Result<u64> {
        self.writer.commit_staged().await?;
        let s = subject.to_owned();
        let (mut changed, start, end) = self
            .writer
            .job(move |w: &mut WriterConn, heads| {
                let end = heads.get(&Stream::Request).map_or(0, |h| h.sequence);
                Ok((
                    ops::erase_audit(&mut w.0, &s)?,
                    ops::requests_start(&w.0)?,
                    end,
                ))
            })
            .await?;
        let mut after = start;
        while after < end {
            let up_to = after.saturating_add(ops::ERASE_SLICE).min(end);
            let s = subject.to_owned();
            changed += self
                .writer
                .job(move |w: &mut WriterConn, _| ops::erase_requests(&mut w.0, &s, after, up_to))
                .await?;
            after = up_to;
        }
        Ok(changed)
    }
}
