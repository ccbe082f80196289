//! The SQLite schema (tables prefixed `audit_`, versioned in `audit_migrations`) and the
//! mapping between rows and records.

use std::collections::BTreeMap;

use chrono::DateTime;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, Statement, Transaction, params};

use crate::checkpoint::Checkpoint;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::personal::{Personal, compact};
use crate::record::{Entry, Head, Record, Stream};
pub(crate) use crate::sink::columns::parse_personal;
use crate::sink::columns::{actor_columns, actor_from_columns, is_anonymised};

/// The columns of `audit_records`, in the order [`insert_record`] binds and [`read_record`]
/// reads them.
pub(crate) const COLUMNS: &str = "stream, sequence, id, time, organization, environment, \
    actor_kind, actor_id, actor_prefix, action, target, request_id, method, path, status, \
    latency_us, subject, metadata, personal, anonymised, prev_hash, hash";

pub(crate) const INSERT: &str = "INSERT INTO audit_records (stream, sequence, id, time, \
    organization, environment, actor_kind, actor_id, actor_prefix, action, target, request_id, \
    method, path, status, latency_us, subject, metadata, personal, anonymised, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
    ?19, ?20, ?21, ?22)";

/// Opens a connection (a new file is created `0600`): WAL, busy timeout, `synchronous` FULL (fsync per commit) or NORMAL.
pub(crate) fn connect(path: &std::path::Path, sync_to_disk: bool) -> Result<Connection> {
    let conn = align_core::sqlite::open(path)?;
    align_core::sqlite::configure(&conn, sync_to_disk)?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    Ok(align_core::sqlite::migrate(
        conn,
        "audit",
        crate::sink::migrations::SQLITE,
    )?)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64, what: &'static str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Corrupt(what))
}

/// Inserts `r` with [`INSERT`]: the id as its 16 bytes and the personal data in its compact
/// form (see [`compact`]); `scratch` holds the latter (reused across rows).
pub(crate) fn insert_record(
    stmt: &mut Statement<'_>,
    r: &Record,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    let e = &r.entry;
    let personal = match &e.personal {
        None => None,
        Some(p) => {
            scratch.clear();
            compact::encode(p, scratch);
            Some(scratch.as_slice())
        }
    };
    let (kind, actor_id, prefix) = actor_columns(&e.actor);
    stmt.execute(params![
        e.stream.as_str(),
        to_i64(r.sequence),
        e.id.as_bytes().as_slice(),
        e.time.timestamp_millis(),
        e.organization,
        e.environment.map(|v| v.as_str()),
        kind,
        actor_id,
        prefix,
        e.action,
        e.target,
        e.request_id,
        e.method,
        e.path,
        e.status,
        e.latency_us.map(to_i64),
        e.subject,
        e.metadata,
        personal,
        is_anonymised(e),
        r.prev_hash.as_bytes().as_slice(),
        r.hash.as_bytes().as_slice(),
    ])?;
    Ok(())
}

/// Personal data as stored: the compact form, or JSON text in rows written before it.
pub(crate) fn read_personal(value: ValueRef<'_>) -> Result<Option<Personal>> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => compact::decode(bytes, &mut Vec::new()).map(Some),
        ValueRef::Text(text) => std::str::from_utf8(text)
            .map_err(|_| Error::Corrupt("personal data"))
            .and_then(parse_personal)
            .map(Some),
        _ => Err(Error::Corrupt("personal data")),
    }
}

fn digest(row: &Row<'_>, idx: usize) -> Result<Digest> {
    let bytes: Vec<u8> = row.get(idx)?;
    Digest::from_slice(&bytes).ok_or(Error::Corrupt("hash"))
}

/// Reads a row selected with [`COLUMNS`].
pub(crate) fn read_record(row: &Row<'_>) -> Result<Record> {
    let stream: String = row.get(0)?;
    let stream = Stream::from_name(&stream).ok_or(Error::Corrupt("stream"))?;
    let id = match row.get_ref(2)? {
        // Rows written before the compact form hold the hyphenated text.
        ValueRef::Text(text) => std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()),
        ValueRef::Blob(bytes) => uuid::Uuid::from_slice(bytes).ok(),
        _ => None,
    }
    .ok_or(Error::Corrupt("record id"))?;
    let time: i64 = row.get(3)?;
    let environment: Option<String> = row.get(5)?;
    let environment = match environment {
        None => None,
        Some(name) => {
            Some(align_core::Environment::from_name(&name).ok_or(Error::Corrupt("environment"))?)
        }
    };
    let kind: String = row.get(6)?;
    let actor = actor_from_columns(&kind, row.get(7)?, row.get(8)?)?;
    let latency: Option<i64> = row.get(15)?;
    let entry = Entry {
        id,
        stream,
        time: DateTime::from_timestamp_millis(time).ok_or(Error::Corrupt("time"))?,
        organization: row.get(4)?,
        environment,
        actor,
        action: row.get(9)?,
        target: row.get(10)?,
        request_id: row.get(11)?,
        method: row.get(12)?,
        path: row.get(13)?,
        status: row.get(14)?,
        latency_us: latency.map(|l| to_u64(l, "latency")).transpose()?,
        subject: row.get(16)?,
        metadata: row.get(17)?,
        personal: read_personal(row.get_ref(18)?)?,
    };
    Ok(Record {
        sequence: to_u64(row.get(1)?, "sequence")?,
        prev_hash: digest(row, 20)?,
        hash: digest(row, 21)?,
        entry,
    })
}

pub(crate) fn store_heads(tx: &Transaction<'_>, heads: &BTreeMap<Stream, Head>) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit_heads (stream, sequence, hash) VALUES (?1, ?2, ?3)
         ON CONFLICT(stream) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash",
    )?;
    for (stream, head) in heads {
        stmt.execute(params![
            stream.as_str(),
            to_i64(head.sequence),
            head.hash.as_bytes().as_slice()
        ])?;
    }
    Ok(())
}

pub(crate) fn load_heads(conn: &Connection) -> Result<BTreeMap<Stream, Head>> {
    let mut heads = BTreeMap::new();
    for stream in Stream::ALL {
        if let Some(h) = load_head(conn, stream)? {
            heads.insert(stream, h);
        }
    }
    Ok(heads)
}

pub(crate) fn load_head(conn: &Connection, stream: Stream) -> Result<Option<Head>> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT sequence, hash FROM audit_heads WHERE stream = ?1",
            [stream.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(seq, hash)| {
        Ok(Head {
            sequence: to_u64(seq, "head")?,
            hash: Digest::from_slice(&hash).ok_or(Error::Corrupt("head"))?,
        })
    })
    .transpose()
}

pub(crate) fn load_checkpoint(conn: &Connection, stream: Stream) -> Result<Option<Checkpoint>> {
    type Row = (i64, Vec<u8>, i64, Vec<u8>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT sequence, hash, created_at, signature FROM audit_checkpoints
             WHERE stream = ?1",
            [stream.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(|(seq, hash, created, sig)| {
        let head = Head {
            sequence: to_u64(seq, "checkpoint")?,
            hash: Digest::from_slice(&hash).ok_or(Error::Corrupt("checkpoint"))?,
        };
        let created =
            DateTime::from_timestamp_millis(created).ok_or(Error::Corrupt("checkpoint"))?;
        let sig = Digest::from_slice(&sig).ok_or(Error::Corrupt("checkpoint"))?;
        Ok(Checkpoint::from_parts(stream, head, created, sig))
    })
    .transpose()
}

pub(crate) fn store_checkpoint(tx: &Transaction<'_>, cp: &Checkpoint) -> Result<()> {
    let head = cp.last_pruned();
    tx.execute(
        "INSERT INTO audit_checkpoints (stream, sequence, hash, created_at, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(stream) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash,
             created_at = excluded.created_at, signature = excluded.signature",
        params![
            cp.stream().as_str(),
            to_i64(head.sequence),
            head.hash.as_bytes().as_slice(),
            cp.created_at().timestamp_millis(),
            cp.signature().as_bytes().as_slice(),
        ],
    )?;
    Ok(())
}

/// Moves the request-log rows (and the request stream's head and checkpoint) that earlier
/// versions kept in `audit_records` into the request log's segment files in `dir`, then
/// deletes them from SQLite. The chain is unchanged: the records keep their sequences and
/// hashes, and new request-log records continue after them. Safe to repeat after a crash
/// (rows already in a segment are skipped) and with several processes opening at once.
pub(crate) fn move_request_rows(conn: &mut Connection, dir: &std::path::Path) -> Result<()> {
    let pending: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit_records WHERE stream = 'request')
             OR EXISTS (SELECT 1 FROM audit_checkpoints WHERE stream = 'request')
             OR EXISTS (SELECT 1 FROM audit_heads WHERE stream = 'request')",
        [],
        |r| r.get(0),
    )?;
    if !pending {
        return Ok(());
    }
    let checkpoint = load_checkpoint(conn, Stream::Request)?;
    let mut after = 0i64;
    let mut moved_any = false;
    loop {
        let rows = {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM audit_records WHERE stream = 'request' AND sequence > ?1
                 ORDER BY sequence LIMIT 50000"
            ))?;
            let mut rows = stmt.query([after])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(read_record(row)?);
            }
            out
        };
        let Some(last) = rows.last() else {
            break;
        };
        after = to_i64(last.sequence);
        super::requests::migrate_rows(dir, &rows, checkpoint.as_ref())?;
        moved_any = true;
    }
    if !moved_any {
        super::requests::migrate_rows(dir, &[], checkpoint.as_ref())?;
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for table in ["audit_records", "audit_heads", "audit_checkpoints"] {
        tx.execute(&format!("DELETE FROM {table} WHERE stream = 'request'"), [])?;
    }
    tx.commit()?;
    Ok(())
}
