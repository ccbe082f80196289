//! Tamper-evident audit and request logs that keep the privacy promises.
//!
//! - [`Entry`] and [`EntryBuilder`]: the record model of the design (§6) for two
//!   [`Stream`]s, the request log and the audit log; the builder runs every free-text field
//!   and the metadata through the `align-core` [`Redactor`](align_core::Redactor) and strips
//!   query strings from paths;
//! - a SHA-256 hash chain per stream over a canonical encoding (see `docs/audit-chain.md`),
//!   covering personal data (IP, user agent, anything marked personal) through salted
//!   commitments, so anonymisation and erasure keep the chain verifiable;
//! - [`AuditSink`] with [`MemorySink`], [`JsonlSink`], (feature `sqlite`) `SqliteSink`,
//!   which group-commits from a dedicated writer thread, and (feature `postgres`) `PgSink`,
//!   one chain per stream shared by any number of processes;
//! - [`Query`] with cursor paging; retention [`purge`](AuditSink::purge) behind a signed
//!   [`Checkpoint`], [`anonymise`](AuditSink::anonymise),
//!   [`erase_subject`](AuditSink::erase_subject), [`export_subject`](AuditSink::export_subject);
//! - [`verify`](AuditSink::verify) and [`ChainVerifier`]: the first broken link, precisely;
//!   [`verify_against`](AuditSink::verify_against) an [`Anchor`] (an Ed25519-signed head kept
//!   outside the database, e.g. in an [`AnchorLog`]) also catches a chain cut short whose
//!   stored head was rewritten to match;
//! - [`usage`](AuditSink::usage): one key's requests per minute, hour or day by outcome,
//!   answered from an index by the SQLite and PostgreSQL sinks;
//! - [`fold`]: floods of rejections (per client and second, past the first 100) written as one
//!   summary entry each, for the request log (`RequestLogLayer` with feature `tower` folds
//!   with it).
//!
//! See the crate README for an embedding example.

mod anchor;
mod builder;
mod chain;
mod checkpoint;
mod digest;
mod encode;
mod error;
mod export;
pub mod fold;
#[cfg(feature = "tower")]
mod layer;
mod personal;
mod privacy;
mod query;
mod random;
mod record;
mod serde_util;
mod sink;
mod usage;
mod verify;

pub use anchor::{Anchor, AnchorCheck, AnchorKey, AnchorLog, AnchorPublicKey};
pub use builder::{EntryBuilder, MAX_METADATA_LEN, MAX_TEXT_LEN};
pub use checkpoint::{Checkpoint, CheckpointKey};
pub use digest::Digest;
pub use error::{Error, Result};
pub use export::ExportRecord;
#[cfg(feature = "tower")]
pub use layer::{RequestLog, RequestLogLayer, Sweeper};
pub use personal::{IP, PersonalState, USER_AGENT};
pub use privacy::{PolicyOutcome, PrivacyPolicy, coarsen_ip};
pub use query::{Cursor, DEFAULT_LIMIT, MAX_LIMIT, Page, Query};
pub use record::{Actor, Entry, Head, Receipt, Record, Stream};
pub use sink::AuditSink;
pub use sink::jsonl::JsonlSink;
pub use sink::memory::MemorySink;
#[cfg(feature = "postgres")]
pub use sink::postgres::{PgSink, PgSinkConfig};
#[cfg(feature = "sqlite")]
pub use sink::sqlite::{SqliteSink, SqliteSinkConfig, stage_in_transaction};
pub use usage::{Granularity, MAX_STEPS, UsageBucket, UsageQuery};
pub use verify::{Break, BreakReason, ChainVerifier, Progress, VerifyReport};

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
