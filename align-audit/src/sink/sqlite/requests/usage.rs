//! The request log's usage index (DESIGN §11): requests per API key and minute, by outcome,
//! in `usage.sqlite` inside the request-log directory.
//!
//! The index is derived data, kept off the request path: [`refresh`] reads the records
//! written since the last refresh (the segments past `indexed_through`) and adds them up,
//! in one immediate transaction, so two processes (a server and an operator's CLI) never
//! count a record twice. Usage queries refresh first and then read one key's minutes
//! through the primary key `(key_id, minute)`. Nothing else reads it: a missing or
//! unreadable index is rebuilt from the segments (backups copy only the segments), and one
//! that counted further than the segments now reach (a restored backup) is rebuilt too.
//! Retention removes the minutes it purged ([`forget_before`]), so the index stays bounded
//! by the retention period.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::files::{Dir, frames, read_prefix};
use super::ops::retrying;
use crate::error::Result;
use crate::usage::{Counts, UsageBucket, UsageQuery, buckets, minute_of, represented};

const FILE: &str = "usage.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
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

fn refresh_with(dir: &Dir, conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut through = tx
        .query_row(
            "SELECT indexed_through FROM usage_state WHERE id = 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map_or(0, to_u64);
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
    // The newest record seen in the segments read (those past `through`, and the open one).
    let mut newest = 0;
    for pass in 0..2 {
        for (s, file, len) in &snap.segments {
            if s.closed.is_some_and(|c| c.last <= through) {
                continue;
            }
            let bytes = read_prefix(file, *len)?;
            let mut minutes: HashMap<String, HashMap<i64, Counts>> = HashMap::new();
            frames(&bytes, s.closed.is_none(), |v, _| {
                newest = newest.max(v.sequence);
                if v.sequence > through && v.sequence > pruned {
                    indexed += 1;
                    if let (true, Some(key)) = (v.key_actor, v.actor_id) {
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
            let mut add = tx.prepare_cached(
                "INSERT INTO key_minutes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (key_id, minute) DO UPDATE SET
                   requests = requests + excluded.requests,
                   succeeded = succeeded + excluded.succeeded,
                   client_errors = client_errors + excluded.client_errors,
                   rate_limited = rate_limited + excluded.rate_limited,
                   server_errors = server_errors + excluded.server_errors",
            )?;
            for ((key, minute), c) in minutes
                .iter()
                .flat_map(|(k, m)| m.iter().map(move |(minute, c)| ((k, minute), c)))
            {
                add.execute(params![
                    key,
                    minute,
                    to_i64(c.requests),
                    to_i64(c.succeeded),
                    to_i64(c.client_errors),
                    to_i64(c.rate_limited),
                    to_i64(c.server_errors),
                ])?;
            }
        }
        // The index counted records the segments no longer hold (the directory was restored
        // from an older backup): start again from nothing.
        if pass == 0 && through > newest.max(on_disk) {
            tx.execute("DELETE FROM key_minutes", [])?;
            through = 0;
            newest = 0;
            indexed = 0;
            continue;
        }
        break;
    }
    tx.execute(
        "INSERT INTO usage_state (id, indexed_through) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET indexed_through = excluded.indexed_through",
        [to_i64(newest.max(through))],
    )?;
    tx.commit()?;
    Ok(indexed)
}

/// `q`'s usage: the index brought up to date, then the key's minutes in the range.
pub(super) fn usage(dir: &Dir, q: &UsageQuery) -> Result<Vec<UsageBucket>> {
    let mut per_minute = BTreeMap::new();
    if dir.path.exists() {
        let mut conn = open(dir)?;
        refresh_with(dir, &mut conn)?;
        let (first, end) = q.minutes();
        let mut rows = conn.prepare_cached(
            "SELECT minute, requests, succeeded, client_errors, rate_limited, server_errors
             FROM key_minutes WHERE key_id = ?1 AND minute >= ?2 AND minute < ?3",
        )?;
        let found = rows.query_map(params![q.key_id(), first, end], |r| {
            Ok((
                r.get::<_, i64>(0)?,
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
    let conn = open(dir)?;
    conn.execute(
        "DELETE FROM key_minutes WHERE minute < ?1",
        [minute_of(cutoff.timestamp_millis())],
    )?;
    Ok(())
}
