//! Entries staged in another store's transaction (`audit_pending`) and their move into the
//! chain.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::schema;
use crate::chain::seal;
use crate::error::Result;
use crate::record::{Entry, Head, Stream, entry_from_staged};

/// Stages `entry` in `tx`, a transaction of another store's connection to the sink's database
/// (the key store's, for a key change): the entry commits or rolls back with that
/// transaction's change. The sink's writer later moves it into its chain
/// ([`AuditSink::commit_staged`](crate::AuditSink::commit_staged)), exactly once.
///
/// The `audit_pending` table is created by opening a
/// [`SqliteSink`](crate::SqliteSink) on the same file; before that this fails, and so does
/// the change. The entry stays as the [`EntryBuilder`](crate::EntryBuilder) made it:
/// redacted, with its personal data committed.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use align_audit::{AuditSink, Entry, SqliteSink, SqliteSinkConfig, Stream, Query};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("align.db");
/// let sink = SqliteSink::open(&path, SqliteSinkConfig::default()).await.unwrap();
///
/// // Another store's transaction: its change and the audit entry commit together.
/// let mut conn = rusqlite::Connection::open(&path).unwrap();
/// let tx = conn.transaction().unwrap();
/// tx.execute_batch("CREATE TABLE things (name TEXT); INSERT INTO things VALUES ('a');").unwrap();
/// align_audit::stage_in_transaction(&tx, &Entry::audit("thing.created").build().unwrap()).unwrap();
/// tx.commit().unwrap();
///
/// assert_eq!(sink.commit_staged().await.unwrap(), 1);
/// let page = sink.query(&Query::new(Stream::Audit)).await.unwrap();
/// assert_eq!(page.records[0].entry().action(), "thing.created");
/// # });
/// ```
///
/// Only audit-log entries are staged: the request log lives in segment files outside the
/// database, so a request-log entry is refused (`InvalidInput`).
pub fn stage_in_transaction(tx: &Transaction<'_>, entry: &Entry) -> Result<()> {
    if entry.stream == Stream::Request {
        return Err(crate::error::Error::InvalidInput {
            field: "stream",
            reason: "only audit-log entries are staged",
        });
    }
    let text = entry.to_staged()?;
    tx.prepare_cached("INSERT INTO audit_pending (entry) VALUES (?1)")?
        .execute([text])?;
    Ok(())
}

/// Seals every staged entry onto the stored heads in staging order, inserts the records,
/// deletes the staged rows and moves the heads, in one transaction; `heads` (the writer's
/// view) follows only once it has committed. Returns how many entries moved.
pub(super) fn commit(conn: &mut Connection, heads: &mut BTreeMap<Stream, Head>) -> Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let staged: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached("SELECT seq, entry FROM audit_pending ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let Some(&(last, _)) = staged.last() else {
        return Ok(0);
    };
    // Another process may have appended since the writer last looked: continue the chains
    // from what is stored, as `Backend::commit` does.
    let mut fresh = schema::load_heads(&tx)?;
    {
        let mut insert = tx.prepare_cached(schema::INSERT)?;
        let mut buf = Vec::with_capacity(512);
        let mut scratch = Vec::with_capacity(512);
        for (_, text) in &staged {
            let entry = entry_from_staged(text)?;
            let head = fresh.entry(entry.stream).or_default();
            let record = seal(entry, head, &mut buf);
            schema::insert_record(&mut insert, &record, &mut scratch)?;
        }
    }
    // The write lock is held since `BEGIN IMMEDIATE`: the rows read are all there is.
    tx.execute("DELETE FROM audit_pending WHERE seq <= ?1", [last])?;
    schema::store_heads(&tx, &fresh)?;
    tx.commit()?;
    *heads = fresh;
    Ok(staged.len() as u64)
}
