//! Files and directories only their owner can read (DESIGN §8): every file Align writes in
//! its data directory, or for it (backups, exports, key files), is created `0600` from the
//! start, and the data directory is `0700`.
//!
//! Modes are given when a file is created (`open(2)`'s mode argument), never set by a
//! `chmod` after it was created wider: there is no moment at which another local user could
//! open it. The process umask can only narrow them further. On other platforms than Unix the
//! functions create files and directories with the platform's defaults.
//!
//! ```
//! use std::io::Write;
//! let dir = tempfile::tempdir()?;
//! let data = dir.path().join("data");
//! align_core::files::create_private_dir(&data)?;
//! let mut f = align_core::files::private_options()
//!     .write(true)
//!     .create_new(true)
//!     .open(data.join("export.jsonl"))?;
//! f.write_all(b"{}\n")?;
//! align_core::files::write_private_file(&data.join("key"), b"secret\n")?;
//! # #[cfg(unix)] {
//! use std::os::unix::fs::PermissionsExt;
//! let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
//! assert_eq!(mode(&data), 0o700);
//! assert_eq!(mode(&data.join("export.jsonl")), 0o600);
//! assert_eq!(mode(&data.join("key")), 0o600);
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The mode of every file Align writes: read and write for the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of the data directory: the owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// [`OpenOptions`] that create a file `0600` (nothing else is set: add `write`, `create`,
/// `create_new`, `append`, … as the caller needs). An existing file keeps its mode; see
/// [`tighten`].
pub fn private_options() -> OpenOptions {
    #[allow(unused_mut, reason = "only Unix sets a mode")]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    options
}

/// Creates the file at `path` (`0600`) unless it exists; an existing file is left as it is.
/// SQLite gives a database's `-wal`, `-shm` and `-journal` files the mode of the database
/// file, so a database created this way before SQLite opens it keeps all of them private.
pub fn create_private_file_if_missing(path: &Path) -> io::Result<()> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the file at `path` with `contents`, atomically: a new `0600` file is written
/// beside it, synced, then renamed over it, so a reader sees the old contents or the new ones,
/// never part of either, and never a wider mode.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = temporary_sibling(path)?;
    let written = (|| {
        let mut file = private_options().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the directory is synced (best effort: not every platform
    // lets a directory be opened).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A name beside `path` that no other writer uses: `.{name}.{random}.tmp`.
fn temporary_sibling(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    Ok(path.with_file_name(tmp))
}

/// Creates the directory `dir` (and missing parents) `0700`. An existing directory is
/// tightened to `0700` if it is wider; the answer says whether it was, with its old mode.
pub fn create_private_dir(dir: &Path) -> io::Result<Option<Tightened>> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(dir)?;
    tighten(dir)
}

/// A file or directory whose mode [`tighten`] narrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits only).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Narrows `path` to `0600` (a file) or `0700` (a directory) when group or others have any
/// permission on it; returns what changed. Symbolic links are left alone (their target is not
/// Align's to change).
pub fn tighten(path: &Path) -> io::Result<Option<Tightened>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path)?;
        let was = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() || was & 0o077 == 0 {
            return Ok(None);
        }
        let now = if meta.is_dir() {
            PRIVATE_DIR_MODE
        } else {
            PRIVATE_FILE_MODE
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(now))?;
        Ok(Some(Tightened {
            path: path.to_owned(),
            was,
            now,
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// [`tighten`] on `dir` and everything in it, recursively (symbolic links are not followed).
///
/// Entries that vanish during the walk (a database's `-wal` or `-journal` file removed when
/// another process closes it, a write probe) are skipped: there is nothing left to tighten.
pub fn tighten_tree(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut out = Vec::new();
    out.extend(tighten(dir)?);
    for entry in std::fs::read_dir(dir)? {
        let Some(entry) = unless_gone(entry)? else {
            continue;
        };
        let Some(kind) = unless_gone(entry.file_type())? else {
            continue;
        };
        if kind.is_dir() {
            out.extend(unless_gone(tighten_tree(&entry.path()))?.unwrap_or_default());
        } else if !kind.is_symlink() {
            out.extend(unless_gone(tighten(&entry.path()))?.flatten());
        }
    }
    Ok(out)
}

/// `Ok(None)` for an entry that no longer exists, otherwise the result unchanged.
fn unless_gone<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_replaced_file_is_private_and_holds_only_the_new_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "old, world-readable").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// The CI failure of `issue_21_finding_6_webhooks_attempts_pages_a_deliverys_attempts`:
    /// a database's `-wal` file removed while another process tightened the data directory
    /// made the walk fail with "No such file or directory".
    #[test]
    fn an_entry_that_vanishes_during_the_walk_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("align.db-wal");
        assert!(unless_gone(tighten(&gone)).unwrap().is_none());
        assert!(unless_gone(tighten_tree(&gone)).unwrap().is_none());
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(unless_gone::<()>(Err(denied)).is_err());
        // The walk itself goes on past vanished entries while files come and go beside it.
        let churn = dir.path().to_owned();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let p = churn.join(format!("probe-{}", i % 8));
                    let _ = std::fs::write(&p, b"x");
                    let _ = std::fs::remove_file(&p);
                    i = i.wrapping_add(1);
                }
            })
        };
        for _ in 0..200 {
            tighten_tree(dir.path()).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn an_existing_file_is_kept_and_a_missing_one_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("align.db");
        create_private_file_if_missing(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::write(&path, "data").unwrap();
        create_private_file_if_missing(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn a_wide_tree_is_tightened_and_links_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        for d in [&data, &data.join("sub")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        for f in ["align.db", "align.db-wal", "sub/x"] {
            std::fs::write(data.join(f), "x").unwrap();
            std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let private = data.join("private");
        std::fs::write(&private, "x").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();

        let changed = tighten_tree(&data).unwrap();
        assert_eq!(changed.len(), 5, "{changed:?}");
        assert!(changed.contains(&Tightened {
            path: data.clone(),
            was: 0o755,
            now: 0o700
        }));
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("sub")), 0o700);
        for f in ["align.db", "align.db-wal", "sub/x", "private"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&outside), 0o644, "a link's target is not ours");
        assert!(tighten_tree(&data).unwrap().is_empty());
    }

    #[test]
    fn the_data_directory_is_created_private_and_an_existing_one_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        assert_eq!(create_private_dir(&data).unwrap(), None);
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = create_private_dir(&data).unwrap().unwrap();
        assert_eq!((t.was, t.now), (0o755, 0o700));
        assert_eq!(mode(&data), 0o700);
    }
}
