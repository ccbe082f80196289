//! Property tests: tampering is always detected, privacy operations never are, and no token
//! secret survives into storage.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use align_audit::{
    Actor, AuditSink, BreakReason, ChainVerifier, Entry, Head, MemorySink, Record, Stream,
};
use chrono::TimeDelta;
use proptest::prelude::*;
use serde_json::Value;
use support::{arb_entry, base_time, test_key};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The audit stream's records (as stored JSON) and head after appending `entries` to a
/// memory sink and anonymising the older ones.
fn chain_of(entries: Vec<Entry>) -> (Vec<Value>, Head) {
    let sink = MemorySink::new();
    runtime().block_on(async {
        for e in entries {
            sink.append(e).await.unwrap();
        }
        // Anonymise the older half, so coarse openings are exposed to tampering too.
        let cutoff = base_time() - TimeDelta::days(250);
        sink.anonymise(Stream::Audit, cutoff).await.unwrap();
        let records = sink.records(Stream::Audit);
        let head = sink.head(Stream::Audit).await.unwrap();
        let json = records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        (json, head)
    })
}

fn verify_json(records: &[Value], head: Head) -> Option<align_audit::Break> {
    let mut v = ChainVerifier::new(Stream::Audit);
    for r in records {
        let r: Record = serde_json::from_value(r.clone()).unwrap();
        if !v.push(&r) {
            break;
        }
    }
    v.finish(Some(head)).broken
}

fn audit_entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(arb_entry(), 1..10).prop_map(|v| {
        v.into_iter()
            .filter(|e| e.stream() == Stream::Audit)
            .chain(std::iter::once(support::entry(Stream::Audit, 7, 1, "u")))
            .collect()
    })
}

/// JSON pointers to every field an attacker might alter, with a value change that keeps the
/// record readable.
const FIELDS: &[&str] = &[
    "/sequence",
    "/prevHash",
    "/hash",
    "/entry/id",
    "/entry/time",
    "/entry/organization",
    "/entry/environment",
    "/entry/actor/id",
    "/entry/action",
    "/entry/target",
    "/entry/requestId",
    "/entry/method",
    "/entry/path",
    "/entry/status",
    "/entry/latencyUs",
    "/entry/subject",
    "/entry/metadata",
    "/entry/personal/commitment",
    "/entry/personal/salt",
    "/entry/personal/values/ip",
    "/entry/personal/values/userAgent",
    "/entry/personal/values",
    "/entry/personal/coarseCommitment",
    "/entry/personal/coarseSalt",
    "/entry/personal/coarseValues/ip",
];

/// Changes the value at `pointer`; false when the record has no such field.
fn alter(record: &mut Value, pointer: &str) -> bool {
    let Some(v) = record.pointer_mut(pointer) else {
        return false;
    };
    *v = match v.take() {
        Value::Null => Value::String("x".into()),
        Value::Number(n) => Value::from(n.as_u64().map_or(1, |n| n ^ 1)),
        Value::String(s)
            if pointer.ends_with("Hash")
                || pointer.ends_with("hash")
                || pointer.ends_with("alt")
                || pointer.ends_with("ommitment")
                || pointer.ends_with("/id") && s.len() == 36 =>
        {
            let flipped = if s.starts_with('0') { "1" } else { "0" };
            Value::String(format!("{flipped}{}", &s[1..]))
        }
        Value::String(s) if pointer.ends_with("time") => {
            Value::String(s.replacen(".", ".9", 1).replacen("Z", "", 1) + "Z")
        }
        Value::String(s) if pointer.ends_with("environment") => {
            Value::String(if s == "live" { "sandbox" } else { "live" }.into())
        }
        Value::String(s) => Value::String(format!("{s}x")),
        Value::Object(mut m) => {
            m.insert("injected".into(), Value::Bool(true));
            Value::Object(m)
        }
        other => Value::Array(vec![other]),
    };
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_single_modification_is_detected(
        entries in audit_entries(), at in any::<prop::sample::Index>(), field in 0..FIELDS.len()
    ) {
        let (mut records, head) = chain_of(entries);
        let i = at.index(records.len());
        prop_assume!(alter(&mut records[i], FIELDS[field]));
        // Reading a record back may itself reject a malformed change; that is detection too.
        let readable = records.iter().all(|r| serde_json::from_value::<Record>(r.clone()).is_ok());
        if readable {
            let broken = verify_json(&records, head);
            prop_assert!(broken.is_some(), "undetected change of {} in record {}", FIELDS[field], i + 1);
            prop_assert!(broken.unwrap().sequence <= i as u64 + 2);
        }
    }

    #[test]
    fn any_single_deletion_is_detected(entries in audit_entries(), at in any::<prop::sample::Index>()) {
        let (mut records, head) = chain_of(entries);
        let i = at.index(records.len());
        records.remove(i);
        let broken = verify_json(&records, head);
        prop_assert_eq!(broken.map(|b| b.sequence), Some(i as u64 + 1));
    }

    #[test]
    fn any_single_insertion_is_detected(
        entries in audit_entries(), from in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(), forged in arb_entry()
    ) {
        let (mut records, head) = chain_of(entries);
        // Insert either a copy of an existing record or a forged one sealed in another chain.
        let extra = if forged.stream() == Stream::Audit {
            chain_of(vec![forged]).0.remove(0)
        } else {
            records[from.index(records.len())].clone()
        };
        let i = at.index(records.len() + 1);
        records.insert(i, extra);
        prop_assert!(verify_json(&records, head).is_some());
    }

    #[test]
    fn any_swap_of_two_records_is_detected(
        entries in audit_entries(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()
    ) {
        let (mut records, head) = chain_of(entries);
        let (i, j) = (a.index(records.len()), b.index(records.len()));
        prop_assume!(i != j);
        records.swap(i, j);
        let broken = verify_json(&records, head).unwrap();
        prop_assert_eq!(broken.sequence, i.min(j) as u64 + 1);
    }

    #[test]
    fn privacy_operations_keep_the_chain_verifiable(
        entries in prop::collection::vec(arb_entry(), 1..30),
        ops in prop::collection::vec((0u8..4, 0i64..500, 0usize..3), 1..8),
    ) {
        let sink = MemorySink::with_checkpoint_key(test_key());
        runtime().block_on(async {
            for e in entries {
                sink.submit(e).await.unwrap();
            }
            for (op, days, subject) in ops {
                let cutoff = base_time() - TimeDelta::days(days);
                for stream in Stream::ALL {
                    match op {
                        0 => { sink.anonymise(stream, cutoff).await.unwrap(); }
                        1 => { sink.purge(stream, cutoff).await.unwrap(); }
                        2 => { sink.erase_subject(&format!("user_{subject}")).await.unwrap(); }
                        _ => {
                            let e = Entry::builder(stream, "late")
                                .actor(Actor::User { id: format!("user_{subject}") })
                                .ip([10, 0, 0, 1].into())
                                .build()
                                .unwrap();
                            sink.append(e).await.unwrap();
                        }
                    }
                    let report = sink.verify(stream, &mut |_| {}).await.unwrap();
                    prop_assert!(report.is_intact(), "{:?} after op {}", report.broken, op);
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn a_rewritten_record_breaks_the_link_to_the_next_one() {
    let (mut records, head) = chain_of(vec![
        support::entry(Stream::Audit, 1, 1, "u"),
        support::entry(Stream::Audit, 2, 1, "u"),
        support::entry(Stream::Audit, 3, 1, "u"),
    ]);
    assert!(alter(&mut records[1], "/entry/action"));
    let broken = verify_json(&records, head).unwrap();
    assert_eq!(
        (broken.sequence, &broken.reason),
        (2, &BreakReason::HashMismatch)
    );
    assert_eq!(
        broken.to_string(),
        "chain broken at sequence 2: record content does not match its hash"
    );
}

#[test]
fn a_truncated_tail_is_detected_against_the_head() {
    let (mut records, head) = chain_of(vec![
        support::entry(Stream::Audit, 1, 1, "u"),
        support::entry(Stream::Audit, 2, 1, "u"),
    ]);
    records.pop();
    let broken = verify_json(&records, head).unwrap();
    assert_eq!(broken.sequence, 2);
    assert_eq!(broken.reason, BreakReason::MissingRecords { head: 2 });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same property against every sink's storage (JSON Lines rewrites, SQLite updates).
    #[test]
    fn privacy_operations_keep_every_sinks_chain_verifiable(
        entries in prop::collection::vec(arb_entry(), 1..20),
        ops in prop::collection::vec((0u8..3, 0i64..500, 0usize..3), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            for (name, sink) in support::all_sinks(dir.path()).await {
                for e in &entries {
                    sink.submit(e.clone()).await.unwrap();
                }
                for &(op, days, subject) in &ops {
                    let cutoff = base_time() - TimeDelta::days(days);
                    for stream in Stream::ALL {
                        match op {
                            0 => { sink.anonymise(stream, cutoff).await.unwrap(); }
                            1 => { sink.purge(stream, cutoff).await.unwrap(); }
                            _ => { sink.erase_subject(&format!("user_{subject}")).await.unwrap(); }
                        }
                        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
                        prop_assert!(report.is_intact(), "{}: {:?} after op {}", name, report.broken, op);
                    }
                }
                sink.close().await.unwrap();
            }
            Ok(())
        })?;
    }
}
