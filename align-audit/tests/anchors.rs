//! Anchors: a chain verified against a signed head kept outside the database must still hold
//! it. Cutting off the newest records and rewriting the stored head to match, which the
//! chain alone cannot see, is caught; so is a forged or altered anchor.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use align_audit::{
    Anchor, AnchorCheck, AnchorKey, AuditSink, Break, BreakReason, ChainVerifier, Digest, Entry,
    Head, MemorySink, Record, Stream,
};
use chrono::{TimeDelta, Utc};
use proptest::prelude::*;
use support::{base_time, entry, test_key};

fn anchor_key() -> AnchorKey {
    AnchorKey::from_pkcs8(&AnchorKey::generate_pkcs8().unwrap()).unwrap()
}

fn check(key: &AnchorKey, anchor: Anchor) -> AnchorCheck {
    AnchorCheck::new(anchor, *key.public_key())
}

async fn anchor_now(sink: &dyn AuditSink, key: &AnchorKey, stream: Stream) -> Anchor {
    let head = sink.head(stream).await.unwrap();
    key.sign(stream, head, Utc::now())
}

async fn verified(sink: &dyn AuditSink, check: &AnchorCheck) -> align_audit::VerifyReport {
    let stream = check.anchor().stream();
    sink.verify_against(stream, Some(check), &mut |_| {})
        .await
        .unwrap()
}

fn broken(report: &align_audit::VerifyReport) -> Option<(u64, BreakReason)> {
    report.broken.clone().map(|b| (b.sequence, b.reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_holds_a_chain_that_grew_past_its_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let key = anchor_key();
    for (name, sink) in support::all_sinks(dir.path()).await {
        for n in 0..5 {
            sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
        }
        let anchor = anchor_now(sink.as_ref(), &key, Stream::Audit).await;
        for n in 5..8 {
            sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
        }
        let report = verified(sink.as_ref(), &check(&key, anchor.clone())).await;
        assert!(report.is_intact(), "{name}: {:?}", report.broken);
        assert_eq!(report.anchor, Some(anchor.head()), "{name}");
        assert_eq!(report.checked, 8, "{name}");
        let plain = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
        assert_eq!(plain.anchor, None, "{name}: no anchor was given");
        sink.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_foreign_anchor_is_reported_and_never_trusted() {
    let sink = MemorySink::new();
    for n in 0..4 {
        sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
    }
    let key = anchor_key();
    let anchor = anchor_now(&sink, &key, Stream::Audit).await;

    // Lowered to a sequence the chain still has: the signature no longer matches.
    let mut json = serde_json::to_value(&anchor).unwrap();
    json["sequence"] = 2.into();
    let altered: Anchor = serde_json::from_value(json).unwrap();
    let report = verified(&sink, &check(&key, altered)).await;
    assert_eq!(broken(&report), Some((2, BreakReason::BadAnchorSignature)));
    assert_eq!(report.anchor, None);

    // Genuine, but made with another key: not this deployment's anchor.
    let stranger = anchor_key();
    let foreign = anchor_now(&sink, &stranger, Stream::Audit).await;
    assert_eq!(
        broken(&verified(&sink, &check(&key, foreign)).await),
        Some((4, BreakReason::BadAnchorSignature))
    );

    // Signed with the right key over another record at the same sequence: a rewritten chain.
    let other = Head {
        sequence: 3,
        hash: Digest::of(b"a record this chain never had"),
    };
    let mismatch = key.sign(Stream::Audit, other, Utc::now());
    let report = verified(&sink, &check(&key, mismatch)).await;
    assert_eq!(broken(&report), Some((3, BreakReason::AnchorMismatch)));
    assert_eq!(
        report.broken.unwrap().to_string(),
        "chain broken at sequence 3: record differs from the one anchored here"
    );

    // An anchor of the other stream is a mistake of the caller's, not a verdict on the chain.
    let request = key.sign(Stream::Request, anchor.head(), Utc::now());
    assert!(matches!(
        sink.verify_against(Stream::Audit, Some(&check(&key, request)), &mut |_| {})
            .await,
        Err(align_audit::Error::InvalidInput { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_that_removed_the_anchored_record_keeps_the_anchor_held() {
    let dir = tempfile::tempdir().unwrap();
    let key = anchor_key();
    for (name, sink) in support::all_sinks(dir.path()).await {
        // Five records ten days old, then three fresh ones.
        let mut heads = Vec::new();
        for n in 0..8 {
            let days = if n < 5 { 10 } else { 0 };
            let r = sink
                .append(entry(Stream::Audit, n, days, "u"))
                .await
                .unwrap();
            heads.push(Head {
                sequence: r.sequence,
                hash: r.hash,
            });
        }
        let purged = sink
            .purge(Stream::Audit, base_time() - TimeDelta::days(5))
            .await
            .unwrap();
        assert_eq!(purged, 5, "{name}");
        // Anchored before the purge at 3 (removed) and at 5 (the checkpoint's record).
        for at in [2, 4] {
            let anchor = key.sign(Stream::Audit, heads[at], Utc::now());
            let report = verified(sink.as_ref(), &check(&key, anchor)).await;
            assert!(report.is_intact(), "{name} at {at}: {:?}", report.broken);
            assert_eq!(report.anchor, Some(heads[at]), "{name}");
        }
        let forged = Head {
            sequence: 5,
            hash: Digest::of(b"not the fifth record"),
        };
        let report = verified(
            sink.as_ref(),
            &check(&key, key.sign(Stream::Audit, forged, Utc::now())),
        )
        .await;
        assert_eq!(
            broken(&report),
            Some((5, BreakReason::AnchorMismatch)),
            "{name}"
        );
        sink.close().await.unwrap();
    }
}

/// A chain of `n` audit records in memory, with the entries that made it.
async fn chain(n: usize, tag: u32) -> (Vec<Entry>, Vec<Record>) {
    let sink = MemorySink::new();
    let mut entries = Vec::new();
    for i in 0..n {
        let e = entry(Stream::Audit, tag * 1000 + i as u32, 1, "u");
        entries.push(e.clone());
        sink.append(e).await.unwrap();
    }
    (entries, sink.records(Stream::Audit))
}

fn head_of(records: &[Record]) -> Head {
    records.last().map_or(Head::default(), |r| Head {
        sequence: r.sequence(),
        hash: *r.hash(),
    })
}

fn verify_records(records: &[Record], check: &AnchorCheck) -> Option<Break> {
    let mut v = ChainVerifier::new(Stream::Audit)
        .with_anchor(check)
        .unwrap();
    for r in records {
        if !v.push(r) {
            break;
        }
    }
    v.finish(Some(head_of(records))).broken
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Cut a chain anywhere below its anchor (the head rewritten to the new last record, as
    /// the stored head would be), then let the attacker append records of their own: the
    /// cut is reported, as a chain ending below the anchor or, once the new records reach
    /// the anchored sequence, as a record that is not the anchored one.
    #[test]
    fn any_truncation_below_an_anchor_is_detected(
        n in 1usize..30,
        anchored in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        forged in 0usize..30,
    ) {
        let key = anchor_key();
        let rt = runtime();
        let (entries, records) = rt.block_on(chain(n, 0));
        let k = anchored.index(n) + 1;
        let anchor = key.sign(Stream::Audit, head_of(&records[..k]), Utc::now());
        let check = check(&key, anchor);
        // The untouched chain holds its anchor.
        prop_assert_eq!(verify_records(&records, &check), None);

        let t = cut.index(k);
        let truncated = &records[..t];
        prop_assert_eq!(
            verify_records(truncated, &check),
            Some(Break {
                sequence: t as u64 + 1,
                reason: BreakReason::TruncatedBelowAnchor { anchored: k as u64, head: t as u64 },
            })
        );

        // The same first `t` entries sealed again give the same records; then new ones.
        let rewritten = rt.block_on(async {
            let sink = MemorySink::new();
            for e in &entries[..t] {
                sink.append(e.clone()).await.unwrap();
            }
            let (fresh, _) = chain(forged, 1).await;
            for e in fresh {
                sink.append(e).await.unwrap();
            }
            sink.records(Stream::Audit)
        });
        prop_assert_eq!(&rewritten[..t], truncated);
        let found = verify_records(&rewritten, &check);
        let expected = if rewritten.len() >= k {
            Break { sequence: k as u64, reason: BreakReason::AnchorMismatch }
        } else {
            Break {
                sequence: rewritten.len() as u64 + 1,
                reason: BreakReason::TruncatedBelowAnchor {
                    anchored: k as u64,
                    head: rewritten.len() as u64,
                },
            }
        };
        prop_assert_eq!(found, Some(expected));
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use align_audit::{SqliteSink, SqliteSinkConfig};
    use rusqlite::Connection;

    /// What someone with write access to the database file does to hide the newest records:
    /// delete them, and point `audit_heads` at the record that is now last.
    pub(super) fn truncate(path: &std::path::Path, stream: Stream, keep: u64) {
        if stream == Stream::Request {
            return truncate_segments(path, keep);
        }
        let db = Connection::open(path).unwrap();
        let s = stream.as_str();
        db.execute(
            "DELETE FROM audit_records WHERE stream = ?1 AND sequence > ?2",
            rusqlite::params![s, keep as i64],
        )
        .unwrap();
        let hash: Vec<u8> = if keep == 0 {
            vec![0; 32]
        } else {
            db.query_row(
                "SELECT hash FROM audit_records WHERE stream = ?1 AND sequence = ?2",
                rusqlite::params![s, keep as i64],
                |r| r.get(0),
            )
            .unwrap()
        };
        db.execute(
            "UPDATE audit_heads SET sequence = ?2, hash = ?3 WHERE stream = ?1",
            rusqlite::params![s, keep as i64, hash],
        )
        .unwrap();
    }

    /// The same attack on the request log's segment files: every frame after `keep` cut off
    /// (frame: u32 length, u32 CRC, then the body: version byte, u64 sequence, …).
    fn truncate_segments(db: &std::path::Path, keep: u64) {
        let dir = SqliteSink::request_log_dir(db);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("seg_")
            {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut at = 0;
            while at < bytes.len() {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                let seq = u64::from_le_bytes(bytes[at + 9..at + 17].try_into().unwrap());
                if seq > keep {
                    break;
                }
                at += 8 + len;
            }
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(at as u64).unwrap();
        }
    }

    async fn open(path: &std::path::Path) -> SqliteSink {
        let mut config = SqliteSinkConfig::with_checkpoint_key(test_key());
        config.sync_to_disk = false;
        SqliteSink::open(path, config).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn newest_rows_deleted_and_the_head_rewritten_are_caught_only_by_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("align.db");
        let key = anchor_key();
        let sink = open(&path).await;
        for n in 0..10 {
            sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
        }
        let anchor = anchor_now(&sink, &key, Stream::Audit).await;
        sink.close().await.unwrap();

        truncate(&path, Stream::Audit, 6);
        let sink = open(&path).await;
        // The chain and its stored head agree: without the anchor the cut is invisible.
        let plain = sink.verify(Stream::Audit, &mut |_| {}).await.unwrap();
        assert!(plain.is_intact(), "{:?}", plain.broken);
        let report = verified(&sink, &check(&key, anchor.clone())).await;
        assert_eq!(
            broken(&report),
            Some((
                7,
                BreakReason::TruncatedBelowAnchor {
                    anchored: 10,
                    head: 6
                }
            ))
        );
        assert_eq!(
            report.broken.unwrap().to_string(),
            "chain broken at sequence 7: chain ends at 6, below its anchor at 10: newer records were removed"
        );

        // Records written after the cut take the removed sequence numbers, not their hashes.
        for n in 20..30 {
            sink.append(entry(Stream::Audit, n, 0, "u")).await.unwrap();
        }
        let report = verified(&sink, &check(&key, anchor)).await;
        assert_eq!(broken(&report), Some((10, BreakReason::AnchorMismatch)));
        sink.close().await.unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

        /// The attack done in the SQLite file, at any anchor and any cut below it, on either
        /// stream.
        #[test]
        fn any_truncation_below_an_anchor_in_the_database_is_detected(
            n in 1u64..25,
            anchored in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
            audit in any::<bool>(),
        ) {
            let stream = if audit { Stream::Audit } else { Stream::Request };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("align.db");
            let key = anchor_key();
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let k = anchored.index(n as usize) as u64 + 1;
            let t = cut.index(k as usize) as u64;
            let report = rt.block_on(async {
                let sink = open(&path).await;
                let mut at_k = Head::default();
                for i in 0..n {
                    let r = sink.append(entry(stream, i as u32, 0, "u")).await.unwrap();
                    if r.sequence == k {
                        at_k = Head { sequence: r.sequence, hash: r.hash };
                    }
                }
                sink.close().await.unwrap();
                truncate(&path, stream, t);
                let sink = open(&path).await;
                let anchor = key.sign(stream, at_k, Utc::now());
                let report = verified(&sink, &check(&key, anchor)).await;
                sink.close().await.unwrap();
                report
            });
            prop_assert_eq!(
                broken(&report),
                Some((t + 1, BreakReason::TruncatedBelowAnchor { anchored: k, head: t }))
            );
        }
    }
}
