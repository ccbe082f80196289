//! `align secrets rotate-key`: a new key for the key file that seals webhook signing secrets.

use clap::Subcommand;
use serde_json::json;

use crate::common::Area;
use crate::data_dir::{DataDir, every};
use crate::output::{Failure, Out};

/// Its help text is the doc comment of `Command::Secrets` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Seal every webhook signing secret under a new key, in one transaction, and drop the
    /// old key from the key file. Safe while the server runs on this machine: it reads the key
    /// file again before it seals and when it meets the new key. With several instances, each
    /// holding its own copy of the key file, stop them, rotate, copy the new file to each,
    /// start them (docs/operations.md). Prints the new key's id.
    ///
    /// Keep a copy of the old key file while you keep backups made before the rotation: they
    /// open only with it.
    ///
    /// Example: align secrets rotate-key --data-dir ./align-data
    RotateKey,
}

pub(crate) async fn run(
    Args {
        common,
        action: Action::RotateKey,
    }: Args,
) -> Result<(), Failure> {
    rotate_key(&common.open().await?, &common.out()).await
}

/// `align secrets rotate-key`: a new key seals every webhook signing secret, in one
/// transaction, then the old key is dropped from the key file. A running server follows the
/// key file (it reads it again before it seals, and when it meets the new key).
async fn rotate_key(d: &DataDir, out: &Out) -> Result<(), Failure> {
    let sealer = d.sealer().clone();
    let previous = sealer.key_ids();
    let current = sealer.rotate()?;
    let resealed = d.webhooks.reseal_secrets().await?;
    sealer.retire_previous()?;
    let orgs = every(|page| async move { d.store.list_organizations(&page).await }).await?;
    let details = json!({ "keyId": current, "previousKeyIds": previous, "resealed": resealed });
    for org in &orgs {
        d.record(
            "secrets.key_rotated",
            org.id,
            current.clone(),
            details.clone(),
        )
        .await?;
    }
    out.object(&json!({
        "keyId": current,
        "previousKeyIds": previous,
        "resealedEndpoints": resealed,
        "keyFile": sealer.key_file().map(|p| p.display().to_string()),
    }))
}
