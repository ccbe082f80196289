//! Response building and JSON request bodies: the envelope, content types, limits.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Response body type.
pub(crate) type Body = Full<Bytes>;
/// Response type.
pub(crate) type Response = http::Response<Body>;

/// RFC 3339 UTC with milliseconds, e.g. `2026-05-14T10:00:00.000Z`.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Optional timestamp for JSON.
pub(crate) fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(timestamp)
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_json_type(status, Bytes::from(bytes)),
        Err(_) => error(&ApiError::internal(), ""),
    }
}

/// A response with an already-encoded JSON body.
pub(crate) fn raw_json(status: StatusCode, body: Bytes) -> Response {
    with_json_type(status, body)
}

fn with_json_type(status: StatusCode, body: Bytes) -> Response {
    let mut r = http::Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The error envelope `{"error":{"code","message","requestId"}}`.
pub(crate) fn error(e: &ApiError, request_id: &str) -> Response {
    let body = serde_json::json!({
        "error": { "code": e.code, "message": e.message, "requestId": request_id }
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = with_json_type(e.status, Bytes::from(bytes));
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    if e.is_unauthorized() {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}

/// Parses a JSON request body into `T` (unknown fields refused by `T`'s serde attributes).
/// An empty body reads as `{}`. The message of a parse error is redacted, since serde may
/// quote the offending value.
pub(crate) fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        if !is_json(headers) {
            return Err(ApiError::unsupported_media_type());
        }
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let safe = align_keys::Redactor::new().redact_text(&text).into_owned();
        ApiError::invalid_request(format!("invalid JSON body: {safe}"))
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// Reads `limit`/`cursor` query parameters.
pub(crate) fn page_request(query: Option<&str>) -> Result<align_keys::PageRequest, ApiError> {
    let mut page = align_keys::PageRequest::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                let n: u32 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=align_keys::store::MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be between 1 and 200"))?;
                page.limit = n;
            }
            "cursor" => page.cursor = Some(v.to_owned()),
            _ => {}
        }
    }
    Ok(page)
}

/// The query string's `name=value` pairs, percent-decoded; a value that is not UTF-8 after
/// decoding is refused with `400 invalid_request`.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || ApiError::invalid_request("query parameters must be valid UTF-8");
            Ok((
                percent_decode(k).ok_or_else(bad)?,
                percent_decode(v).ok_or_else(bad)?,
            ))
        })
        .collect()
}

/// An RFC 3339 time in query parameter `name`.
pub(crate) fn time_param(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::invalid_request(format!("{name} must be an RFC 3339 time")))
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
