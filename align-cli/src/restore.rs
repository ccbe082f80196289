//! `align restore`: replaces the SQLite database with a backup made by `align backup`.

use std::path::{Path, PathBuf};

use align_audit::SqliteSink;
use chrono::Utc;
use serde_json::json;

use crate::backup::{BACKUP_NEEDS_THE_KEY, sqlite_only};
use crate::common::Common;
use crate::output::{Failure, Out};

/// Replace the database with a backup. Stop the server first.
///
/// The backup's webhook signing secrets open only with the secrets key file they were
/// sealed with: restore that file too (DIR/secrets-key, or secrets.key_file).
///
/// Example: align restore --data-dir ./align-data --from align-backup.db --force
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// The backup file to restore.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace an existing database.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn run(
    Args {
        common,
        from,
        force,
    }: Args,
) -> Result<(), Failure> {
    sqlite_only(&common, "align restore")?;
    restore(&common.data_dir, &from, force, &common.out()).await
}

/// `align restore`: replaces the database with a backup (the server must be stopped).
async fn restore(dir: &Path, from: &Path, force: bool, out: &Out) -> Result<(), Failure> {
    if !from.exists() {
        return Err(Failure::usage(format!("no backup at {}", from.display())));
    }
    let db = dir.join("align.db");
    if db.exists() && !force {
        return Err(Failure::usage(format!(
            "{} exists: stop the server, then pass --force to replace it",
            db.display()
        )));
    }
    align_server::prepare_data_dir(dir)?;
    let (source, target) = (from.to_owned(), db.clone());
    tokio::task::spawn_blocking(move || align_keys::sqlite::restore(&source, &target))
        .await
        .map_err(|_| Failure::usage("the restore task failed"))?
        .map_err(align_keys::Error::from)?;
    let (source, target) = (from.to_owned(), db.clone());
    tokio::task::spawn_blocking(move || SqliteSink::restore_request_log(&source, &target))
        .await
        .map_err(|_| Failure::usage("the restore task failed"))??;
    let archived = archive_anchors(dir)?;
    out.object(&json!({
        "restored": db.display().to_string(),
        "from": from.display().to_string(),
        "anchorsArchived": archived.map(|p| p.display().to_string()),
    }))?;
    eprintln!("{BACKUP_NEEDS_THE_KEY}");
    Ok(())
}

/// Moves the anchor file aside after a restore: its anchors describe the chains of the
/// database that was replaced, which the restored one (older) does not reach, so
/// `audit verify` would rightly call it cut short. The file is kept, renamed
/// `audit-anchors.before-restore-TIME.jsonl`, as the record of what was there.
fn archive_anchors(dir: &Path) -> Result<Option<PathBuf>, Failure> {
    let anchors = align_server::audit_anchor_log_path(dir);
    if !anchors.exists() {
        return Ok(None);
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let archived = dir.join(format!("audit-anchors.before-restore-{stamp}.jsonl"));
    std::fs::rename(&anchors, &archived).map_err(|e| {
        Failure::usage(format!(
            "restored, but {} could not be moved aside ({e}): move it yourself, or \
             `align audit verify` will report the restored chains as cut short",
            anchors.display()
        ))
    })?;
    Ok(Some(archived))
}
