//! Client commands against a running server (`--api-url`): the key comes from
//! `ALIGN_API_KEY` or `--key-file`, never from a flag value that would land in shell history.
//!
//! API errors map to the exit codes: `404` is "not found" (3), any other `4xx` a usage error
//! (2: the request or the key must change), and `429`, `5xx` or an unreachable server a
//! failure (1: trying again later may work).

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::output::{Failure, Out};

/// A connection to the API with one key.
pub(crate) struct Api {
    base: String,
    key: zeroize::Zeroizing<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Api {
    /// From `--api-url` and the key in `key_file` or `ALIGN_API_KEY`.
    pub(crate) fn new(base: &str, key_file: Option<&Path>) -> Result<Self, Failure> {
        let key = zeroize::Zeroizing::new(match key_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", f.display())))?,
            None => std::env::var("ALIGN_API_KEY")
                .map_err(|_| Failure::usage("set ALIGN_API_KEY or pass --key-file FILE"))?,
        });
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Failure::usage(format!("TLS set-up failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: zeroize::Zeroizing::new(key.trim().to_owned()),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends a request and returns the JSON answer (`null` for an empty one); API errors
    /// become failures with the server's status, code and message.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let raw = self.call_raw(method, path, body).await?;
        Ok(serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    /// [`Api::call`] for answers that are not one JSON document (an NDJSON export): the
    /// body as received.
    pub(crate) async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, Failure> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.key.as_str()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|_| Failure::usage("--api-url is not a valid URL"))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| Failure::remote(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let raw = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::remote(format!("the response was cut short: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(raw);
        }
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let message = v["error"]["message"].as_str().unwrap_or("");
        let mut text = format!("{} {code}: {message}", status.as_u16());
        if let Some(s) = retry_after {
            text.push_str(&format!(" (retry after {s} s)"));
        }
        Err(match status.as_u16() {
            404 => Failure::not_found(object_named_by(path)),
            429 => Failure::remote(text),
            400..=499 => Failure::usage(text),
            _ => Failure::remote(text),
        })
    }

    /// Every row of a cursor-paged listing at `path` (which has a query string), up to `max`.
    pub(crate) async fn list(&self, path: &str, max: usize) -> Result<Vec<Value>, Failure> {
        let mut rows = Vec::new();
        let mut next = path.to_owned();
        loop {
            let page = self.call("GET", &next, None).await?;
            if let Some(data) = page["data"].as_array() {
                rows.extend(data.iter().cloned());
            }
            match page["nextCursor"].as_str() {
                Some(c) if rows.len() < max => {
                    next = format!("{path}&cursor={}", query_value(c));
                }
                _ => break,
            }
        }
        rows.truncate(max);
        Ok(rows)
    }
}

/// `value` percent-encoded for a query string.
pub(crate) fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// What a `404` at `path` failed to find, for the "no such …" message.
fn object_named_by(path: &str) -> &'static str {
    if path.starts_with("/api/v1/webhook-endpoints/") {
        "webhook endpoint"
    } else if path.starts_with("/api/v1/webhook-deliveries/") {
        "webhook delivery"
    } else if path.starts_with("/api/v1/keys/") {
        "key"
    } else if path.starts_with("/api/v1/users/") {
        "user"
    } else if path.starts_with("/api/v1/privacy/") {
        "subject"
    } else {
        "object"
    }
}

/// Prints an API answer: the object, or the rows of a `{"data": […]}` page.
pub(crate) fn print(v: &Value, columns: &[&str], out: &Out) -> Result<(), Failure> {
    match v.get("data").and_then(Value::as_array) {
        Some(rows) => out.table(rows, columns),
        None => out.object(v),
    }
}

/// A user named by e-mail becomes their id (over the API, from `GET /users`); ids pass.
pub(crate) async fn resolve_user(api: &Api, id: &str) -> Result<String, Failure> {
    if !id.contains('@') {
        return Ok(id.to_owned());
    }
    let users = api.call("GET", "/api/v1/users", None).await?;
    users["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["email"].as_str() == Some(id))
        .and_then(|u| u["id"].as_str().map(str::to_owned))
        .ok_or(Failure::NotFound("user"))
}
