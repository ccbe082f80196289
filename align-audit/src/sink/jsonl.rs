//! [`JsonlSink`]: both streams in one append-only JSON Lines file.
//!
//! Each line is `{"record":{…}}` or `{"checkpoint":{…}}`. Batches are appended and
//! `fsync`ed by the writer thread. Privacy operations and queries read the whole file, and
//! privacy operations rewrite it atomically (temporary file, `fsync`, rename): the sink suits
//! small deployments and shipping logs to a pipeline; use the SQLite sink to query at scale.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuditSink;
use super::ledger::Ledger;
use super::writer::{Backend, Limits, Writer};
use crate::anchor::AnchorCheck;
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use crate::record::{Entry, Head, Receipt, Record, Stream};
use crate::verify::{Progress, VerifyReport, verify_blocking};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum LineRef<'a> {
    Record(&'a Record),
    Checkpoint(&'a Checkpoint),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    clippy::large_enum_variant,
    reason = "one line at a time, nearly always a record"
)]
enum Line {
    Record(Record),
    Checkpoint(Checkpoint),
}

/// An [`AuditSink`] writing JSON Lines to one file.
pub struct JsonlSink {
    writer: Writer<JsonlFile>,
    key: Option<CheckpointKey>,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink").finish_non_exhaustive()
    }
}

struct JsonlFile {
    path: PathBuf,
    file: File,
    /// Set when a write failed half-way: the file's tail is unknown, so stop writing.
    poisoned: bool,
}

impl JsonlSink {
    /// Opens (or creates) the file at `path` and continues its chains. A torn last line left
    /// by a crash (never acknowledged) is cut off. Purging needs `checkpoint_key`.
    pub async fn open(
        path: impl AsRef<Path>,
        checkpoint_key: Option<CheckpointKey>,
    ) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let (file, heads) = tokio::task::spawn_blocking(move || -> Result<_> {
            let ledger = read_ledger(&path)?;
            // Records hold personal data: the file is its owner's only (`0600`).
            let file = align_core::files::private_options()
                .append(true)
                .create(true)
                .open(&path)?;
            Ok((
                JsonlFile {
                    path,
                    file,
                    poisoned: false,
                },
                ledger.heads(),
            ))
        })
        .await
        .map_err(|_| Error::Worker)??;
        let limits = Limits {
            capacity: 4096,
            max_batch: 512,
            commit_delay: std::time::Duration::ZERO,
        };
        Ok(Self {
            writer: Writer::spawn("align-audit-jsonl", file, heads, limits)?,
            key: checkpoint_key,
        })
    }

    /// Loads the file, applies `op` to it and, if `op` changed anything, rewrites it.
    async fn rewrite<F>(&self, op: F) -> Result<u64>
    where
        F: FnOnce(&mut Ledger) -> Result<u64> + Send + 'static,
    {
        self.writer
            .job(move |f: &mut JsonlFile, _| {
                let mut ledger = read_ledger(&f.path)?;
                let changed = op(&mut ledger)?;
                if changed > 0 {
                    f.replace_with(&ledger)?;
                }
                Ok(changed)
            })
            .await
    }
}

impl JsonlFile {
    fn replace_with(&mut self, ledger: &Ledger) -> Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        // Created afresh (`0600`), never reusing a file a crash left behind with another mode.
        let _ = std::fs::remove_file(&tmp);
        {
            let file = align_core::files::private_options()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut out = std::io::BufWriter::new(file);
            for (checkpoint, records) in ledger.items() {
                if let Some(cp) = checkpoint {
                    write_line(&mut out, &LineRef::Checkpoint(cp))?;
                }
                for r in records {
                    write_line(&mut out, &LineRef::Record(r))?;
                }
            }
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

impl Backend for JsonlFile {
    // A JSON Lines file has one writer (this process), so `base` is always current.
    fn commit(
        &mut self,
        records: &mut [Record],
        _heads: &mut BTreeMap<Stream, Head>,
        _base: &BTreeMap<Stream, Head>,
    ) -> Result<()> {
        if self.poisoned {
            return Err(Error::Closed);
        }
        let mut buf = Vec::with_capacity(records.len() * 768);
        for r in records.iter() {
            write_line(&mut buf, &LineRef::Record(r))?;
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            self.poisoned = true;
        }
        Ok(written?)
    }
}

fn write_line(out: &mut impl Write, line: &LineRef<'_>) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reads every line of `path` (missing file: empty). A torn final line is cut off the file.
fn read_ledger(path: &Path) -> Result<Ledger> {
    let mut ledger = Ledger::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ledger),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut good_len = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        if !line.ends_with('\n') {
            // A write torn by a crash: it was never acknowledged, drop it.
            OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(good_len)?;
            break;
        }
        good_len += n as u64;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(Line::Record(r)) => ledger.push_sealed(r),
            Ok(Line::Checkpoint(c)) => ledger.set_checkpoint(c),
            Err(_) => return Err(Error::Corrupt("JSON Lines record")),
        }
    }
    Ok(ledger)
}

#[async_trait]
impl AuditSink for JsonlSink {
    fn queued(&self) -> usize {
        self.writer.queued()
    }

    async fn submit(&self, entry: Entry) -> Result<()> {
        self.writer.submit(entry).await
    }

    async fn append(&self, entry: Entry) -> Result<Receipt> {
        self.writer.append(entry).await
    }

    async fn flush(&self) -> Result<()> {
        self.writer.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.writer.close().await
    }

    async fn query(&self, query: &Query) -> Result<Page> {
        let query = query.clone();
        self.writer
            .job(move |f: &mut JsonlFile, _| Ok(read_ledger(&f.path)?.query(&query)))
            .await
    }

    async fn head(&self, stream: Stream) -> Result<Head> {
        self.writer
            .job(move |_: &mut JsonlFile, heads| {
                Ok(heads.get(&stream).copied().unwrap_or_default())
            })
            .await
    }

    async fn verify_against(
        &self,
        stream: Stream,
        anchor: Option<&AnchorCheck>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<VerifyReport> {
        // The head the writer holds is the authority: a file truncated behind the running
        // sink's back is caught.
        let ledger = self
            .writer
            .job(move |f: &mut JsonlFile, heads| {
                let mut ledger = read_ledger(&f.path)?;
                ledger.log_mut(stream).head = heads.get(&stream).copied().unwrap_or_default();
                Ok(ledger)
            })
            .await?;
        let key = self.key.clone();
        let anchor = anchor.cloned();
        verify_blocking(
            move |p| ledger.verify(stream, key.as_ref(), anchor.as_ref(), p),
            progress,
        )
        .await
    }

    async fn purge(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        let key = self.key.clone().ok_or(Error::CheckpointKeyMissing)?;
        self.rewrite(move |l| l.purge(stream, cutoff, Some(&key)))
            .await
    }

    async fn anonymise(&self, stream: Stream, cutoff: DateTime<Utc>) -> Result<u64> {
        self.rewrite(move |l| Ok(l.anonymise(stream, cutoff))).await
    }

    async fn erase_subject(&self, subject: &str) -> Result<u64> {
        let subject = subject.to_owned();
        self.rewrite(move |l| Ok(l.erase(&subject))).await
    }
}
