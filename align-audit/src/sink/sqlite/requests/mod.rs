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
mod usage;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use align_core::files::private_options;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use self::files::{Closed, Dir, Segment};
use crate::anchor::AnchorCheck;
use crate::checkpoint::CheckpointKey;
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record};
use crate::usage::{UsageBucket, UsageQuery};
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
    /// No record appended by this process yet: no flusher, nothing buffered.
    Reader,
    Appender,
    Closed,
}

/// What the request path appends to, under the lock.
struct Tail {
    state: State,
    /// The last record sealed (buffered or written).
    head: Head,
    /// Where the buffer's first record was sealed onto.
    base: Head,
    buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    /// Records sealed by this process since it began appending.
    sealed: u64,
    min_time: i64,
    max_time: i64,
    scratch: Vec<u8>,
    /// The flusher sleeps until the buffer has something in it.
    idle: bool,
    /// A caller waits: write now instead of at the end of the window.
    urgent: bool,
}

/// What the flusher has written (and synced): how many of this process's records, the head
/// after them, and how many write failures it has met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Durable {
    written: u64,
    head: Head,
    failures: u64,
}

struct Shared {
    tail: Mutex<Tail>,
    durable: watch::Sender<Durable>,
    failure: Mutex<String>,
    flusher: OnceLock<std::thread::Thread>,
    joined: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Durable appends waiting, by record id: the receipt of a record that had to be sealed
    /// again (another process appended first) is updated here.
    receipts: Mutex<HashMap<Uuid, Receipt>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RequestLog {
    /// The request log in `settings.dir` (created `0700` if missing). Nothing is locked and no
    /// thread started until this process appends its first record.
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
                    base: Head::default(),
                    buf: Vec::new(),
                    records: 0,
                    sealed: 0,
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
                receipts: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        lock(&self.shared.tail)
    }

    fn wake(&self) {
        if let Some(t) = self.shared.flusher.get() {
            t.unpark();
        }
    }

    /// Seals `entry` onto the chain and buffers its bytes; the flusher writes them within the
    /// commit window. Returns the record's receipt as sealed and its number among this
    /// process's records.
    /// With `track`, the receipt is kept up to date in `receipts` (registered under the tail's
    /// lock, before the flusher can take the record).
    async fn seal(&self, entry: Entry, track: bool) -> Result<(Receipt, u64)> {
        let (receipt, index, wake, full, record) = {
            let mut guard = self.tail();
            let tail = &mut *guard;
            match tail.state {
                State::Closed => return Err(Error::Closed),
                State::Reader => self.take_over(tail)?,
                State::Appender => {}
            }
            let time = entry.time.timestamp_millis();
            let record = crate::chain::seal(entry, &mut tail.head, &mut tail.scratch);
            codec::encode(&record, &mut tail.buf);
            if track {
                lock(&self.shared.receipts).insert(record.entry.id, record.receipt());
            }
            tail.records += 1;
            tail.sealed += 1;
            tail.min_time = tail.min_time.min(time);
            tail.max_time = tail.max_time.max(time);
            let wake = std::mem::take(&mut tail.idle);
            let full = tail.buf.len() >= self.settings.buffer_bytes;
            (record.receipt(), tail.sealed, wake, full, record)
        };
        // Freed outside the lock.
        drop(record);
        if wake {
            self.wake();
        }
        if full {
            // Backpressure: the writer is behind; wait for it rather than grow without bound.
            self.wait_written(index).await?;
        }
        Ok((receipt, index))
    }

    /// Seals and buffers `entry` (see the module documentation).
    pub(crate) async fn submit(&self, entry: Entry) -> Result<()> {
        self.seal(entry, false).await.map(|_| ())
    }

    /// Seals `entry`, then waits until it is written and synced; its receipt is where it
    /// landed (another process appending first moves it further along the chain).
    pub(crate) async fn append(&self, entry: Entry) -> Result<Receipt> {
        let id = entry.id;
        let (receipt, index) = self.seal(entry, true).await?;
        let written = self.wait_written(index).await;
        let receipt = lock(&self.shared.receipts).remove(&id).unwrap_or(receipt);
        written.map(|()| receipt)
    }

    /// Waits until everything buffered before the call is written (and synced).
    pub(crate) async fn flush(&self) -> Result<()> {
        let target = {
            let tail = self.tail();
            if tail.state == State::Reader {
                return Ok(());
            }
            tail.sealed
        };
        self.wait_written(target).await
    }

    async fn wait_written(&self, index: u64) -> Result<()> {
        let mut rx = self.shared.durable.subscribe();
        let failures = rx.borrow().failures;
        if rx.borrow().written >= index {
            return Ok(());
        }
        self.tail().urgent = true;
        self.wake();
        let seen = *rx
            .wait_for(|d| d.written >= index || d.failures != failures)
            .await
            .map_err(|_| Error::Closed)?;
        if seen.written >= index {
            return Ok(());
        }
        Err(Error::WriteFailed {
            records: index - seen.written,
            cause: lock(&self.shared.failure).clone(),
        })
    }

    /// Records buffered and not yet handed to the flusher.
    pub(crate) fn queued(&self) -> usize {
        usize::try_from(self.tail().records).unwrap_or(usize::MAX)
    }

    /// Writes what is buffered and stops the flusher.
    pub(crate) async fn close(&self) -> Result<()> {
        let (was, target) = {
            let mut tail = self.tail();
            let was = tail.state;
            tail.state = State::Closed;
            tail.urgent = true;
            (was, tail.sealed)
        };
        if was != State::Appender {
            return Ok(());
        }
        self.wake();
        let handle = lock(&self.shared.joined).take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|_| Error::Worker)?
                .map_err(|_| Error::Worker)?;
        }
        let written = self.shared.durable.borrow().written;
        if written >= target {
            Ok(())
        } else {
            Err(Error::WriteFailed {
                records: target - written,
                cause: lock(&self.shared.failure).clone(),
            })
        }
    }

    /// Begins appending: drops a torn tail left by a crash, continues the chain from the last
    /// record on disk and starts the flusher.
    fn take_over(&self, tail: &mut Tail) -> Result<()> {
        let dir_lock = self.dir.lock()?;
        let (head, active) = ops::recover(&self.dir)?;
        drop(dir_lock);
        tail.head = head;
        tail.base = head;
        tail.state = State::Appender;
        self.shared.durable.send_replace(Durable {
            written: 0,
            head,
            failures: 0,
        });
        let flusher = Flusher {
            settings: Arc::clone(&self.settings),
            dir: self.dir.clone(),
            shared: Arc::clone(&self.shared),
            active,
            disk_head: head,
        };
        let handle = std::thread::Builder::new()
            .name("align-audit-requests".into())
            .spawn(move || flusher.run())?;
        let _ = self.shared.flusher.set(handle.thread().clone());
        *lock(&self.shared.joined) = Some(handle);
        Ok(())
    }

    /// The last record this process wrote (when it appends), or the last on disk.
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
        blocking(move || {
            let purged = ops::purge(&dir, cutoff, &key)?;
            usage::forget_before(&dir, cutoff)?;
            Ok(purged)
        })
        .await
    }

    /// One key's usage from the usage index, brought up to date first (records still in
    /// the buffer, at most one commit window's, are not counted yet).
    pub(crate) async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageBucket>> {
        let dir = self.dir.clone();
        let q = query.clone();
        blocking(move || usage::usage(&dir, &q)).await
    }

    /// Brings the usage index up to date; returns how many records it added.
    pub(crate) async fn refresh_usage(&self) -> Result<u64> {
        let dir = self.dir.clone();
        blocking(move || usage::refresh(&dir)).await
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

impl Drop for RequestLog {
    /// A sink dropped without [`close`](RequestLog::close): the flusher still writes what is
    /// buffered, then ends (nobody waits for it).
    fn drop(&mut self) {
        let mut tail = self.tail();
        if tail.state == State::Appender {
            tail.state = State::Closed;
            tail.urgent = true;
            drop(tail);
            self.wake();
        }
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
    pub(super) ino: u64,
    /// Where this process expects the file to end.
    pub(super) end: u64,
    pub(super) first: u64,
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) opened: Instant,
    /// Another process appended to it too: the times in its closed name must be read from it.
    pub(super) foreign: bool,
}

impl Active {
    /// Opens the segment at `path` for appending.
    pub(super) fn open(path: &Path, first: u64, min_time: i64, max_time: i64) -> Result<Self> {
        let file = private_options().append(true).create(true).open(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            path: path.to_owned(),
            file,
            ino: meta.ino(),
            end: meta.len(),
            first,
            min_time,
            max_time,
            opened: Instant::now(),
            foreign: false,
        })
    }
}

/// The thread that writes and syncs the buffer.
struct Flusher {
    settings: Arc<Settings>,
    dir: Dir,
    shared: Arc<Shared>,
    active: Option<Active>,
    /// The last record on disk, as far as this process knows.
    disk_head: Head,
}

/// One buffer's worth of records, taken from the tail.
struct Batch {
    bytes: Vec<u8>,
    /// Where its first record was sealed onto.
    base: Head,
    head: Head,
    /// This process's record count once the batch is written.
    upto: u64,
    min_time: i64,
    max_time: i64,
}

impl Flusher {
    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        lock(&self.shared.tail)
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
            let mut batch = {
                let mut tail = self.tail();
                tail.urgent = false;
                tail.records = 0;
                let bytes = std::mem::replace(&mut tail.buf, std::mem::take(&mut spare));
                let batch = Batch {
                    bytes,
                    base: tail.base,
                    head: tail.head,
                    upto: tail.sealed,
                    min_time: std::mem::replace(&mut tail.min_time, i64::MAX),
                    max_time: std::mem::replace(&mut tail.max_time, i64::MIN),
                };
                tail.base = tail.head;
                match pending.take() {
                    None => batch,
                    // A batch that failed to write goes first.
                    Some(mut p) => {
                        p.bytes.extend_from_slice(&batch.bytes);
                        spare = batch.bytes;
                        spare.clear();
                        Batch {
                            head: batch.head,
                            upto: batch.upto,
                            min_time: p.min_time.min(batch.min_time),
                            max_time: p.max_time.max(batch.max_time),
                            ..p
                        }
                    }
                }
            };
            match self.write(&mut batch) {
                Ok(()) => {
                    self.shared.durable.send_modify(|d| {
                        d.written = batch.upto;
                        d.head = batch.head;
                    });
                    spare = batch.bytes;
                    spare.clear();
                }
                Err(e) => {
                    *lock(&self.shared.failure) = e.to_string();
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

    /// Appends `batch` to the open segment under the directory lock (sealing it again first
    /// if another process appended meanwhile, rotating first when the segment is full or
    /// old), then syncs it.
    fn write(&mut self, batch: &mut Batch) -> Result<()> {
        if batch.bytes.is_empty() {
            return Ok(());
        }
        let _lock = self.dir.lock()?;
        self.locate()?;
        if batch.base != self.disk_head {
            self.reseal(batch)?;
        }
        if self.active.as_ref().is_some_and(|a| {
            a.end > 0
                && (a.end >= self.settings.segment_bytes
                    || a.opened.elapsed() >= self.settings.segment_age)
        }) {
            self.rotate()?;
        }
        let active = match &mut self.active {
            Some(a) => a,
            None => {
                let first = self.disk_head.sequence + 1;
                let path = self.dir.path.join(Segment::open_name(first));
                let a = Active::open(&path, first, i64::MAX, i64::MIN)?;
                self.dir.sync()?;
                self.active.insert(a)
            }
        };
        if let Err(e) = active.file.write_all(&batch.bytes) {
            // Leave no partial frame behind for the retry to write after.
            let _ = active.file.set_len(active.end);
            return Err(e.into());
        }
        active.end += batch.bytes.len() as u64;
        active.min_time = active.min_time.min(batch.min_time);
        active.max_time = active.max_time.max(batch.max_time);
        if self.settings.sync {
            active.file.sync_data()?;
        }
        self.disk_head = batch.head;
        Ok(())
    }

    /// Under the lock: brings `active` and `disk_head` up to date with the directory. The
    /// usual case (nobody else wrote) costs one `stat`; another appender's records are read
    /// from where this process's knowledge ends; a rewrite (purge, privacy operation) or a
    /// rotation by another process is read again in full.
    fn locate(&mut self) -> Result<()> {
        if let Some(a) = &mut self.active {
            match std::fs::metadata(&a.path) {
                Ok(m) if m.ino() == a.ino && m.len() == a.end => return Ok(()),
                Ok(m) if m.ino() == a.ino && m.len() > a.end => {
                    let mut bytes = Vec::new();
                    let mut f = File::open(&a.path)?;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(a.end))?;
                    std::io::Read::read_to_end(&mut f, &mut bytes)?;
                    let valid = files::valid_prefix(&bytes);
                    if let Some(h) = ops::last_head(&bytes[..valid])? {
                        self.disk_head = h;
                    }
                    if valid < bytes.len() {
                        // Another appender died mid-write.
                        a.file.set_len(a.end + valid as u64)?;
                    }
                    a.end += valid as u64;
                    a.foreign = true;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let opened = self.active.as_ref().map(|a| a.opened);
        let (head, active) = ops::recover(&self.dir)?;
        self.disk_head = head;
        self.active = active.map(|mut a| {
            a.foreign = true;
            a.opened = opened.unwrap_or(a.opened);
            a
        });
        Ok(())
    }

    /// Seals `batch` (and what the request path has buffered since) again onto `disk_head`:
    /// another process appended since this one sealed them.
    fn reseal(&mut self, batch: &mut Batch) -> Result<()> {
        let mut head = self.disk_head;
        batch.bytes = self.reseal_bytes(&batch.bytes, &mut head)?;
        batch.base = self.disk_head;
        batch.head = head;
        let mut tail = self.tail();
        let buffered = std::mem::take(&mut tail.buf);
        tail.buf = self.reseal_bytes(&buffered, &mut head)?;
        tail.base = batch.head;
        tail.head = head;
        Ok(())
    }

    fn reseal_bytes(&self, bytes: &[u8], head: &mut Head) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut scratch = Vec::with_capacity(512);
        let mut records = Vec::new();
        files::frames(bytes, false, |_, range| {
            records.push(codec::decode(&bytes[range])?);
            Ok(true)
        })?;
        let mut receipts = lock(&self.shared.receipts);
        for r in records {
            let id = r.entry.id;
            let record = crate::chain::seal(r.entry, head, &mut scratch);
            if let Some(receipt) = receipts.get_mut(&id) {
                *receipt = record.receipt();
            }
            codec::encode(&record, &mut out);
        }
        Ok(out)
    }

    /// Closes the open segment (its last record is `disk_head`): renamed to its closed name.
    fn rotate(&mut self) -> Result<()> {
        let Some(a) = self.active.take() else {
            return Ok(());
        };
        if self.settings.sync {
            a.file.sync_data()?;
        }
        let (mut min_time, mut max_time) = (a.min_time, a.max_time);
        if a.foreign {
            let bytes = std::fs::read(&a.path)?;
            files::frames(&bytes, true, |v, _| {
                min_time = min_time.min(v.time_ms);
                max_time = max_time.max(v.time_ms);
                Ok(true)
            })?;
        }
        let closed = Closed {
            last: self.disk_head.sequence,
            min_time,
            max_time,
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
