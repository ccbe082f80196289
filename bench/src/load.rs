//! The load generator: closed-loop keep-alive HTTP/1.1 connections (each sends its next request
//! once the previous response has been read in full), every latency kept in memory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BoxError;

/// A request can take this long before it counts as an error and its connection is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request of a run looks like.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Where to connect (loopback).
    pub(crate) addr: SocketAddr,
    /// Path and query.
    pub(crate) uri: http::Uri,
    /// `Authorization` header values: each connection cycles through them, one per request,
    /// starting at its own offset (none: no header).
    pub(crate) authorization: Vec<HeaderValue>,
    /// The status every response should have; any other counts as an error.
    pub(crate) expect: StatusCode,
    /// The method (`GET` unless the case posts a body).
    pub(crate) method: Method,
    /// JSON bodies the requests cycle through, one per request like `authorization` (none:
    /// no body).
    pub(crate) bodies: Vec<Bytes>,
}

impl Target {
    /// A `GET` of `uri` with no body.
    pub(crate) fn get(
        addr: SocketAddr,
        uri: http::Uri,
        authorization: Vec<HeaderValue>,
        expect: StatusCode,
    ) -> Self {
        Self {
            addr,
            uri,
            authorization,
            expect,
            method: Method::GET,
            bodies: Vec::new(),
        }
    }
}

/// The outcome of one run at one connection count.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Responses with the expected status, within the measured period.
    pub(crate) ok: u64,
    /// Connection failures, timeouts and responses with another status.
    pub(crate) errors: u64,
    /// Unexpected statuses and how often each came.
    pub(crate) unexpected: BTreeMap<u16, u64>,
    /// The first transport error seen, for the message.
    pub(crate) first_error: Option<String>,
    /// The measured period.
    pub(crate) elapsed: Duration,
    /// Every measured latency in microseconds, sorted.
    pub(crate) latencies_us: Vec<u32>,
}

impl Report {
    /// Responses per second (expected status or not) over the measured period.
    pub(crate) fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.latencies_us.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q`-quantile latency (0 < q ≤ 1), nearest rank.
    pub(crate) fn quantile_us(&self, q: f64) -> u32 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies_us[rank - 1]
    }
}

/// What one connection task saw.
#[derive(Debug, Default)]
struct ConnStats {
    ok: u64,
    errors: u64,
    unexpected: BTreeMap<u16, u64>,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

/// Drives `target` with `connections` closed-loop connections for `warmup` (not measured) then
/// `duration` (measured).
pub(crate) async fn drive(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Report, BoxError> {
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + duration;
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|i| {
            let target = Arc::clone(&target);
            tokio::spawn(async move { connection(&target, i, measure_from, until).await })
        })
        .collect();
    let mut report = Report::default();
    for task in tasks {
        let s = task.await?;
        report.ok += s.ok;
        report.errors += s.errors;
        for (status, n) in s.unexpected {
            *report.unexpected.entry(status).or_default() += n;
        }
        if report.first_error.is_none() {
            report.first_error = s.first_error;
        }
        report.latencies_us.extend_from_slice(&s.latencies_us);
    }
    report.elapsed = duration;
    report.latencies_us.sort_unstable();
    Ok(report)
}

async fn connection(
    target: &Target,
    offset: usize,
    measure_from: Instant,
    until: Instant,
) -> ConnStats {
    let mut sequence = offset;
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(64 * 1024),
        ..ConnStats::default()
    };
    let fail = |stats: &mut ConnStats, e: String| {
        stats.errors += 1;
        if stats.first_error.is_none() {
            stats.first_error = Some(e);
        }
    };
    'connect: while Instant::now() < until {
        let mut sender = match connect(target.addr).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut stats, format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let t0 = Instant::now();
            if t0 >= until {
                break 'connect;
            }
            let request = build(target, sequence);
            sequence = sequence.wrapping_add(1);
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request)).await;
            let measured = t0 >= measure_from;
            match sent {
                Ok(Ok(status)) => {
                    if !measured {
                        continue;
                    }
                    let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                    stats.latencies_us.push(us);
                    if status == target.expect {
                        stats.ok += 1;
                    } else {
                        stats.errors += 1;
                        *stats.unexpected.entry(status.as_u16()).or_default() += 1;
                    }
                }
                Ok(Err(e)) => {
                    fail(&mut stats, format!("request: {e}"));
                    continue 'connect;
                }
                Err(_) => {
                    fail(&mut stats, "request timed out".to_owned());
                    continue 'connect;
                }
            }
        }
    }
    stats
}

fn build(target: &Target, sequence: usize) -> http::Request<Full<Bytes>> {
    let body = match target.bodies.len() {
        0 => Bytes::new(),
        n => target.bodies[sequence % n].clone(),
    };
    let has_body = !body.is_empty();
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = target.method.clone();
    *request.uri_mut() = target.uri.clone();
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if !target.authorization.is_empty() {
        let a = &target.authorization[sequence % target.authorization.len()];
        headers.insert(AUTHORIZATION, a.clone());
    }
    request
}

/// Opens a keep-alive HTTP/1.1 connection with `TCP_NODELAY`.
async fn connect<B>(addr: SocketAddr) -> Result<SendRequest<B>, BoxError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response; returns its status.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<StatusCode, BoxError> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// One request on a fresh connection, for set-up calls: returns the status and the body.
pub(crate) async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    json_body: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes), BoxError> {
    let mut sender = connect::<Full<Bytes>>(addr).await?;
    let body = match json_body {
        Some(v) => Bytes::from(serde_json::to_vec(v)?),
        None => Bytes::new(),
    };
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = http::Uri::try_from(path)?;
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
    if json_body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(t) = token {
        headers.insert(AUTHORIZATION, HeaderValue::try_from(format!("Bearer {t}"))?);
    }
    sender.ready().await?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request)).await??;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
