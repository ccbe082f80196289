//! First start on an empty data directory: database, organisation, admin user, and the first
//! organisation-scoped live admin key written to `bootstrap-admin-key` (mode 0600).

use std::path::Path;

use align_keys::store::{KeyStore, PageRequest};
use align_keys::{KeyManager, NewKey, Organization, Role, User};
use chrono::Utc;

use align_audit::{CheckpointKey, SqliteSinkConfig};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::Error;

/// What bootstrapping did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The database already had an organisation; nothing was created.
    Existing,
    /// A new organisation, admin and key were created; the key is in the file.
    Created {
        /// The admin key's public prefix.
        key_prefix: String,
    },
}

/// Creates the first organisation, admin and key if the store has no organisation yet.
pub async fn bootstrap(config: &Config, keys: &KeyManager) -> Result<Bootstrap, Error> {
    let store = keys.store();
    let first = PageRequest {
        limit: 1,
        cursor: None,
    };
    if !store.list_organizations(&first).await?.data.is_empty() {
        return Ok(Bootstrap::Existing);
    }
    let now = Utc::now();
    let org = Organization::new("Default organization", now);
    store.create_organization(&org).await?;
    let admin = User::new(org.id, "admin@localhost", Role::Admin, now);
    store.create_user(&admin).await?;
    let minted = keys
        .mint(
            NewKey {
                created_by: admin.id,
                ..NewKey::new("bootstrap-admin", org.id)
            },
            now,
        )
        .await?;
    let path = config.bootstrap_key_path();
    write_secret_file(&path, minted.token.expose()).map_err(|source| Error::DataDir {
        path: path.clone(),
        source,
    })?;
    Ok(Bootstrap::Created {
        key_prefix: minted.record.prefix,
    })
}

/// Writes `secret` plus a newline to a file readable only by its owner (created `0600`,
/// replacing any file there atomically).
pub(crate) fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let text = zeroize::Zeroizing::new(format!("{secret}\n"));
    align_keys::files::write_private_file(path, text.as_bytes())
}

/// Whether any organisation exists (for tests and the CLI).
pub async fn is_initialised(store: &dyn KeyStore) -> Result<bool, Error> {
    let first = PageRequest {
        limit: 1,
        cursor: None,
    };
    Ok(!store.list_organizations(&first).await?.data.is_empty())
}

/// The audit sink's settings for a data directory: with the checkpoint key of
/// `DIR/audit-checkpoint-key` when it exists, created first (32 random bytes, hex, mode 0600)
/// when `create` is set. The key signs the checkpoints that retention purges leave, so purged
/// logs still verify; keep a copy outside the data directory.
pub fn audit_sink_config(data_dir: &Path, create: bool) -> Result<SqliteSinkConfig, Error> {
    let path = data_dir.join("audit-checkpoint-key");
    let generate = || Ok(CheckpointKey::generate_bytes()?.to_vec());
    let Some(bytes) = key_file(&path, create, generate)? else {
        return Ok(SqliteSinkConfig::default());
    };
    let key = (bytes.len() == 32)
        .then(|| CheckpointKey::from_bytes(&bytes))
        .transpose()?
        .ok_or_else(|| Error::Setting {
            key: "audit-checkpoint-key".into(),
            reason: "the file must hold 64 hex characters".into(),
        })?;
    Ok(SqliteSinkConfig::with_checkpoint_key(key))
}

/// The bytes of the key file at `path`, written as hex on one line: `None` when there is no
/// such file; when `create` is set, one is made first from `generate` (mode 0600).
pub(crate) fn key_file(
    path: &Path,
    create: bool,
    generate: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let io = |source| Error::DataDir {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        if !create {
            return Ok(None);
        }
        let bytes = Zeroizing::new(generate()?);
        let hex = Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        write_secret_file(path, &hex).map_err(io)?;
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    bytes
        .map(|b| Some(Zeroizing::new(b)))
        .ok_or_else(|| Error::Setting {
            key: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            reason: "the file must hold the key as hex digits".into(),
        })
}
