//! Data at rest (DESIGN §8): the data directory `0700` and everything in it `0600`, and the
//! key file that seals webhook signing secrets.

use std::future::Future;
use std::path::Path;

use align_keys::files;
use align_webhooks::Sealer;

use crate::error::Error;

/// Creates the data directory `0700`, or tightens an existing one and everything in it
/// (files `0600`, directories `0700`; each change is logged), then checks that it can be
/// written, so a read-only or full disk is reported at start as such ("Read-only file
/// system") rather than as a database that cannot be opened.
pub fn prepare_data_dir(dir: &Path) -> Result<(), Error> {
    let fail = |source| Error::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let dir_tightened = files::create_private_dir(dir).map_err(fail)?;
    // A data directory reached through a symbolic link is tightened where it really is.
    let real = dir.canonicalize().map_err(fail)?;
    let tightened = files::tighten_tree(&real).map_err(fail)?;
    for t in dir_tightened.into_iter().chain(tightened) {
        tracing::warn!(
            path = %t.path.display(),
            was = format_args!("{:04o}", t.was),
            now = format_args!("{:04o}", t.now),
            "tightened the mode of a data directory entry: only the service account may read it"
        );
    }
    let probe = dir.join(".align-write-check");
    let written = files::private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"ok"));
    let _ = std::fs::remove_file(&probe);
    written.map_err(fail)
}

/// Opens a webhook store with the sealer of the key file `key_file` (see
/// `align_webhooks::Sealer`), creating the file (`0600`, a fresh key) when there is none.
///
/// A key file created here is removed again if the store refuses it: the database already
/// holds values sealed under another key (the key file was lost, or belongs to another
/// instance), so a new key would only stand in the way of restoring the right one. The error
/// names the file and the key the database needs; nothing is started with a key that cannot
/// open the stored secrets.
pub async fn open_sealed<S, F, Fut>(key_file: &Path, open: F) -> Result<S, Error>
where
    F: FnOnce(Sealer) -> Fut,
    Fut: Future<Output = align_webhooks::Result<S>>,
{
    open_sealed_keeping(key_file, open)
        .await
        .map(|(store, _)| store)
}

/// [`open_sealed`], also handing back the sealer the store opened with (it seals the
/// `Idempotency-Key` replies too, and `align secrets rotate-key` rotates it).
pub(crate) async fn open_sealed_keeping<S, F, Fut>(
    key_file: &Path,
    open: F,
) -> Result<(S, Sealer), Error>
where
    F: FnOnce(Sealer) -> Fut,
    Fut: Future<Output = align_webhooks::Result<S>>,
{
    let key_error = |source| Error::SecretsKey {
        path: key_file.to_owned(),
        source,
    };
    let (sealer, created) = Sealer::load_or_create(key_file).map_err(key_error)?;
    if created {
        tracing::info!(path = %key_file.display(), key_id = %sealer.current_id(),
            "created the secrets key file that seals webhook signing secrets; keep a copy apart from the database and its backups");
    } else {
        warn_if_readable_by_others(key_file);
    }
    match open(sealer.clone()).await {
        Ok(store) => Ok((store, sealer)),
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(key_file);
            }
            Err(match e {
                e @ (align_webhooks::Error::UnknownSealingKey { .. }
                | align_webhooks::Error::Unseal) => key_error(e),
                other => Error::Webhooks(other),
            })
        }
    }
}

/// A key file kept outside the data directory is not tightened (it may be a read-only
/// mount); a wide one is worth a warning.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format_args!("{mode:04o}"),
                    "the secrets key file can be read by other users: make it 0600");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
