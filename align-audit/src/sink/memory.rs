//! [`MemorySink`]: everything in memory, for tests and for embedders who ship records elsewhere.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::AuditSink;
use super::ledger::Ledger;
use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record, Stream};
use crate::verify::{Progress, VerifyReport};

/// An [`AuditSink`] that keeps both streams in memory. Appends are "durable" as soon as they
/// return, for as long as the process lives.
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<State>,
    key: Option<CheckpointKey>,
}

#[derive(Debug, Default)]
struct State {
    ledger: Ledger,
    buf: Vec<u8>,
    closed: bool,
}

impl MemorySink {
    /// An empty sink without a checkpoint key (it cannot purge).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty sink that signs purge checkpoints with `key`.
    pub fn with_checkpoint_key(key: CheckpointKey) -> Self {
        Self {
            state: Mutex::default(),
            key: Some(key),
        }
    }

    /// A copy of every record of `stream` still held, in sequence order.
    pub fn records(&self, stream: Stream) -> Vec<Record> {
        self.lock()
            .ledger
            .log(stream)
            .map(|l| l.records.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The checkpoint standing for `stream`'s pruned records, if it was ever purged.
    pub fn checkpoint(&self, stream: Stream) -> Option<Checkpoint> {
        self.lock().ledger.log(stream)?.checkpoint.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere cannot leave
        // it half-changed; carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, entry: Entry) -> Result<Receipt> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(Error::Closed);
        }
        Ok(state.ledger.append(entry, &mut state.buf).receipt())
    }
}

#[async_trait]
impl AuditSink for MemorySink {
    async fn submit(&self, entry: Entry) -> Result<()> {
        self.write(entry).map(|_| ())
    }

    async fn append(&self, entry: Entry) -> Result<Receipt> {
        self.write(entry)
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.lock().closed = true;
        Ok(())
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        Ok(self.lock().ledger.query(query))
    }

    async fn head(&self, stream: Stream) -> Result<Head> {
        Ok(self.lock().ledger.head(stream))
    }

    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        self.lock()
            .ledger
            .verify(stream, self.key.as_ref(), anchor, progress)
    }

    async fn purge(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        self.lock().ledger.purge(stream, cutoff, self.key.as_ref())
    }

    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        Ok(self.lock().ledger.anonymise(stream, cutoff))
    }

    async fn erase_subject(&self, subject: &str) -> Result<u64> {
        Ok(self.lock().ledger.erase(subject))
    }
}
