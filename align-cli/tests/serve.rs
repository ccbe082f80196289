//! The built `align` binary, run as an operator would: first start, a key minted, used and
//! revoked over HTTP, SIGTERM, then no token anywhere in what it logged or stored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let json = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn serve_mint_use_revoke_then_shut_down_cleanly_leaving_no_token_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        // With the per-request lines (off at `info`), so that they are searched for tokens too.
        .env("ALIGN_LOG", "info,align::request=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start");
        log.push(line.clone());
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let admin = std::fs::read_to_string(data.join("bootstrap-admin-key"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        log.iter()
            .any(|l| l.contains(&admin[..12]) && l.contains("bootstrap-admin-key"))
    );

    let (status, me) = http(addr, "GET", "/api/v1/me", &admin, "");
    assert_eq!(status, 200);
    assert_eq!(me["keyPrefix"], &admin[..12]);
    let (status, minted) = http(
        addr,
        "POST",
        "/api/v1/keys",
        &admin,
        r#"{"name":"ci-read","scope":"organization"}"#,
    );
    assert_eq!(status, 201);
    let token = minted["key"].as_str().unwrap().to_owned();
    assert_eq!(http(addr, "GET", "/api/v1/me", &token, "").0, 200);
    let id = minted["apiKeyId"].as_str().unwrap();
    assert_eq!(
        http(
            addr,
            "POST",
            &format!("/api/v1/keys/{id}/revoke"),
            &admin,
            ""
        )
        .0,
        200
    );
    let (status, err) = http(addr, "GET", "/api/v1/me", &token, "");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("key_revoked"))
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    reader.join().unwrap();
    log.extend(lines_rx.try_iter());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();

    // Nothing the server printed or stored holds a token, apart from the bootstrap key file.
    let mut haystack = log.join("\n").into_bytes();
    haystack.extend(stdout.as_bytes());
    // Every file, the request log's segment directory included.
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.ends_with("bootstrap-admin-key") {
                haystack.extend(std::fs::read(path).unwrap());
            }
        }
    }
    assert!(
        log.iter()
            .any(|l| l.contains("align::request") && l.contains("/api/v1/me")),
        "the per-request lines were asked for"
    );
    for t in [&admin, &token] {
        let secret = &t.as_bytes()[13..];
        assert!(
            !haystack
                .windows(16)
                .any(|w| secret.windows(16).any(|s| s == w)),
            "token material leaked"
        );
    }
    assert!(log.iter().any(|l| l.contains("shutting down")));
}
