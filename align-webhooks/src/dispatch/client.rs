//! The HTTP side of a delivery: a hyper client over rustls (ring provider) whose DNS goes
//! through the [`Resolver`] and the [`UrlPolicy`], so every new connection is checked.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};
use crate::model::MAX_RECORDED_BODY;
use crate::policy::{Resolver, UrlPolicy};

/// Reads at most this much of a response body; the rest is dropped with the connection.
const MAX_READ_BODY: usize = 64 * 1024;

/// hyper's DNS hook: resolves through our [`Resolver`] and refuses the whole name if any
/// address fails the policy (DNS rebinding defence at delivery time).
#[derive(Clone)]
pub(crate) struct PolicyResolver {
    resolver: Arc<dyn Resolver>,
    policy: UrlPolicy,
}

type ResolveFuture =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = Arc::clone(&self.resolver);
        let policy = self.policy;
        Box::pin(async move {
            let ips = policy
                .check_resolved(name.as_str(), resolver.as_ref())
                .await
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
            Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector<PolicyResolver>>, Full<Bytes>>;

pub(crate) fn build(
    resolver: Arc<dyn Resolver>,
    policy: UrlPolicy,
    connect_timeout: Duration,
) -> Result<HttpClient> {
    let mut http = HttpConnector::new_with_resolver(PolicyResolver { resolver, policy });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| Error::Client(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// What one HTTP attempt produced.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: Option<StatusCode>,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) latency: Duration,
}

/// The signed headers of one attempt.
pub(crate) struct Signed<'a> {
    pub(crate) uri: http::Uri,
    pub(crate) id: &'a str,
    pub(crate) timestamp: i64,
    pub(crate) signature: String,
    pub(crate) body: Bytes,
}

pub(crate) async fn send(
    client: &HttpClient,
    req: Signed<'_>,
    timeout: Duration,
    mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Response {
    let start = Instant::now();
    deadline
        .as_mut()
        .reset(tokio::time::Instant::from_std(start) + timeout);
    let outcome = tokio::select! {
        biased;
        done = exchange(client, req) => Ok(done),
        () = deadline => Err(()),
    };
    let latency = start.elapsed();
    match outcome {
        Ok(Ok((status, retry_after, body))) => Response {
            status: Some(status),
            retry_after,
            body: Some(body),
            error: None,
            latency,
        },
        Ok(Err((status, error))) => Response {
            status,
            retry_after: None,
            body: None,
            error: Some(error),
            latency,
        },
        Err(_) => Response {
            status: None,
            retry_after: None,
            body: None,
            error: Some(format!("timed out after {} ms", timeout.as_millis())),
            latency,
        },
    }
}

type Exchange =
    std::result::Result<(StatusCode, Option<String>, String), (Option<StatusCode>, String)>;

async fn exchange(client: &HttpClient, req: Signed<'_>) -> Exchange {
    let value = |s: &str| HeaderValue::from_str(s).map_err(|_| (None, "invalid header".to_owned()));
    let request = Request::post(req.uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("align-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(crate::verify::HEADER_ID, value(req.id)?)
        .header(crate::verify::HEADER_TIMESTAMP, req.timestamp)
        .header(crate::verify::HEADER_SIGNATURE, value(&req.signature)?)
        .body(Full::new(req.body))
        .map_err(|_| {
            (
                None,
                "the endpoint URL is not a valid request target".to_owned(),
            )
        })?;
    let response = client
        .request(request)
        .await
        .map_err(|e| (None, describe(&e)))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let mut read = 0_usize;
    while read < MAX_READ_BODY {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err((Some(status), describe(&e))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len();
                    let room = MAX_RECORDED_BODY.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok((
        status,
        retry_after,
        String::from_utf8_lossy(&kept).into_owned(),
    ))
}

/// The error and its causes, one line. hyper's errors name no URL, and our policy errors
/// name only addresses, so nothing secret ends up in the attempt record.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
