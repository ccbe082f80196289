//! The [`AuditSink`] trait and its back-ends: memory, JSON Lines file, (feature `sqlite`)
//! SQLite and (feature `postgres`) PostgreSQL.

use std::io::Write;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::anchor::AnchorCheck;
use crate::error::Result;
use crate::export::write_export_line;
use crate::privacy::{PolicyOutcome, PrivacyPolicy};
use crate::query::{MAX_LIMIT, Page, Query};
use crate::record::{Entry, Head, Receipt, Stream};
use crate::usage::{UsageBucket, UsageQuery};
use crate::verify::{Progress, VerifyReport};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod columns;
pub(crate) mod jsonl;
pub(crate) mod ledger;
pub(crate) mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod migrations;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod writer;

/// Where records go: chains them, stores them, finds them, and keeps the privacy promises.
///
/// Share one sink per process as `Arc<dyn AuditSink>`. Every method is safe to call from
/// async code: back-ends that block do so on their own thread or tokio's blocking pool.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Queues `entry` for writing and returns once it is queued. When the queue is full this
    /// waits (backpressure); nothing is dropped. Use for request-log entries. A later
    /// [`flush`](Self::flush) reports records that could not be written.
    async fn submit(&self, entry: Entry) -> Result<()>;

    /// Writes `entry` and returns only once it is durably committed. Use for
    /// security-relevant records.
    async fn append(&self, entry: Entry) -> Result<Receipt>;

    /// Entries handed to [`submit`](Self::submit) and not yet taken by the writer (the
    /// queue depth, for metrics). Back-ends without a queue answer 0.
    fn queued(&self) -> usize {
        0
    }

    /// Waits until everything queued before it is committed; fails with
    /// [`Error::WriteFailed`](crate::Error::WriteFailed) if queued records were lost since
    /// the last flush.
    async fn flush(&self) -> Result<()>;

    /// Moves the entries staged inside other stores' transactions (feature `sqlite`:
    /// [`stage_in_transaction`](crate::stage_in_transaction); feature `postgres`:
    /// `PgSink::stage_in_transaction`) into their chains, in staging order, and returns how
    /// many moved. The move is one transaction (seal, insert, delete the staged rows, commit),
    /// so a staged entry reaches its chain exactly once, even across a crash: call this right
    /// after the staging transaction commits (so the record is in the chain before anyone is
    /// told the change happened) and once at start-up (for entries a crash left staged). The
    /// privacy operations and [`export_subject`](Self::export_subject) call it first, so they
    /// miss no staged entry. Back-ends without staging answer 0.
    async fn commit_staged(&self) -> Result<u64> {
        Ok(0)
    }

    /// Flushes and stops the writer; later writes fail with
    /// [`Error::Closed`](crate::Error::Closed).
    async fn close(&self) -> Result<()>;

    /// One page of committed records matching `query`, newest first. Records still queued by
    /// [`submit`](Self::submit) may be missing: [`flush`](Self::flush) first to see them.
    async fn query(&self, query: &Query) -> Result<Page>;

    /// One API key's (or any actor's) requests counted per step by outcome (DESIGN §11), from the request
    /// log; a folded summary counts as the requests it stands for. Records still queued by
    /// [`submit`](Self::submit) may be missing. The default pages through
    /// [`query`](Self::query); the SQLite and PostgreSQL sinks answer from an index.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageBucket>> {
        crate::usage::by_query(self, query).await
    }

    /// Brings the index behind [`usage`](Self::usage) up to date, so that a later query
    /// finds little to add (a server calls this now and then); returns how many records it
    /// added. Sinks without such an index answer 0.
    async fn refresh_usage(&self) -> Result<u64> {
        Ok(0)
    }

    /// Where `stream`'s chain ends now. Keep a copy elsewhere (a ticket, another system), or
    /// sign it as an [`Anchor`](crate::Anchor), to detect a later truncation even by someone
    /// who can rewrite the whole store.
    async fn head(&self, stream: Stream) -> Result<Head>;

    /// Walks `stream` from its start (or its checkpoint) to its head and reports the first
    /// broken link. `progress` is called every few thousand records and at the end.
    async fn verify(
        &self,
        stream: Stream,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        self.verify_against(stream, None, progress).await
    }

    /// [`verify`](Self::verify), and with `anchor`, also holds the chain to it: the chain must
    /// still reach the anchored sequence, whose record must be the anchored one, and the
    /// anchor must be signed by the check's key. A chain cut short below the anchor is
    /// reported ([`BreakReason::TruncatedBelowAnchor`](crate::BreakReason)) even when the
    /// stored head was rewritten to match it. Fails if the anchor is of another stream.
    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport>;

    /// Removes the records of `stream` older than `cutoff` from the start of the chain and
    /// leaves a signed [`Checkpoint`](crate::Checkpoint) in their place. Returns how many
    /// were removed. Removal stops at the first record (in sequence order) that is not older,
    /// so the remaining chain stays contiguous.
    async fn purge(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64>;

    /// Anonymises the records of `stream` older than `cutoff`: IP addresses keep only their
    /// /24 or /48 network, user agents and other personal fields are dropped. Returns how many
    /// records changed. The chain still verifies.
    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64>;

    /// Erases every personal field of every record concerning `subject` (in both streams).
    /// Returns how many records changed. The chain still verifies.
    async fn erase_subject(&self, subject: &str) -> Result<u64>;

    /// Writes every record concerning `subject` (both streams, oldest first per stream) to
    /// `out` as JSON Lines, one [`ExportRecord`](crate::ExportRecord) per line. Returns the
    /// number of lines.
    ///
    /// Commits staged entries and flushes first, so records still staged or queued are
    /// included. `out` is written from the calling
    /// task; hand in an in-memory buffer or a writer that does not block for long.
    async fn export_subject(&self, subject: &str, out: &mut (dyn Write + Send)) -> Result<u64> {
        self.commit_staged().await?;
        self.flush().await?;
        let mut lines = 0;
        for stream in Stream::ALL {
            lines += export_stream(self, stream, subject, out).await?;
        }
        out.flush()?;
        Ok(lines)
    }

    /// Runs retention and anonymisation for both streams as of `now`.
    async fn apply_policy(
        &self,
        policy: &PrivacyPolicy,
        now: DateTime<Utc>,
    ) -> Result<PolicyOutcome> {
        let mut out = PolicyOutcome::default();
        for stream in Stream::ALL {
            let purged = self.purge(stream, now - policy.retention(stream)).await?;
            let anonymised = self
                .anonymise(stream, now - policy.anonymise_after(stream))
                .await?;
            match stream {
                Stream::Request => {
                    out.request_purged = purged;
                    out.request_anonymised = anonymised;
                }
                Stream::Audit => {
                    out.audit_purged = purged;
                    out.audit_anonymised = anonymised;
                }
            }
        }
        Ok(out)
    }
}

/// Writes the export lines of `subject`'s records in `stream`, read page by page from `sink`,
/// oldest first (as [`AuditSink::export_subject`] gives them); the number written.
pub(crate) async fn export_stream<S: AuditSink + ?Sized>(
    sink: &S,
    stream: Stream,
    subject: &str,
    out: &mut (dyn Write + Send),
) -> Result<u64> {
    let mut query = Query::new(stream).subject(subject).limit(MAX_LIMIT);
    let mut pages = Vec::new();
    loop {
        let page = sink.query(&query).await?;
        let next = page.next_cursor;
        pages.push(page.records);
        match next {
            Some(c) => query = query.after(c),
            None => break,
        }
    }
    let mut lines = 0;
    for record in pages.iter().flatten().rev() {
        write_export_line(record, out)?;
        lines += 1;
    }
    Ok(lines)
}
