//! The key file: one key per line, the current key first, written `0600` and replaced
//! atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{Keys, SealingKey};
use crate::error::{Error, Result};

/// What a key line starts with: the algorithm the key is for.
const KEY_TAG: &str = "aes256gcm:";

/// The file a [`Sealer`](super::Sealer) follows, and how it looked when last read.
pub(super) struct KeyFile {
    pub(super) path: PathBuf,
    pub(super) stamp: Mutex<FileStamp>,
}

/// Enough of a file's metadata to notice that it was replaced or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::SecretsKeyFile {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

pub(super) fn stamp(path: &Path) -> Result<FileStamp> {
    let meta = std::fs::metadata(path).map_err(|e| fail(path, e))?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// The keys in the file at `path`, and its stamp.
pub(super) fn read(path: &Path) -> Result<(Keys, FileStamp)> {
    let before = stamp(path)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(path, e))?);
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bytes = line
            .strip_prefix(KEY_TAG)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| {
                fail(
                    path,
                    format!("line {} is not `{KEY_TAG}` and a base64 key", n + 1),
                )
            })?;
        let key = SealingKey::from_bytes(&bytes)
            .map_err(|_| fail(path, format!("the key on line {} is not 32 bytes", n + 1)))?;
        keys.push(key);
    }
    let mut keys = keys.into_iter();
    let current = keys
        .next()
        .ok_or_else(|| fail(path, "the file holds no key"))?;
    Ok((
        Keys {
            current,
            previous: keys.collect(),
        },
        before,
    ))
}

/// The file's text for `keys`.
fn text(keys: &Keys) -> Zeroizing<String> {
    // Room for every line up front, so no copy of a key is left behind by a reallocation.
    let mut out = Zeroizing::new(String::with_capacity(512 + 80 * (1 + keys.previous.len())));
    out.push_str(
        "# Align secrets key file (docs/security.md): it seals the webhook signing secrets\n\
         # kept in the database. Keep it private (0600), and keep a copy apart from the\n\
         # database and its backups: without it they cannot be opened.\n\
         # The first key seals; any other opens only values sealed before a rotation.\n",
    );
    for (i, key) in keys.all().enumerate() {
        let role = if i == 0 { "current" } else { "previous" };
        out.push_str(&format!("# key {} ({role})\n{KEY_TAG}", key.id));
        STANDARD.encode_string(key.bytes(), &mut out);
        out.push('\n');
    }
    out
}

/// Creates the file at `path` with a fresh key, unless a file is there (`None`).
pub(super) fn create(path: &Path) -> Result<Option<(Keys, FileStamp)>> {
    let keys = Keys {
        current: SealingKey::generate()?,
        previous: Vec::new(),
    };
    let mut file = match align_core::files::private_options()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(fail(path, e)),
    };
    let written = file
        .write_all(text(&keys).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Nothing was sealed under it yet: a half-written file must not stay in the way.
        let _ = std::fs::remove_file(path);
        return Err(fail(path, e));
    }
    Ok(Some((keys, stamp(path)?)))
}

/// Replaces the file at `path` with `keys` (atomically, `0600`).
pub(super) fn write(path: &Path, keys: &Keys) -> Result<FileStamp> {
    align_core::files::write_private_file(path, text(keys).as_bytes())
        .map_err(|e| fail(path, e))?;
    stamp(path)
}
