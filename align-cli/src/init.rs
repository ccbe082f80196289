//! `align init`: the database, an organisation, its admin and the bootstrap key, made as
//! `align serve` makes them on first start, without serving.

use std::sync::Arc;

use align_server::{Bootstrap, Config, Deployment, Overrides};

use crate::common::Common;
use crate::output::Failure;

/// Create the database, an organisation, its admin and the bootstrap key, then exit.
///
/// Example: align init --data-dir ./align-data
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
}

pub(crate) async fn run(Args { common }: Args) -> Result<(), Failure> {
    let flags = Overrides {
        listen: None,
        data_dir: Some(common.data_dir.clone()),
    };
    let mut config = Config::load(None, std::env::vars(), &flags)?;
    config.database = common.config()?.database;
    config.secrets_key_file.clone_from(&common.secrets_key_file);
    let place = Deployment::place(&config);
    // The server's own back-ends: every table (keys, outbox, audit) is created or migrated.
    let backends = Deployment::open(&config).await?.into_backends().await?;
    let keys = align_keys::KeyManager::new(
        Arc::clone(&backends.keys),
        Arc::new(align_keys::Sha256Hasher),
    );
    let made = align_server::bootstrap(&config, &keys).await;
    backends.audit.close().await?;
    match made? {
        Bootstrap::Created { key_prefix } => eprintln!(
            "set up {place} with an organisation and its admin; the admin key {key_prefix}… is in {}; \
             webhook signing secrets are sealed with the key in {}: keep a copy of it apart from \
             the database and its backups",
            config.bootstrap_key_path().display(),
            config.secrets_key_path().display()
        ),
        Bootstrap::Existing => eprintln!("{place} is already initialised"),
    }
    Ok(())
}
