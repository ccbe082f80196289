//! The SQLite conventions every Align crate follows (feature `sqlite`), in one place: WAL,
//! a busy timeout, and versioned migrations recorded in a per-crate table
//! (`keys_migrations`, `audit_migrations`, `webhooks_migrations`), so several crates can keep
//! their tables in one database file.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

/// How long a connection waits for another writer before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Puts `conn` in WAL mode with [`BUSY_TIMEOUT`]; `synchronous` is FULL (fsync every commit)
/// when `sync_to_disk`, NORMAL otherwise (survives a process crash, not a power loss).
pub fn configure(conn: &Connection, sync_to_disk: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(if sync_to_disk {
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
    } else {
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    })
}

/// Applies the `migrations` not yet recorded in table `{prefix}_migrations`, in order, in one
/// immediate transaction; entry `i` brings the schema to version `i + 1`.
pub fn migrate(conn: &mut Connection, prefix: &str, migrations: &[&str]) -> rusqlite::Result<()> {
    let table = format!("{prefix}_migrations");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    ))?;
    let current: i64 = tx.query_row(
        &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
        [],
        |r| r.get(0),
    )?;
    for (version, sql) in (1i64..).zip(migrations) {
        if version > current {
            tx.execute_batch(sql)?;
            tx.execute(
                &format!("INSERT INTO {table} (version, applied_at) VALUES (?1, ?2)"),
                params![version, chrono::Utc::now().timestamp_millis()],
            )?;
        }
    }
    tx.commit()
}

/// Copies the database at `db` to `to` with SQLite's online backup: a consistent snapshot even
/// while a server writes to it (WAL included). `to` is created or replaced.
pub fn backup(db: &std::path::Path, to: &std::path::Path) -> rusqlite::Result<()> {
    let source = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    source.backup(rusqlite::MAIN_DB, to, None)
}

/// Replaces the database at `db` with the backup at `from`. Stop the server first: a restore
/// under a running server would pull its data out from under it.
pub fn restore(from: &std::path::Path, db: &std::path::Path) -> rusqlite::Result<()> {
    let mut target = Connection::open(db)?;
    target.busy_timeout(BUSY_TIMEOUT)?;
    target.restore(
        rusqlite::MAIN_DB,
        from,
        None::<fn(rusqlite::backup::Progress)>,
    )?;
    let _mode: String = target.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    Ok(())
}
