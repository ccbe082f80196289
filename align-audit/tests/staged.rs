//! Entries staged inside another store's transaction (`audit_pending`): they commit or roll
//! back with that transaction, and `commit_staged` moves each into its chain exactly once,
//! also after a crash between the two. SQLite always; PostgreSQL with
//! `ALIGN_TEST_POSTGRES_URL`.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
#![cfg(feature = "sqlite")]

mod support;

use align_audit::{AuditSink, Entry, Query, Record, SqliteSink, SqliteSinkConfig, Stream};
use rusqlite::Connection;
use support::{entry, test_key};

async fn open(path: &std::path::Path) -> SqliteSink {
    SqliteSink::open(path, SqliteSinkConfig::with_checkpoint_key(test_key()))
        .await
        .unwrap()
}

/// Another store's change (a row in `things`) with `entry` staged in its transaction,
/// committed or not.
fn change_with(path: &std::path::Path, entry: &Entry, commit: bool) {
    let mut conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS things (n INTEGER); INSERT INTO things VALUES (1);",
    )
    .unwrap();
    align_audit::stage_in_transaction(&tx, entry).unwrap();
    if commit {
        tx.commit().unwrap();
    }
}

async fn audit_records(sink: &dyn AuditSink) -> Vec<Record> {
    let mut page = sink
        .query(&Query::new(Stream::Audit).limit(1000))
        .await
        .unwrap();
    page.records.reverse();
    page.records
}

async fn verifies(sink: &dyn AuditSink) {
    for stream in Stream::ALL {
        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.broken.is_none(), "{stream:?}: {report:?}");
    }
}

fn pending(path: &std::path::Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM audit_pending", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_entry_reaches_the_chain_once_even_when_the_process_died_before_moving_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let sink = open(&path).await;
    sink.append(entry(Stream::Audit, 1, 0, "u")).await.unwrap();
    let staged = entry(Stream::Audit, 2, 0, "u");
    change_with(&path, &staged, true);
    // A change that rolls back takes its staged entry with it.
    change_with(&path, &entry(Stream::Audit, 3, 0, "u"), false);
    // The process dies here: the change and its staged entry are committed, the chain has
    // not seen it.
    drop(sink);
    assert_eq!(pending(&path), 1);

    let sink = open(&path).await;
    // Start-up recovery moves it; a second call finds nothing left.
    assert_eq!(sink.commit_staged().await.unwrap(), 1);
    assert_eq!(sink.commit_staged().await.unwrap(), 0);
    assert_eq!(pending(&path), 0);
    let records = audit_records(&sink).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[1].entry(),
        &staged,
        "the entry is stored as the builder made it"
    );
    assert_eq!(records[1].sequence(), 2);
    // The writer's own appends continue the chain after the moved entry.
    let r = sink.append(entry(Stream::Audit, 4, 0, "u")).await.unwrap();
    assert_eq!(r.sequence, 3);
    verifies(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_entries_join_the_chain_in_staging_order_between_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let sink = open(&path).await;
    let a = entry(Stream::Audit, 1, 0, "u");
    let b = entry(Stream::Audit, 2, 0, "u");
    let c = entry(Stream::Audit, 3, 0, "u");
    let d = entry(Stream::Request, 4, 0, "u");
    sink.append(a.clone()).await.unwrap();
    change_with(&path, &b, true);
    // The request log lives in segment files outside the database: its entries are not staged.
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        assert!(align_audit::stage_in_transaction(&tx, &d).is_err());
    }
    sink.append(d.clone()).await.unwrap();
    change_with(&path, &c, true);
    assert_eq!(sink.commit_staged().await.unwrap(), 2);
    let actions: Vec<_> = audit_records(&sink)
        .await
        .iter()
        .map(|r| r.entry().id())
        .collect();
    assert_eq!(actions, [a.id(), b.id(), c.id()]);
    let requests = sink.query(&Query::new(Stream::Request)).await.unwrap();
    assert_eq!(requests.records.len(), 1);
    assert_eq!(requests.records[0].entry().id(), d.id());
    verifies(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_operations_and_export_miss_no_staged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let sink = open(&path).await;
    change_with(&path, &entry(Stream::Audit, 3, 500, "subject-3"), true);
    let cutoff = support::base_time() - chrono::TimeDelta::days(100);
    assert_eq!(sink.purge(Stream::Audit, cutoff).await.unwrap(), 1);
    change_with(&path, &entry(Stream::Audit, 1, 0, "subject-1"), true);
    assert_eq!(sink.erase_subject("subject-1").await.unwrap(), 1);
    change_with(&path, &entry(Stream::Audit, 2, 0, "subject-2"), true);
    let mut out = Vec::new();
    assert_eq!(sink.export_subject("subject-2", &mut out).await.unwrap(), 1);
    assert_eq!(pending(&path), 0);
    verifies(&sink).await;
}

#[tokio::test]
async fn staging_before_the_sink_created_its_table_fails_and_so_does_the_change() {
    let mut conn = Connection::open_in_memory().unwrap();
    let tx = conn.transaction().unwrap();
    let err = align_audit::stage_in_transaction(&tx, &entry(Stream::Audit, 1, 0, "u"));
    assert!(err.is_err());
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use align_audit::{PgSink, PgSinkConfig};
    use align_core::postgres::ScratchSchema;

    async fn change_with(scratch: &ScratchSchema, entry: &Entry, commit: bool) {
        let pool = scratch.pool().unwrap();
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS things (n INTEGER); INSERT INTO things VALUES (1);",
        )
        .await
        .unwrap();
        PgSink::stage_in_transaction(&tx, entry).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_entry_reaches_the_chain_once_even_when_the_process_died_before_moving_it() {
        let Some(url) = support::postgres_url() else {
            return;
        };
        let scratch = ScratchSchema::create(&url).await.unwrap();
        let config = || PgSinkConfig::with_checkpoint_key(test_key());
        let sink = PgSink::open(scratch.pool().unwrap(), config())
            .await
            .unwrap();
        sink.append(entry(Stream::Audit, 1, 0, "u")).await.unwrap();
        let staged = entry(Stream::Audit, 2, 0, "u");
        change_with(&scratch, &staged, true).await;
        change_with(&scratch, &entry(Stream::Audit, 3, 0, "u"), false).await;
        drop(sink);

        // Two instances recover at once: each staged entry still lands once.
        let one = PgSink::open(scratch.pool().unwrap(), config())
            .await
            .unwrap();
        let two = PgSink::open(scratch.pool().unwrap(), config())
            .await
            .unwrap();
        let (x, y) = tokio::join!(one.commit_staged(), two.commit_staged());
        assert_eq!(x.unwrap() + y.unwrap(), 1);
        let records = audit_records(&one).await;
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].entry(), &staged);
        let r = two.append(entry(Stream::Audit, 4, 0, "u")).await.unwrap();
        assert_eq!(r.sequence, 3);
        change_with(&scratch, &entry(Stream::Audit, 5, 0, "subject-5"), true).await;
        assert_eq!(one.erase_subject("subject-5").await.unwrap(), 1);
        verifies(&one).await;
    }
}
