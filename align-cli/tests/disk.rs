//! A real full disk and a real read-only file system under a running `align serve`: the data
//! directory lives on its own small ext4 image (loop device), which the test fills to the last
//! byte and then makes the kernel remount read-only, as it does when a disk fails
//! (`errors=remount-ro`, triggered through ext4's `trigger_fs_error`). Writes get a clear
//! `503 unavailable` (never a 500, a panic or a crash), reads keep working and `/healthz`
//! reports `unhealthy` naming the failing parts. A full disk heals by itself once space is
//! freed; after the read-only one is repaired (fsck) and the server restarted, nothing
//! acknowledged is lost and the audit chain verifies.
//!
//! Loop mounts need root (or `CAP_SYS_ADMIN`) and ext4; without them the test prints why and
//! passes, as the PostgreSQL and Redis tests do without their servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Log, call, spawn_server_logged};

/// A small ext4 image loop-mounted on a directory with `errors=remount-ro`; unmounted when
/// dropped.
struct Ext4 {
    image: PathBuf,
    dir: PathBuf,
}

/// `cmd` with the system directories on `PATH` (mkfs, mount and e2fsck live in sbin).
fn sbin(cmd: &str) -> Command {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut c = Command::new(cmd);
    c.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    c
}

/// Runs `c`; `Err` with its stderr when it cannot run or fails.
fn run(mut c: Command) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("cannot run {c:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Ext4 {
    /// Makes a `mib` MiB ext4 image (no blocks reserved for root) and mounts it on `dir`.
    fn mount(image: &Path, dir: &Path, mib: u64) -> Result<Self, String> {
        let f = fs::File::create(image).map_err(|e| e.to_string())?;
        f.set_len(mib << 20).map_err(|e| e.to_string())?;
        let mut mkfs = sbin("mkfs.ext4");
        mkfs.args(["-q", "-F", "-m", "0"]).arg(image);
        run(mkfs)?;
        let me = Self {
            image: image.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        me.attach()?;
        Ok(me)
    }

    /// Mounts the image on the directory.
    fn attach(&self) -> Result<(), String> {
        let mut mount = sbin("mount");
        mount
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.dir);
        run(mount)
    }

    /// What the kernel does to a failing disk: an ext4 error, and the file system is
    /// remounted read-only under every open file.
    fn fail(&self) {
        let mut findmnt = sbin("findmnt");
        let out = findmnt
            .args(["-n", "-o", "SOURCE", "--target"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let source = String::from_utf8(out.stdout).unwrap();
        let device = source.trim().rsplit('/').next().unwrap().to_owned();
        fs::write(
            format!("/sys/fs/ext4/{device}/trigger_fs_error"),
            "align disk test",
        )
        .unwrap();
    }

    /// Unmounts, repairs with e2fsck and mounts again.
    fn repair(&self) {
        let mut umount = sbin("umount");
        umount.arg(&self.dir);
        run(umount).unwrap();
        let mut fsck = sbin("e2fsck");
        let out = fsck.args(["-f", "-y"]).arg(&self.image).output().unwrap();
        assert!(matches!(out.status.code(), Some(0..=1)), "e2fsck: {out:?}");
        self.attach().unwrap();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = sbin("umount").arg(&self.dir).status();
    }
}

/// Loopback only; a limit that never trips; fast webhook polling.
const SERVER_ENV: &[(&str, &str)] = &[
    ("ALIGN_RATELIMIT_PER_MINUTE", "60000"),
    ("ALIGN_WEBHOOKS_POLL_INTERVAL_MS", "50"),
];

/// `GET /healthz`: status and the names of the failing parts.
fn health(addr: SocketAddr) -> (u16, Vec<String>) {
    let (status, body) = call(addr, "GET", "/healthz", "", None).expect("healthz answers");
    let failing = body["failing"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (status, failing)
}

/// Polls `/healthz` until it answers `want` (within 15 s); returns the failing parts.
fn wait_health(addr: SocketAddr, want: u16) -> Vec<String> {
    let start = Instant::now();
    loop {
        let (status, failing) = health(addr);
        if status == want {
            return failing;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "/healthz stayed {status} {failing:?}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Mints a project-less organisation key named `name`; returns status and body.
fn mint(addr: SocketAddr, admin: &str, name: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/api/v1/keys",
        admin,
        Some(&json!({"name": name, "scope": "organization"})),
    )
    .expect("the server answers")
}

/// Every write the API is asked for while the disk cannot take it fails cleanly.
fn assert_writes_refused(addr: SocketAddr, admin: &str, minted: &str) {
    let (status, body) = mint(addr, admin, "while-broken");
    assert_eq!(status, 503, "mint on a broken disk: {body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    let path = format!("/api/v1/keys/{minted}/revoke");
    let (status, body) = call(addr, "POST", &path, admin, Some(&json!({}))).unwrap();
    assert_eq!(status, 503, "revoke on a broken disk: {body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
}

/// Stops the server as an operator would (SIGTERM) and waits for it to exit.
fn stop(server: &mut support::Running) {
    let ok = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = server.wait().unwrap();
    // On a disk that failed under it the server may report a failed final flush (exit 1), but
    // it must exit by itself, not crash.
    assert!(
        status.code().is_some(),
        "align serve did not exit cleanly: {status}"
    );
}

/// What the server logged must hold no panic and no token.
fn assert_log_clean(log: &Log, tokens: &[&str]) {
    let log = log.lock().unwrap();
    for line in log.iter() {
        assert!(!line.contains("panicked"), "panic in the log: {line}");
        for t in tokens {
            assert!(!line.contains(t), "a token in the log: {line}");
        }
    }
}

#[test]
fn a_full_then_read_only_disk_gives_clear_errors_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let disk = match Ext4::mount(&dir.path().join("disk.img"), &data, 32) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping the full and read-only disk test: {why}");
            return;
        }
    };
    let (mut server, addr, log) = spawn_server_logged(&data, SERVER_ENV);
    let admin = fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(wait_health(addr, 200), Vec::<String>::new());

    let (status, before) = mint(addr, &admin, "before");
    assert_eq!(status, 201, "{before}");
    let before_key = before["key"].as_str().unwrap().to_owned();
    let before_id = before["apiKeyId"].as_str().unwrap().to_owned();

    // 1. Full disk: a filler file takes every byte left. It heals once the file is gone.
    let filler_path = data.join("filler");
    let mut filler = fs::File::create(&filler_path).unwrap();
    let block = vec![0_u8; 64 * 1024];
    while filler.write_all(&block).is_ok() {}
    while filler.write_all(&block[..512]).is_ok() {}
    drop(filler);
    assert_writes_refused(addr, &admin, &before_id);
    let (status, me) = call(addr, "GET", "/api/v1/me", &before_key, None).unwrap();
    assert_eq!(status, 200, "reads go on while the disk is full: {me}");
    let failing = wait_health(addr, 503);
    eprintln!("disk full: /healthz 503, failing {failing:?}");
    assert!(!failing.is_empty());
    assert!(server.try_wait().unwrap().is_none(), "the server died");
    fs::remove_file(&filler_path).unwrap();
    assert_eq!(wait_health(addr, 200), Vec::<String>::new());
    let (status, after) = mint(addr, &admin, "after-full");
    assert_eq!(status, 201, "{after}");
    let after_key = after["key"].as_str().unwrap().to_owned();

    // 2. The kernel remounts the failing disk read-only under the running server.
    disk.fail();
    assert_writes_refused(addr, &admin, &before_id);
    let (status, me) = call(addr, "GET", "/api/v1/me", &after_key, None).unwrap();
    assert_eq!(status, 200, "reads go on on a read-only disk: {me}");
    let failing = wait_health(addr, 503);
    eprintln!("read-only disk: /healthz 503, failing {failing:?}");
    assert!(!failing.is_empty());
    assert!(server.try_wait().unwrap().is_none(), "the server died");
    // The operator stops the server, repairs the disk and starts it again.
    stop(&mut server);
    // Started on the read-only disk, the server says so and exits.
    let refused = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    disk.repair();
    let (server, addr, log_after) = spawn_server_logged(&data, SERVER_ENV);
    assert_eq!(wait_health(addr, 200), Vec::<String>::new());

    // Nothing acknowledged was lost, nothing refused was half-made; revocation works.
    let (status, list) = call(addr, "GET", "/api/v1/keys?limit=100", &admin, None).unwrap();
    assert_eq!(status, 200);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["keyName"].as_str())
        .collect();
    for n in ["bootstrap-admin", "before", "after-full"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(names.len(), 3, "a refused mint left a key: {names:?}");
    let path = format!("/api/v1/keys/{before_id}/revoke");
    let (status, _) = call(addr, "POST", &path, &admin, Some(&json!({}))).unwrap();
    assert_eq!(status, 200);
    let (status, body) = call(addr, "GET", "/api/v1/me", &before_key, None).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("key_revoked"))
    );
    let (status, body) = call(addr, "GET", "/api/v1/me", &after_key, None).unwrap();
    assert_eq!(status, 200, "{body}");

    drop(server);
    let verify = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(verify.status.success(), "audit verify: {verify:?}");
    let tokens = [admin.as_str(), before_key.as_str(), after_key.as_str()];
    assert_log_clean(&log, &tokens);
    assert_log_clean(&log_after, &tokens);
}
