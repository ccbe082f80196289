//! Connection hygiene over real TCP: idle connections (HTTP/1.1, HTTP/2 with prior knowledge,
//! and ones that never send a byte) are closed after `limits.idle_timeout_secs`, a request in
//! flight is never cut, and past `limits.max_connections` the server still answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_secs(1);
/// Scheduling and timer slack on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);
/// How long a closed connection may take to say goodbye (the server's close grace).
const GRACE: Duration = Duration::from_secs(1);

async fn server_with_idle_timeout() -> TestServer {
    TestServer::start_with(|c| c.idle_timeout = IDLE).await
}

/// Reads until the server closes the connection (or `within` passes); returns what was read
/// and when the close came.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (received, None),
            Ok(Ok(0) | Err(_)) => return (received, Some(Instant::now())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// The HTTP/2 frame types in `bytes` (a server's frames, after no preface of its own).
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    types
}

/// One series' value in `GET /metrics` (0 when absent).
async fn metric(server: &TestServer, series: &str) -> f64 {
    let r = server.get("/metrics", &server.admin_key).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.raw).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Finding 4 of issue 20: a TCP connection that sent nothing stayed open for good (hyper's
/// protocol detection has no timeout of its own). Now it is closed after the idle timeout, as
/// is a keep-alive connection after its last answer; a request in flight is not cut however
/// slowly its body arrives.
#[tokio::test]
async fn finding_4_an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = server_with_idle_timeout().await;

    let opened = Instant::now();
    let mut silent = connect(server.addr).await;
    let (_, closed) = read_until_closed(&mut silent, IDLE + GRACE + SLACK).await;
    let after = closed
        .expect("a silent connection is closed")
        .duration_since(opened);
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed early: {after:?}"
    );

    let mut keep_alive = connect(server.addr).await;
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let (bytes, closed) = read_until_closed(&mut keep_alive, IDLE + GRACE + SLACK).await;
    assert!(
        bytes.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let after = closed
        .expect("an idle keep-alive connection is closed")
        .duration_since(answered);
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed early: {after:?}"
    );

    // A body that takes three idle timeouts to arrive: the request is in flight throughout.
    let body = br#"{"name":"slow","scope":"organization","environment":"live"}"#;
    let mut slow = connect(server.addr).await;
    let head = format!(
        "POST /api/v1/keys HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        server.admin_key,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(body.len() / 3 + 1) {
        tokio::time::sleep(IDLE).await;
        slow.write_all(chunk).await.unwrap();
    }
    let (bytes, _) = read_until_closed(&mut slow, SLACK * 5).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 "),
        "the request was cut: {text:?}"
    );
    assert!(!text.starts_with("HTTP/1.1 5"), "{text}");

    assert!(
        metric(
            &server,
            "align_connections_closed_total{reason=\"idle_timeout\"}"
        )
        .await
            >= 2.0
    );
    server.stop().await;
}

/// Finding 4 of issue 20: an HTTP/2 (prior knowledge) connection that sent its preface and
/// SETTINGS and then nothing stayed open for good. Now it gets a `GOAWAY` after the idle
/// timeout and is closed.
#[tokio::test]
async fn finding_4_an_idle_h2c_connection_is_closed() {
    let server = server_with_idle_timeout().await;
    let mut h2 = connect(server.addr).await;
    let opened = Instant::now();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let (bytes, closed) = read_until_closed(&mut h2, IDLE + GRACE + SLACK).await;
    let after = closed
        .expect("an idle h2c connection is closed")
        .duration_since(opened);
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed early: {after:?}"
    );
    let types = h2_frame_types(&bytes);
    assert_eq!(
        types.first(),
        Some(&4),
        "the server's SETTINGS first: {types:?}"
    );
    assert!(types.contains(&7), "a GOAWAY before the close: {types:?}");
    assert!(
        metric(
            &server,
            "align_connections_closed_total{reason=\"idle_timeout\"}"
        )
        .await
            >= 1.0
    );
    server.stop().await;
}

/// Finding 4 of issue 20: nothing capped connections, so idle sockets exhausted the process's
/// descriptors and `/healthz` stopped answering. With `limits.max_connections` = 50 and 50
/// idle connections open, a new connection closes the longest-idle one and `/healthz` answers
/// at once; the metrics show the cap was reached.
#[tokio::test]
async fn finding_4_past_the_connection_cap_healthz_still_answers() {
    const CAP: usize = 50;
    let server = TestServer::start_with(|c| c.max_connections = Some(CAP)).await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(connect(server.addr).await);
        // Accepted in this order, so the first is the longest idle.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(2),
        server.send(Method::GET, "/healthz", &[], None),
    )
    .await
    .expect("/healthz answers within 2 s past the cap");
    assert_eq!(health.status, StatusCode::OK);
    let waited = asked.elapsed();

    let (_, closed) = read_until_closed(&mut idle[0], SLACK).await;
    assert!(closed.is_some(), "the longest-idle connection made room");
    assert!(metric(&server, "align_connections_at_cap_total").await >= 1.0);
    assert!(
        metric(
            &server,
            "align_connections_closed_total{reason=\"evicted\"}"
        )
        .await
            >= 1.0
    );
    assert_eq!(metric(&server, "align_connections_max").await, CAP as f64);
    let open = metric(&server, "align_connections_open").await;
    assert!((1.0..=CAP as f64).contains(&open), "{open}");
    eprintln!("/healthz past the cap answered in {waited:?}");
    drop(idle);
    server.stop().await;
}

/// At the cap with every connection busy, a new connection waits (in the backlog) rather than
/// cutting a request; once one of them has answered and stays open idle, it is closed for the
/// new one.
#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_new_one_waits_for_an_answer() {
    let server = TestServer::start_with(|c| c.max_connections = Some(2)).await;
    let body = br#"{"name":"held","scope":"organization","environment":"live"}"#;
    let head = format!(
        "POST /api/v1/keys HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        server.admin_key,
        body.len()
    );
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut c = connect(server.addr).await;
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&body[..10]).await.unwrap();
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let health = tokio::spawn({
        let addr = server.addr;
        async move {
            let mut c = connect(addr).await;
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            read_until_closed(&mut c, Duration::from_secs(10)).await.0
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !health.is_finished(),
        "no slot while both requests are in flight"
    );

    // One request completes; its keep-alive connection stays open, idle, and makes room.
    busy[0].write_all(&body[10..]).await.unwrap();
    let mut answer = [0u8; 12];
    busy[0].read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    let health = tokio::time::timeout(Duration::from_secs(5), health)
        .await
        .expect("/healthz answers once a connection is idle")
        .unwrap();
    assert!(
        health.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&health)
    );

    // The other request was never cut.
    busy[1].write_all(&body[10..]).await.unwrap();
    busy[1].read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    drop(busy);
    server.stop().await;
}
