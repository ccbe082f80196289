//! Finding 5 of issue 20, against the built binary: "the audit chain can be cut short
//! undetected. Deleting the newest audit rows and setting `audit_heads` to the new last row
//! leaves `align audit verify` reporting intact: the head that verify trusts lives in the same
//! database." `align serve` now anchors the heads outside the database, and `align audit
//! verify` holds the chain to the latest anchor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use align_audit::{AnchorLog, Stream};
use serde_json::{Value, json};
use support::{align, call, spawn_server};

/// Anchors every second, so the tests need not wait a minute.
const ENV: &[(&str, &str)] = &[("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", "1")];

fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Mints `n` keys over HTTP: each an audited change.
fn mint(addr: std::net::SocketAddr, admin: &str, n: usize) {
    for i in 0..n {
        let body = json!({"name": format!("k{i}"), "scope": "organization"});
        let (status, minted) = call(addr, "POST", "/api/v1/keys", admin, Some(&body)).unwrap();
        assert_eq!(status, 201, "{minted}");
    }
}

fn sqlite(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("align.db")).unwrap()
}

/// The audit log's stored head sequence.
fn audit_head(data: &Path) -> i64 {
    sqlite(data)
        .query_row(
            "SELECT sequence FROM audit_heads WHERE stream = 'audit'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Exactly what the finding did: delete the newest audit rows and point `audit_heads` at the
/// row that is now last.
fn cut_audit_log(data: &Path, keep: i64) {
    let db = sqlite(data);
    db.execute(
        "DELETE FROM audit_records WHERE stream = 'audit' AND sequence > ?1",
        [keep],
    )
    .unwrap();
    db.execute(
        "UPDATE audit_heads SET sequence = ?1, hash = (SELECT hash FROM audit_records \
         WHERE stream = 'audit' AND sequence = ?1) WHERE stream = 'audit'",
        [keep],
    )
    .unwrap();
}

fn verify(data: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    align(data, &args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stop(server: &mut support::Running) {
    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(server.wait().unwrap().success(), "a clean shutdown");
}

/// The audit log's anchored sequence in the data directory's anchor file, once it reaches
/// `at_least` (waits up to 15 s).
fn anchored(data: &Path, at_least: i64) -> i64 {
    let file = data.join(align_server::ANCHOR_LOG_FILE);
    let started = Instant::now();
    loop {
        if let Ok(latest) = AnchorLog::latest(&file) {
            if let Some(a) = latest.get(&Stream::Audit) {
                let seq = a.head().sequence as i64;
                if seq >= at_least {
                    return seq;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no audit anchor at {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn finding_5_truncated_audit_chain_is_detected_against_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data, ENV);
    mint(addr, &admin_key(&data), 5);
    stop(&mut server);

    // The key and the anchors are the owner's alone.
    #[cfg(unix)]
    for name in [align_server::ANCHOR_KEY_FILE, align_server::ANCHOR_LOG_FILE] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // The clean shutdown anchored the final head; the intact chain reaches it.
    let head = audit_head(&data);
    assert!(head >= 5, "{head}");
    let ok = verify(&data, &["--json"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["anchor"]["sequence"], head, "{report}");

    // The attack: three newest audit records deleted, the head rewritten to match.
    let keep = head - 3;
    cut_audit_log(&data, keep);

    // Without the anchor file this is what the finding saw: nothing to notice.
    let anchors = data.join(align_server::ANCHOR_LOG_FILE);
    let aside = dir.path().join("offsite-anchors.jsonl");
    std::fs::rename(&anchors, &aside).unwrap();
    let blind = verify(&data, &["--json"]);
    assert!(blind.status.success(), "{}", stderr(&blind));
    std::fs::copy(&aside, &anchors).unwrap();

    // With it, verify fails and says which stream, the anchored sequence and the head found.
    let caught = verify(&data, &[]);
    assert_eq!(caught.status.code(), Some(4), "{}", stderr(&caught));
    let message = stderr(&caught);
    assert!(message.contains("the audit log was cut short"), "{message}");
    assert!(
        message.contains(&format!("records sequence {head}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("ends at sequence {keep}")),
        "{message}"
    );

    // An operator who kept the anchors elsewhere catches it after the local file is gone.
    std::fs::remove_file(&anchors).unwrap();
    let offsite = verify(&data, &["--anchor", aside.to_str().unwrap()]);
    assert_eq!(offsite.status.code(), Some(4), "{}", stderr(&offsite));
    assert!(stderr(&offsite).contains(&format!("records sequence {head}")));
    // So does one who kept the audit.checkpoint events (their `data` is the anchor).
    let events: String = std::fs::read_to_string(&aside)
        .unwrap()
        .lines()
        .map(|l| {
            let anchor: Value = serde_json::from_str(l).unwrap();
            format!("{}\n", json!({"type": "audit.checkpoint", "data": anchor}))
        })
        .collect();
    let as_events = dir.path().join("events.jsonl");
    std::fs::write(&as_events, events).unwrap();
    let from_events = verify(&data, &["--anchor", as_events.to_str().unwrap()]);
    assert_eq!(
        from_events.status.code(),
        Some(4),
        "{}",
        stderr(&from_events)
    );

    // A forged anchor (the latest, its sequence lowered to match the cut chain) is no way out.
    let latest = AnchorLog::latest(&aside).unwrap()[&Stream::Audit].clone();
    let mut forged = serde_json::to_value(&latest).unwrap();
    forged["sequence"] = keep.into();
    let forged = format!("{forged}\n");
    std::fs::write(&anchors, forged).unwrap();
    let refused = verify(&data, &[]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not signed by this deployment's anchor key"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn finding_5_what_was_anchored_before_a_sigkill_cannot_be_cut_unnoticed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data, ENV);
    mint(addr, &admin_key(&data), 4);
    let head = audit_head(&data);
    let at = anchored(&data, head);
    server.kill().unwrap(); // SIGKILL: no shutdown anchor
    server.wait().unwrap();

    #[cfg(unix)]
    for name in [align_server::ANCHOR_KEY_FILE, align_server::ANCHOR_LOG_FILE] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    let ok = verify(&data, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    cut_audit_log(&data, at - 1);
    let caught = verify(&data, &[]);
    assert_eq!(caught.status.code(), Some(4), "{}", stderr(&caught));
    let message = stderr(&caught);
    assert!(
        message.contains(&format!("records sequence {at}"))
            && message.contains(&format!("ends at sequence {}", at - 1)),
        "{message}"
    );
}

#[test]
fn a_restore_moves_the_replaced_databases_anchors_aside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, addr) = spawn_server(&data, ENV);
    let admin = admin_key(&data);
    mint(addr, &admin, 1);
    let backup: PathBuf = dir.path().join("backup.db");
    assert!(
        align(&data, &["backup", "--to", backup.to_str().unwrap()])
            .status
            .success()
    );
    mint(addr, &admin, 2);
    stop(&mut server);

    let restored = align(
        &data,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--force",
            "--json",
        ],
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    let report: Value = serde_json::from_slice(&restored.stdout).unwrap();
    let archived = PathBuf::from(report["anchorsArchived"].as_str().unwrap());
    assert!(archived.is_file(), "{report}");
    assert!(!data.join(align_server::ANCHOR_LOG_FILE).exists());
    // The restored (older) chain verifies; against the archived anchors it is, rightly, short.
    assert!(verify(&data, &[]).status.success());
    let against_old = verify(&data, &["--anchor", archived.to_str().unwrap()]);
    assert_eq!(
        against_old.status.code(),
        Some(4),
        "{}",
        stderr(&against_old)
    );
}
