//! `align keys report-compromise`, `align leaks list` and `align leaks policy` against a
//! running `align serve`, as built binaries over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::{call, spawn_server};

/// `align ARGS --api-url URL --json` with the key in ALIGN_API_KEY.
fn over_api(url: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .args(["--api-url", url, "--json"])
        .env("ALIGN_API_KEY", key)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_key_reported_with_the_cli_is_revoked_listed_and_the_policy_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, addr) = spawn_server(&data, &[]);
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key")).unwrap();
    let admin = admin.trim();
    let url = format!("http://{addr}");
    let (status, minted) = call(
        addr,
        "POST",
        "/api/v1/keys",
        admin,
        Some(&json!({"name": "leaky", "scope": "organization"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{minted}");
    let id = minted["apiKeyId"].as_str().unwrap();
    let token = minted["key"].as_str().unwrap();

    let o = over_api(
        &url,
        admin,
        &[
            "keys",
            "report-compromise",
            id,
            "--reason",
            "pasted in a ticket",
        ],
    );
    let report = json_of(&o);
    assert_eq!(report["action"], "revoked");
    assert_eq!(report["reason"], "pasted in a ticket");
    assert_eq!(call(addr, "GET", "/api/v1/me", token, None).unwrap().0, 401);

    let listed = json_of(&over_api(&url, admin, &["leaks", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["keyPrefix"], &token[..12]);

    let policy = json_of(&over_api(&url, admin, &["leaks", "policy"]));
    assert_eq!(policy["leakedKeyAction"], "revoke");
    let policy = json_of(&over_api(
        &url,
        admin,
        &["leaks", "policy", "--live", "notify", "--sandbox", "revoke"],
    ));
    assert_eq!(policy["leakedKeyAction"], "notify");
    assert_eq!(policy["leakedSandboxKeyAction"], "revoke");

    let o = over_api(&url, admin, &["leaks", "policy", "--live", "shrug"]);
    assert_eq!(o.status.code(), Some(2));
    let o = over_api(
        &url,
        admin,
        &[
            "keys",
            "report-compromise",
            "00000000-0000-4000-8000-000000000000",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
