//! `align backup`: a consistent copy of the SQLite database, with the request log's segment
//! files, safe while the server runs. PostgreSQL has its own tools.

use std::path::{Path, PathBuf};

use align_audit::SqliteSink;
use align_server::Deployment;
use serde_json::json;

use crate::common::Common;
use crate::output::{Failure, Out};

/// A consistent copy of the database, safe while the server runs.
///
/// The copy is created 0600 and must not exist yet; the request log's segment files are
/// copied beside it, to FILE-requests/ (0700, files 0600). Its webhook signing secrets are
/// sealed: keep a copy of the secrets key file (DIR/secrets-key) apart from the backups.
///
/// Example: align backup --data-dir ./align-data --to align-backup.db
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The backup file to create.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
}

pub(crate) async fn run(Args { common, to }: Args) -> Result<(), Failure> {
    sqlite_only(&common, "align backup")?;
    backup(&common.data_dir, &to, &common.out()).await
}

/// Refuses a command that works on the SQLite file only when the deployment is PostgreSQL.
pub(crate) fn sqlite_only(common: &Common, command: &str) -> Result<(), Failure> {
    match Deployment::sqlite_file(&common.config()?) {
        Some(_) => Ok(()),
        None => Err(Failure::usage(format!(
            "{command} copies the SQLite file DIR/align.db; for PostgreSQL use its own tools \
             (pg_dump, pg_restore)"
        ))),
    }
}

/// `align backup`: a consistent copy of the database, safe while the server runs.
async fn backup(dir: &Path, to: &Path, out: &Out) -> Result<(), Failure> {
    let db = dir.join("align.db");
    if !db.exists() {
        return Err(Failure::usage(format!(
            "no Align database at {}",
            db.display()
        )));
    }
    let requests_to = SqliteSink::request_log_dir(to);
    for path in [to, requests_to.as_path()] {
        if path.exists() {
            return Err(Failure::usage(format!(
                "{} exists: refusing to overwrite it",
                path.display()
            )));
        }
    }
    let target = to.to_owned();
    let source = db.clone();
    tokio::task::spawn_blocking(move || align_keys::sqlite::backup(&source, &target))
        .await
        .map_err(|_| Failure::usage("the backup task failed"))?
        .map_err(align_keys::Error::from)?;
    // The request log's segment files beside the database: a consistent snapshot too.
    let target = to.to_owned();
    let request_bytes =
        tokio::task::spawn_blocking(move || SqliteSink::copy_request_log(&db, &target))
            .await
            .map_err(|_| Failure::usage("the backup task failed"))??;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    out.object(&json!({
        "backup": to.display().to_string(),
        "bytes": bytes,
        "requestLog": requests_to.display().to_string(),
        "requestLogBytes": request_bytes,
    }))?;
    eprintln!("{BACKUP_NEEDS_THE_KEY}");
    Ok(())
}

/// What `align backup` and `align restore` remind the operator of.
pub(crate) const BACKUP_NEEDS_THE_KEY: &str = "The backup (mode 0600) holds the webhook signing secrets \
    sealed: it opens only with the secrets key file (DIR/secrets-key or secrets.key_file). \
    Keep a copy of that file, apart from the backups.";
