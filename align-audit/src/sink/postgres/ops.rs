//! The SQL behind queries, verification and the privacy operations on PostgreSQL.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::schema::{self, COLUMNS, read_record, to_i64};
use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Error, Result};
use crate::personal::Personal;
use crate::query::{Page, Query, SqlValue};
use crate::record::{Head, Stream};
use crate::sink::columns::{parse_personal, personal_json};
use crate::usage::{Counts, UsageBucket, UsageQuery, buckets};
use crate::verify::{Progress, VerifyReport, Walk, start_verifier};

use std::collections::BTreeMap;

/// Records read per round trip while verifying.
const VERIFY_PAGE: i64 = 4096;
/// Rows rewritten per transaction by anonymisation, so a large backlog holds no long locks.
const REWRITE_CHUNK: i64 = 1000;

type Param = Box<dyn ToSql + Sync + Send>;

pub(super) async fn query(pool: &Pool, q: &Query) -> Result<Page> {
    let limit = q.effective_limit();
    let mut sql = format!("SELECT {COLUMNS} FROM audit_records WHERE stream = $1");
    let mut args: Vec<Param> = vec![Box::new(q.stream.as_str())];
    // Each `?` becomes `$n` as its value is bound.
    for (clause, values) in q.sql_conditions() {
        let mut text = clause.to_owned();
        for v in values {
            args.push(match v {
                SqlValue::Text(t) => Box::new(t),
                SqlValue::Int(n) => Box::new(n),
            });
            text = text.replacen('?', &format!("${}", args.len()), 1);
        }
        sql.push_str(" AND ");
        sql.push_str(&text);
    }
    args.push(Box::new(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    sql.push_str(&format!(" ORDER BY sequence DESC LIMIT ${}", args.len()));
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&stmt, &params).await?;
    let records = rows.iter().map(read_record).collect::<Result<Vec<_>>>()?;
    Ok(Page::of(records, limit))
}

pub(super) async fn verify(
    pool: &Pool,
    stream: Stream,
    key: Option<&CheckpointKey>,
    anchor: Option<&AnchorCheck>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<VerifyReport> {
    let mut client = pool.get().await?;
    // One snapshot: head, checkpoint and records as they stood together, while other
    // instances go on appending.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = schema::load_head(&*tx, stream).await?;
    let checkpoint = schema::load_checkpoint(&*tx, stream).await?;
    let total: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM audit_records WHERE stream = $1",
            &[&stream.as_str()],
        )
        .await?
        .try_get(0)?;
    let total = u64::try_from(total).unwrap_or(0);
    let v = start_verifier(stream, checkpoint.as_ref(), key, anchor)?;
    let mut walk = Walk::new(v, total, progress);
    let page = tx
        .prepare(&format!(
            "SELECT {COLUMNS} FROM audit_records WHERE stream = $1 AND sequence > $2
             ORDER BY sequence LIMIT $3"
        ))
        .await?;
    let mut after = -1i64;
    'pages: loop {
        let rows = tx
            .query(&page, &[&stream.as_str(), &after, &VERIFY_PAGE])
            .await?;
        for row in &rows {
            let record = read_record(row)?;
            after = to_i64(record.sequence);
            if !walk.push(&record) {
                break 'pages;
            }
        }
        if rows.len() < VERIFY_PAGE as usize {
            break;
        }
    }
    tx.commit().await?;
    Ok(walk.end().finish(Some(head)))
}

pub(super) async fn purge(
    pool: &Pool,
    stream: Stream,
    cutoff: DateTime<Utc>,
    key: &CheckpointKey,
) -> Result<u64> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Purges of one stream take turns (two at once could leave the older checkpoint last);
    // appenders are not held up: they only add records after the ones removed here.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('align.audit.purge'),
                                      hashtext(current_schema() || '.' || $1))",
        &[&stream.as_str()],
    )
    .await?;
    // The first record (in sequence order) that is not old enough ends the removal.
    let first_kept: Option<i64> = tx
        .query_opt(
            "SELECT sequence FROM audit_records WHERE stream = $1 AND time >= $2
             ORDER BY sequence LIMIT 1",
            &[&stream.as_str(), &cutoff.timestamp_millis()],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let last = tx
        .query_opt(
            "SELECT sequence, hash FROM audit_records WHERE stream = $1 AND sequence < $2
             ORDER BY sequence DESC LIMIT 1",
            &[&stream.as_str(), &first_kept.unwrap_or(i64::MAX)],
        )
        .await?;
    let Some(last) = last else {
        return Ok(0);
    };
    let seq: i64 = last.try_get(0)?;
    let hash: &[u8] = last.try_get(1)?;
    let last = Head {
        sequence: schema::to_u64(seq, "sequence")?,
        hash: crate::digest::Digest::from_slice(hash).ok_or(Error::Corrupt("hash"))?,
    };
    let removed = tx
        .execute(
            "DELETE FROM audit_records WHERE stream = $1 AND sequence <= $2",
            &[&stream.as_str(), &seq],
        )
        .await?;
    schema::store_checkpoint(&*tx, &Checkpoint::sign(stream, last, Utc::now(), key)).await?;
    tx.commit().await?;
    Ok(removed)
}

/// Applies `change` to the personal data of the rows `filter` selects (a condition over
/// `args`, as `$1`, `$2`, …), a chunk per transaction in sequence order, and marks them
/// anonymised. Returns how many changed.
async fn rewrite_personal(
    pool: &Pool,
    filter: &str,
    args: &[&(dyn ToSql + Sync)],
    change: fn(&mut Personal) -> bool,
) -> Result<u64> {
    let n = args.len();
    let select = format!(
        "SELECT stream, sequence, personal FROM audit_records
         WHERE personal IS NOT NULL AND ({filter}) AND (stream, sequence) > (${}, ${})
         ORDER BY stream, sequence LIMIT ${} FOR UPDATE",
        n + 1,
        n + 2,
        n + 3
    );
    let mut client = pool.get().await?;
    let mut changed = 0;
    let mut after: (String, i64) = (String::new(), -1);
    loop {
        let tx = client.transaction().await?;
        let mut params = args.to_vec();
        params.extend([&after.0 as &(dyn ToSql + Sync), &after.1, &REWRITE_CHUNK]);
        let rows = tx.query(&select, &params).await?;
        let mut streams = Vec::with_capacity(rows.len());
        let mut sequences = Vec::with_capacity(rows.len());
        let mut personal = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream: String = row.try_get(0)?;
            let sequence: i64 = row.try_get(1)?;
            let json: String = row.try_get(2)?;
            let mut p = parse_personal(&json)?;
            if change(&mut p) {
                changed += 1;
                personal.push(personal_json(&p)?);
            } else {
                personal.push(json);
            }
            streams.push(stream);
            sequences.push(sequence);
        }
        tx.execute(
            "UPDATE audit_records AS r SET personal = u.personal, anonymised = TRUE
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS u(stream, sequence, personal)
             WHERE r.stream = u.stream AND r.sequence = u.sequence",
            &[&streams, &sequences, &personal],
        )
        .await?;
        tx.commit().await?;
        match (streams.pop(), sequences.pop()) {
            (Some(stream), Some(sequence)) if rows.len() == REWRITE_CHUNK as usize => {
                after = (stream, sequence);
            }
            _ => return Ok(changed),
        }
    }
}

pub(super) async fn anonymise(pool: &Pool, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
    rewrite_personal(
        pool,
        "stream = $1 AND NOT anonymised AND time < $2",
        &[&stream.as_str(), &cutoff.timestamp_millis()],
        Personal::anonymise,
    )
    .await
}

pub(super) async fn erase(pool: &Pool, subject: &str) -> Result<u64> {
    rewrite_personal(
        pool,
        "subject = $1 OR actor_id = $1",
        &[&subject],
        Personal::erase,
    )
    .await
}

/// One key's usage, added up by PostgreSQL over the request log's rows of that key (found
/// through the `(actor_id, stream, sequence)` index); a folded summary counts as the
/// requests it stands for.
pub(super) async fn usage(pool: &Pool, q: &UsageQuery) -> Result<Vec<UsageBucket>> {
    let (first, end) = q.minutes();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT time / 60000 AS minute, status,
                    sum(CASE WHEN metadata LIKE '%\"folded\"%'
                        THEN COALESCE((metadata::jsonb #>> '{folded,count}')::BIGINT, 1)
                        ELSE 1 END)::BIGINT
             FROM audit_records
             WHERE stream = 'request' AND actor_id = $1
               AND time >= $2 AND time < $3
             GROUP BY 1, 2",
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &q.key_id(),
                &first.saturating_mul(60_000),
                &end.saturating_mul(60_000),
            ],
        )
        .await?;
    let mut per_minute: BTreeMap<i64, Counts> = BTreeMap::new();
    for row in rows {
        let minute: i64 = row.try_get(0)?;
        let status: Option<i32> = row.try_get(1)?;
        let n: i64 = row.try_get(2)?;
        per_minute.entry(minute).or_default().add(
            status.and_then(|s| u16::try_from(s).ok()),
            u64::try_from(n).unwrap_or(0),
        );
    }
    Ok(buckets(q, &per_minute))
}
