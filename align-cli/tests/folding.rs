//! A flood of rejections against the built server is folded in the request log, and the
//! operator sees every request accounted for with `align audit query` and `tail`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::process::Command;

use support::{align, call, spawn_server};

#[test]
fn folded_rejections_are_counted_by_audit_query_and_shown_by_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"]).status.success());
    let (mut server, addr) = spawn_server(&data, &[("ALIGN_LIMITS_FOLD_REJECTIONS_AFTER", "2")]);
    // Malformed on purpose: a test-only value that no server could have minted.
    let bad = "ako_00000000_not-a-real-key";
    let sent = 25;
    for _ in 0..sent {
        let (status, body) = call(addr, "GET", "/api/v1/me", bad, None).unwrap();
        assert_eq!(status, 401, "{body}");
    }
    // A graceful stop writes the summary of the second still being counted.
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());

    let out = align(
        &data,
        &[
            "audit", "query", "--stream", "request", "--limit", "1000", "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rejected: Vec<&serde_json::Value> = rows.iter().filter(|r| r["status"] == 401).collect();
    let counted: u64 = rejected
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, sent, "every rejection is accounted for: {rows:?}");
    assert!(
        rejected.len() < sent as usize,
        "the flood was folded: {} rows for {sent} requests",
        rejected.len()
    );

    let tail = align(
        &data,
        &["audit", "tail", "--stream", "request", "-n", "100"],
    );
    let text = String::from_utf8(tail.stdout).unwrap();
    assert!(text.contains(", folded)"), "{text}");
    assert!(!text.contains("not-a-real-key"), "no key material: {text}");
    let verified = align(&data, &["audit", "verify"]);
    assert!(verified.status.success(), "the chains verify");
}
