//! The SQL behind queries, verification and the privacy operations.

use chrono::{DateTime, Utc};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior, params};

use super::schema::{self, COLUMNS, read_personal, read_record};
use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::personal::{Personal, compact};
use crate::query::{Page, Query, SqlValue};
use crate::record::{Head, Stream};
use crate::verify::{Progress, VerifyReport, Walk, start_verifier};

pub(super) fn query(conn: &mut Connection, q: &Query) -> Result<Page> {
    let limit = q.effective_limit();
    let (sql, args) = query_sql(q, limit);
    let mut stmt = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
    let mut rows = stmt.query(params.as_slice())?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(read_record(row)?);
    }
    Ok(Page::of(records, limit))
}

/// The `SELECT` for `q` (one row past `limit`, to know whether a next page exists) and its
/// arguments in order.
///
/// Without statistics (nobody runs `ANALYZE` on a live log) SQLite walks the primary key
/// backwards for every filter, because that needs no sort for `ORDER BY sequence DESC LIMIT`;
/// a rare actor or organisation then costs a scan of the whole stream. In the audit log their
/// indexes give the same order, so the query names the one to use; the request log has none
/// (schema migration 2) and is walked. The stream is written into the statement, not bound,
/// because SQLite uses a partial index (`WHERE stream = 'audit' …`) only for a statement it
/// can see matches it.
fn query_sql(q: &Query, limit: usize) -> (String, Vec<Box<dyn ToSql>>) {
    let index = match (q.stream, &q.subject, &q.actor, &q.organization) {
        // `subject = ? OR actor_id = ?` spans two indexes: left to the planner.
        (Stream::Audit, None, Some(_), _) => " INDEXED BY audit_records_by_actor",
        (Stream::Audit, None, None, Some(_)) => " INDEXED BY audit_records_by_org",
        _ => "",
    };
    // `as_str` is one of two fixed names, never input.
    let stream = q.stream.as_str();
    let mut sql = format!("SELECT {COLUMNS} FROM audit_records{index} WHERE stream = '{stream}'");
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    for (clause, values) in q.sql_conditions() {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.extend(values.into_iter().map(|v| -> Box<dyn ToSql> {
            match v {
                SqlValue::Text(t) => Box::new(t),
                SqlValue::Int(n) => Box::new(n),
            }
        }));
    }
    sql.push_str(" ORDER BY sequence DESC LIMIT ?");
    args.push(Box::new(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    (sql, args)
}

pub(super) fn verify(
    conn: &mut Connection,
    stream: Stream,
    key: Option<&CheckpointKey>,
    anchor: Option<&AnchorCheck>,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport> {
    // One read transaction: head, checkpoint and records from the same snapshot.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let head = schema::load_head(&tx, stream)?.unwrap_or_default();
    let checkpoint = schema::load_checkpoint(&tx, stream)?;
    let total: i64 = tx.query_row(
        "SELECT COUNT(*) FROM audit_records WHERE stream = ?1",
        [stream.as_str()],
        |r| r.get(0),
    )?;
    let total = u64::try_from(total).unwrap_or(0);
    let v = start_verifier(stream, checkpoint.as_ref(), key, anchor)?;
    let mut walk = Walk::new(v, total, progress);
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM audit_records WHERE stream = ?1 ORDER BY sequence"
        ))?;
        let mut rows = stmt.query([stream.as_str()])?;
        while let Some(row) = rows.next()? {
            if !walk.push(&read_record(row)?) {
                break;
            }
        }
    }
    tx.commit()?;
    Ok(walk.end().finish(Some(head)))
}

pub(super) fn purge(
    conn: &mut Connection,
    stream: Stream,
    cutoff: DateTime<Utc>,
    key: &CheckpointKey,
) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The first record (in sequence order) that is not old enough ends the removal. Walking
    // the primary key from the start stops there, so the cost follows what is removed.
    let first_kept: Option<i64> = tx
        .query_row(
            "SELECT sequence FROM audit_records WHERE stream = ?1 AND time >= ?2
             ORDER BY sequence LIMIT 1",
            params![stream.as_str(), cutoff.timestamp_millis()],
            |r| r.get(0),
        )
        .optional()?;
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT sequence, hash FROM audit_records WHERE stream = ?1 AND sequence < ?2
             ORDER BY sequence DESC LIMIT 1",
            params![stream.as_str(), first_kept.unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    let last = Head {
        sequence: u64::try_from(seq).map_err(|_| Error::Corrupt("sequence"))?,
        hash: Digest::from_slice(&hash).ok_or(Error::Corrupt("hash"))?,
    };
    let removed = tx.execute(
        "DELETE FROM audit_records WHERE stream = ?1 AND sequence <= ?2",
        params![stream.as_str(), seq],
    )?;
    schema::store_checkpoint(&tx, &Checkpoint::sign(stream, last, Utc::now(), key))?;
    tx.commit()?;
    Ok(removed as u64)
}

/// Applies `change` to the personal data of every row of `from` (the table, maybe with an
/// index to use) selected by `filter` (a `WHERE` clause over `params`) and marks the rows
/// anonymised.
fn rewrite_personal(
    conn: &mut Connection,
    from: &str,
    filter: &str,
    params: &[&dyn ToSql],
    change: fn(&mut Personal) -> bool,
) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut changed = 0;
    {
        let mut select = tx.prepare(&format!(
            "SELECT stream, sequence, personal FROM {from} WHERE personal IS NOT NULL AND ({filter})"
        ))?;
        let mut update = tx.prepare(
            "UPDATE audit_records SET personal = ?3, anonymised = 1
             WHERE stream = ?1 AND sequence = ?2",
        )?;
        let mut rows = select.query(params)?;
        let mut stored = Vec::with_capacity(128);
        while let Some(row) = rows.next()? {
            let stream: String = row.get(0)?;
            let sequence: i64 = row.get(1)?;
            let value: Value = row.get(2)?;
            let Some(mut personal) = read_personal(ValueRef::from(&value))? else {
                continue;
            };
            if change(&mut personal) {
                stored.clear();
                compact::encode(&personal, &mut stored);
                update.execute(params![stream, sequence, stored])?;
                changed += 1;
            } else {
                update.execute(params![stream, sequence, value])?;
            }
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// The rows [`anonymise`] changes; `anonymised = 0` as written in the partial index's
/// `WHERE`, so that SQLite can use it.
const TO_ANONYMISE: &str = "stream = ?1 AND anonymised = 0 AND time < ?2";
/// The audit-log rows [`erase_audit`] changes, in two passes: by subject, then by actor,
/// each through its index (SQLite, left to itself without statistics, walks the whole log
/// for `subject = ? OR actor_id = ?` once the stream is named).
const AUDIT_OF_SUBJECT: [(&str, &str); 2] = [
    (
        "audit_records INDEXED BY audit_records_by_subject",
        "stream = 'audit' AND subject = ?1",
    ),
    (
        "audit_records INDEXED BY audit_records_by_actor",
        "stream = 'audit' AND actor_id = ?1",
    ),
];
pub(super) fn anonymise(
    conn: &mut Connection,
    stream: Stream,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    rewrite_personal(
        conn,
        "audit_records",
        TO_ANONYMISE,
        params![stream.as_str(), cutoff.timestamp_millis()],
        Personal::anonymise,
    )
}

/// Erases `subject`'s personal data in the audit log. A record that is the subject's twice
/// over (as subject and actor) is counted once: the second pass finds nothing left to erase.
pub(super) fn erase_audit(conn: &mut Connection, subject: &str) -> Result<u64> {
    let mut changed = 0;
    for (from, filter) in AUDIT_OF_SUBJECT {
        changed += rewrite_personal(conn, from, filter, params![subject], Personal::erase)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    /// The plan SQLite picks for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(args, |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("\n")
    }

    fn migrated() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn lookups_by_organization_and_actor_use_their_partial_indexes() {
        let conn = migrated();
        let by = |q: Query, index: &str| {
            let (sql, args) = query_sql(&q, 10);
            let args: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let plan = plan(&conn, &sql, &args);
            assert!(plan.contains(index), "{sql}\n{plan}");
        };
        by(
            Query::new(Stream::Audit).organization("o").action("x"),
            "USING INDEX audit_records_by_org (organization=? AND stream=?)",
        );
        by(
            Query::new(Stream::Audit).organization("o").actor("a"),
            "USING INDEX audit_records_by_actor (actor_id=? AND stream=?)",
        );
        // The request log has neither index: its rows are walked newest first.
        by(
            Query::new(Stream::Request).organization("o").actor("a"),
            "USING PRIMARY KEY (stream=?)",
        );
        // Rows come in sequence order from the index: no sort step.
        let (sql, args) = query_sql(&Query::new(Stream::Audit).actor("a"), 10);
        let args: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
        assert!(!plan(&conn, &sql, &args).contains("TEMP B-TREE"));
    }

    #[test]
    fn privacy_operations_find_their_rows_through_the_partial_indexes() {
        let conn = migrated();
        let select = |from: &str, filter: &str| {
            format!("SELECT stream, sequence FROM {from} WHERE personal IS NOT NULL AND ({filter})")
        };
        let anonymise = plan(
            &conn,
            &select("audit_records", TO_ANONYMISE),
            params!["request", 0],
        );
        assert!(
            anonymise.contains("audit_records_to_anonymise"),
            "{anonymise}"
        );
        for ((from, filter), column) in AUDIT_OF_SUBJECT.into_iter().zip(["subject", "actor_id"]) {
            let erase = plan(&conn, &select(from, filter), params!["u"]);
            assert!(
                erase.contains(&format!("({column}=? AND stream=?)")),
                "{erase}"
            );
        }
    }
}
