//! The request log's usage index (DESIGN §11): requests per actor (API key or user) and
//! minute, and per actor and hour, by outcome,
//! in `usage-v1.sqlite` inside the request-log directory.
//!
//! The index is derived data, kept off the request path: [`refresh`] reads the records
//! written since the last refresh (the segments past `indexed_through`) and adds them up,
//! in one immediate transaction, so two processes (a server and an operator's CLI) never
//! count a record twice; the open segment is read from where the last refresh stopped in it.
//! Usage queries refresh first and then read one key's rows through a primary key: per
//! minute for minute steps, per hour for hour and day steps. Nothing else reads it: a missing or
//! unreadable index is rebuilt from the segments (backups copy only the segments), and one
//! that counted further than the segments now reach (a restored backup) is rebuilt too.
//! Retention removes the minutes it purged ([`forget_before`]), so the index stays bounded
//! by the retention period.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::codec::{Next, View, next};
use super::files::{Dir, frames, read_range};
use super::ops::retrying;
use crate::error::Result;
use crate::usage::{Counts, Granularity, UsageBucket, UsageQuery, buckets, minute_of, represented};

/// Versioned: a file of another layout is simply not this one (the next query builds it).
const FILE: &str = "usage-v1.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL,
    open_first INTEGER NOT NULL,
    open_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS key_minutes (
    key_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    client_errors INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    server_errors INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_hours (
    key_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    client_errors INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    server_errors INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour)
) WITHOUT ROWID;
";

fn open(dir: &Dir) -> Result<Connection> {
    let conn = align_core::sqlite::open(&dir.path.join(FILE))?;
    // Derived data: a crash loses at most what the next refresh adds again.
    align_core::sqlite::configure(&conn, false)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Adds the records written since the last refresh to the index; returns how many it added.
pub(super) fn refresh(dir: &Dir) -> Result<u64> {
    if !dir.path.exists() {
        return Ok(0);
    }
    let mut conn = open(dir)?;
    refresh_with(dir, &mut conn)
}

/// Where the last refresh stopped: the newest record counted, and how far into the open
/// segment it read (so that the next refresh reads only what was appended since).
#[derive(Default)]
struct Progress {
    through: u64,
    open_first: u64,
    open_offset: u64,
}

fn refresh_with(dir: &Dir, conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut at = tx
        .query_row(
            "SELECT indexed_through, open_first, open_offset FROM usage_state WHERE id = 1",
            [],
            |r| {
                Ok(Progress {
                    through: to_u64(r.get(0)?),
                    open_first: to_u64(r.get(1)?),
                    open_offset: to_u64(r.get(2)?),
                })
            },
        )
        .optional()?
        .unwrap_or_default();
    let snap = retrying(|| dir.snapshot())?;
    let pruned = snap.pruned();
    let on_disk = snap
        .segments
        .iter()
        .filter_map(|(s, _, _)| s.closed.map(|c| c.last))
        .max()
        .unwrap_or(0)
        .max(pruned);
    let mut indexed = 0;
    // The newest record known to be in the segments (read now, or before `open_offset`).
    let mut newest = 0;
    let mut open_at = (0, 0);
    for pass in 0..2 {
        for (s, file, len) in &snap.segments {
            if s.closed.is_some_and(|c| c.last <= at.through) {
                continue;
            }
            // The open segment is read from where the last refresh stopped in it.
            let mut from =
                if s.closed.is_none() && s.first == at.open_first && at.open_offset <= *len {
                    newest = newest.max(at.through);
                    at.open_offset
                } else {
                    0
                };
            let mut bytes = read_range(file, from, *len)?;
            // An erasure or anonymisation rewrites the open segment, moving every record
            // after the first it changed: the offset then no longer starts the record after
            // `through`. Read the whole segment (records already counted are skipped by
            // sequence).
            if from > 0 && !continues(&bytes, at.through) {
                from = 0;
                bytes = read_range(file, 0, *len)?;
            }
            let mut minutes: HashMap<String, HashMap<i64, Counts>> = HashMap::new();
            let mut end = 0;
            frames(&bytes, s.closed.is_none(), |v, body| {
                newest = newest.max(v.sequence);
                end = body.end;
                if v.sequence > at.through && v.sequence > pruned {
                    indexed += 1;
                    if let Some(key) = v.actor_id {
                        let per_key = match minutes.get_mut(key) {
                            Some(m) => m,
                            None => minutes.entry(key.to_owned()).or_default(),
                        };
                        per_key
                            .entry(minute_of(v.time_ms))
                            .or_default()
                            .add(v.status, represented(v.metadata));
                    }
                }
                Ok(true)
            })?;
            if s.closed.is_none() {
                open_at = (s.first, from + end as u64);
            }
            add(&tx, &minutes)?;
        }
        // The index counted records the segments no longer hold (the directory was restored
        // from an older backup): start again from nothing.
        if pass == 0 && at.through > newest.max(on_disk) {
            tx.execute_batch("DELETE FROM key_minutes; DELETE FROM key_hours;")?;
            at = Progress::default();
            newest = 0;
            indexed = 0;
            open_at = (0, 0);
            continue;
        }
        break;
    }
    tx.execute(
        "INSERT INTO usage_state (id, indexed_through, open_first, open_offset)
         VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET indexed_through = excluded.indexed_through,
           open_first = excluded.open_first, open_offset = excluded.open_offset",
        params![
            to_i64(newest.max(at.through)),
            to_i64(open_at.0),
            to_i64(open_at.1)
        ],
    )?;
    tx.commit()?;
    Ok(indexed)
}

/// Adds one segment's counts to both tables: per minute, and per hour (what hour and day
/// steps read).
fn add(
    tx: &rusqlite::Transaction<'_>,
    minutes: &HashMap<String, HashMap<i64, Counts>>,
) -> Result<()> {
    for (table, unit) in [("key_minutes", 1), ("key_hours", 60)] {
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT DO UPDATE SET
               requests = requests + excluded.requests,
               succeeded = succeeded + excluded.succeeded,
               client_errors = client_errors + excluded.client_errors,
               rate_limited = rate_limited + excluded.rate_limited,
               server_errors = server_errors + excluded.server_errors"
        ))?;
        for (key, per_minute) in minutes {
            let mut rolled: HashMap<i64, Counts> = HashMap::new();
            for (minute, c) in per_minute {
                rolled.entry(minute.div_euclid(unit)).or_default().merge(c);
            }
            for (at, c) in rolled {
                upsert.execute(params![
                    key,
                    at,
                    to_i64(c.requests),
                    to_i64(c.succeeded),
                    to_i64(c.client_errors),
                    to_i64(c.rate_limited),
                    to_i64(c.server_errors),
                ])?;
            }
        }
    }
    Ok(())
}

/// `q`'s usage: the index brought up to date, then the key's minutes in the range.
pub(super) fn usage(dir: &Dir, q: &UsageQuery) -> Result<Vec<UsageBucket>> {
    let mut per_minute = BTreeMap::new();
    if dir.path.exists() {
        let mut conn = open(dir)?;
        refresh_with(dir, &mut conn)?;
        let (first, end) = q.minutes();
        // Hour and day steps are whole hours: read the hourly rows.
        let (sql, unit) = match q.granularity() {
            Granularity::Minute => (
                "SELECT minute, requests, succeeded, client_errors, rate_limited, server_errors
                 FROM key_minutes WHERE key_id = ?1 AND minute >= ?2 AND minute < ?3",
                1,
            ),
            Granularity::Hour | Granularity::Day => (
                "SELECT hour, requests, succeeded, client_errors, rate_limited, server_errors
                 FROM key_hours WHERE key_id = ?1 AND hour >= ?2 AND hour < ?3",
                60,
            ),
        };
        let mut rows = conn.prepare_cached(sql)?;
        let found = rows.query_map(params![q.key_id(), first / unit, end / unit], |r| {
            Ok((
                r.get::<_, i64>(0)? * unit,
                Counts {
                    requests: to_u64(r.get(1)?),
                    succeeded: to_u64(r.get(2)?),
                    client_errors: to_u64(r.get(3)?),
                    rate_limited: to_u64(r.get(4)?),
                    server_errors: to_u64(r.get(5)?),
                },
            ))
        })?;
        for row in found {
            let (minute, c) = row?;
            per_minute.insert(minute, c);
        }
    }
    Ok(buckets(q, &per_minute))
}

/// Drops the minutes before `cutoff`'s minute (retention purged their records).
pub(super) fn forget_before(dir: &Dir, cutoff: DateTime<Utc>) -> Result<()> {
    if !dir.path.join(FILE).exists() {
        return Ok(());
    }
    let mut conn = open(dir)?;
    let minute = minute_of(cutoff.timestamp_millis());
    let hour = minute.div_euclid(60);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM key_minutes WHERE minute < ?1", [minute])?;
    // The hour the cutoff falls in keeps only its remaining minutes.
    tx.execute("DELETE FROM key_hours WHERE hour <= ?1", [hour])?;
    tx.execute(
        "INSERT INTO key_hours
         SELECT key_id, ?1, sum(requests), sum(succeeded), sum(client_errors),
                sum(rate_limited), sum(server_errors)
         FROM key_minutes WHERE minute >= ?1 * 60 AND minute < (?1 + 1) * 60
         GROUP BY key_id",
        [hour],
    )?;
    tx.commit()?;
    Ok(())
}

/// What the index knows of `actor` for a query over the segments: the last sequence it
/// counted, and the hours (since the epoch, ascending) in which `actor` made requests up to
/// it. `None` when there is no index yet. Nothing is refreshed: segments past the sequence
/// must be read anyway.
pub(super) fn active_hours(dir: &Dir, actor: &str) -> Result<Option<(u64, Vec<i64>)>> {
    if !dir.path.join(FILE).exists() {
        return Ok(None);
    }
    let conn = open(dir)?;
    let Some(through) = conn
        .query_row(
            "SELECT indexed_through FROM usage_state WHERE id = 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut rows =
        conn.prepare_cached("SELECT hour FROM key_hours WHERE key_id = ?1 ORDER BY hour")?;
    let hours = rows
        .query_map([actor], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((to_u64(through), hours)))
}

/// Whether `bytes` (read from the remembered offset in the open segment) start with the record
/// after `through`, or hold nothing yet.
fn continues(bytes: &[u8], through: u64) -> bool {
    match next(bytes) {
        Next::End => true,
        Next::Frame(body, _) => View::of(body).is_ok_and(|v| v.sequence == through + 1),
        Next::Torn | Next::Bad => false,
    }
}
