//! Schema migrations kept as `.sql` files, and the checks a crate's tests run on them.
//!
//! Each crate keeps its migrations under `migrations/<dialect>/`, one file per version named
//! `NNNN_what.sql` (`0001_init.sql`, `0002_…`), and embeds them in order with `include_str!`
//! in a `&[&str]` that it hands to [`sqlite::migrate`](crate::sqlite::migrate) or
//! [`postgres::migrate`](crate::postgres::migrate): file `NNNN` brings the schema to version
//! `NNNN`, recorded in the crate's `{prefix}_migrations` table. A file may open with `--`
//! comment lines that say why it exists. An applied migration is never edited; a change of
//! schema is a new file.
//!
//! ```
//! // In a crate's tests: the folder holds exactly the embedded files, numbered 1..=N.
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("0001_init.sql"), "CREATE TABLE t (x);").unwrap();
//! const MIGRATIONS: &[&str] = &["CREATE TABLE t (x);"];
//! align_core::migrations::check_files(dir.path(), MIGRATIONS).unwrap();
//! ```

use std::path::Path;

/// Checks that `dir` holds exactly the files of `embedded`: named `NNNN_*.sql`, numbered
/// `1..=N` without gaps or repeats, file `i` holding `embedded[i - 1]` byte for byte (a file
/// added but not embedded, or embedded out of order, fails). The error says what is wrong.
pub fn check_files(dir: &Path, embedded: &[&str]) -> Result<(), String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a UTF-8 name", path.display()))?
            .to_owned();
        let version = name
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .filter(|(digits, _)| digits.len() == 4)
            .and_then(|(digits, _)| digits.parse::<usize>().ok())
            .ok_or_else(|| format!("{name}: not named NNNN_what.sql"))?;
        files.push((version, name, path));
    }
    files.sort();
    for (i, (version, name, path)) in files.iter().enumerate() {
        if *version != i + 1 {
            return Err(format!(
                "{name}: expected version {} (no gaps or repeats)",
                i + 1
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        match embedded.get(i) {
            Some(sql) if *sql == text => {}
            Some(_) => return Err(format!("{name}: differs from embedded migration {version}")),
            None => return Err(format!("{name}: not embedded")),
        }
    }
    if embedded.len() > files.len() {
        return Err(format!(
            "{} migrations embedded, {} files in {}",
            embedded.len(),
            files.len(),
            dir.display()
        ));
    }
    Ok(())
}

/// Checks that the first migrations of `embedded` are those of `released` (as an earlier
/// version of the crate applied them), byte for byte once the leading `--` comment lines a
/// file opens with are set aside: databases that earlier version migrated are at one of
/// these versions, and never run them again.
pub fn check_unchanged(embedded: &[&str], released: &[impl AsRef<str>]) -> Result<(), String> {
    if embedded.len() < released.len() {
        return Err(format!(
            "{} migrations embedded, {} released",
            embedded.len(),
            released.len()
        ));
    }
    for (version, (now, then)) in (1..).zip(embedded.iter().zip(released)) {
        if without_header(now) != then.as_ref() {
            return Err(format!("migration {version} differs from the released one"));
        }
    }
    Ok(())
}

/// `sql` without the `--` comment lines it opens with.
fn without_header(mut sql: &str) -> &str {
    while sql.starts_with("--") {
        sql = sql.split_once('\n').map_or("", |(_, rest)| rest);
    }
    sql
}

/// Checks [`sqlite::migrate`](crate::sqlite::migrate) with `embedded` on fresh in-memory
/// databases: it records versions `1..=N` in `{prefix}_migrations`, a second run changes
/// nothing, and a database first migrated with `released` (an earlier version's list) is
/// taken as it is (its recorded versions kept, none run again) and ends with the same schema.
#[cfg(feature = "sqlite")]
pub fn check_sqlite(
    prefix: &str,
    embedded: &[&str],
    released: &[impl AsRef<str>],
) -> Result<(), String> {
    let released: Vec<&str> = released.iter().map(AsRef::as_ref).collect();
    use crate::sqlite::{migrate, schema};
    let fail = |e: rusqlite::Error| e.to_string();
    let open = || -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        Ok(conn)
    };
    let versions = |conn: &rusqlite::Connection| -> rusqlite::Result<Vec<(i64, i64)>> {
        conn.prepare(&format!(
            "SELECT version, applied_at FROM {prefix}_migrations ORDER BY version"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
    };

    let mut fresh = open().map_err(fail)?;
    migrate(&mut fresh, prefix, embedded).map_err(fail)?;
    let recorded = versions(&fresh).map_err(fail)?;
    let expected: Vec<i64> = (1..).take(embedded.len()).collect();
    if recorded.iter().map(|v| v.0).collect::<Vec<_>>() != expected {
        return Err(format!("a fresh database recorded {recorded:?}"));
    }
    let migrated = schema(&fresh).map_err(fail)?;
    migrate(&mut fresh, prefix, embedded).map_err(fail)?;
    if versions(&fresh).map_err(fail)? != recorded || schema(&fresh).map_err(fail)? != migrated {
        return Err("a second run changed the database".to_owned());
    }

    let mut old = open().map_err(fail)?;
    migrate(&mut old, prefix, &released).map_err(fail)?;
    let before = versions(&old).map_err(fail)?;
    migrate(&mut old, prefix, embedded).map_err(fail)?;
    let after = versions(&old).map_err(fail)?;
    if after.get(..before.len()) != Some(&before[..]) || after.len() != embedded.len() {
        return Err(format!("released versions {before:?} became {after:?}"));
    }
    if schema(&old).map_err(fail)? != migrated {
        return Err("a database migrated by the released list ends with another schema".to_owned());
    }
    Ok(())
}

/// [`check_sqlite`] for [`postgres::migrate`](crate::postgres::migrate), in scratch schemas
/// ([`ScratchSchema`](crate::postgres::ScratchSchema)) of the database at `url`.
#[cfg(feature = "postgres")]
pub async fn check_postgres(
    url: &str,
    prefix: &str,
    embedded: &[&str],
    released: &[impl AsRef<str> + Sync],
) -> Result<(), String> {
    let released: Vec<&str> = released.iter().map(AsRef::as_ref).collect();
    use crate::postgres::{ScratchSchema, describe, migrate, schema};
    let fail = |e: tokio_postgres::Error| describe(&e);
    async fn connect(
        scratch: &ScratchSchema,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
        let (client, connection) = scratch
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| describe(&e))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, task))
    }
    async fn versions(
        client: &tokio_postgres::Client,
        prefix: &str,
    ) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
        let rows = client
            .query(
                &format!("SELECT version, applied_at FROM {prefix}_migrations ORDER BY version"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    let scratch = ScratchSchema::create(url)
        .await
        .map_err(|e| e.to_string())?;
    let (mut fresh, task) = connect(&scratch).await?;
    migrate(&mut fresh, prefix, embedded).await.map_err(fail)?;
    let recorded = versions(&fresh, prefix).await.map_err(fail)?;
    let expected: Vec<i64> = (1..).take(embedded.len()).collect();
    if recorded.iter().map(|v| v.0).collect::<Vec<_>>() != expected {
        return Err(format!("a fresh database recorded {recorded:?}"));
    }
    let migrated = schema(&fresh).await.map_err(fail)?;
    migrate(&mut fresh, prefix, embedded).await.map_err(fail)?;
    if versions(&fresh, prefix).await.map_err(fail)? != recorded
        || schema(&fresh).await.map_err(fail)? != migrated
    {
        return Err("a second run changed the database".to_owned());
    }
    drop(fresh);
    let _ = task.await;

    let old_scratch = ScratchSchema::create(url)
        .await
        .map_err(|e| e.to_string())?;
    let (mut old, task) = connect(&old_scratch).await?;
    migrate(&mut old, prefix, &released).await.map_err(fail)?;
    let before = versions(&old, prefix).await.map_err(fail)?;
    migrate(&mut old, prefix, embedded).await.map_err(fail)?;
    let after = versions(&old, prefix).await.map_err(fail)?;
    if after.get(..before.len()) != Some(&before[..]) || after.len() != embedded.len() {
        return Err(format!("released versions {before:?} became {after:?}"));
    }
    let ended = schema(&old).await.map_err(fail)?;
    drop(old);
    let _ = task.await;
    if ended != migrated {
        return Err("a database migrated by the released list ends with another schema".to_owned());
    }
    Ok(())
}

/// The migrations a crate released earlier, for one dialect, from its
/// `tests/fixtures/released-migrations.json` (an object of dialect → list of SQL texts).
pub fn released(fixture: &str, dialect: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(fixture).map_err(|e| format!("the released migrations: {e}"))?;
    serde_json::from_value(value.get(dialect).cloned().unwrap_or_default())
        .map_err(|e| format!("the released {dialect} migrations: {e}"))
}

/// The checks of a crate's `dialect` migrations that need no database, from the crate's
/// directory (`CARGO_MANIFEST_DIR`): [`check_files`] on its folder of them and
/// [`check_unchanged`] against what it released earlier; that release, for the checks on a
/// database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn check_crate_files(
    manifest_dir: &str,
    dialect: &str,
    embedded: &[&str],
) -> Result<Vec<String>, String> {
    let root = Path::new(manifest_dir);
    let fixture_path = root.join("tests/fixtures/released-migrations.json");
    let fixture = std::fs::read_to_string(&fixture_path)
        .map_err(|e| format!("{}: {e}", fixture_path.display()))?;
    let released = released(&fixture, dialect)?;
    check_files(&root.join("migrations").join(dialect), embedded)?;
    check_unchanged(embedded, &released)?;
    Ok(released)
}

/// Every check of a crate's SQLite migrations ([`check_files`], [`check_unchanged`],
/// [`check_sqlite`]), for the crate at `manifest_dir`; see [`migration_tests!`](crate::migration_tests).
#[cfg(feature = "sqlite")]
pub fn check_crate_sqlite(
    manifest_dir: &str,
    prefix: &str,
    embedded: &[&str],
) -> Result<(), String> {
    let released = check_crate_files(manifest_dir, "sqlite", embedded)?;
    check_sqlite(prefix, embedded, &released)
}

/// Every check of a crate's PostgreSQL migrations ([`check_files`], [`check_unchanged`], and
/// [`check_postgres`] against `ALIGN_TEST_POSTGRES_URL`, skipped with a printed reason when it
/// is not set), for the crate at `manifest_dir`; see [`migration_tests!`](crate::migration_tests).
#[cfg(feature = "postgres")]
pub fn check_crate_postgres(
    manifest_dir: &str,
    prefix: &str,
    embedded: &[&str],
) -> Result<(), String> {
    let released = check_crate_files(manifest_dir, "postgres", embedded)?;
    let Ok(url) = std::env::var("ALIGN_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipping the {prefix} migrations on PostgreSQL: ALIGN_TEST_POSTGRES_URL is not set"
        );
        return Ok(());
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(check_postgres(&url, prefix, embedded, &released))
}

/// The tests of a crate's migrations, in the module that embeds them: the files numbered
/// `1..=N` and all embedded, the released ones unchanged, and the runner applying them once
/// and taking a released database as it is, for each dialect named (each behind the calling
/// crate's feature of that name).
///
/// ```ignore
/// align_core::migration_tests!("keys", sqlite = super::SQLITE, postgres = super::POSTGRES);
/// ```
#[macro_export]
macro_rules! migration_tests {
    ($prefix:literal $(, sqlite = $sqlite:path)? $(, postgres = $postgres:path)? $(,)?) => {
        #[cfg(test)]
        #[allow(clippy::panic)]
        mod migration_tests {
            $(
                #[cfg(feature = "sqlite")]
                #[test]
                fn sqlite_migrations_are_numbered_released_and_run_once() {
                    let manifest = env!("CARGO_MANIFEST_DIR");
                    if let Err(e) = $crate::migrations::check_crate_sqlite(manifest, $prefix, $sqlite) {
                        panic!("{e}");
                    }
                }
            )?
            $(
                #[cfg(feature = "postgres")]
                #[test]
                fn postgres_migrations_are_numbered_released_and_run_once() {
                    let manifest = env!("CARGO_MANIFEST_DIR");
                    if let Err(e) = $crate::migrations::check_crate_postgres(manifest, $prefix, $postgres) {
                        panic!("{e}");
                    }
                }
            )?
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{check_files, check_unchanged};

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn files_numbered_from_one_and_embedded_in_order_pass() {
        let dir = folder(&[("0001_init.sql", "a"), ("0002_more.sql", "b")]);
        check_files(dir.path(), &["a", "b"]).unwrap();
    }

    #[test]
    fn a_gap_a_repeat_a_bad_name_or_a_mismatch_is_refused() {
        let gap = folder(&[("0001_init.sql", "a"), ("0003_more.sql", "b")]);
        assert!(
            check_files(gap.path(), &["a", "b"])
                .unwrap_err()
                .contains("0003")
        );
        let repeat = folder(&[("0001_init.sql", "a"), ("0001_again.sql", "b")]);
        assert!(check_files(repeat.path(), &["b", "a"]).is_err());
        let name = folder(&[("1_init.sql", "a")]);
        assert!(check_files(name.path(), &["a"]).is_err());
        let other = folder(&[("0001_init.sql", "a"), ("notes.txt", "")]);
        assert!(check_files(other.path(), &["a"]).is_err());
        let swapped = folder(&[("0001_init.sql", "a"), ("0002_more.sql", "b")]);
        assert!(check_files(swapped.path(), &["b", "a"]).is_err());
    }

    #[test]
    fn a_file_not_embedded_or_an_embedded_one_without_a_file_is_refused() {
        let dir = folder(&[("0001_init.sql", "a"), ("0002_more.sql", "b")]);
        assert!(
            check_files(dir.path(), &["a"])
                .unwrap_err()
                .contains("not embedded")
        );
        assert!(check_files(dir.path(), &["a", "b", "c"]).is_err());
    }

    #[test]
    fn released_migrations_compare_without_their_comment_header() {
        let now = [
            "-- Why.\n-- More why.\n\nCREATE TABLE t (x);\n",
            "CREATE INDEX i ON t(x);",
        ];
        check_unchanged(&now, &["\nCREATE TABLE t (x);\n"]).unwrap();
        check_unchanged(
            &now,
            &["\nCREATE TABLE t (x);\n", "CREATE INDEX i ON t(x);"],
        )
        .unwrap();
        assert!(check_unchanged(&now, &["\nCREATE TABLE t (y);\n"]).is_err());
        assert!(check_unchanged(&now[..1], &["\nCREATE TABLE t (x);\n", "x"]).is_err());
    }
}
