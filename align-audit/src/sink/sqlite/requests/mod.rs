//! The request log of the single-machine deployment: hash-chained records in append-only
//! segment files beside the SQLite database (`docs/audit-chain.md`, "The request-log
//! segments").
//!
//! The request path seals each record (SHA-256 onto the chain) and appends its compact bytes
//! to a buffer under a short lock; a thread that mostly sleeps writes the buffer to the open
//! segment and `fdatasync`s it once per commit window. Everything else (queries,
//! verification, retention, anonymisation, erasure, export, backups) reads the files, and
//! changes them only by writing a new file and renaming it over the old one, under the
//! directory's `flock`, so that an operator's CLI can work next to a running server.

mod codec;
mod files;
mod ops;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use align_keys::files::private_options;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use self::files::{Closed, Dir, Lock, Segment};
use crate::anchor::AnchorCheck;
use crate::checkpoint::CheckpointKey;
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record};
use crate::verify::{Progress, VerifyReport, verify_blocking};

pub(crate) use ops::{copy_dir, migrate_rows};

/// How the request log runs (from [`SqliteSinkConfig`](crate::SqliteSinkConfig)).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) window: Duration,
    pub(crate) sync: bool,
    pub(crate) segment_bytes: u64,
    pub(crate) segment_age: Duration,
    pub(crate) buffer_bytes: usize,
    pub(crate) checkpoint_key: Option<CheckpointKey>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// No record appended by this process yet: the appender's lock is not taken.
    Reader,
    Owner,
    Closed,
}

/// What the request path appends to, under the lock.
struct Tail {
    state: State,
    head: Head,
    buf: Vec<u8>,
    records: u64,
    min_time: i64,
    max_time: i64,
    scratch: Vec<u8>,
    /// The flusher sleeps until the buffer has something in it.
    idle: bool,
    /// A caller waits: write now instead of at the end of the window.
    urgent: bool,
}

/// What the flusher has made durable: the head, and how many write failures it has met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Durable {
    head: Head,
    failures: u64,
}

struct Shared {
    tail: Mutex<Tail>,
    durable: watch::Sender<Durable>,
    failure: Mutex<String>,
    flusher: OnceLock<std::thread::Thread>,
    joined: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The request log (see the module documentation).
pub(crate) struct RequestLog {
    settings: Arc<Settings>,
    dir: Dir,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("dir", &self.settings.dir)
            .finish_non_exhaustive()
    }
}

impl RequestLog {
    /// The request log in `settings.dir` (created `0700` if missing). Nothing is locked until
    /// this process appends its first record.
    pub(crate) fn open(settings: Settings) -> Result<Self> {
        let dir = Dir::create(&settings.dir)?;
        let (durable, _) = watch::channel(Durable::default());
        Ok(Self {
            settings: Arc::new(settings),
            dir,
            shared: Arc::new(Shared {
                tail: Mutex::new(Tail {
                    state: State::Reader,
                    head: Head::default(),
                    buf: Vec::new(),
                    records: 0,
                    min_time: i64::MAX,
                    max_time: i64::MIN,
                    scratch: Vec::with_capacity(512),
                    idle: false,
                    urgent: false,
                }),
                durable,
                failure: Mutex::new(String::new()),
                flusher: OnceLock::new(),
                joined: Mutex::new(None),
            }),
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.shared
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        if let Some(t) = self.shared.flusher.get() {
            t.unpark();
        }
    }

    /// Seals `entry` onto the chain and buffers its bytes; the flusher writes them within the
    /// commit window. Returns the record's receipt.
    pub(crate) async fn submit(&self, entry: Entry) -> Result<Receipt> {
        let (receipt, wake, full, record) = {
            let mut guard = self.tail();
            let tail = &mut *guard;
            match tail.state {
                State::Closed => return Err(Error::Closed),
                State::Reader => self.take_over(tail)?,
                State::Owner => {}
            }
            let time = entry.time.timestamp_millis();
            let record = crate::chain::seal(entry, &mut tail.head, &mut tail.scratch);
            codec::encode(&record, &mut tail.buf);
            tail.records += 1;
            tail.min_time = tail.min_time.min(time);
            tail.max_time = tail.max_time.max(time);
            let wake = std::mem::take(&mut tail.idle);
            let full = tail.buf.len() >= self.settings.buffer_bytes;
            (record.receipt(), wake, full, record)
        };
        // Freed outside the lock.
        drop(record);
        if wake {
            self.wake();
        }
        if full {
            // Backpressure: the writer is behind; wait for it rather than grow without bound.
            self.wait_durable(receipt.sequence).await?;
        }
        Ok(receipt)
    }

    /// [`submit`](Self::submit), then waits until the record is durable.
    pub(crate) async fn append(&self, entry: Entry) -> Result<Receipt> {
        let receipt = self.submit(entry).await?;
        self.wait_durable(receipt.sequence).await?;
        Ok(receipt)
    }

    /// Waits until everything buffered before the call is written (and synced).
    pub(crate) async fn flush(&self) -> Result<()> {
        let target = {
            let tail = self.tail();
            if tail.state == State::Reader {
                return Ok(());
            }
            tail.head.sequence
        };
        self.wait_durable(target).await
    }

    async fn wait_durable(&self, sequence: u64) -> Result<()> {
        let mut rx = self.shared.durable.subscribe();
        let failures = rx.borrow().failures;
        if rx.borrow().head.sequence >= sequence {
            return Ok(());
        }
        self.tail().urgent = true;
        self.wake();
        let seen = rx
            .wait_for(|d| d.head.sequence >= sequence || d.failures != failures)
            .await
            .map_err(|_| Error::Closed)?;
        if seen.head.sequence >= sequence {
            return Ok(());
        }
        let cause = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Err(Error::WriteFailed {
            records: sequence.saturating_sub(seen.head.sequence),
            cause,
        })
    }

    /// Records buffered and not yet handed to the flusher.
    pub(crate) fn queued(&self) -> usize {
        usize::try_from(self.tail().records).unwrap_or(usize::MAX)
    }

    /// Writes what is buffered, stops the flusher and releases the appender's lock.
    pub(crate) async fn close(&self) -> Result<()> {
        let (was, target) = {
            let mut tail = self.tail();
            let was = tail.state;
            tail.state = State::Closed;
            tail.urgent = true;
            (was, tail.head.sequence)
        };
        if was != State::Owner {
            return Ok(());
        }
        self.wake();
        let handle = self
            .shared
            .joined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|_| Error::Worker)?
                .map_err(|_| Error::Worker)?;
        }
        if self.shared.durable.borrow().head.sequence >= target {
            Ok(())
        } else {
            Err(Error::WriteFailed {
                records: target.saturating_sub(self.shared.durable.borrow().head.sequence),
                cause: self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            })
        }
    }

    /// Becomes the appender: takes the appender's lock, drops a torn tail left by a crash,
    /// continues the chain from the last record on disk and starts the flusher.
    fn take_over(&self, tail: &mut Tail) -> Result<()> {
        let owner = self.dir.try_own()?.ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the request log is being appended to by another process",
            ))
        })?;
        let lock = self.dir.lock()?;
        let (head, active) = ops::recover(&self.dir)?;
        drop(lock);
        tail.head = head;
        tail.state = State::Owner;
        self.shared.durable.send_replace(Durable { head, failures: 0 });
        let flusher = Flusher {
            settings: Arc::clone(&self.settings),
            dir: self.dir.clone(),
            shared: Arc::clone(&self.shared),
            active,
            _owner: owner,
        };
        let handle = std::thread::Builder::new()
            .name("align-audit-requests".into())
            .spawn(move || flusher.run())?;
        let _ = self.shared.flusher.set(handle.thread().clone());
        *self
            .shared
            .joined
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// The last durable record (this process appends), or the last on disk.
    pub(crate) async fn head(&self) -> Result<Head> {
        if self.tail().state != State::Reader {
            return Ok(self.shared.durable.borrow().head);
        }
        let dir = self.dir.clone();
        blocking(move || ops::head(&dir)).await
    }

    pub(crate) async fn query(&self, query: &Query) -> Result<Page> {
        let dir = self.dir.clone();
        let q = query.clone();
        blocking(move || ops::query(&dir, &q)).await
    }

    pub(crate) async fn verify(
        &self,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        let dir = self.dir.clone();
        let key = self.settings.checkpoint_key.clone();
        let anchor = anchor.cloned();
        verify_blocking(
            move |p| ops::verify(&dir, key.as_ref(), anchor.as_ref(), p),
            progress,
        )
        .await
    }

    pub(crate) async fn purge(&self, cutoff: DateTime<Utc>, key: CheckpointKey) -> Result<u64> {
        self.flush().await?;
        let dir = self.dir.clone();
        blocking(move || ops::purge(&dir, cutoff, &key)).await
    }

    pub(crate) async fn anonymise(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.flush().await?;
        let dir = self.dir.clone();
        blocking(move || ops::anonymise(&dir, cutoff)).await
    }

    pub(crate) async fn erase(&self, subject: &str) -> Result<u64> {
        self.flush().await?;
        let dir = self.dir.clone();
        let s = subject.to_owned();
        blocking(move || ops::erase(&dir, &s)).await
    }

    /// Every record concerning `subject`, oldest first.
    pub(crate) async fn of_subject(&self, subject: &str) -> Result<Vec<Record>> {
        self.flush().await?;
        let dir = self.dir.clone();
        let s = subject.to_owned();
        blocking(move || ops::of_subject(&dir, &s)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::Worker)?
}

/// The segment being appended to, as the flusher knows it.
pub(super) struct Active {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) first: u64,
    pub(super) size: u64,
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) opened: Instant,
}

impl Active {
    /// Opens the segment at `path` for appending.
    pub(super) fn open(path: &Path, first: u64, min_time: i64, max_time: i64) -> Result<Self> {
        let file = private_options().append(true).create(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            first,
            size,
            min_time,
            max_time,
            opened: Instant::now(),
        })
    }
}

/// The thread that writes and syncs the buffer.
struct Flusher {
    settings: Arc<Settings>,
    dir: Dir,
    shared: Arc<Shared>,
    active: Option<Active>,
    _owner: Lock,
}

/// One buffer's worth of records, taken from the tail.
struct Batch {
    bytes: Vec<u8>,
    head: Head,
    first: u64,
    min_time: i64,
    max_time: i64,
}

impl Flusher {
    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.shared
            .tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn run(mut self) {
        let mut spare = Vec::new();
        let mut pending: Option<Batch> = None;
        loop {
            let (urgent, closing) = {
                let mut tail = self.tail();
                let closing = tail.state == State::Closed;
                if tail.buf.is_empty() && pending.is_none() {
                    if closing {
                        return;
                    }
                    tail.idle = true;
                    drop(tail);
                    std::thread::park();
                    continue;
                }
                (tail.urgent, closing)
            };
            if !urgent && !closing && pending.is_none() {
                // Gather the window's records; a caller who waits cuts it short.
                std::thread::park_timeout(self.settings.window);
            }
            let batch = {
                let mut tail = self.tail();
                tail.urgent = false;
                let records = std::mem::take(&mut tail.records);
                let bytes = std::mem::replace(&mut tail.buf, std::mem::take(&mut spare));
                let batch = Batch {
                    bytes,
                    head: tail.head,
                    first: tail.head.sequence + 1 - records,
                    min_time: std::mem::replace(&mut tail.min_time, i64::MAX),
                    max_time: std::mem::replace(&mut tail.max_time, i64::MIN),
                };
                match pending.take() {
                    None => batch,
                    // A batch that failed to write goes first.
                    Some(mut p) => {
                        p.bytes.extend_from_slice(&batch.bytes);
                        spare = batch.bytes;
                        spare.clear();
                        Batch {
                            head: batch.head,
                            min_time: p.min_time.min(batch.min_time),
                            max_time: p.max_time.max(batch.max_time),
                            ..p
                        }
                    }
                }
            };
            match self.write(&batch) {
                Ok(()) => {
                    self.shared.durable.send_modify(|d| d.head = batch.head);
                    spare = batch.bytes;
                    spare.clear();
                }
                Err(e) => {
                    *self
                        .shared
                        .failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = e.to_string();
                    self.shared.durable.send_modify(|d| d.failures += 1);
                    if closing {
                        return;
                    }
                    pending = Some(batch);
                    // Retry after a window, not in a tight loop.
                    std::thread::sleep(self.settings.window.max(Duration::from_millis(10)));
                }
            }
        }
    }

    /// Appends `batch` to the open segment under the directory lock, rotating first when the
    /// segment is full or old, then syncs it.
    fn write(&mut self, batch: &Batch) -> Result<()> {
        if batch.bytes.is_empty() {
            return Ok(());
        }
        let _lock = self.dir.lock()?;
        self.reopen_if_rewritten()?;
        if self.active.as_ref().is_some_and(|a| {
            a.size > 0
                && (a.size >= self.settings.segment_bytes
                    || a.opened.elapsed() >= self.settings.segment_age)
        }) {
            self.rotate(batch.first - 1)?;
        }
        let active = match &mut self.active {
            Some(a) => a,
            None => {
                let path = self.dir.path.join(Segment::open_name(batch.first));
                let a = Active::open(&path, batch.first, i64::MAX, i64::MIN)?;
                self.dir.sync()?;
                self.active.insert(a)
            }
        };
        if let Err(e) = active.file.write_all(&batch.bytes) {
            // Leave no partial frame behind for the retry to write after.
            let _ = active.file.set_len(active.size);
            return Err(e.into());
        }
        active.size += batch.bytes.len() as u64;
        active.min_time = active.min_time.min(batch.min_time);
        active.max_time = active.max_time.max(batch.max_time);
        if self.settings.sync {
            active.file.sync_data()?;
        }
        Ok(())
    }

    /// A purge or a privacy operation (here or in another process) may have renamed a new
    /// file over the open segment: append to that one.
    fn reopen_if_rewritten(&mut self) -> Result<()> {
        let Some(a) = &self.active else {
            return Ok(());
        };
        let on_disk = match std::fs::metadata(&a.path) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if on_disk == Some(a.file.metadata()?.ino()) {
            return Ok(());
        }
        let (path, first, min, max) = (a.path.clone(), a.first, a.min_time, a.max_time);
        let opened = a.opened;
        self.active = None;
        if on_disk.is_some() {
            let mut a = Active::open(&path, first, min, max)?;
            a.opened = opened;
            self.active = Some(a);
        }
        Ok(())
    }

    /// Closes the open segment (its last record is `last`): renamed to its closed name.
    fn rotate(&mut self, last: u64) -> Result<()> {
        let Some(a) = self.active.take() else {
            return Ok(());
        };
        if self.settings.sync {
            a.file.sync_data()?;
        }
        let closed = Closed {
            last,
            min_time: a.min_time,
            max_time: a.max_time,
            anonymised: false,
        };
        let to = self.dir.path.join(Segment::closed_name(a.first, &closed));
        std::fs::rename(&a.path, to)?;
        self.dir.sync()
    }
}

/// The request log's directory for the database at `db`: `<db>-requests` beside it.
pub(crate) fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-requests");
    db.with_file_name(name)
}
