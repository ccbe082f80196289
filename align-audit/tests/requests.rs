//! The SQLite deployment's request log in segment files: rotation, queries across segments,
//! retention by whole segments, privacy rewrites, an operator's second process next to the
//! appender, torn tails, tampering, backups and the move of old request rows out of SQLite.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
#![cfg(all(unix, feature = "sqlite"))]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use align_audit::{
    Actor, AuditSink, BreakReason, Entry, MemorySink, PersonalState, Query, Record, SqliteSink,
    SqliteSinkConfig, Stream,
};
use chrono::{TimeDelta, Utc};
use rusqlite::{Connection, params};
use support::{base_time, entry, test_key};

fn config() -> SqliteSinkConfig {
    let mut c = SqliteSinkConfig::with_checkpoint_key(test_key());
    c.sync_to_disk = false;
    c.request_commit_window = Duration::from_millis(5);
    // About 12 records a segment.
    c.request_segment_bytes = 4096;
    c
}

async fn open(path: &Path) -> SqliteSink {
    SqliteSink::open(path, config()).await.unwrap()
}

/// A request-log entry by API key `key`, `minutes_ago` minutes before `base_time()`.
fn request(n: u32, key: &str, status: u16, minutes_ago: i64) -> Entry {
    Entry::request("GET", format!("/api/v1/things/{n}"))
        .time(base_time() - TimeDelta::minutes(minutes_ago) + TimeDelta::milliseconds(n.into()))
        .organization("org_1")
        .actor(Actor::ApiKey {
            id: key.into(),
            prefix: "ako_00000000".into(),
        })
        .request_id(format!("req_{n}"))
        .status(status)
        .latency(Duration::from_micros(50))
        .ip(format!("203.0.113.{}", n % 250).parse().unwrap())
        .user_agent(format!("client/{n}"))
        .build()
        .unwrap()
}

fn segments(db: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(SqliteSink::request_log_dir(db))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg_"))
        .collect();
    out.sort();
    out
}

async fn all(sink: &dyn AuditSink, q: Query) -> Vec<Record> {
    let mut q = q.limit(7);
    let mut out = Vec::new();
    loop {
        let page = sink.query(&q).await.unwrap();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => return out,
        }
    }
}

async fn intact(sink: &dyn AuditSink) -> u64 {
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    report.checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_by_key_time_and_status_page_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let sink = open(&db).await;
    for n in 0..100u32 {
        let key = if n % 4 == 0 { "key_a" } else { "key_b" };
        let status = if n % 10 == 0 { 429 } else { 200 };
        sink.submit(request(n, key, status, i64::from(100 - n)))
            .await
            .unwrap();
        if n % 9 == 0 {
            // Several writes, so that the segments rotate.
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    assert!(segments(&db).len() > 3, "{:?}", segments(&db));

    let everything = all(&sink, Query::new(Stream::Request)).await;
    let seqs: Vec<u64> = everything.iter().map(Record::sequence).collect();
    assert_eq!(seqs, (1..=100).rev().collect::<Vec<_>>());

    let by_key = all(&sink, Query::new(Stream::Request).actor("key_a")).await;
    assert_eq!(by_key.len(), 25);
    assert!(
        by_key
            .iter()
            .all(|r| r.entry().actor().id() == Some("key_a"))
    );

    let since = base_time() - TimeDelta::minutes(30);
    let until = base_time() - TimeDelta::minutes(10);
    let by_time = all(&sink, Query::new(Stream::Request).between(since, until)).await;
    assert_eq!(by_time.len(), 20);
    assert!(
        by_time
            .iter()
            .all(|r| r.entry().time() >= since && r.entry().time() < until)
    );
    let throttled = all(&sink, Query::new(Stream::Request).status(429)).await;
    assert_eq!(throttled.len(), 10);
    assert!(throttled.iter().all(|r| r.entry().status() == Some(429)));
    let a_throttled = all(
        &sink,
        Query::new(Stream::Request).actor("key_a").status(429),
    )
    .await;
    assert_eq!(a_throttled.len(), 5);
    assert_eq!(intact(&sink).await, 100);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_whole_segments_behind_a_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let sink = open(&db).await;
    for n in 0..60u32 {
        sink.submit(request(n, "key_a", 200, i64::from(60 - n)))
            .await
            .unwrap();
        sink.flush().await.unwrap();
    }
    let before = segments(&db).len();
    // Everything older than 20 minutes: the first 40 records.
    let cutoff = base_time() - TimeDelta::minutes(20) + TimeDelta::milliseconds(0);
    assert_eq!(sink.purge(Stream::Request, cutoff).await.unwrap(), 40);
    assert!(segments(&db).len() < before);
    let left = all(&sink, Query::new(Stream::Request)).await;
    assert_eq!(left.len(), 20);
    assert_eq!(left.last().unwrap().sequence(), 41);
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.start.sequence, report.checked), (40, 20));
    // Nothing of the purged records is left in any file.
    for seg in segments(&db) {
        let bytes = std::fs::read(&seg).unwrap();
        // Strings are stored length-first: `\x06req_39` is record 39's request id exactly.
        assert!(!contains(&bytes, b"\x06req_39"), "{seg:?}");
        assert!(!contains(&bytes, b"\x08client/5"), "{seg:?}");
    }
    // The chain goes on; a second purge with the same cutoff removes nothing.
    sink.append(request(99, "key_a", 200, 0)).await.unwrap();
    assert_eq!(sink.purge(Stream::Request, cutoff).await.unwrap(), 0);
    assert_eq!(intact(&sink).await, 21);
    // Without the key, a purged stream cannot be verified as intact.
    sink.close().await.unwrap();
    let mut keyless = config();
    keyless.checkpoint_key = Some(align_audit::CheckpointKey::from_bytes(&[9; 32]).unwrap());
    let other = SqliteSink::open(&db, keyless).await.unwrap();
    let report = other.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert_eq!(
        report.broken.map(|b| b.reason),
        Some(BreakReason::BadCheckpointSignature)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymisation_and_erasure_rewrite_segments_and_keep_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let sink = open(&db).await;
    for n in 0..50u32 {
        let key = if n % 5 == 0 { "key_gone" } else { "key_kept" };
        sink.submit(request(n, key, 200, i64::from(50 - n)))
            .await
            .unwrap();
        if n % 7 == 0 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.erase_subject("key_gone").await.unwrap(), 10);
    let gone = all(&sink, Query::new(Stream::Request).actor("key_gone")).await;
    assert!(gone.iter().all(|r| {
        r.entry().personal_state() == Some(PersonalState::Erased) && r.entry().ip().is_none()
    }));
    for seg in segments(&db) {
        let bytes = std::fs::read(&seg).unwrap();
        assert!(!contains(&bytes, b"\x08client/5"), "{seg:?}");
        assert!(!contains(&bytes, b"\x09client/10"), "{seg:?}");
    }
    let kept = all(&sink, Query::new(Stream::Request).actor("key_kept")).await;
    assert!(kept.iter().all(|r| r.entry().user_agent().is_some()));

    let cutoff = base_time() - TimeDelta::minutes(25);
    let older = kept.iter().filter(|r| r.entry().time() < cutoff).count() as u64;
    assert_eq!(
        sink.anonymise(Stream::Request, cutoff).await.unwrap(),
        older
    );
    assert_eq!(sink.anonymise(Stream::Request, cutoff).await.unwrap(), 0);
    for r in all(&sink, Query::new(Stream::Request).actor("key_kept")).await {
        if r.entry().time() < cutoff {
            assert_eq!(r.entry().personal_state(), Some(PersonalState::Anonymised));
            assert!(r.entry().ip().unwrap().to_string().ends_with(".0"));
            assert_eq!(r.entry().user_agent(), None);
        } else {
            assert_eq!(r.entry().personal_state(), Some(PersonalState::Present));
        }
    }
    // Closed segments anonymised throughout are marked so in their names.
    assert!(
        segments(&db)
            .iter()
            .any(|p| p.to_str().unwrap().ends_with("_1.log"))
    );
    assert_eq!(intact(&sink).await, 50);

    let mut export = Vec::new();
    let lines = sink.export_subject("key_gone", &mut export).await.unwrap();
    assert_eq!(lines, 10);
    sink.close().await.unwrap();
}

/// The operator's CLI (or a second server instance) is a second process opening the same
/// database: it reads, verifies and runs retention and privacy operations while the server
/// appends, and may append too: the chain stays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_maintains_the_log_while_the_first_appends() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let server = Arc::new(open(&db).await);
    let operator = open(&db).await;
    let writer = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            for n in 0..400u32 {
                let key = if n % 2 == 0 { "key_a" } else { "key_b" };
                server
                    .submit(request(n, key, 200, i64::from(400 - n)))
                    .await
                    .unwrap();
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            server.flush().await.unwrap();
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        let page = operator.query(&Query::new(Stream::Request)).await.unwrap();
        seen = seen.max(page.records.first().map_or(0, Record::sequence));
        operator.erase_subject("key_b").await.unwrap();
        operator
            .anonymise(Stream::Request, base_time() - TimeDelta::minutes(300))
            .await
            .unwrap();
        intact(&operator).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
    assert!(seen > 0);
    let purged = operator
        .purge(Stream::Request, base_time() - TimeDelta::minutes(200))
        .await
        .unwrap();
    assert!(purged > 0);
    // The appender goes on after the other process rewrote and removed its files.
    for n in 400..420u32 {
        server.submit(request(n, "key_a", 200, 0)).await.unwrap();
    }
    server.flush().await.unwrap();
    operator.erase_subject("key_b").await.unwrap();
    let head = server.head(Stream::Request).await.unwrap();
    assert_eq!(head.sequence, 420);
    assert_eq!(operator.head(Stream::Request).await.unwrap(), head);
    assert_eq!(intact(&operator).await, 420 - purged);
    assert_eq!(intact(server.as_ref()).await, 420 - purged);
    let b = all(&operator, Query::new(Stream::Request).actor("key_b")).await;
    assert!(
        b.iter().all(|r| r.entry().ip().is_none()),
        "key_b keeps personal data"
    );
    // Both append, interleaved: records sealed by one on a head the other has since moved
    // are sealed again onto the one chain.
    let both = [Arc::clone(&server), Arc::new(operator)];
    let tasks: Vec<_> = both
        .iter()
        .enumerate()
        .map(|(i, sink)| {
            let sink = Arc::clone(sink);
            tokio::spawn(async move {
                let mut receipts = Vec::new();
                for n in 0..50u32 {
                    sink.submit(request(n, "key_c", 200, 0)).await.unwrap();
                    if n % 10 == i as u32 {
                        receipts.push(sink.append(request(n, "key_c", 200, 0)).await.unwrap());
                    }
                }
                sink.flush().await.unwrap();
                receipts
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    let total = 420 + 2 * 55;
    assert_eq!(intact(both[1].as_ref()).await, total - purged);
    let records = all(both[0].as_ref(), Query::new(Stream::Request)).await;
    for r in &receipts {
        let stored = records.iter().find(|s| s.sequence() == r.sequence).unwrap();
        assert_eq!(stored.hash(), &r.hash, "receipt {r:?}");
    }
    for sink in both {
        sink.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_dropped_and_tampering_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let sink = open(&db).await;
    for n in 0..5u32 {
        sink.append(request(n, "key_a", 200, 0)).await.unwrap();
    }
    sink.close().await.unwrap();
    // A write cut short by a crash: half a frame at the end of the open segment.
    let open_seg = segments(&db)
        .into_iter()
        .find(|p| p.extension().unwrap() == "open")
        .unwrap();
    let mut bytes = std::fs::read(&open_seg).unwrap();
    bytes.extend_from_slice(&[200, 1, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&open_seg, &bytes).unwrap();
    let sink = open(&db).await;
    // Readers ignore it; the next appender cuts it off and continues the chain.
    assert_eq!(intact(&sink).await, 5);
    let r = sink.append(request(5, "key_a", 200, 0)).await.unwrap();
    assert_eq!(r.sequence, 6);
    assert_eq!(intact(&sink).await, 6);
    sink.close().await.unwrap();

    // An altered status in a segment (the frame's CRC recomputed) is a hash mismatch.
    let seg = segments(&db)[0].clone();
    let bytes = std::fs::read(&seg).unwrap();
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let mut forged = bytes.clone();
    let body = &mut forged[8..8 + len];
    let at = body
        .windows(3)
        .position(|w| w == [1, 200, 0])
        .expect("status 200 in the body");
    body[at + 1] = 201;
    let crc = crc(&forged[8..8 + len]);
    forged[4..8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &forged).unwrap();
    let sink = open(&db).await;
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert_eq!(
        report.broken.map(|b| (b.sequence, b.reason)),
        Some((1, BreakReason::HashMismatch))
    );
    // A flipped byte without a fixed CRC is reported too.
    let mut flipped = bytes.clone();
    flipped[20] ^= 0xff;
    std::fs::write(&seg, &flipped).unwrap();
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert_eq!(
        report.broken.map(|b| (b.sequence, b.reason)),
        Some((1, BreakReason::HashMismatch))
    );
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(intact(&sink).await, 6);
}

/// CRC-32 (IEEE), as the segment frames use.
fn crc(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_appending_is_a_consistent_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let copy = dir.path().join("backup.db");
    let sink = Arc::new(open(&db).await);
    let writer = {
        let sink = Arc::clone(&sink);
        tokio::spawn(async move {
            for n in 0..300u32 {
                sink.submit(request(n, "key_a", 200, 0)).await.unwrap();
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            sink.flush().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    let (from, to) = (db.clone(), copy.clone());
    let bytes = tokio::task::spawn_blocking(move || SqliteSink::copy_request_log(&from, &to))
        .await
        .unwrap()
        .unwrap();
    assert!(bytes > 0);
    writer.await.unwrap();
    std::fs::copy(&db, &copy).unwrap();
    let restored = open(&copy).await;
    let n = intact(&restored).await;
    assert!(n > 0 && n <= 300, "{n}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&SqliteSink::request_log_dir(&copy)), 0o700);
    for p in segments(&copy).iter().chain(segments(&db).iter()) {
        assert_eq!(mode(p), 0o600, "{p:?}");
    }
    assert_eq!(mode(&SqliteSink::request_log_dir(&db)), 0o700);
}

/// Databases written before the segments kept request-log rows in `audit_records`: opening
/// moves them (and the stream's checkpoint) into a segment, and the chain goes on after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rows_of_an_older_database_move_into_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    // The chain as an earlier version wrote it, built in memory, purged once.
    let memory = MemorySink::with_checkpoint_key(test_key());
    for n in 0..30u32 {
        memory
            .append(entry(Stream::Request, n, i64::from(30 - n), "u1"))
            .await
            .unwrap();
    }
    let cutoff = base_time() - TimeDelta::days(25);
    assert_eq!(memory.purge(Stream::Request, cutoff).await.unwrap(), 5);
    let rows = all(&memory, Query::new(Stream::Request)).await;
    let head = memory.head(Stream::Request).await.unwrap();
    let checkpoint = memory.checkpoint(Stream::Request).unwrap();
    {
        let sink = open(&db).await;
        sink.append(entry(Stream::Audit, 1, 0, "u1")).await.unwrap();
        sink.close().await.unwrap();
    }
    std::fs::remove_dir_all(SqliteSink::request_log_dir(&db)).unwrap();
    let conn = Connection::open(&db).unwrap();
    for r in &rows {
        let json = serde_json::to_value(r).unwrap();
        let e = r.entry();
        conn.execute(
            "INSERT INTO audit_records (stream, sequence, id, time, organization, environment,
                 actor_kind, actor_id, actor_prefix, action, target, request_id, method, path,
                 status, latency_us, subject, metadata, personal, anonymised, prev_hash, hash)
             VALUES ('request', ?1, ?2, ?3, ?4, 'live', 'user', ?5, NULL, ?6, ?7, ?8, ?9, ?10,
                 ?11, ?12, NULL, ?13, ?14, 0, ?15, ?16)",
            params![
                r.sequence() as i64,
                e.id().to_string(),
                e.time().timestamp_millis(),
                e.organization(),
                e.actor().id(),
                e.action(),
                e.target(),
                e.request_id(),
                e.method(),
                e.path(),
                e.status(),
                e.latency_us().map(|l| l as i64),
                e.metadata_json(),
                json["entry"]["personal"].to_string(),
                r.prev_hash().as_bytes().as_slice(),
                r.hash().as_bytes().as_slice(),
            ],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO audit_heads (stream, sequence, hash) VALUES ('request', ?1, ?2)",
        params![head.sequence as i64, head.hash.as_bytes().as_slice()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO audit_checkpoints (stream, sequence, hash, created_at, signature)
         VALUES ('request', ?1, ?2, ?3, ?4)",
        params![
            checkpoint.last_pruned().sequence as i64,
            checkpoint.last_pruned().hash.as_bytes().as_slice(),
            checkpoint.created_at().timestamp_millis(),
            checkpoint.signature().as_bytes().as_slice(),
        ],
    )
    .unwrap();

    let sink = open(&db).await;
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_records WHERE stream = 'request'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let moved = all(&sink, Query::new(Stream::Request)).await;
    assert_eq!(moved, rows);
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.broken);
    assert_eq!((report.start.sequence, report.checked), (5, 25));
    assert_eq!(sink.head(Stream::Request).await.unwrap(), head);
    let next = sink
        .append(entry(Stream::Request, 99, 0, "u1"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 31);
    assert_eq!(intact(&sink).await, 26);
    // The audit log stayed in SQLite.
    assert_eq!(sink.head(Stream::Audit).await.unwrap().sequence, 1);
    let ids: BTreeSet<_> = moved.iter().map(|r| r.entry().id()).collect();
    assert_eq!(ids.len(), 25);
    sink.close().await.unwrap();
    let _ = Utc::now();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_dropped_without_closing_still_writes_what_it_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let mut c = config();
    c.request_commit_window = Duration::from_secs(60);
    {
        let sink = SqliteSink::open(&db, c).await.unwrap();
        for n in 0..10u32 {
            sink.submit(request(n, "key_a", 200, 0)).await.unwrap();
        }
    }
    let reader = open(&db).await;
    let started = std::time::Instant::now();
    while reader.head(Stream::Request).await.unwrap().sequence < 10 {
        assert!(started.elapsed() < Duration::from_secs(10), "never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(intact(&reader).await, 10);
}
