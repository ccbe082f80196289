//! The data-subject export: one JSON object per record, values only, no hashes or salts.

use std::collections::BTreeMap;
use std::io::Write;

use align_core::Environment;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;
use crate::record::{Actor, Record, Stream};
use crate::serde_util::{raw_json, time_ms};

/// One line of a subject export: what the logs hold about a person, in plain values.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecord<'a> {
    /// The stream.
    pub stream: Stream,
    /// The record's sequence in its stream.
    pub sequence: u64,
    /// The record id.
    pub id: Uuid,
    /// When it happened.
    #[serde(with = "time_ms")]
    pub time: DateTime<Utc>,
    /// The organisation.
    pub organization: Option<&'a str>,
    /// Live or sandbox.
    pub environment: Option<Environment>,
    /// Who did it.
    pub actor: &'a Actor,
    /// What was done.
    pub action: &'a str,
    /// What it was done to.
    pub target: Option<&'a str>,
    /// The request id.
    pub request_id: Option<&'a str>,
    /// The HTTP method.
    pub method: Option<&'a str>,
    /// The path.
    pub path: Option<&'a str>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// Latency in microseconds.
    pub latency_us: Option<u64>,
    /// The data subject.
    pub subject: Option<&'a str>,
    /// Personal values still held (`ip`, `userAgent`, …), by name.
    pub personal: BTreeMap<&'a str, &'a str>,
    /// The metadata.
    #[serde(serialize_with = "raw_json::serialize")]
    pub metadata: &'a str,
}

impl<'a> ExportRecord<'a> {
    /// The export view of `record`.
    pub fn of(record: &'a Record) -> Self {
        let e = record.entry();
        Self {
            stream: e.stream(),
            sequence: record.sequence(),
            id: e.id(),
            time: e.time(),
            organization: e.organization(),
            environment: e.environment(),
            actor: e.actor(),
            action: e.action(),
            target: e.target(),
            request_id: e.request_id(),
            method: e.method(),
            path: e.path(),
            status: e.status(),
            latency_us: e.latency_us(),
            subject: e.subject(),
            personal: e.personal_values().collect(),
            metadata: e.metadata_json(),
        }
    }
}

/// Writes `record`'s export view as one JSON line.
pub(crate) fn write_export_line(record: &Record, out: &mut (dyn Write + Send)) -> Result<()> {
    let line = serde_json::to_vec(&ExportRecord::of(record)).map_err(std::io::Error::other)?;
    out.write_all(&line)?;
    out.write_all(b"\n")?;
    Ok(())
}
