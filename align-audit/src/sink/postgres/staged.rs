//! Entries staged in another store's transaction (`audit_pending`) and their move into the
//! chain.

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;

use super::schema;
use crate::chain::seal;
use crate::error::{Error, Result};
use crate::record::{Entry, Record, Stream, entry_from_staged};

/// Inserts `entry` into `audit_pending` through `client` (the change's transaction).
pub(super) async fn stage(client: &impl GenericClient, entry: &Entry) -> Result<()> {
    let text = entry.to_staged()?;
    client
        .execute("INSERT INTO audit_pending (entry) VALUES ($1)", &[&text])
        .await?;
    Ok(())
}

/// Moves every staged entry into its chain in one transaction: locks both heads (as an
/// appender does, so movers and appenders of every process take turns), takes the staged rows
/// out, seals them in staging order, inserts them and moves the heads. Returns how many moved.
pub(super) async fn commit(pool: &Pool) -> Result<u64> {
    let mut client = pool.get().await?;
    // Most calls find nothing: look before locking the heads.
    let any: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM audit_pending)", &[])
        .await?
        .get(0);
    if !any {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    let mut streams: Vec<&str> = Stream::ALL.iter().map(|s| s.as_str()).collect();
    streams.sort_unstable();
    let mut heads = schema::lock_heads(&*tx, &streams).await?;
    if heads.len() != streams.len() {
        return Err(Error::Corrupt("audit_heads"));
    }
    // Another mover that got the locks first has deleted what it moved; these rows are ours.
    let rows = tx
        .query("DELETE FROM audit_pending RETURNING seq, entry", &[])
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut staged: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    staged.sort_unstable_by_key(|(seq, _)| *seq);
    let mut buf = Vec::with_capacity(512);
    let mut records: Vec<Record> = Vec::with_capacity(staged.len());
    for (_, text) in &staged {
        let entry = entry_from_staged(text)?;
        let head = heads.entry(entry.stream).or_default();
        records.push(seal(entry, head, &mut buf));
    }
    schema::insert(&*tx, &records).await?;
    schema::store_heads(&*tx, &heads).await?;
    tx.commit().await?;
    Ok(records.len() as u64)
}
