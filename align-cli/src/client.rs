//! Client commands against a running server (`--api-url`): the key comes from
//! `ALIGN_API_KEY` or `--key-file`, never from a flag value that would land in shell history.
//!
//! API errors map to the exit codes: `404` is "not found" (3), any other `4xx` a usage error
//! (2: the request or the key must change), and `429`, `5xx` or an unreachable server a
//! failure (1: trying again later may work).

use std::path::Path;

use align_client::{Client, Error, Method};
use hyper::body::Bytes;
use serde_json::Value;

use crate::output::{Failure, Out};

/// A connection to the API with one key, through `align-client` (tried once, as before:
/// the CLI reports a `429` or `503` rather than waiting).
pub(crate) struct Api {
    base: String,
    /// `None` when `--api-url` is not a URL: reported by the first call, as before.
    client: Option<Client>,
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
        let client = Client::builder(base)
            .api_key(key.as_str())
            .max_attempts(1)
            .timeout(None)
            .build();
        let client = match client {
            Ok(c) => Some(c),
            Err(Error::Config(m)) if m.starts_with("TLS") => return Err(Failure::usage(m)),
            Err(_) => None,
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// The typed client.
    pub(crate) fn client(&self) -> Result<&Client, Failure> {
        self.client
            .as_ref()
            .ok_or_else(|| Failure::usage("--api-url is not a valid URL"))
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
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::usage("--api-url is not a valid URL"))?;
        match self.client()?.request(method, path, body.as_ref()).await {
            Ok(answer) => Ok(answer.body),
            Err(e) => Err(self.failure(e, path)),
        }
    }

    /// The failure, and so the exit code, of a client error at `path`.
    pub(crate) fn failure(&self, e: Error, path: &str) -> Failure {
        match e {
            Error::Api(api) => {
                let code = match api.code.as_str() {
                    "" => "error",
                    c => c,
                };
                let mut text = format!("{} {code}: {}", api.status, api.message);
                if let Some(s) = api.retry_after {
                    text.push_str(&format!(" (retry after {} s)", s.as_secs()));
                }
                match api.status {
                    404 => Failure::not_found(object_named_by(path)),
                    429 => Failure::remote(text),
                    400..=499 => Failure::usage(text),
                    _ => Failure::remote(text),
                }
            }
            Error::Transport { source } => {
                Failure::remote(format!("cannot reach {}: {source}", self.base))
            }
            Error::Body { source } => {
                Failure::remote(format!("the response was cut short: {source}"))
            }
            Error::Config(_) => Failure::usage("--api-url is not a valid URL"),
            other => Failure::remote(other.to_string()),
        }
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
    let users = api
        .client()?
        .list_users()
        .await
        .map_err(|e| api.failure(e, "/api/v1/users"))?;
    users
        .data
        .into_iter()
        .find(|u| u.email == id)
        .map(|u| u.id.to_string())
        .ok_or(Failure::NotFound("user"))
}
