//! `align keys scan` over a tree with valid, mistyped and look-alike tokens, Align's and a key
//! space's, as a built binary: only keys with a valid checksum count, `.gitignore`d, binary and
//! `.git` files are skipped, the output names `path:line prefix` and never the secret, exit 1
//! when any.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Command, Output, Stdio};

use align_keys::Environment;
use align_keys::keyspace_token::{KeyspaceTag, generate_keyspace_token};
use align_keys::token::generate;

fn scan(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["keys", "scan"])
        .args(args)
        .args(paths)
        .env("ALIGN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn token(env: Environment) -> String {
    generate(env).unwrap().token.expose().to_owned()
}

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A token with one secret character changed: same shape, wrong checksum.
fn mistyped(t: &str) -> String {
    let mut b = t.as_bytes().to_vec();
    b[20] = if b[20] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

struct Tree {
    dir: tempfile::TempDir,
    live: String,
    sandbox: String,
    secrets: Vec<String>,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let live = token(Environment::Live);
    let sandbox = token(Environment::Sandbox);
    let hidden_elsewhere = token(Environment::Live);
    write(root, "config/.env", format!("# prod\nALIGN_KEY={live}\n"));
    write(
        root,
        "src/app.rs",
        format!("fn main() {{\n    // sandbox\n    let k = \"{sandbox}\";\n}}\n"),
    );
    let wrong_tag = format!("akx{}", &live[3..]);
    let upper_id = format!("ako_ABCDEF12{}", &live[12..]);
    let glued_front = format!("x{live}");
    let glued_back = format!("{live}Z");
    let short = &live[..live.len() - 1];
    write(
        root,
        "notes.txt",
        format!(
            "mistyped {}\nwrong tag {wrong_tag}\nupper id {upper_id}\n\
             glued {glued_front}\nglued {glued_back}\nshort {short}\nakt_notakey\n",
            mistyped(&live)
        ),
    );
    write(root, ".gitignore", "ignored/\n*.log\n");
    write(root, "ignored/secret.txt", &hidden_elsewhere);
    write(root, "debug.log", &hidden_elsewhere);
    let mut binary = vec![0u8, 1, 2, 3];
    binary.extend_from_slice(hidden_elsewhere.as_bytes());
    write(root, "blob.bin", binary);
    write(root, ".git/config", &hidden_elsewhere);
    Tree {
        dir,
        secrets: vec![live[13..].to_owned(), sandbox[13..].to_owned()],
        live,
        sandbox,
    }
}

#[test]
fn only_keys_with_a_valid_checksum_are_reported_by_place_and_prefix() {
    let t = tree();
    let root = t.dir.path();
    let o = scan(&[], &[root]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    let want = format!(
        "{}:2 {}\n{}:3 {}\n",
        root.join("config/.env").display(),
        &t.live[..12],
        root.join("src/app.rs").display(),
        &t.sandbox[..12],
    );
    assert_eq!(stdout, want);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.contains("2 API key(s) found"), "{stderr}");
    for secret in &t.secrets {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
}

#[test]
fn json_lists_path_line_prefix_environment_and_kind() {
    let t = tree();
    let root = t.dir.path();
    let o = scan(&["--json"], &[root]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"path": root.join("config/.env").display().to_string(), "line": 2,
             "prefix": &t.live[..12], "environment": "live", "kind": "align"},
            {"path": root.join("src/app.rs").display().to_string(), "line": 3,
             "prefix": &t.sandbox[..12], "environment": "sandbox", "kind": "align"},
        ])
    );
}

#[test]
fn a_clean_tree_exits_zero_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", "nothing to see\n");
    write(dir.path(), "b.txt", mistyped(&token(Environment::Live)));
    let o = scan(&[], &[dir.path()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
    let o = scan(&["--json"], &[dir.path()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), "[]");
}

#[test]
fn files_named_on_the_command_line_are_scanned_and_missing_ones_are_usage_errors() {
    let t = tree();
    let root = t.dir.path();
    let o = scan(&[], &[&root.join("src/app.rs"), &root.join("notes.txt")]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.ends_with(&format!(":3 {}\n", &t.sandbox[..12])));

    let o = scan(&[], &[&root.join("does-not-exist")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn key_space_keys_are_found_by_prefix_beside_align_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let acme = generate_keyspace_token(&KeyspaceTag::new("acme").unwrap()).unwrap();
    let ab = generate_keyspace_token(&KeyspaceTag::new("ab").unwrap()).unwrap();
    let (acme_key, ab_key) = (acme.token.expose(), ab.token.expose());
    let live = token(Environment::Live);
    write(
        root,
        "gateway.env",
        format!(
            "ACME_KEY={acme_key}\nALIGN_KEY={live}\nTYPO={}\nGLUED=x{ab_key} {ab_key}0\n\
             list: [\"{ab_key}\"]\n",
            mistyped(acme_key)
        ),
    );
    let file = root.join("gateway.env").display().to_string();

    let o = scan(&[], &[root]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "{file}:1 {}\n{file}:2 {}\n{file}:5 {}\n",
            acme.prefix,
            &live[..12],
            ab.prefix
        )
    );
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(stderr.contains("3 API key(s) found"), "{stderr}");
    assert!(stderr.contains("key space"), "{stderr}");

    let o = scan(&["--json"], &[root]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8(o.stdout).unwrap();
    for secret in [&acme_key[14..], &ab_key[12..], &live[13..]] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"path": file, "line": 1, "prefix": acme.prefix, "kind": "keyspace"},
            {"path": file, "line": 2, "prefix": &live[..12], "environment": "live",
             "kind": "align"},
            {"path": file, "line": 5, "prefix": ab.prefix, "kind": "keyspace"},
        ])
    );
}
