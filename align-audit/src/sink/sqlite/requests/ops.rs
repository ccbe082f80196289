//! Reading and maintaining the request log's segments.

use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::Active;
use super::codec::{self, View};
use super::files::{self, Closed, Dir, Segment, Snapshot, frames, read_prefix};
use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Head, Record, Stream};
use crate::verify::{Break, BreakReason, Progress, VerifyReport, Walk, start_verifier};

/// Retries an operation that met a segment renamed or removed between listing and opening.
pub(super) fn retrying<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// The last record in `bytes` (a segment's content), if any.
fn last_record(bytes: &[u8], open: bool) -> Result<Option<Record>> {
    let mut last = None;
    frames(bytes, open, |_, range| {
        last = Some(range);
        Ok(true)
    })?;
    last.map(|r| codec::decode(&bytes[r])).transpose()
}

/// Under the lock, for the process taking over appending: cuts a torn or corrupt tail off
/// the open segment (a write a crash cut short), and returns the chain's head and the open
/// segment to continue.
pub(super) fn recover(dir: &Dir) -> Result<(Head, Option<Active>)> {
    let checkpoint = dir.checkpoint()?;
    let floor = checkpoint.map(|c| c.last_pruned()).unwrap_or_default();
    let segments = dir.segments()?;
    let mut head = floor;
    let mut active = None;
    for s in segments.iter().rev() {
        let bytes = std::fs::read(&s.path)?;
        let open = s.closed.is_none();
        if open {
            let valid = files::valid_prefix(&bytes);
            if valid < bytes.len() {
                let f = align_core::files::private_options()
                    .write(true)
                    .open(&s.path)?;
                f.set_len(valid as u64)?;
                f.sync_data()?;
            }
            let (mut min, mut max) = (i64::MAX, i64::MIN);
            frames(&bytes[..valid], true, |v, _| {
                min = min.min(v.time_ms);
                max = max.max(v.time_ms);
                Ok(true)
            })?;
            active = Some(Active::open(&s.path, s.first, min, max)?);
            if let Some(r) = last_record(&bytes[..valid], true)? {
                head = head_of(&r).max_by_seq(head);
                break;
            }
        } else if let Some(r) = last_record(&bytes, false)? {
            head = head_of(&r).max_by_seq(head);
            break;
        }
    }
    Ok((head, active))
}

/// The head after the last whole frame of `bytes`, if any.
pub(super) fn last_head(bytes: &[u8]) -> Result<Option<Head>> {
    let mut last = None;
    frames(bytes, true, |_, range| {
        last = Some(range);
        Ok(true)
    })?;
    last.map(|r| codec::decode(&bytes[r]).map(|r| head_of(&r)))
        .transpose()
}

fn head_of(r: &Record) -> Head {
    Head {
        sequence: r.sequence,
        hash: r.hash,
    }
}

trait BySeq {
    fn max_by_seq(self, other: Self) -> Self;
}

impl BySeq for Head {
    fn max_by_seq(self, other: Self) -> Self {
        if self.sequence >= other.sequence {
            self
        } else {
            other
        }
    }
}

/// The last record on disk, or the checkpoint's when retention removed them all.
pub(super) fn head(dir: &Dir) -> Result<Head> {
    retrying(|| {
        let snap = dir.snapshot()?;
        let floor = snap
            .checkpoint
            .as_ref()
            .map(Checkpoint::last_pruned)
            .unwrap_or_default();
        for (s, file, len) in snap.segments.iter().rev() {
            let bytes = read_prefix(file, *len)?;
            if let Some(r) = last_record(&bytes, s.closed.is_none())? {
                return Ok(head_of(&r).max_by_seq(floor));
            }
        }
        Ok(floor)
    })
}

/// Whether a record passes every filter of `q` (whose stream is the request log).
fn matches(q: &Query, v: &View<'_>) -> bool {
    let eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    q.cursor.is_none_or(|c| v.sequence < c.0)
        && eq(&q.organization, v.organization)
        && eq(&q.actor, v.actor_id)
        && eq(&q.action, Some(v.action))
        && eq(&q.target, v.target)
        && q.subject.as_deref().is_none_or(|s| v.concerns(s))
        && q.status.is_none_or(|s| v.status == Some(s))
        && q.since.is_none_or(|t| v.time_ms >= t.timestamp_millis())
        && q.until.is_none_or(|t| v.time_ms < t.timestamp_millis())
}

/// One page of matching records, newest first: segments are read newest first, skipped
/// when their names show they cannot hold a match.
pub(super) fn query(dir: &Dir, q: &Query) -> Result<Page> {
    let limit = q.effective_limit();
    if q.stream != Stream::Request {
        return Ok(Page::of(Vec::new(), limit));
    }
    let since = q.since.map(|t| t.timestamp_millis());
    let until = q.until.map(|t| t.timestamp_millis());
    // For one actor, the usage index tells which closed segments cannot hold a match.
    let active = match &q.actor {
        Some(actor) => super::usage::active_hours(dir, actor)?,
        None => None,
    };
    retrying(|| {
        let pruned = dir.checkpoint()?.map_or(0, |c| c.last_pruned().sequence);
        let mut out = Vec::new();
        for s in dir.segments()?.iter().rev() {
            if q.cursor.is_some_and(|c| s.first >= c.0) || !s.may_hold_time(since, until) {
                continue;
            }
            if let (Some(c), Some((through, hours))) = (s.closed, &active) {
                if c.last <= *through && !any_hour_within(hours, c.min_time, c.max_time) {
                    continue;
                }
            }
            if s.closed.is_some_and(|c| c.last <= pruned) {
                continue;
            }
            let bytes = std::fs::read(&s.path)?;
            let mut found = Vec::new();
            frames(&bytes, s.closed.is_none(), |v, range| {
                if v.sequence > pruned && matches(q, &v) {
                    found.push(range);
                }
                Ok(true)
            })?;
            for range in found.into_iter().rev() {
                out.push(codec::decode(&bytes[range])?);
                if out.len() > limit {
                    return Ok(Page::of(out, limit));
                }
            }
        }
        Ok(Page::of(out, limit))
    })
}

/// Whether one of `hours` (ascending, since the epoch) overlaps `[min_ms, max_ms]`.
fn any_hour_within(hours: &[i64], min_ms: i64, max_ms: i64) -> bool {
    const HOUR_MS: i64 = 3_600_000;
    let first = min_ms.div_euclid(HOUR_MS);
    let last = max_ms.div_euclid(HOUR_MS);
    let i = hours.partition_point(|h| *h < first);
    hours.get(i).is_some_and(|h| *h <= last)
}

/// Walks the chain from the checkpoint (or sequence 1) through every segment. A frame that
/// does not decode, or is cut short anywhere but at the end of the open segment, breaks the
/// chain there (`HashMismatch`: the bytes no longer hold the record that was hashed).
pub(super) fn verify(
    dir: &Dir,
    key: Option<&CheckpointKey>,
    anchor: Option<&AnchorCheck>,
    progress: &mut dyn FnMut(Progress),
) -> Result<VerifyReport> {
    let snap: Snapshot = retrying(|| dir.snapshot())?;
    let pruned = snap.pruned();
    let v = start_verifier(Stream::Request, snap.checkpoint.as_ref(), key, anchor)?;
    let total: u64 = snap
        .segments
        .iter()
        .map(|(s, _, len)| match s.closed {
            Some(c) => (c.last + 1).saturating_sub(s.first.max(pruned + 1)),
            // About 300 bytes a record; the progress total is an estimate for the open one.
            None => len / 300,
        })
        .sum();
    let mut walk = Walk::new(v, total, progress);
    let mut corrupt = false;
    'segments: for (s, file, len) in &snap.segments {
        let bytes = read_prefix(file, *len)?;
        let walked = frames(&bytes, s.closed.is_none(), |view, range| {
            if view.sequence <= pruned {
                return Ok(true);
            }
            Ok(walk.push(&codec::decode(&bytes[range])?))
        });
        match walked {
            Ok(()) => {}
            Err(Error::Corrupt(_)) => {
                corrupt = true;
                break 'segments;
            }
            Err(e) => return Err(e),
        }
    }
    let mut report = walk.end().finish(None);
    if corrupt && report.broken.is_none() {
        report.broken = Some(Break {
            sequence: report.end.sequence + 1,
            reason: BreakReason::HashMismatch,
        });
        report.anchor = None;
    }
    Ok(report)
}

/// Reads a segment under the lock (it must not change meanwhile) and its records after
/// `pruned`.
fn records_of(s: &Segment, pruned: u64) -> Result<Vec<Record>> {
    decode_after(&std::fs::read(&s.path)?, s, pruned)
}

/// The records after `pruned` in `bytes`, segment `s`'s content.
fn decode_after(bytes: &[u8], s: &Segment, pruned: u64) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    frames(bytes, s.closed.is_none(), |v, range| {
        if v.sequence > pruned {
            records.push(codec::decode(&bytes[range])?);
        }
        Ok(true)
    })?;
    Ok(records)
}

/// Removes the longest prefix of records older than `cutoff`: whole segments are deleted, the
/// segment where the prefix ends is rewritten without it, and a signed checkpoint stands for
/// them (written first, so that a crash in between leaves records the checkpoint already
/// covers, which every reader skips, never a gap).
pub(super) fn purge(dir: &Dir, cutoff: DateTime<Utc>, key: &CheckpointKey) -> Result<u64> {
    let cutoff_ms = cutoff.timestamp_millis();
    let _lock = dir.lock()?;
    let pruned = dir.checkpoint()?.map_or(0, |c| c.last_pruned().sequence);
    let segments = dir.segments()?;
    let mut whole = Vec::new();
    let mut partial: Option<(&Segment, Vec<Record>)> = None;
    let mut last: Option<Head> = None;
    let mut removed = 0u64;
    for s in &segments {
        if s.closed.is_some_and(|c| c.last <= pruned) {
            whole.push(s);
            continue;
        }
        let records = records_of(s, pruned)?;
        let old = records
            .iter()
            .take_while(|r| r.entry.time.timestamp_millis() < cutoff_ms)
            .count();
        if let Some(r) = old.checked_sub(1).and_then(|i| records.get(i)) {
            last = Some(head_of(r));
        }
        removed += old as u64;
        if old == records.len() && s.closed.is_some() {
            whole.push(s);
            continue;
        }
        if old > 0 || records.is_empty() {
            partial = Some((s, records.into_iter().skip(old).collect()));
        }
        break;
    }
    let Some(last) = last else {
        return Ok(0);
    };
    dir.store_checkpoint(&Checkpoint::sign(Stream::Request, last, Utc::now(), key))?;
    for s in whole {
        std::fs::remove_file(&s.path)?;
    }
    if let Some((s, rest)) = partial {
        files::rewrite(dir, &s.path, &rest)?;
    }
    dir.sync()?;
    Ok(removed)
}

/// Rewrites each segment for which `change` changes a record of; `pick` skips segments by
/// name. Each segment is read and rewritten under the lock, one at a time, so appending goes
/// on between them. Returns how many records changed.
fn rewrite_each(
    dir: &Dir,
    pick: impl Fn(&Segment) -> bool,
    prefilter: impl Fn(&[u8]) -> bool,
    change: impl Fn(&mut Record) -> bool,
    after: impl Fn(&Dir, &Segment) -> Result<()>,
) -> Result<u64> {
    let mut changed = 0;
    let listed = dir.segments()?;
    for s in listed.iter().filter(|s| pick(s)) {
        let _lock = dir.lock()?;
        // Listed before the lock: it may have been purged, rotated or renamed since.
        let Some(s) = dir.segments()?.into_iter().find(|now| now.first == s.first) else {
            continue;
        };
        let bytes = std::fs::read(&s.path)?;
        if !prefilter(&bytes) {
            after(dir, &s)?;
            continue;
        }
        let pruned = dir.checkpoint()?.map_or(0, |c| c.last_pruned().sequence);
        let mut records = decode_after(&bytes, &s, pruned)?;
        let mut n = 0;
        for r in &mut records {
            if change(r) {
                n += 1;
            }
        }
        if n > 0 {
            files::rewrite(dir, &s.path, &records)?;
            changed += n;
        }
        after(dir, &s)?;
    }
    Ok(changed)
}

/// Anonymises records older than `cutoff`. A closed segment whose records are all older is
/// renamed as anonymised afterwards, and not read again by later runs.
pub(super) fn anonymise(dir: &Dir, cutoff: DateTime<Utc>) -> Result<u64> {
    let cutoff_ms = cutoff.timestamp_millis();
    rewrite_each(
        dir,
        |s| match s.closed {
            Some(c) => !c.anonymised && c.min_time < cutoff_ms,
            None => true,
        },
        |_| true,
        |r| r.entry.time.timestamp_millis() < cutoff_ms && r.entry.anonymise(),
        |dir, s| match s.closed {
            Some(c) if c.max_time < cutoff_ms => {
                let done = Closed {
                    anonymised: true,
                    ..c
                };
                std::fs::rename(&s.path, dir.path.join(Segment::closed_name(s.first, &done)))?;
                dir.sync()
            }
            _ => Ok(()),
        },
    )
}

/// Whether `needle` occurs in `hay` (a cheap test before decoding a segment).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Erases `subject`'s personal data in every segment that mentions the subject.
pub(super) fn erase(dir: &Dir, subject: &str) -> Result<u64> {
    rewrite_each(
        dir,
        |_| true,
        |bytes| contains(bytes, subject.as_bytes()),
        |r| r.entry.concerns(subject) && r.entry.erase_personal(),
        |_, _| Ok(()),
    )
}

/// Every record concerning `subject`, oldest first.
pub(super) fn of_subject(dir: &Dir, subject: &str) -> Result<Vec<Record>> {
    retrying(|| {
        let snap = dir.snapshot()?;
        let pruned = snap.pruned();
        let mut out = Vec::new();
        for (s, file, len) in &snap.segments {
            let bytes = read_prefix(file, *len)?;
            if !contains(&bytes, subject.as_bytes()) {
                continue;
            }
            frames(&bytes, s.closed.is_none(), |v, range| {
                if v.sequence > pruned && v.concerns(subject) {
                    out.push(codec::decode(&bytes[range])?);
                }
                Ok(true)
            })?;
        }
        Ok(out)
    })
}

/// Copies the request log at `from` to a new directory `to` (created `0700`, files `0600`):
/// a consistent snapshot taken under the lock, copied without it, so appending goes on.
/// Returns the bytes copied.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<u64> {
    let src = Dir::at(from);
    let dst = Dir::create(to)?;
    let snap = retrying(|| src.snapshot())?;
    let mut bytes = 0;
    if let Some(cp) = &snap.checkpoint {
        dst.store_checkpoint(cp)?;
    }
    for (s, file, len) in &snap.segments {
        let mut data = read_prefix(file, *len)?;
        if s.closed.is_none() {
            data.truncate(files::valid_prefix(&data));
        }
        let name = s.path.file_name().ok_or(Error::Corrupt("segment name"))?;
        let mut out = align_core::files::private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dst.path.join(name))?;
        io::Write::write_all(&mut out, &data)?;
        out.sync_data()?;
        bytes += data.len() as u64;
    }
    dst.sync()?;
    Ok(bytes)
}

/// Moves request-log rows an earlier version kept in SQLite into a closed segment: `rows`
/// are those rows in sequence order, `checkpoint` the request stream's SQLite checkpoint.
/// Records the segments already hold are skipped (a crash after the segment was written and
/// before the rows were deleted repeats the move harmlessly). Returns how many moved.
pub(crate) fn migrate_rows(
    dir_path: &Path,
    rows: &[Record],
    checkpoint: Option<&Checkpoint>,
) -> Result<u64> {
    let dir = Dir::create(dir_path)?;
    let _lock = dir.lock()?;
    if let (Some(cp), None) = (checkpoint, dir.checkpoint()?) {
        dir.store_checkpoint(cp)?;
    }
    let have = dir
        .segments()?
        .iter()
        .map(|s| s.closed.map_or(s.first, |c| c.last))
        .max()
        .unwrap_or(0);
    let rows: Vec<&Record> = rows.iter().filter(|r| r.sequence > have).collect();
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(0);
    };
    if dir.segments()?.iter().any(|s| s.closed.is_none()) && have > 0 {
        // Records are already appended after the old rows' place: nothing can move in front.
        return Err(Error::Corrupt(
            "request log: old rows behind newer segments",
        ));
    }
    let closed = Closed {
        last: last.sequence,
        min_time: rows
            .iter()
            .map(|r| r.entry.time.timestamp_millis())
            .min()
            .unwrap_or(0),
        max_time: rows
            .iter()
            .map(|r| r.entry.time.timestamp_millis())
            .max()
            .unwrap_or(0),
        anonymised: false,
    };
    let path = dir.path.join(Segment::closed_name(first.sequence, &closed));
    let owned: Vec<Record> = rows.iter().map(|r| (*r).clone()).collect();
    files::rewrite(&dir, &path, &owned)?;
    Ok(owned.len() as u64)
}
