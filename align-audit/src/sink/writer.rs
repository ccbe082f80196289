//! The group-committing writer thread shared by the file-backed sinks.
//!
//! Callers hand entries to a bounded queue (waiting when it is full: backpressure, never a
//! drop). One dedicated OS thread drains up to `max_batch` entries at a time, seals them onto
//! their chains, commits them together, then answers every durable `append` of the batch.
//! Maintenance jobs (purge, anonymise, …) run on the same thread between batches, so they
//! never race the chain.
//!
//! A batch of `submit`ted entries only that is not full waits `commit_delay` once for more
//! before it is committed: a transaction's cost is mostly per page written, not per row, so
//! fewer, larger transactions cost less per entry. The thread sleeps meanwhile, so callers
//! queueing entries do not have to wake it one by one. A durable `append`, a flush, a job or a
//! close wakes it at once, so none of them waits for the delay.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::chain::seal;
use crate::error::{Error, Result};
use crate::record::{Entry, Head, Receipt, Record, Stream};

/// Where the writer thread puts committed batches.
pub(crate) trait Backend: Send + 'static {
    /// Durably writes `records` (in order) together with the new `heads`: all or nothing.
    ///
    /// `records` were sealed onto `base`, this writer's view of the chain heads. A store that
    /// other processes also append to re-reads the heads inside its write transaction and, if
    /// they moved, re-seals `records` onto them and updates `heads`, so every process extends
    /// the one chain.
    fn commit(
        &mut self,
        records: &mut [Record],
        heads: &mut BTreeMap<Stream, Head>,
        base: &BTreeMap<Stream, Head>,
    ) -> Result<()>;

    /// Moves the entries staged in other transactions into their chains, in one transaction,
    /// and updates `heads` once it has committed (left as they were on failure). Returns how
    /// many moved. A store without staging has none.
    fn commit_staged(&mut self, heads: &mut BTreeMap<Stream, Head>) -> Result<u64> {
        let _ = heads;
        Ok(0)
    }
}

type Job<B> = Box<dyn FnOnce(&mut B, &BTreeMap<Stream, Head>) + Send>;

#[allow(
    clippy::large_enum_variant,
    reason = "appends are nearly every command; boxing them would cost an allocation each"
)]
enum Command<B> {
    Append {
        entry: Entry,
        reply: Option<oneshot::Sender<Result<Receipt>>>,
    },
    Flush(oneshot::Sender<Result<()>>),
    /// Move staged entries into the chains (see `Backend::commit_staged`).
    #[cfg_attr(
        not(feature = "sqlite"),
        allow(dead_code, reason = "only the SQLite sink stages")
    )]
    CommitStaged(oneshot::Sender<Result<u64>>),
    Job(Job<B>),
    Close(oneshot::Sender<Result<()>>),
}

/// Queue sizes for the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) capacity: usize,
    pub(crate) max_batch: usize,
    /// How long a batch of submitted entries that is not full waits once for more.
    pub(crate) commit_delay: Duration,
}

/// Those waiting for their appends to commit, each with its place in the batch.
pub(crate) type Waiters = Vec<(usize, oneshot::Sender<Result<Receipt>>)>;

/// Failures of `submit`ted records, reported by the next flush.
#[derive(Default)]
pub(crate) struct Failures {
    count: AtomicU64,
    cause: Mutex<String>,
}

impl Failures {
    pub(crate) fn add(&self, n: u64, cause: &str) {
        self.count.fetch_add(n, Ordering::SeqCst);
        *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = cause.to_owned();
    }

    /// Answers the `waiters` of a batch of `appended` entries: each its receipt from
    /// `committed` (the batch's records as written), or, when the commit failed, `WriteFailed`
    /// with its cause; the failed appends nobody waits for are counted here.
    pub(crate) fn answer(
        &self,
        waiters: &mut Waiters,
        appended: usize,
        committed: std::result::Result<&[Record], &Error>,
    ) {
        match committed {
            Ok(records) => {
                for (i, reply) in waiters.drain(..) {
                    let _ = reply.send(Ok(records[i].receipt()));
                }
            }
            Err(e) => {
                let records = appended as u64;
                let cause = e.to_string();
                self.add(records - waiters.len() as u64, &cause);
                for (_, reply) in waiters.drain(..) {
                    let _ = reply.send(Err(Error::WriteFailed {
                        records,
                        cause: cause.clone(),
                    }));
                }
            }
        }
    }

    pub(crate) fn take(&self) -> Result<()> {
        match self.count.swap(0, Ordering::SeqCst) {
            0 => Ok(()),
            records => Err(Error::WriteFailed {
                records,
                cause: std::mem::take(
                    &mut *self.cause.lock().unwrap_or_else(PoisonError::into_inner),
                ),
            }),
        }
    }
}

/// The handle to a writer thread.
pub(crate) struct Writer<B> {
    tx: mpsc::Sender<Command<B>>,
    failures: Arc<Failures>,
    /// The writer thread, woken early from its commit delay by commands that wait.
    thread: std::thread::Thread,
}

impl<B: Backend> Writer<B> {
    /// Starts the writer thread over `backend`, continuing the chains at `heads`.
    pub(crate) fn spawn(
        name: &str,
        backend: B,
        heads: BTreeMap<Stream, Head>,
        limits: Limits,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(limits.capacity.max(1));
        let failures = Arc::new(Failures::default());
        let f = Arc::clone(&failures);
        let max_batch = limits.max_batch.max(1);
        let delay = limits.commit_delay;
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(backend, heads, rx, &f, max_batch, delay))?;
        Ok(Self {
            tx,
            failures,
            thread: handle.thread().clone(),
        })
    }

    /// Commands waiting in the queue (entries not yet taken by the writer thread).
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn send(&self, cmd: Command<B>) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| Error::Closed)
    }

    /// Sends a command someone waits for, and cuts the writer's commit delay short.
    async fn send_urgent(&self, cmd: Command<B>) -> Result<()> {
        let sent = self.send(cmd).await;
        self.thread.unpark();
        sent
    }

    pub(crate) async fn submit(&self, entry: Entry) -> Result<()> {
        self.send(Command::Append { entry, reply: None }).await
    }

    pub(crate) async fn append(&self, entry: Entry) -> Result<Receipt> {
        let (reply, rx) = oneshot::channel();
        self.send_urgent(Command::Append {
            entry,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send_urgent(Command::Flush(reply)).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Moves staged entries into the chains after everything queued before is committed.
    #[cfg_attr(
        not(feature = "sqlite"),
        allow(dead_code, reason = "only the SQLite sink stages")
    )]
    pub(crate) async fn commit_staged(&self) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send_urgent(Command::CommitStaged(reply)).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stops accepting writes, commits what is queued, and waits for the thread to finish.
    /// Closing twice is fine.
    pub(crate) async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.send_urgent(Command::Close(reply)).await.is_err() {
            return self.failures.take();
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs `job` on the writer thread after everything queued before it is committed.
    pub(crate) async fn job<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut B, &BTreeMap<Stream, Head>) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.send_urgent(Command::Job(Box::new(move |b, heads| {
            // The caller may have stopped waiting; the job has run either way.
            let _ = reply.send(job(b, heads));
        })))
        .await?;
        rx.await.map_err(|_| Error::Worker)?
    }
}

fn run<B: Backend>(
    mut backend: B,
    mut heads: BTreeMap<Stream, Head>,
    mut rx: mpsc::Receiver<Command<B>>,
    failures: &Failures,
    max_batch: usize,
    delay: Duration,
) {
    let mut buf = Vec::with_capacity(512);
    let mut batch: Vec<Record> = Vec::with_capacity(max_batch);
    let mut waiters: Waiters = Vec::new();
    let mut closers = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let saved = heads.clone();
        let mut next = Some(first);
        let mut after = None;
        let mut waited = delay.is_zero();
        loop {
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append { entry, reply } => {
                        let head = heads.entry(entry.stream).or_default();
                        let record = seal(entry, head, &mut buf);
                        if let Some(reply) = reply {
                            waiters.push((batch.len(), reply));
                        }
                        batch.push(record);
                        if batch.len() < max_batch {
                            next = rx.try_recv().ok();
                        }
                    }
                    other => after = Some(other),
                }
            }
            if waited || after.is_some() || !waiters.is_empty() || batch.len() >= max_batch {
                break;
            }
            waited = true;
            // Woken early by a command that waits (see `send_urgent`); an early or spurious
            // wake-up only commits a smaller batch.
            std::thread::park_timeout(delay);
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let done = backend.commit(&mut batch, &mut heads, &saved);
            if done.is_err() {
                heads = saved;
            }
            failures.answer(&mut waiters, batch.len(), done.as_ref().map(|_| &batch[..]));
            batch.clear();
        }
        match after {
            Some(Command::Flush(reply)) => {
                let _ = reply.send(failures.take());
            }
            Some(Command::CommitStaged(reply)) => {
                let _ = reply.send(backend.commit_staged(&mut heads));
            }
            Some(Command::Job(job)) => job(&mut backend, &heads),
            Some(Command::Close(reply)) => {
                // Refuse new commands but drain (and commit) what is already queued.
                rx.close();
                closers.push(reply);
            }
            Some(Command::Append { .. }) | None => {}
        }
    }
    for reply in closers {
        let _ = reply.send(failures.take());
    }
}
