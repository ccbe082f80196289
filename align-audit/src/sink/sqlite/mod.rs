//! [`SqliteSink`]: the audit log in SQLite, group-committed by a dedicated writer thread,
//! and the request log in append-only segment files beside the database (`requests`).
//!
//! Audit-log writes (appends and every privacy operation) go through the writer thread's
//! connection; queries run on tokio's blocking pool over a second connection, and `verify`
//! opens its own, so a long verification holds up neither. WAL mode lets them all read while
//! the writer commits.

mod ops;
mod requests;
mod schema;
mod staged;

use std::collections::BTreeMap;
use std::io::Write;
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
use crate::export::write_export_line;
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record, Stream};
use crate::usage::{UsageBucket, UsageQuery};
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
    /// `true` (default): every commit is `fsync`ed (`synchronous = FULL`; the request log's
    /// segments `fdatasync`ed), so an acknowledged append survives power loss. `false`:
    /// `synchronous = NORMAL` and no sync of the segments, which survives a crash of the
    /// process but not of the machine.
    pub sync_to_disk: bool,
    /// Where the request log's segment files go (default: `<database>-requests` beside the
    /// database file).
    pub request_log_dir: Option<PathBuf>,
    /// The request log's commit window (default 20 ms): submitted request-log records are
    /// written and synced at most this long after the first of them was submitted. A crash
    /// of the process (SIGKILL) loses at most the records submitted in the last window and
    /// not yet written; durable appends, flushes and the privacy operations do not wait for
    /// it.
    pub request_commit_window: Duration,
    /// A request-log segment is closed and a new one begun once it holds this many bytes
    /// (default 32 MiB)...
    pub request_segment_bytes: u64,
    /// ... or once it has been open this long (default 1 hour). Retention removes whole
    /// closed segments (and rewrites the one where the purged records end).
    pub request_segment_age: Duration,
    /// Request-log bytes buffered in memory before submitters wait for the writer (default
    /// 16 MiB: backpressure, never a drop).
    pub request_buffer_bytes: usize,
}

impl Default for SqliteSinkConfig {
    fn default() -> Self {
        Self {
            checkpoint_key: None,
            queue_capacity: 4096,
            max_batch: 1024,
            commit_delay: Duration::from_millis(20),
            sync_to_disk: true,
            request_log_dir: None,
            request_commit_window: Duration::from_millis(20),
            request_segment_bytes: 32 << 20,
            request_segment_age: Duration::from_secs(3600),
            request_buffer_bytes: 16 << 20,
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
/// the other Align crates) for the audit log, and append-only segment files in a directory
/// beside it for the request log (see [`SqliteSinkConfig::request_log_dir`]).
///
/// The first process to append a request-log record becomes the request log's appender (an
/// exclusive `flock`, released when the sink is closed or the process ends); others (an
/// operator's CLI next to the server) read, verify, purge, anonymise and erase it, and fail
/// with an I/O error if they append request-log records meanwhile.
pub struct SqliteSink {
    writer: Writer<WriterConn>,
    requests: requests::RequestLog,
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
        let request_dir = config
            .request_log_dir
            .clone()
            .unwrap_or_else(|| requests::dir_for(&path));
        let settings = requests::Settings {
            dir: request_dir.clone(),
            window: config.request_commit_window,
            sync,
            segment_bytes: config.request_segment_bytes.max(1),
            segment_age: config.request_segment_age,
            buffer_bytes: config.request_buffer_bytes.max(1),
            checkpoint_key: config.checkpoint_key.clone(),
        };
        let (writer_conn, reader, heads) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = schema::connect(&p, sync)?;
            schema::migrate(&mut conn)?;
            schema::move_request_rows(&mut conn, &request_dir)?;
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
            requests: requests::RequestLog::open(settings)?,
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

impl SqliteSink {
    /// Copies the request log of the database at `db` (its segment files and checkpoint) to
    /// the request-log directory of the database at `to` (created `0700`, files `0600`): a
    /// consistent snapshot, safe while a server appends (the copy stops at the last whole
    /// record). `align backup` calls it beside SQLite's own backup. Blocking; returns the
    /// bytes copied.
    pub fn copy_request_log(db: &Path, to: &Path) -> Result<u64> {
        requests::copy_dir(&requests::dir_for(db), &requests::dir_for(to))
    }

    /// Replaces the request log of the database at `db` with the one beside the backup at
    /// `from` (see [`copy_request_log`](Self::copy_request_log)); with none there (a backup of
    /// a version that kept request-log rows in SQLite), just removes it, and opening the
    /// restored database moves its rows. Stop the server first. Blocking; returns the bytes
    /// copied.
    pub fn restore_request_log(from: &Path, db: &Path) -> Result<u64> {
        let (source, target) = (requests::dir_for(from), requests::dir_for(db));
        match std::fs::remove_dir_all(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if !source.exists() {
            return Ok(0);
        }
        requests::copy_dir(&source, &target)
    }

    /// The request-log directory of the database at `db` (`<db>-requests`), where
    /// [`SqliteSink::open`] puts it unless [`SqliteSinkConfig::request_log_dir`] says
    /// otherwise.
    pub fn request_log_dir(db: &Path) -> PathBuf {
        requests::dir_for(db)
    }
}

#[async_trait]
impl AuditSink for SqliteSink {
    fn queued(&self) -> usize {
        self.writer.queued() + self.requests.queued()
    }

    async fn submit(&self, entry: Entry) -> Result<()> {
        match entry.stream {
            Stream::Request => self.requests.submit(entry).await.map(|_| ()),
            Stream::Audit => self.writer.submit(entry).await,
        }
    }

    async fn append(&self, entry: Entry) -> Result<Receipt> {
        match entry.stream {
            Stream::Request => self.requests.append(entry).await,
            Stream::Audit => self.writer.append(entry).await,
        }
    }

    async fn flush(&self) -> Result<()> {
        let requests = self.requests.flush().await;
        self.writer.flush().await?;
        requests
    }

    async fn commit_staged(&self) -> Result<u64> {
        self.writer.commit_staged().await
    }

    async fn close(&self) -> Result<()> {
        let requests = self.requests.close().await;
        self.writer.close().await?;
        requests
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        if query.stream == Stream::Request {
            return self.requests.query(query).await;
        }
        let query = query.clone();
        self.read(move |conn| ops::query(conn, &query)).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageBucket>> {
        self.requests.usage(query).await
    }

    async fn refresh_usage(&self) -> Result<u64> {
        self.requests.refresh_usage().await
    }

    async fn head(&self, stream: Stream) -> Result<Head> {
        if stream == Stream::Request {
            return self.requests.head().await;
        }
        self.read(move |conn| Ok(schema::load_head(conn, stream)?.unwrap_or_default()))
            .await
    }

    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        if stream == Stream::Request {
            if anchor.is_some_and(|a| a.anchor().stream() != stream) {
                return Err(Error::InvalidInput {
                    field: "anchor",
                    reason: "belongs to the other stream",
                });
            }
            return self.requests.verify(anchor, progress).await;
        }
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
        if stream == Stream::Request {
            return self.requests.purge(cutoff, key).await;
        }
        self.writer.commit_staged().await?;
        self.writer
            .job(move |w: &mut WriterConn, _| ops::purge(&mut w.0, stream, cutoff, &key))
            .await
    }

    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        if stream == Stream::Request {
            return self.requests.anonymise(cutoff).await;
        }
        self.writer.commit_staged().await?;
        self.writer
            .job(move |w: &mut WriterConn, _| ops::anonymise(&mut w.0, stream, cutoff))
            .await
    }

    /// Erases `subject`'s personal data in the records committed or staged before the call:
    /// in the audit log through its indexes; in the request log by rewriting each segment
    /// that mentions the subject (one segment at a time, under the directory's lock, so that
    /// request logging goes on meanwhile).
    async fn erase_subject(&self, subject: &str) -> Result<u64> {
        self.writer.commit_staged().await?;
        let s = subject.to_owned();
        let audit = self
            .writer
            .job(move |w: &mut WriterConn, _| ops::erase_audit(&mut w.0, &s))
            .await?;
        Ok(audit + self.requests.erase(subject).await?)
    }

    /// As the trait's, but the request log is read in one pass over its segments rather than
    /// page by page.
    async fn export_subject(&self, subject: &str, out: &mut (dyn Write + Send)) -> Result<u64> {
        self.commit_staged().await?;
        self.flush().await?;
        let mut lines = 0;
        for record in self.requests.of_subject(subject).await? {
            write_export_line(&record, out)?;
            lines += 1;
        }
        lines += super::export_stream(self, Stream::Audit, subject, out).await?;
        out.flush()?;
        Ok(lines)
    }
}
