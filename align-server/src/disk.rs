//! The logs' disk budget (issue 21, finding 2): a full disk turned every write into a `503`,
//! revocations included.
//!
//! Every [`CHECK_INTERVAL`] the server measures what its data directory holds (the SQLite
//! database counted by the pages in use, so space freed by a purge and reused counts as free)
//! and how much the file system has left. While the directory is over `logs.disk_budget_bytes`
//! or the file system has less than `logs.low_disk_free_bytes` free, the **oldest request-log
//! entries** are purged (whole days first, then hours: records older than 30 days, 7, 1, 6
//! hours, 1 hour, 10 minutes, until the budget holds), each purge leaving a signed checkpoint
//! so the log still verifies. **The audit log is never purged** for room.
//!
//! A reserve file (`DIR/disk-reserve`, `logs.disk_reserve_bytes`, 32 MiB, first made a minute
//! after start) is kept while there
//! is room and deleted the moment the disk runs low, so the writes that must not fail (a
//! revocation and its audit record) find space even on a disk a flood filled. It is made
//! again once the disk has room.
//!
//! While the disk is low, `GET /healthz` answers `200 {"status":"degraded","warnings":
//! ["low_disk"]}` (the server still serves), and `/metrics` shows `align_disk_low 1`,
//! `align_disk_free_bytes`, `align_data_dir_bytes` and `align_request_log_purged_for_space`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use align_audit::Stream;
use chrono::Utc;

use crate::config::Config;
use crate::deployment::Deployment;
use crate::state::AppState;

/// How often the disk is measured.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// The reserve file in the data directory.
pub(crate) const RESERVE_FILE: &str = "disk-reserve";
/// Request-log ages purged in turn, oldest first, until the budget holds.
const PURGE_AGES: [Duration; 6] = [
    Duration::from_secs(30 * 86_400),
    Duration::from_secs(7 * 86_400),
    Duration::from_secs(86_400),
    Duration::from_secs(6 * 3_600),
    Duration::from_secs(3_600),
    Duration::from_secs(600),
];

/// The reserve file is first made this long after start (a short-lived server, a test, never
/// writes it).
const RESERVE_DELAY: Duration = Duration::from_secs(60);

/// What the last measurement saw.
#[derive(Debug)]
pub(crate) struct Disk {
    started: std::time::Instant,
    reserve_delay: Duration,
    low: AtomicBool,
    free: AtomicU64,
    used: AtomicU64,
    purged: AtomicU64,
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Bytes the data directory holds (SQLite pages in use, every other file whole).
    pub(crate) used: u64,
    /// Bytes free for this process on the data directory's file system.
    pub(crate) free: u64,
}

impl Default for Disk {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            reserve_delay: RESERVE_DELAY,
            low: AtomicBool::new(false),
            free: AtomicU64::new(0),
            used: AtomicU64::new(0),
            purged: AtomicU64::new(0),
        }
    }
}

impl Disk {
    /// Whether the disk was low at the last check.
    pub(crate) fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// The gauges for `/metrics`.
    pub(crate) fn gauges(&self) -> [(&'static str, &'static str, u64); 4] {
        [
            (
                "align_disk_low",
                "1 while the data directory is over logs.disk_budget_bytes or its file system has less than logs.low_disk_free_bytes free.",
                u64::from(self.is_low()),
            ),
            (
                "align_disk_free_bytes",
                "Bytes free on the data directory's file system (last check).",
                self.free.load(Ordering::Relaxed),
            ),
            (
                "align_data_dir_bytes",
                "Bytes the data directory holds, SQLite pages in use counted (last check).",
                self.used.load(Ordering::Relaxed),
            ),
            (
                "align_request_log_purged_for_space",
                "Request-log entries purged to keep the logs' disk budget, since start.",
                self.purged.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Measures, and while over budget purges the oldest request-log entries; deletes or
    /// makes the reserve file. Errors are logged; the server keeps serving.
    pub(crate) async fn check(&self, state: &AppState) {
        let config = &state.config;
        let Some(mut reading) = measure(config) else {
            return;
        };
        let over = |r: &Reading| {
            r.used > config.logs.disk_budget_bytes || r.free < config.logs.low_disk_free_bytes
        };
        if over(&reading) {
            // Room for the writes that must not fail, first.
            release_reserve(&config.data_dir);
            // Only a request log kept in the data directory (SQLite) frees room here.
            if Deployment::sqlite_file(config).is_some() {
                for age in PURGE_AGES {
                    let Ok(age) = chrono::Duration::from_std(age) else {
                        continue;
                    };
                    match state.audit.purge(Stream::Request, Utc::now() - age).await {
                        Ok(0) => {}
                        Ok(n) => {
                            self.purged.fetch_add(n, Ordering::Relaxed);
                            tracing::warn!(
                                purged = n,
                                older_than_secs = age.num_seconds(),
                                "request log purged to keep the logs' disk budget"
                            );
                            match measure(config) {
                                Some(r) => reading = r,
                                None => break,
                            }
                            if !over(&reading) {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot purge the request log for room");
                            break;
                        }
                    }
                }
            }
        }
        let low = over(&reading);
        if low && !self.is_low() {
            tracing::error!(
                used = reading.used,
                free = reading.free,
                "disk low: the data directory is over its budget or the disk is nearly full"
            );
        } else if !low && self.is_low() {
            tracing::info!(
                used = reading.used,
                free = reading.free,
                "disk no longer low"
            );
        }
        if !low && self.started.elapsed() >= self.reserve_delay {
            ensure_reserve(
                &config.data_dir,
                config.logs.disk_reserve_bytes,
                reading.free,
                config.logs.low_disk_free_bytes,
            );
        }
        self.low.store(low, Ordering::Relaxed);
        self.free.store(reading.free, Ordering::Relaxed);
        self.used.store(reading.used, Ordering::Relaxed);
    }
}

/// The data directory's bytes and its file system's free bytes; `None` (logged) when they
/// cannot be read.
pub(crate) fn measure(config: &Config) -> Option<Reading> {
    let free = match rustix::fs::statvfs(&config.data_dir) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the data directory's free space");
            return None;
        }
    };
    let mut used = dir_bytes(&config.data_dir);
    // The reserve is room kept, not data.
    used = used.saturating_sub(file_len(&config.data_dir.join(RESERVE_FILE)));
    if let Some(db) = Deployment::sqlite_file(config) {
        used = used.saturating_sub(sqlite_free_bytes(&db));
    }
    Some(Reading { used, free })
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Every file's length under `dir` (two levels: the data directory has no deeper ones).
fn dir_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut total = 0u64;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if depth > 0 {
                    total = total.saturating_add(walk(&entry.path(), depth - 1));
                }
            } else {
                total = total.saturating_add(meta.len());
            }
        }
        total
    }
    walk(dir, 2)
}

/// Bytes of the database file on SQLite's free list (freed by deletes, reused by inserts).
fn sqlite_free_bytes(path: &Path) -> u64 {
    let read = || -> rusqlite::Result<u64> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let pages: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
    };
    read().unwrap_or(0)
}

fn release_reserve(dir: &Path) {
    let path = dir.join(RESERVE_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::warn!("disk low: the reserve file was deleted to make room"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(error = %e, "cannot delete the disk reserve file"),
    }
}

/// Makes the reserve file of `bytes` when it is missing (or short) and the disk can spare it
/// without going low.
pub(crate) fn ensure_reserve(dir: &Path, bytes: u64, free: u64, low_water: u64) {
    let path: PathBuf = dir.join(RESERVE_FILE);
    let have = file_len(&path);
    if bytes == 0 || have >= bytes || free.saturating_sub(bytes - have) < low_water {
        return;
    }
    let write = || -> std::io::Result<()> {
        let mut f = align_keys::files::private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "cannot make the disk reserve file");
        let _ = std::fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use align_audit::{AuditSink, Entry, Query, SqliteSink};
    use align_keys::{KeyManager, MemoryKeyStore, Sha256Hasher};
    use align_webhooks::MemoryWebhookStore;

    use super::*;

    async fn state_over(
        dir: &Path,
        logs: crate::config::LogSettings,
    ) -> (AppState, Arc<SqliteSink>) {
        let sink_config = crate::bootstrap::audit_sink_config(dir, true).unwrap();
        let sink = Arc::new(
            SqliteSink::open(dir.join("align.db"), sink_config)
                .await
                .unwrap(),
        );
        let config = Config {
            data_dir: dir.to_owned(),
            logs,
            ..Config::default()
        };
        let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
        let state = AppState::new(
            config,
            keys,
            Arc::clone(&sink) as Arc<dyn AuditSink>,
            Arc::new(MemoryWebhookStore::new()),
            align_http::ReplyStore::memory(),
        )
        .unwrap();
        (state, sink)
    }

    async fn count(sink: &SqliteSink, stream: Stream) -> usize {
        let mut q = Query::new(stream);
        q.limit = 100;
        sink.query(&q).await.unwrap().records.len()
    }

    /// Issue 21, finding 2: "a full disk then turns every write into a 503, revocation
    /// included". On a low disk the oldest request-log entries go (a checkpoint keeps the
    /// log verifiable), the fresh ones and the whole audit log stay, the reserve file is
    /// given up, and the state reads low.
    #[tokio::test]
    async fn issue_21_finding_2_a_low_disk_purges_the_oldest_request_log_only() {
        let dir = tempfile::tempdir().unwrap();
        let logs = crate::config::LogSettings {
            disk_reserve_bytes: 1 << 20,
            ..crate::config::LogSettings::default()
        };
        let (mut state, sink) = state_over(dir.path(), logs).await;
        state.disk.reserve_delay = Duration::ZERO;
        // Room: the reserve is made, the disk is not low.
        state.disk.check(&state).await;
        assert!(!state.disk.is_low());
        assert_eq!(file_len(&dir.path().join(RESERVE_FILE)), 1 << 20);

        let now = Utc::now();
        for days in [40, 10, 2] {
            let at = now - chrono::Duration::days(days);
            let e: Entry = Entry::request("GET", "/nope")
                .time(at)
                .status(404)
                .build()
                .unwrap();
            sink.append(e).await.unwrap();
            let a: Entry = Entry::audit("api_key.created").time(at).build().unwrap();
            sink.append(a).await.unwrap();
        }
        let fresh: Entry = Entry::request("GET", "/api/v1/me")
            .status(200)
            .build()
            .unwrap();
        sink.append(fresh).await.unwrap();
        assert_eq!(count(&sink, Stream::Request).await, 4);

        // Now the disk counts as low (no file system has u64::MAX bytes free).
        state.config.logs.low_disk_free_bytes = u64::MAX;
        state.disk.check(&state).await;
        assert!(state.disk.is_low());
        assert!(
            !dir.path().join(RESERVE_FILE).exists(),
            "the reserve is given up"
        );
        assert_eq!(
            count(&sink, Stream::Request).await,
            1,
            "only the fresh entry"
        );
        assert_eq!(
            count(&sink, Stream::Audit).await,
            3,
            "the audit log is never purged"
        );
        for stream in [Stream::Request, Stream::Audit] {
            let report = sink.verify(stream, &mut |_| {}).await.unwrap();
            assert!(report.is_intact(), "{stream:?}: {report:?}");
        }
        let gauges = state.disk.gauges();
        assert_eq!(gauges[0].2, 1);
        assert!(gauges[3].2 >= 3, "{gauges:?}");
    }
}
