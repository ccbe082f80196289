//! A writer killed with SIGKILL loses nothing it acknowledged: durable appends to the audit
//! log (SQLite) and to the request log (segment files), while request-log entries are also
//! submitted without waiting, so that the kill lands in the middle of segment writes.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]
#![cfg(all(unix, feature = "sqlite"))]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use align_audit::{AuditSink, Query, SqliteSink, SqliteSinkConfig, Stream};

const CHILD_ENV: &str = "ALIGN_AUDIT_CRASH_CHILD_DB";
const TEST_NAME: &str = "acknowledged_appends_survive_sigkill";

/// In the child: append durably from several tasks forever, printing each acknowledgement.
fn child(db: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = Arc::new(
            SqliteSink::open(db, SqliteSinkConfig::default())
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for t in 0..4u32 {
            let sink = Arc::clone(&sink);
            let stream = if t % 2 == 0 {
                Stream::Audit
            } else {
                Stream::Request
            };
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let receipt = sink
                        .append(support::entry(stream, n * 4 + t, 0, "u"))
                        .await
                        .unwrap();
                    // Written straight to the process's stdout, past the test harness's capture.
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ack {} {} {}",
                        stream.as_str(),
                        receipt.sequence,
                        receipt.hash
                    )
                    .unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        let submitter = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                submitter
                    .submit(support::entry(Stream::Request, n, 0, "s"))
                    .await
                    .unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        child(&db);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let mut acked = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let mut parts = rest.split(' ');
            let (stream, seq, hash) = (
                Stream::from_name(parts.next().unwrap()).unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            acked.insert((stream, seq.parse::<u64>().unwrap()), hash.to_owned());
            if acked.len() == 300 {
                proc.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
    }
    proc.wait().unwrap();
    assert_eq!(acked.len(), 300, "the child stopped early");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = SqliteSink::open(&db, SqliteSinkConfig::default())
            .await
            .unwrap();
        for stream in Stream::ALL {
            let report = sink.verify(stream, &mut |_| {}).await.unwrap();
            assert!(report.is_intact(), "{stream:?}: {:?}", report.broken);
            let mut stored = BTreeMap::new();
            let mut q = Query::new(stream).limit(1000);
            loop {
                let page = sink.query(&q).await.unwrap();
                stored.extend(
                    page.records
                        .iter()
                        .map(|r| (r.sequence(), r.hash().to_hex())),
                );
                match page.next_cursor {
                    Some(c) => q = q.after(c),
                    None => break,
                }
            }
            let mine = acked.iter().filter(|((s, _), _)| *s == stream);
            assert!(
                mine.clone().count() > 10,
                "{stream:?}: too few acknowledgements"
            );
            for ((_, seq), hash) in mine {
                assert_eq!(
                    stored.get(seq),
                    Some(hash),
                    "{stream:?}: acknowledged record {seq} lost"
                );
            }
            // The chain continues where the killed writer stopped.
            let next = sink
                .append(support::entry(stream, 0, 0, "u"))
                .await
                .unwrap();
            assert_eq!(next.sequence, report.end.sequence + 1);
            assert_eq!(report.end.sequence as usize, stored.len());
            let report = sink.verify(stream, &mut |_| {}).await.unwrap();
            assert!(
                report.is_intact(),
                "{stream:?} after the restart: {:?}",
                report.broken
            );
        }
    });
}
