//! The request log's directory: segment names, the locks, the checkpoint file, snapshots and
//! rewrites.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use align_core::files::{create_private_dir, private_options, write_private_file};
use rustix::fs::{FlockOperation, flock};

use super::codec::{self, Next, View};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::record::{Record, Stream};

const CHECKPOINT: &str = "checkpoint.json";
const LOCK: &str = "lock";

/// A segment file and what its name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) path: PathBuf,
    /// No record in it has a lower sequence (purge may have removed its first records).
    pub(super) first: u64,
    /// `None` for the open segment (the one being appended to).
    pub(super) closed: Option<Closed>,
}

/// What a closed segment's name records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Closed {
    pub(super) last: u64,
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    /// Every record in it is anonymised (or has no personal data left to anonymise).
    pub(super) anonymised: bool,
}

impl Segment {
    pub(super) fn open_name(first: u64) -> String {
        format!("seg_{first:020}.open")
    }

    pub(super) fn closed_name(first: u64, c: &Closed) -> String {
        format!(
            "seg_{first:020}_{:020}_{}_{}_{}.log",
            c.last,
            c.min_time,
            c.max_time,
            u8::from(c.anonymised)
        )
    }

    fn parse(dir: &Path, name: &str) -> Option<Self> {
        let path = dir.join(name);
        if let Some(first) = name
            .strip_prefix("seg_")
            .and_then(|n| n.strip_suffix(".open"))
        {
            return Some(Self {
                path,
                first: first.parse().ok()?,
                closed: None,
            });
        }
        let parts: Vec<&str> = name
            .strip_prefix("seg_")?
            .strip_suffix(".log")?
            .split('_')
            .collect();
        let [first, last, min, max, anon] = parts.as_slice() else {
            return None;
        };
        Some(Self {
            path,
            first: first.parse().ok()?,
            closed: Some(Closed {
                last: last.parse().ok()?,
                min_time: min.parse().ok()?,
                max_time: max.parse().ok()?,
                anonymised: match *anon {
                    "0" => false,
                    "1" => true,
                    _ => return None,
                },
            }),
        })
    }

    /// Whether a record of this segment may fall in `[since, until)` (milliseconds).
    pub(super) fn may_hold_time(&self, since: Option<i64>, until: Option<i64>) -> bool {
        self.closed.is_none_or(|c| {
            since.is_none_or(|s| c.max_time >= s) && until.is_none_or(|u| c.min_time < u)
        })
    }
}

/// The request log's directory.
#[derive(Debug, Clone)]
pub(super) struct Dir {
    pub(super) path: PathBuf,
}

/// An exclusive `flock` on a file of the directory, released when dropped.
pub(super) struct Lock(#[allow(dead_code, reason = "held for its lock")] File);

fn flock_io(file: &File, op: FlockOperation) -> io::Result<()> {
    flock(file, op).map_err(io::Error::from)
}

impl Dir {
    /// The directory at `path`, created `0700` if missing.
    pub(super) fn create(path: &Path) -> Result<Self> {
        create_private_dir(path)?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The directory at `path` if it exists (readers do not create it).
    pub(super) fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        Ok(private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(name))?)
    }

    /// Waits for the directory's write lock: appends, rotations, purges and rewrites take it,
    /// in this process and in others (an operator's CLI).
    pub(super) fn lock(&self) -> Result<Lock> {
        let file = self.lock_file(LOCK)?;
        flock_io(&file, FlockOperation::LockExclusive)?;
        Ok(Lock(file))
    }

    /// The segments, oldest first (the open one, if any, last).
    pub(super) fn segments(&self) -> Result<Vec<Segment>> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut segments = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(s) = entry
                .file_name()
                .to_str()
                .and_then(|n| Segment::parse(&self.path, n))
            {
                segments.push(s);
            }
        }
        segments.sort_by_key(|s| (s.first, s.closed.is_none()));
        Ok(segments)
    }

    pub(super) fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match std::fs::read(self.path.join(CHECKPOINT)) {
            Ok(bytes) => {
                let cp: Checkpoint = serde_json::from_slice(&bytes)
                    .map_err(|_| Error::Corrupt("request-log checkpoint"))?;
                if cp.stream() != Stream::Request {
                    return Err(Error::Corrupt("request-log checkpoint"));
                }
                Ok(Some(cp))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the checkpoint, atomically and durably.
    pub(super) fn store_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        let text = serde_json::to_vec(cp).map_err(|_| Error::Corrupt("request-log checkpoint"))?;
        write_private_file(&self.path.join(CHECKPOINT), &text)?;
        Ok(())
    }

    /// Makes renames and new files in the directory durable.
    pub(super) fn sync(&self) -> Result<()> {
        File::open(&self.path)?.sync_all()?;
        Ok(())
    }

    /// Under the lock: the checkpoint and every segment, opened, with the length to read of
    /// each; reading them later needs no lock (a rewrite renames a new file over the old one,
    /// which stays readable through the handle; appends go past the length).
    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        if !self.path.exists() {
            return Ok(Snapshot::default());
        }
        let _lock = self.lock()?;
        let checkpoint = self.checkpoint()?;
        let mut segments = Vec::new();
        for s in self.segments()? {
            let file = File::open(&s.path)?;
            let len = file.metadata()?.len();
            segments.push((s, file, len));
        }
        Ok(Snapshot {
            checkpoint,
            segments,
        })
    }
}

/// A consistent view of the directory (see [`Dir::snapshot`]).
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) checkpoint: Option<Checkpoint>,
    pub(super) segments: Vec<(Segment, File, u64)>,
}

impl Snapshot {
    /// The last sequence removed by retention (0 if none).
    pub(super) fn pruned(&self) -> u64 {
        self.checkpoint
            .as_ref()
            .map_or(0, |c| c.last_pruned().sequence)
    }
}

/// Reads `len` bytes of `file` from its start.
pub(super) fn read_prefix(file: &File, len: u64) -> Result<Vec<u8>> {
    read_range(file, 0, len)
}

/// Bytes `from..len` of `file` (fewer if it is shorter), read by position: the same handle
/// may be read more than once.
pub(super) fn read_range(file: &File, from: u64, len: u64) -> Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(len.saturating_sub(from)).unwrap_or(0)];
    let mut filled = 0;
    while filled < bytes.len() {
        match std::os::unix::fs::FileExt::read_at(file, &mut bytes[filled..], from + filled as u64)
        {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// Walks the frames of a segment's bytes in order. A frame cut short at the end of the open
/// segment is a write still under way (or cut by a crash) and ends the walk; anywhere else,
/// and a frame whose CRC does not match, is corruption.
pub(super) fn frames(
    bytes: &[u8],
    open: bool,
    mut f: impl FnMut(View<'_>, std::ops::Range<usize>) -> Result<bool>,
) -> Result<()> {
    let mut at = 0;
    loop {
        match codec::next(&bytes[at..]) {
            Next::End => return Ok(()),
            Next::Torn if open => return Ok(()),
            Next::Torn | Next::Bad => return Err(Error::Corrupt("request-log segment")),
            Next::Frame(body, used) => {
                let start = at + codec::HEADER;
                let view = View::of(body)?;
                if !f(view, start..start + body.len())? {
                    return Ok(());
                }
                at += used;
            }
        }
    }
}

/// The length of the whole frames at the start of `bytes` (where a torn or bad tail starts).
pub(super) fn valid_prefix(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Next::Frame(_, used) = codec::next(&bytes[at..]) {
        at += used;
    }
    at
}

/// Writes `records` as a new file and renames it over `path`, durably.
pub(super) fn rewrite(dir: &Dir, path: &Path, records: &[Record]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut bytes = Vec::with_capacity(records.len() * 320);
    for r in records {
        codec::encode(r, &mut bytes);
    }
    let written = (|| -> Result<()> {
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    dir.sync()
}
