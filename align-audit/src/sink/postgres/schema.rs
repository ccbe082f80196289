//! The PostgreSQL schema (tables prefixed `audit_`, versioned in `audit_migrations`; the same
//! columns as the SQLite sink, times in Unix milliseconds) and the mapping between rows and
//! records.

use std::collections::BTreeMap;

use chrono::DateTime;
use tokio_postgres::{GenericClient, Row};

use crate::checkpoint::Checkpoint;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::record::{Entry, Head, Record, Stream};
use crate::sink::columns::{
    actor_columns, actor_from_columns, is_anonymised, parse_personal, personal_json,
};

/// The columns of `audit_records`, in the order [`insert`] binds and [`read_record`] reads them.
pub(super) const COLUMNS: &str = "stream, sequence, id, time, organization, environment, \
    actor_kind, actor_id, actor_prefix, action, target, request_id, method, path, status, \
    latency_us, subject, metadata, personal, anonymised, prev_hash, hash";

/// One statement for a whole batch: every column as an array, unnested into rows.
const INSERT: &str = "INSERT INTO audit_records (stream, sequence, id, time, organization, \
    environment, actor_kind, actor_id, actor_prefix, action, target, request_id, method, path, \
    status, latency_us, subject, metadata, personal, anonymised, prev_hash, hash) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
    $13::text[], $14::text[], $15::int4[], $16::bigint[], $17::text[], $18::text[], \
    $19::text[], $20::bool[], $21::bytea[], $22::bytea[])";

/// Brings the `audit_` tables of `client`'s database (and schema) up to date.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    Ok(align_core::postgres::migrate(client, "audit", crate::sink::migrations::POSTGRES).await?)
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(n: i64, what: &'static str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Corrupt(what))
}

/// Inserts `records` with one statement.
pub(super) async fn insert(client: &impl GenericClient, records: &[Record]) -> Result<()> {
    let n = records.len();
    let mut stream = Vec::with_capacity(n);
    let mut sequence = Vec::with_capacity(n);
    let mut id = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let mut organization = Vec::with_capacity(n);
    let mut environment = Vec::with_capacity(n);
    let mut actor_kind = Vec::with_capacity(n);
    let mut actor_id = Vec::with_capacity(n);
    let mut actor_prefix = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    let mut target = Vec::with_capacity(n);
    let mut request_id = Vec::with_capacity(n);
    let mut method = Vec::with_capacity(n);
    let mut path = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut latency = Vec::with_capacity(n);
    let mut subject = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut personal = Vec::with_capacity(n);
    let mut anonymised = Vec::with_capacity(n);
    let mut prev_hash = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for r in records {
        let e: &Entry = &r.entry;
        let (kind, actor, prefix) = actor_columns(&e.actor);
        stream.push(e.stream.as_str());
        sequence.push(to_i64(r.sequence));
        id.push(e.id.to_string());
        time.push(e.time.timestamp_millis());
        organization.push(e.organization.as_deref());
        environment.push(e.environment.map(|v| v.as_str()));
        actor_kind.push(kind);
        actor_id.push(actor);
        actor_prefix.push(prefix);
        action.push(e.action.as_str());
        target.push(e.target.as_deref());
        request_id.push(e.request_id.as_deref());
        method.push(e.method.as_deref());
        path.push(e.path.as_deref());
        status.push(e.status.map(i32::from));
        latency.push(e.latency_us.map(to_i64));
        subject.push(e.subject.as_deref());
        metadata.push(e.metadata.as_str());
        personal.push(e.personal.as_ref().map(personal_json).transpose()?);
        anonymised.push(is_anonymised(e));
        prev_hash.push(r.prev_hash.as_bytes().as_slice());
        hash.push(r.hash.as_bytes().as_slice());
    }
    client
        .execute(
            INSERT,
            &[
                &stream,
                &sequence,
                &id,
                &time,
                &organization,
                &environment,
                &actor_kind,
                &actor_id,
                &actor_prefix,
                &action,
                &target,
                &request_id,
                &method,
                &path,
                &status,
                &latency,
                &subject,
                &metadata,
                &personal,
                &anonymised,
                &prev_hash,
                &hash,
            ],
        )
        .await?;
    Ok(())
}

fn digest(row: &Row, idx: usize, what: &'static str) -> Result<Digest> {
    let bytes: &[u8] = row.try_get(idx)?;
    Digest::from_slice(bytes).ok_or(Error::Corrupt(what))
}

/// Reads a row selected with [`COLUMNS`].
pub(super) fn read_record(row: &Row) -> Result<Record> {
    let stream: &str = row.try_get(0)?;
    let stream = Stream::from_name(stream).ok_or(Error::Corrupt("stream"))?;
    let id: &str = row.try_get(2)?;
    let time: i64 = row.try_get(3)?;
    let environment: Option<&str> = row.try_get(5)?;
    let environment = environment
        .map(|name| align_core::Environment::from_name(name).ok_or(Error::Corrupt("environment")))
        .transpose()?;
    let kind: &str = row.try_get(6)?;
    let actor = actor_from_columns(kind, row.try_get(7)?, row.try_get(8)?)?;
    let status: Option<i32> = row.try_get(14)?;
    let latency: Option<i64> = row.try_get(15)?;
    let personal: Option<&str> = row.try_get(18)?;
    let entry = Entry {
        id: id.parse().map_err(|_| Error::Corrupt("record id"))?,
        stream,
        time: DateTime::from_timestamp_millis(time).ok_or(Error::Corrupt("time"))?,
        organization: row.try_get(4)?,
        environment,
        actor,
        action: row.try_get(9)?,
        target: row.try_get(10)?,
        request_id: row.try_get(11)?,
        method: row.try_get(12)?,
        path: row.try_get(13)?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| Error::Corrupt("status")))
            .transpose()?,
        latency_us: latency.map(|l| to_u64(l, "latency")).transpose()?,
        subject: row.try_get(16)?,
        metadata: row.try_get(17)?,
        personal: personal.map(parse_personal).transpose()?,
    };
    Ok(Record {
        sequence: to_u64(row.try_get(1)?, "sequence")?,
        prev_hash: digest(row, 20, "hash")?,
        hash: digest(row, 21, "hash")?,
        entry,
    })
}

fn head_of(row: &Row) -> Result<(Stream, Head)> {
    let stream: &str = row.try_get(0)?;
    let stream = Stream::from_name(stream).ok_or(Error::Corrupt("head"))?;
    Ok((
        stream,
        Head {
            sequence: to_u64(row.try_get(1)?, "head")?,
            hash: digest(row, 2, "head")?,
        },
    ))
}

/// The heads of `streams`, locked until the end of `tx`'s transaction, so no other process
/// extends those chains meanwhile. Rows are locked in stream order: two batches never wait
/// for each other crosswise.
pub(super) async fn lock_heads(
    tx: &impl GenericClient,
    streams: &[&str],
) -> Result<BTreeMap<Stream, Head>> {
    let rows = tx
        .query(
            "SELECT stream, sequence, hash FROM audit_heads WHERE stream = ANY($1)
             ORDER BY stream FOR UPDATE",
            &[&streams],
        )
        .await?;
    rows.iter().map(head_of).collect()
}

/// Moves the heads of the streams in `heads`.
pub(super) async fn store_heads(
    tx: &impl GenericClient,
    heads: &BTreeMap<Stream, Head>,
) -> Result<()> {
    for (stream, head) in heads {
        tx.execute(
            "UPDATE audit_heads SET sequence = $2, hash = $3 WHERE stream = $1",
            &[
                &stream.as_str(),
                &to_i64(head.sequence),
                &head.hash.as_bytes().as_slice(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Where `stream`'s chain ends (sequence 0 before its first record).
pub(super) async fn load_head(client: &impl GenericClient, stream: Stream) -> Result<Head> {
    let row = client
        .query_opt(
            "SELECT stream, sequence, hash FROM audit_heads WHERE stream = $1",
            &[&stream.as_str()],
        )
        .await?;
    row.map(|r| head_of(&r).map(|(_, h)| h))
        .transpose()
        .map(Option::unwrap_or_default)
}

pub(super) async fn load_checkpoint(
    client: &impl GenericClient,
    stream: Stream,
) -> Result<Option<Checkpoint>> {
    let row = client
        .query_opt(
            "SELECT sequence, hash, created_at, signature FROM audit_checkpoints
             WHERE stream = $1",
            &[&stream.as_str()],
        )
        .await?;
    row.map(|r| {
        let head = Head {
            sequence: to_u64(r.try_get(0)?, "checkpoint")?,
            hash: digest(&r, 1, "checkpoint")?,
        };
        let created =
            DateTime::from_timestamp_millis(r.try_get(2)?).ok_or(Error::Corrupt("checkpoint"))?;
        let sig = digest(&r, 3, "checkpoint")?;
        Ok(Checkpoint::from_parts(stream, head, created, sig))
    })
    .transpose()
}

pub(super) async fn store_checkpoint(tx: &impl GenericClient, cp: &Checkpoint) -> Result<()> {
    let head = cp.last_pruned();
    tx.execute(
        "INSERT INTO audit_checkpoints (stream, sequence, hash, created_at, signature)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (stream) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash,
             created_at = excluded.created_at, signature = excluded.signature",
        &[
            &cp.stream().as_str(),
            &to_i64(head.sequence),
            &head.hash.as_bytes().as_slice(),
            &cp.created_at().timestamp_millis(),
            &cp.signature().as_bytes().as_slice(),
        ],
    )
    .await?;
    Ok(())
}
