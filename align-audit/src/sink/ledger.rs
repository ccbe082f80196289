//! Streams held in memory: the state behind [`MemorySink`](crate::MemorySink) and the working
//! copy the JSON Lines sink rewrites its file from.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::anchor::AnchorCheck;
use crate::chain::seal;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Error, Result};
use crate::personal::Personal;
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Record, Stream};
use crate::verify::{Progress, VerifyReport, verify_slice};

/// One stream: its records in sequence order, its head and its checkpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamLog {
    pub(crate) records: VecDeque<Record>,
    pub(crate) head: Head,
    pub(crate) checkpoint: Option<Checkpoint>,
}

/// Both streams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    streams: BTreeMap<Stream, StreamLog>,
}

impl Ledger {
    pub(crate) fn log(&self, stream: Stream) -> Option<&StreamLog> {
        self.streams.get(&stream)
    }

    pub(crate) fn log_mut(&mut self, stream: Stream) -> &mut StreamLog {
        self.streams.entry(stream).or_default()
    }

    pub(crate) fn head(&self, stream: Stream) -> Head {
        self.log(stream).map(|l| l.head).unwrap_or_default()
    }

    pub(crate) fn heads(&self) -> BTreeMap<Stream, Head> {
        self.streams.iter().map(|(s, l)| (*s, l.head)).collect()
    }

    /// Seals `entry` onto its stream.
    pub(crate) fn append(&mut self, entry: Entry, buf: &mut Vec<u8>) -> &Record {
        let log = self.log_mut(entry.stream);
        let record = seal(entry, &mut log.head, buf);
        log.records.push_back(record);
        // Just pushed, so the deque is not empty.
        &log.records[log.records.len() - 1]
    }

    /// Adds an already sealed record read back from storage; the head follows it.
    pub(crate) fn push_sealed(&mut self, record: Record) {
        let log = self.log_mut(record.entry.stream);
        log.head = Head {
            sequence: record.sequence,
            hash: record.hash,
        };
        log.records.push_back(record);
    }

    /// Sets a checkpoint read back from storage; an empty stream's head starts after it.
    pub(crate) fn set_checkpoint(&mut self, checkpoint: Checkpoint) {
        let log = self.log_mut(checkpoint.stream());
        if log.head.sequence < checkpoint.last_pruned().sequence {
            log.head = checkpoint.last_pruned();
        }
        log.checkpoint = Some(checkpoint);
    }

    pub(crate) fn query(&self, q: &Query) -> Page {
        let limit = q.effective_limit();
        let records = self
            .log(q.stream)
            .map(|l| {
                l.records
                    .iter()
                    .rev()
                    .filter(|r| q.matches(r))
                    .take(limit + 1)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Page::of(records, limit)
    }

    pub(crate) fn purge(
        &mut self,
        stream: Stream,
        cutoff: DateTime<Utc>,
        key: Option<&CheckpointKey>,
    ) -> Result<u64> {
        let key = key.ok_or(Error::CheckpointKeyMissing)?;
        let log = self.log_mut(stream);
        let n = log
            .records
            .iter()
            .take_while(|r| r.entry.time < cutoff)
            .count();
        let Some(last) = n.checked_sub(1).and_then(|i| log.records.get(i)) else {
            return Ok(0);
        };
        let last = Head {
            sequence: last.sequence,
            hash: last.hash,
        };
        log.checkpoint = Some(Checkpoint::sign(stream, last, Utc::now(), key));
        log.records.drain(..n);
        Ok(n as u64)
    }

    pub(crate) fn anonymise(&mut self, stream: Stream, cutoff: DateTime<Utc>) -> u64 {
        let mut changed = 0;
        for r in self.log_mut(stream).records.iter_mut() {
            if r.entry.time < cutoff && r.entry.anonymise() {
                changed += 1;
            }
        }
        changed
    }

    pub(crate) fn erase(&mut self, subject: &str) -> u64 {
        let mut changed = 0;
        for log in self.streams.values_mut() {
            for r in log.records.iter_mut() {
                if r.entry.concerns(subject) && r.entry.erase_personal() {
                    changed += 1;
                }
            }
        }
        changed
    }

    pub(crate) fn verify(
        &self,
        stream: Stream,
        key: Option<&CheckpointKey>,
        anchor: Option<&AnchorCheck>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<VerifyReport> {
        let empty = StreamLog::default();
        let log = self.log(stream).unwrap_or(&empty);
        verify_slice(
            stream,
            log.checkpoint.as_ref(),
            key,
            anchor,
            log.records.iter(),
            log.head,
            progress,
        )
    }

    /// Every checkpoint and record, stream by stream, in sequence order.
    pub(crate) fn items(&self) -> impl Iterator<Item = (Option<&Checkpoint>, &VecDeque<Record>)> {
        self.streams
            .values()
            .map(|l| (l.checkpoint.as_ref(), &l.records))
    }
}

impl Entry {
    /// Anonymises every personal field; true when something changed.
    pub(crate) fn anonymise(&mut self) -> bool {
        self.personal.as_mut().is_some_and(Personal::anonymise)
    }

    /// Erases every personal field; true when something changed.
    pub(crate) fn erase_personal(&mut self) -> bool {
        self.personal.as_mut().is_some_and(Personal::erase)
    }
}
