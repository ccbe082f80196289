//! The SQLite conventions every Align crate follows (feature `sqlite`), in one place: WAL,
//! a busy timeout, and versioned migrations recorded in a per-crate table
//! (`keys_migrations`, `audit_migrations`, `webhooks_migrations`), so several crates can keep
//! their tables in one database file. Every database file is created `0600` before SQLite
//! opens it ([`open`]), so its `-wal` and `-shm` files, which SQLite creates with the
//! database's mode, are private too.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

/// How long a connection waits for another writer before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the database at `path`. A new file is created `0600` first
/// ([`crate::files`]): SQLite would create it with the process's default mode (often `0644`)
/// and give its `-wal`, `-shm` and `-journal` files the same.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    crate::files::create_private_file_if_missing(path).map_err(|e| cannot_open(path, &e))?;
    Connection::open(path)
}

/// SQLite's "unable to open database file", with the operating system's reason.
fn cannot_open(path: &Path, e: &std::io::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
        Some(format!("cannot create {}: {e}", path.display())),
    )
}

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

/// The database's schema as text, one line per table, index, trigger and view (name and
/// `CREATE` statement, in name order), to compare two databases' schemas.
pub fn schema(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare(
        "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master \
         ORDER BY type, name",
    )?
    .query_map([], |r| r.get(0))?
    .collect()
}

/// Copies the database at `db` to `to` with SQLite's online backup: a consistent snapshot even
/// while a server writes to it (WAL included). `to` must not exist: it is created `0600`
/// (as is the `-journal` file SQLite keeps beside it while it writes), and removed again if
/// the copy fails.
pub fn backup(db: &Path, to: &Path) -> rusqlite::Result<()> {
    let source = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    crate::files::private_options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| cannot_open(to, &e))?;
    let copied = source.backup(rusqlite::MAIN_DB, to, None);
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

/// Replaces the database at `db` with the backup at `from`. Stop the server first: a restore
/// under a running server would pull its data out from under it. A database created by the restore is `0600`, like one created by [`open`].
pub fn restore(from: &Path, db: &Path) -> rusqlite::Result<()> {
    let mut target = open(db)?;
    target.busy_timeout(BUSY_TIMEOUT)?;
    target.restore(
        rusqlite::MAIN_DB,
        from,
        None::<fn(rusqlite::backup::Progress)>,
    )?;
    let _mode: String = target.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// SQLite creates `-wal` and `-shm` with the mode of the database file, so a database
    /// created `0600` keeps them private without any `chmod` afterwards.
    #[test]
    fn a_database_its_wal_and_shm_and_a_backup_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("align.db");
        let conn = super::open(&db).unwrap();
        super::configure(&conn, false).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        for f in ["align.db", "align.db-wal", "align.db-shm"] {
            let p = dir.path().join(f);
            assert!(p.exists(), "{f}");
            assert_eq!(mode(&p), 0o600, "{f}");
        }
        let copy = dir.path().join("copy.db");
        super::backup(&db, &copy).unwrap();
        assert_eq!(mode(&copy), 0o600);
        assert!(
            super::backup(&db, &copy).is_err(),
            "an existing file is kept"
        );
        let restored = dir.path().join("restored.db");
        super::restore(&copy, &restored).unwrap();
        assert_eq!(mode(&restored), 0o600);
        let n: i64 = super::open(&restored)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}

/// Whether a SQLite error means the file system refuses writes (full, read-only, failing)
/// rather than a bug: such errors are answered `503`, not `500`.
pub fn is_unwritable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(C::DiskFull | C::ReadOnly | C::SystemIoFailure | C::CannotOpen)
    )
}
