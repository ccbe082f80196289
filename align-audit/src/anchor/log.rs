//! [`AnchorLog`]: anchors appended to a JSON Lines file, each on disk before it is reported
//! made.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;

use super::Anchor;
use crate::error::{Error, Result};
use crate::record::Stream;

/// How much of the file's end is read to find where its last complete line ends.
const TAIL: u64 = 4096;

/// An append-only file of anchors, one JSON object per line, for the operator to copy off
/// the machine and for `verify` to check chains against.
///
/// Created readable and writable by its owner only (mode 0600 on Unix, from the first byte).
/// Each [`append`](Self::append) is one write of a whole line, then `fsync`.
///
/// ```
/// use align_audit::{AnchorKey, AnchorLog, Digest, Head, Stream};
/// let dir = tempfile::tempdir()?;
/// let key = AnchorKey::from_pkcs8(&AnchorKey::generate_pkcs8()?)?;
/// let log = AnchorLog::open(dir.path().join("audit-anchors.jsonl"))?;
/// for sequence in [3, 9] {
///     let head = Head { sequence, hash: Digest::of(&[sequence as u8]) };
///     log.append(&key.sign(Stream::Audit, head, chrono::Utc::now()))?;
/// }
/// let latest = AnchorLog::latest(log.path())?;
/// assert_eq!(latest[&Stream::Audit].head().sequence, 9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AnchorLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AnchorLog {
    /// Opens the file at `path` for appending, creating it (mode 0600) if needed. An existing
    /// file is narrowed to 0600, and a last line left unfinished by a crash is cut off, so the
    /// next anchor starts on a line of its own.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        cut_unfinished_line(&mut file)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `anchor` as one line and returns once it is on disk.
    pub fn append(&self, anchor: &Anchor) -> Result<()> {
        let mut line = serde_json::to_vec(anchor).map_err(|_| Error::Corrupt("anchor"))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()?;
        Ok(())
    }

    /// The anchor with the highest sequence of each stream in the file at `path`.
    ///
    /// The highest, not the last: a process started on a database whose newest records were
    /// removed anchors the shortened chain, and that later, lower anchor must not hide the
    /// earlier one the chain no longer reaches.
    ///
    /// Each line is an anchor, or an object whose `data` is one (an `audit.checkpoint` event
    /// as webhooks deliver it and `GET /events` lists it), so a file of anchors copied off the
    /// machine in either form can be checked. Blank lines are skipped, and so is an
    /// unfinished last line (one being written); any other line that is not an anchor is an
    /// [`Error::InvalidAnchorLine`].
    pub fn latest(path: impl AsRef<Path>) -> Result<BTreeMap<Stream, Anchor>> {
        let mut reader = BufReader::new(File::open(path)?);
        let mut latest: BTreeMap<Stream, Anchor> = BTreeMap::new();
        let mut line = String::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(latest);
            }
            number += 1;
            let finished = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let anchor = match serde_json::from_str::<Line>(text) {
                Ok(Line::Anchor(a) | Line::Event { data: a }) => a,
                Err(_) if !finished => return Ok(latest),
                Err(_) => return Err(Error::InvalidAnchorLine { line: number }),
            };
            match latest.get(&anchor.stream()) {
                Some(kept) if kept.head().sequence >= anchor.head().sequence => {}
                _ => {
                    latest.insert(anchor.stream(), anchor);
                }
            }
        }
    }
}

/// What a line of an anchor file may hold.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Anchor(Anchor),
    Event { data: Anchor },
}

/// Truncates `file` after its last newline, dropping a line whose write a crash cut short.
fn cut_unfinished_line(file: &mut File) -> Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(());
    }
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        // No line in the whole file is finished: it is one torn line.
        None if start == 0 => 0,
        None => return Err(Error::Corrupt("anchor file (a line longer than 4 KiB)")),
    };
    file.set_len(keep)?;
    file.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchor::AnchorKey;
    use crate::digest::Digest;
    use crate::record::Head;

    /// A new anchor log in a temporary directory (kept while the first value lives), its
    /// path, and a signing key.
    fn fresh_log() -> (tempfile::TempDir, std::path::PathBuf, AnchorKey, AnchorLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors.jsonl");
        let key = AnchorKey::from_pkcs8(&AnchorKey::generate_pkcs8().unwrap()).unwrap();
        let log = AnchorLog::open(&path).unwrap();
        (dir, path, key, log)
    }

    fn anchor(key: &AnchorKey, stream: Stream, sequence: u64) -> Anchor {
        let head = Head {
            sequence,
            hash: Digest::of(&sequence.to_be_bytes()),
        };
        key.sign(stream, head, chrono::Utc::now())
    }

    #[test]
    fn the_highest_anchor_of_each_stream_wins_and_events_count_too() {
        let (_dir, path, key, log) = fresh_log();
        log.append(&anchor(&key, Stream::Audit, 5)).unwrap();
        log.append(&anchor(&key, Stream::Request, 40)).unwrap();
        log.append(&anchor(&key, Stream::Audit, 3)).unwrap();
        drop(log);
        let event = serde_json::json!({
            "type": "audit.checkpoint",
            "data": anchor(&key, Stream::Request, 41),
        });
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\n{event}\n"));
        std::fs::write(&path, text).unwrap();
        let latest = AnchorLog::latest(&path).unwrap();
        assert_eq!(latest[&Stream::Audit].head().sequence, 5);
        assert_eq!(latest[&Stream::Request].head().sequence, 41);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open_and_skipped_when_read() {
        let (_dir, path, key, log) = fresh_log();
        log.append(&anchor(&key, Stream::Audit, 1)).unwrap();
        drop(log);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"stream":"audit","seq"#).unwrap();
        drop(file);
        assert_eq!(AnchorLog::latest(&path).unwrap().len(), 1);
        let log = AnchorLog::open(&path).unwrap();
        log.append(&anchor(&key, Stream::Audit, 2)).unwrap();
        assert_eq!(
            AnchorLog::latest(&path).unwrap()[&Stream::Audit]
                .head()
                .sequence,
            2
        );
        std::fs::write(&path, "{}\n").unwrap();
        assert!(matches!(
            AnchorLog::latest(&path),
            Err(Error::InvalidAnchorLine { line: 1 })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_created_0600_and_an_existing_one_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors.jsonl");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        drop(AnchorLog::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(AnchorLog::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }
}
