//! Walking a stream's chain and reporting the first broken link.

use std::fmt;

use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::encode::record_hash;
use crate::error::{Error, Result};
use crate::record::{Head, Record, Stream};

/// How far a verification has come; handed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The stream being verified.
    pub stream: Stream,
    /// Records checked so far.
    pub checked: u64,
    /// Records to check in all (as counted when verification started).
    pub total: u64,
}

/// Why the chain is broken at a given sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// A record of another stream sits in this one.
    WrongStream,
    /// A record with another sequence number sits where this one belongs (a record was
    /// deleted, inserted or moved).
    UnexpectedSequence {
        /// The sequence number the record carries.
        found: u64,
    },
    /// The record does not point at the hash of the record before it (the one before was
    /// rewritten, or records were reordered).
    PreviousHashMismatch,
    /// The record's content no longer hashes to its stored hash (it was altered).
    HashMismatch,
    /// Personal data held by the record does not match its commitment (it was altered).
    PersonalDataMismatch,
    /// The checkpoint that stands for pruned records is not signed by the operator's key.
    BadCheckpointSignature,
    /// The chain ends before the stream's recorded head: trailing records are missing.
    MissingRecords {
        /// The head's sequence.
        head: u64,
    },
    /// There are records after the stream's recorded head.
    RecordsAfterHead,
    /// The last record's hash differs from the recorded head.
    HeadMismatch,
    /// The anchor checked against is not signed by the anchor key it must be signed with.
    BadAnchorSignature,
    /// The record at the anchored sequence is not the one anchored: the chain was rewritten
    /// from there or before.
    AnchorMismatch,
    /// The chain ends before the anchored sequence: its newest records were removed (and the
    /// head rewritten to match, or this would be [`MissingRecords`](Self::MissingRecords)).
    TruncatedBelowAnchor {
        /// The anchored sequence.
        anchored: u64,
        /// The last sequence the chain has.
        head: u64,
    },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongStream => f.write_str("record belongs to another stream"),
            Self::UnexpectedSequence { found } => {
                write!(f, "found record numbered {found} instead")
            }
            Self::PreviousHashMismatch => {
                f.write_str("previous-hash link does not match the record before")
            }
            Self::HashMismatch => f.write_str("record content does not match its hash"),
            Self::PersonalDataMismatch => {
                f.write_str("personal data does not match its commitment")
            }
            Self::BadCheckpointSignature => f.write_str("checkpoint signature is invalid"),
            Self::MissingRecords { head } => {
                write!(f, "chain ends early; the stream's head is at {head}")
            }
            Self::RecordsAfterHead => f.write_str("record lies beyond the stream's head"),
            Self::HeadMismatch => f.write_str("last record does not match the stream's head"),
            Self::BadAnchorSignature => {
                f.write_str("the anchor is not signed by this deployment's anchor key")
            }
            Self::AnchorMismatch => f.write_str("record differs from the one anchored here"),
            Self::TruncatedBelowAnchor { anchored, head } => write!(
                f,
                "chain ends at {head}, below its anchor at {anchored}: newer records were removed"
            ),
        }
    }
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The sequence at which the chain breaks.
    pub sequence: u64,
    /// What is wrong there.
    pub reason: BreakReason,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain broken at sequence {}: {}",
            self.sequence, self.reason
        )
    }
}

/// The outcome of verifying one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The stream verified.
    pub stream: Stream,
    /// Records checked.
    pub checked: u64,
    /// Where verification started: after this checkpoint's record (sequence 0 when the stream
    /// was never pruned).
    pub start: Head,
    /// The last record that verified.
    pub end: Head,
    /// The first broken link, if any.
    pub broken: Option<Break>,
    /// The anchored head the chain was found to hold, when it was verified against an anchor
    /// and is intact (also when retention has since removed the anchored record: the signed
    /// checkpoint shows the chain went past it).
    pub anchor: Option<Head>,
}

impl VerifyReport {
    /// True when no link is broken.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks records one by one, in sequence order; stops at the first broken link.
///
/// Sinks use it for [`verify`](crate::AuditSink::verify); use it directly to check records
/// read from elsewhere (a JSON Lines file, a backup).
#[derive(Debug)]
pub struct ChainVerifier {
    stream: Stream,
    start: Head,
    last: Head,
    checked: u64,
    broken: Option<Break>,
    /// The anchored head to reach, and whether the chain has reached it.
    anchor: Option<(Head, bool)>,
    buf: Vec<u8>,
}

impl ChainVerifier {
    /// A verifier for a stream that starts at sequence 1.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            start: Head::default(),
            last: Head::default(),
            checked: 0,
            broken: None,
            anchor: None,
            buf: Vec::with_capacity(512),
        }
    }

    /// A verifier for a pruned stream that continues after `checkpoint`, whose signature is
    /// checked against `key` first.
    pub fn after_checkpoint(checkpoint: &Checkpoint, key: &CheckpointKey) -> Self {
        let mut v = Self::new(checkpoint.stream());
        v.start = checkpoint.last_pruned();
        v.last = v.start;
        if !checkpoint.is_signed_by(key) {
            v.broken = Some(Break {
                sequence: v.start.sequence,
                reason: BreakReason::BadCheckpointSignature,
            });
        }
        v
    }

    /// Also holds the chain to `check`'s anchor: the record at the anchored sequence must be
    /// the anchored one, and the chain must reach it (see [`BreakReason::AnchorMismatch`],
    /// [`BreakReason::TruncatedBelowAnchor`]). An anchor not signed by the check's key is a
    /// [`BreakReason::BadAnchorSignature`]. Call before the first [`push`](Self::push).
    ///
    /// Fails if the anchor belongs to another stream.
    pub fn with_anchor(mut self, check: &AnchorCheck) -> Result<Self> {
        let anchored = check.anchor().head();
        if check.anchor().stream() != self.stream {
            return Err(Error::InvalidInput {
                field: "anchor",
                reason: "belongs to the other stream",
            });
        }
        if self.broken.is_some() {
            return Ok(self);
        }
        let start = self.start;
        let reached = start.sequence >= anchored.sequence;
        let reason = if !check.is_genuine() {
            Some(BreakReason::BadAnchorSignature)
        } else if start.sequence == anchored.sequence && start.hash != anchored.hash {
            Some(BreakReason::AnchorMismatch)
        } else {
            None
        };
        self.broken = reason.map(|reason| Break {
            sequence: anchored.sequence,
            reason,
        });
        self.anchor = Some((anchored, reached));
        Ok(self)
    }

    /// Checks the next record; false once the chain is broken (later records are ignored).
    pub fn push(&mut self, record: &Record) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let expected = self.last.sequence + 1;
        let e = &record.entry;
        let reason = if e.stream != self.stream {
            Some(BreakReason::WrongStream)
        } else if record.sequence != expected {
            Some(BreakReason::UnexpectedSequence {
                found: record.sequence,
            })
        } else if record.prev_hash != self.last.hash {
            Some(BreakReason::PreviousHashMismatch)
        } else if record_hash(record.sequence, &record.prev_hash, e, &mut self.buf) != record.hash {
            Some(BreakReason::HashMismatch)
        } else if e.personal.as_ref().is_some_and(|p| !p.holds(&mut self.buf)) {
            Some(BreakReason::PersonalDataMismatch)
        } else {
            self.reach_anchor(record)
        };
        if let Some(reason) = reason {
            self.broken = Some(Break {
                sequence: expected,
                reason,
            });
            return false;
        }
        self.last = Head {
            sequence: record.sequence,
            hash: record.hash,
        };
        self.checked += 1;
        true
    }

    /// Marks the anchor reached when `record` (otherwise sound) is at the anchored sequence;
    /// the break if it is not the anchored record.
    fn reach_anchor(&mut self, record: &Record) -> Option<BreakReason> {
        let (anchored, reached) = self.anchor.as_mut()?;
        if anchored.sequence != record.sequence {
            return None;
        }
        *reached = true;
        (anchored.hash != record.hash).then_some(BreakReason::AnchorMismatch)
    }

    /// Records verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Ends the walk. With the stream's recorded `head`, trailing deletions and records
    /// appended behind the sink's back are detected too; with an anchor (see
    /// [`with_anchor`](Self::with_anchor)), a chain cut short below it even when `head` was
    /// rewritten to match.
    pub fn finish(mut self, head: Option<Head>) -> VerifyReport {
        if let (None, Some(head)) = (&self.broken, head) {
            let last = self.last;
            self.broken = if head.sequence > last.sequence {
                Some(Break {
                    sequence: last.sequence + 1,
                    reason: BreakReason::MissingRecords {
                        head: head.sequence,
                    },
                })
            } else if head.sequence < last.sequence {
                Some(Break {
                    sequence: head.sequence + 1,
                    reason: BreakReason::RecordsAfterHead,
                })
            } else if head.hash != last.hash {
                Some(Break {
                    sequence: head.sequence,
                    reason: BreakReason::HeadMismatch,
                })
            } else {
                None
            };
        }
        if let (None, Some((anchored, false))) = (&self.broken, self.anchor) {
            self.broken = Some(Break {
                sequence: self.last.sequence + 1,
                reason: BreakReason::TruncatedBelowAnchor {
                    anchored: anchored.sequence,
                    head: self.last.sequence,
                },
            });
        }
        let anchor = match (&self.broken, self.anchor) {
            (None, Some((anchored, _))) => Some(anchored),
            _ => None,
        };
        VerifyReport {
            stream: self.stream,
            checked: self.checked,
            start: self.start,
            end: self.last,
            broken: self.broken,
            anchor,
        }
    }
}

/// How often (in records) progress is reported.
pub(crate) const PROGRESS_EVERY: u64 = 4096;

/// Verifies `records` (already in sequence order) from `checkpoint` to `head` (and against
/// `anchor`), reporting progress every [`PROGRESS_EVERY`] records and at the end.
pub(crate) fn verify_slice<'a>(
    stream: Stream,
    checkpoint: Option<&Checkpoint>,
    key: Option<&CheckpointKey>,
    anchor: Option<&AnchorCheck>,
    records: impl ExactSizeIterator<Item = &'a Record>,
    head: Head,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport> {
    let total = records.len() as u64;
    let v = start_verifier(stream, checkpoint, key, anchor)?;
    let mut walk = Walk::new(v, total, progress);
    for r in records {
        if !walk.push(r) {
            break;
        }
    }
    Ok(walk.end().finish(Some(head)))
}

/// A chain walk that reports its progress: every [`PROGRESS_EVERY`] records, and once more
/// at its end.
pub(crate) struct Walk<'p, P: FnMut(Progress) + ?Sized> {
    v: ChainVerifier,
    /// How many records the walk expects (an estimate where the count is not known).
    total: u64,
    progress: &'p mut P,
}

impl<'p, P: FnMut(Progress) + ?Sized> Walk<'p, P> {
    /// A walk with verifier `v` over about `total` records.
    pub(crate) fn new(v: ChainVerifier, total: u64, progress: &'p mut P) -> Self {
        Self { v, total, progress }
    }

    /// [`ChainVerifier::push`], then a progress report every [`PROGRESS_EVERY`] records;
    /// false once the chain broke (read no further).
    pub(crate) fn push(&mut self, record: &Record) -> bool {
        if !self.v.push(record) {
            return false;
        }
        if self.v.checked() % PROGRESS_EVERY == 0 {
            self.report(self.total);
        }
        true
    }

    /// The last progress report (its total no less than the records checked) and the
    /// verifier, to finish.
    pub(crate) fn end(mut self) -> ChainVerifier {
        self.report(self.total.max(self.v.checked()));
        self.v
    }

    fn report(&mut self, total: u64) {
        (self.progress)(Progress {
            stream: self.v.stream,
            checked: self.v.checked(),
            total,
        });
    }
}

/// A verifier starting at the stream's beginning or after its checkpoint, held to `anchor`.
pub(crate) fn start_verifier(
    stream: Stream,
    checkpoint: Option<&Checkpoint>,
    key: Option<&CheckpointKey>,
    anchor: Option<&AnchorCheck>,
) -> Result<ChainVerifier> {
    let v = match checkpoint {
        None => ChainVerifier::new(stream),
        Some(cp) => ChainVerifier::after_checkpoint(cp, key.ok_or(Error::CheckpointKeyMissing)?),
    };
    match anchor {
        None => Ok(v),
        Some(a) => v.with_anchor(a),
    }
}

/// Runs a blocking verification `job` on tokio's blocking pool and forwards its progress
/// reports to `progress` on the calling task.
pub(crate) async fn verify_blocking<F>(
    job: F,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<VerifyReport>
where
    F: FnOnce(&mut dyn FnMut(Progress)) -> Result<VerifyReport> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::task::spawn_blocking(move || {
        job(&mut |p| {
            // The receiver only goes away if the caller stopped waiting; then nobody cares.
            let _ = tx.send(p);
        })
    });
    while let Some(p) = rx.recv().await {
        progress(p);
    }
    handle.await.map_err(|_| Error::Worker)?
}
