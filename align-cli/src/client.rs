//! Client commands against a running server (`--api-url`): the key comes from
//! `ALIGN_API_KEY` or `--key-file`, never from a flag value that would land in shell history.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::output::{Failure, Out};

/// A connection to the API with one key.
pub(crate) struct Api {
    base: String,
    key: String,
}

impl Api {
    /// From `--api-url` and the key in `key_file` or `ALIGN_API_KEY`.
    pub(crate) fn new(base: &str, key_file: Option<&Path>) -> Result<Self, Failure> {
        let key = match key_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", f.display())))?,
            None => std::env::var("ALIGN_API_KEY")
                .map_err(|_| Failure::usage("set ALIGN_API_KEY or pass --key-file FILE"))?,
        };
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.trim().to_owned(),
        })
    }

    /// Sends a request and returns the JSON answer; API errors become failures with the
    /// server's code and message.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Failure::usage(format!("TLS set-up failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|_| Failure::usage("--api-url is not a valid URL"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| Failure::usage(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let raw = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::usage(format!("the response was cut short: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let message = v["error"]["message"].as_str().unwrap_or("");
        let text = format!("{} {code}: {message}", status.as_u16());
        Err(if status == hyper::StatusCode::NOT_FOUND {
            Failure::NotFound("object")
        } else {
            Failure::usage(text)
        })
    }
}

/// Prints an API answer: the object, or the rows of a `{"data": […]}` page.
pub(crate) fn print(v: &Value, columns: &[&str], out: &Out) -> Result<(), Failure> {
    match v.get("data").and_then(Value::as_array) {
        Some(rows) => out.table(rows, columns),
        None => out.object(v),
    }
}
