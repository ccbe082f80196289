//! The record model of DESIGN §6: what an entry holds before the chain seals it, and after.

use std::net::IpAddr;

use align_core::Environment;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::Digest;
use crate::personal::{IP, Personal, PersonalState, USER_AGENT};
use crate::serde_util::{raw_json, time_ms};

/// The two logs, each with its own hash chain and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The request log: one entry per HTTP request (operational data, short retention).
    Request,
    /// The audit log: security-relevant changes (long retention).
    Audit,
}

impl Stream {
    /// Both streams.
    pub const ALL: [Self; 2] = [Self::Request, Self::Audit];

    /// The lowercase name used in files, SQLite and the canonical encoding.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Audit => "audit",
        }
    }

    /// Parses `request` or `audit`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "request" => Some(Self::Request),
            "audit" => Some(Self::Audit),
            _ => None,
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Actor {
    /// A request authenticated by an API key: its id and its 12-character prefix.
    ApiKey {
        /// The key's id.
        id: String,
        /// The key's prefix (`ako_9311c954`); never more of the token.
        prefix: String,
    },
    /// A signed-in user.
    User {
        /// The user's id.
        id: String,
    },
    /// The platform itself (schedulers, retention jobs) or an unauthenticated caller.
    System,
}

impl Actor {
    /// The actor's id, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::ApiKey { id, .. } | Self::User { id } => Some(id),
            Self::System => None,
        }
    }
}

/// A log entry as built by [`EntryBuilder`](crate::EntryBuilder): redacted, personal fields
/// committed, not yet in a chain. Hand it to an [`AuditSink`](crate::AuditSink).
///
/// `Entry` can be serialised but not deserialised: the only way to make one is the builder,
/// so nothing unredacted can reach a sink. Stored records are read back as [`Record`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub(crate) id: Uuid,
    pub(crate) stream: Stream,
    #[serde(with = "time_ms")]
    pub(crate) time: DateTime<Utc>,
    pub(crate) organization: Option<String>,
    pub(crate) environment: Option<Environment>,
    pub(crate) actor: Actor,
    pub(crate) action: String,
    pub(crate) target: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) status: Option<u16>,
    pub(crate) latency_us: Option<u64>,
    pub(crate) subject: Option<String>,
    #[serde(with = "raw_json")]
    pub(crate) metadata: String,
    pub(crate) personal: Option<Personal>,
}

/// The stored form of an [`Entry`], read back only as part of a [`Record`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntry {
    id: Uuid,
    stream: Stream,
    #[serde(with = "time_ms")]
    time: DateTime<Utc>,
    organization: Option<String>,
    environment: Option<Environment>,
    actor: Actor,
    action: String,
    target: Option<String>,
    request_id: Option<String>,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    latency_us: Option<u64>,
    subject: Option<String>,
    #[serde(with = "raw_json")]
    metadata: String,
    personal: Option<Personal>,
}

fn stored_entry<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
    let s = StoredEntry::deserialize(d)?;
    Ok(Entry {
        id: s.id,
        stream: s.stream,
        time: s.time,
        organization: s.organization,
        environment: s.environment,
        actor: s.actor,
        action: s.action,
        target: s.target,
        request_id: s.request_id,
        method: s.method,
        path: s.path,
        status: s.status,
        latency_us: s.latency_us,
        subject: s.subject,
        metadata: s.metadata,
        personal: s.personal,
    })
}

/// An entry as [`Entry::to_staged`] wrote it, read back (staged entries were built, and so
/// redacted, by the builder before they were written).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn entry_from_staged(text: &str) -> crate::error::Result<Entry> {
    let mut de = serde_json::Deserializer::from_str(text);
    stored_entry(&mut de).map_err(|_| crate::error::Error::Corrupt("staged entry"))
}

impl Entry {
    /// The form in which an entry waits in `audit_pending` (JSON, as in a JSON Lines log).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn to_staged(&self) -> crate::error::Result<String> {
        serde_json::to_string(self).map_err(|_| crate::error::Error::Corrupt("staged entry"))
    }

    /// The record's id (UUID v4).
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The stream it belongs to.
    pub fn stream(&self) -> Stream {
        self.stream
    }
    /// When it happened (millisecond precision, UTC).
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }
    /// The organisation it concerns.
    pub fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }
    /// Live or sandbox.
    pub fn environment(&self) -> Option<Environment> {
        self.environment
    }
    /// Who did it.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    /// What was done (`api_key.revoked`, `http.request`, …).
    pub fn action(&self) -> &str {
        &self.action
    }
    /// What it was done to (an object id).
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }
    /// The `X-Request-Id` of the request that caused it.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// The HTTP method.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
    /// The request path, without query string or fragment.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
    /// The HTTP status sent.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
    /// How long the request took, in microseconds.
    pub fn latency_us(&self) -> Option<u64> {
        self.latency_us
    }
    /// The data subject (a person's user id) the record is about, when not the actor.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// The metadata as its stored, canonical JSON text (keys sorted, no spaces).
    pub fn metadata_json(&self) -> &str {
        &self.metadata
    }
    /// The metadata as a JSON value.
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::from_str(&self.metadata).unwrap_or(serde_json::Value::Null)
    }
    /// The personal value called `name` still held (`ip`, `userAgent`, or a name given to
    /// [`EntryBuilder::personal`](crate::EntryBuilder::personal)).
    pub fn personal(&self, name: &str) -> Option<&str> {
        self.personal.as_ref()?.value(name)
    }
    /// Every personal value still held, by name (sorted).
    pub fn personal_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.personal.iter().flat_map(Personal::held)
    }
    /// Whether the personal data is intact, anonymised or erased (`None`: the record has none).
    pub fn personal_state(&self) -> Option<PersonalState> {
        self.personal.as_ref().map(Personal::state)
    }
    /// The client IP address still held: the original, its network once anonymised, or none.
    pub fn ip(&self) -> Option<IpAddr> {
        self.personal(IP)?.parse().ok()
    }
    /// The user agent, until anonymisation or erasure drops it.
    pub fn user_agent(&self) -> Option<&str> {
        self.personal(USER_AGENT)
    }
    /// Whether the record belongs to data subject `subject`: it is the subject or the actor.
    pub fn concerns(&self, subject: &str) -> bool {
        self.subject.as_deref() == Some(subject) || self.actor.id() == Some(subject)
    }
}

/// A sealed record: an [`Entry`] with its place in the stream's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub(crate) sequence: u64,
    pub(crate) prev_hash: Digest,
    pub(crate) hash: Digest,
    #[serde(deserialize_with = "stored_entry")]
    pub(crate) entry: Entry,
}

impl Record {
    /// Position in the stream, from 1, without gaps.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The hash of the record before it (all zeros for sequence 1).
    pub fn prev_hash(&self) -> &Digest {
        &self.prev_hash
    }
    /// This record's hash (see `docs/audit-chain.md`).
    pub fn hash(&self) -> &Digest {
        &self.hash
    }
    /// The record's content.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }
}

/// Where a stream's chain ends: the last sequence written and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    /// The last sequence (0 for an empty stream).
    pub sequence: u64,
    /// Its hash ([`Digest::ZERO`] for an empty stream).
    pub hash: Digest,
}

/// What a durable [`append`](crate::AuditSink::append) returns once the record is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The stream written to.
    pub stream: Stream,
    /// The record's sequence.
    pub sequence: u64,
    /// The record's hash (the stream's new head).
    pub hash: Digest,
}
