//! Response building and JSON request bodies: the envelope, content types, limits.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

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

/// `204 No Content`.
pub(crate) fn no_content() -> Response {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// A `200` with `body` of type `content_type`.
pub(crate) fn typed(content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(Full::new(body.into()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn with_json_type(status: StatusCode, body: Bytes) -> Response {
    let mut r = http::Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The error envelope `{"error":{"code","message","requestId"}}` (rendered by `align-http`,
/// the one place for every layer and handler).
pub(crate) fn error(e: &ApiError, request_id: &str) -> Response {
    e.to_response(request_id)
}

/// Parses a JSON request body into `T` (unknown fields refused by `T`'s serde attributes).
/// An empty body reads as `{}`. The message of a parse error is redacted, since serde may
/// quote the offending value.
pub(crate) fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() {
        b"{}"
    } else {
        if !is_json(headers) {
            return Err(ApiError::unsupported_media_type());
        }
        body
    };
    // Every request body is a JSON object. Checked first: a struct whose fields all have
    // defaults would otherwise also accept an array (serde's sequence form), `[]` included.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|&b| b != b'{') {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let text = shorten_quotes(&e.to_string());
        let safe = align_keys::Redactor::new().redact_text(&text).into_owned();
        ApiError::invalid_request(format!("invalid JSON body: {safe}"))
    })
}

/// The network a client's address stands for when counting what one client does: an IPv4
/// address itself (an IPv4-mapped IPv6 address as IPv4), an IPv6 address's /64, which one
/// host usually holds whole (so a client cannot dodge a per-client limit by walking its /64).
pub(crate) fn client_network(ip: std::net::IpAddr) -> std::net::IpAddr {
    align_audit::fold::client_network(ip)
}

/// Longest quoted input an error message repeats.
const MAX_QUOTED: usize = 40;

/// serde quotes what it could not accept (an unknown field's whole name, say) between
/// backticks; an error says what was wrong, not what was sent, so a long quote is cut to its
/// first [`MAX_QUOTED`] characters and its length. The message stays small whatever the input
/// (issue 21, finding 1: error replies are stored for idempotent replay).
fn shorten_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(512));
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
            continue;
        }
        let chars = part.chars().count();
        out.push('`');
        if chars > MAX_QUOTED {
            out.extend(part.chars().take(MAX_QUOTED));
            out.push_str(&format!("…` ({chars} characters)"));
        } else {
            out.push_str(part);
            out.push('`');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_envelope_is_what_serde_json_writes_with_or_without_escapes() {
        use http_body_util::BodyExt;
        for message in [
            "the key is not valid",
            "quote \" and backslash \\ and tab \t",
            "unicode é ✓ and \u{7f}",
            "",
        ] {
            let mut e = ApiError::invalid_key();
            e.message = message.to_owned();
            let r = error(&e, "req_0123");
            let Ok(collected) = futures_body(r.into_body().collect());
            let got: serde_json::Value = serde_json::from_slice(&collected).unwrap_or_default();
            assert_eq!(got["error"]["message"], message);
            assert_eq!(got["error"]["code"], e.code);
            assert_eq!(got["error"]["requestId"], "req_0123");
            let expected = serde_json::json!({
                "error": {"code": e.code, "message": message, "requestId": "req_0123"}
            });
            assert_eq!(
                String::from_utf8_lossy(&collected),
                serde_json::to_string(&expected).unwrap_or_default()
            );
        }
    }

    /// The bytes of a body that is ready at once.
    fn futures_body<F>(f: F) -> Result<Bytes, std::convert::Infallible>
    where
        F: std::future::Future<
                Output = Result<http_body_util::Collected<Bytes>, std::convert::Infallible>,
            >,
    {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r.map(|c| c.to_bytes()),
            std::task::Poll::Pending => panic!("a full body is ready at once"),
        }
    }

    #[test]
    fn issue_21_finding_1_a_long_quoted_input_is_not_echoed() {
        let long = "A".repeat(100_000);
        let text = format!("unknown field `{long}`, expected one of `name`, `scope`");
        let short = shorten_quotes(&text);
        assert!(short.len() < 200, "{short}");
        assert!(short.contains("(100000 characters)"));
        assert!(short.ends_with("expected one of `name`, `scope`"));
        assert_eq!(shorten_quotes("no quotes"), "no quotes");
        assert_eq!(shorten_quotes("odd `quote"), "odd `quote`");
    }
}

/// Whether the body is declared JSON (`application/json` or a `+json` type).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
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
    for (k, v) in query_pairs(query)? {
        match k.as_str() {
            "limit" => {
                let n: u32 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=align_keys::store::MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be between 1 and 200"))?;
                page.limit = n;
            }
            // An empty cursor (`cursor=`) is the first page.
            "cursor" => page.cursor = Some(v).filter(|c| !c.is_empty()),
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

/// A list position as an opaque cursor (`c` + hex, the form every list uses).
pub(crate) fn encode_cursor(position: u64) -> String {
    format!("c{position:x}")
}

/// Reads [`encode_cursor`]'s output (`c` + 1 to 15 hex digits); anything else is
/// `400 invalid_request`.
pub(crate) fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor_position(cursor).ok_or_else(|| ApiError::invalid_request("cursor is not valid"))
}

/// The position a cursor of the server's names (the `nextCursor` of events, webhook
/// deliveries and attempts: `c` and 1 to 15 hex digits); `None` for anything else.
pub fn cursor_position(cursor: &str) -> Option<u64> {
    cursor
        .strip_prefix('c')
        .filter(|h| (1..=15).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
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

/// A whole-number body field that also accepts an integral JSON float (`89.0`), as JSON
/// Schema's `integer` does; negative, fractional and out-of-range values are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Whole<T>(pub(crate) T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: TryFrom<u64>> Visitor<'_> for V<T> {
            type Value = Whole<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole<T>, E> {
                T::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom("number out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole<T>, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("must not be negative"))?;
                self.visit_u64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole<T>, E> {
                // 2^64 is exactly representable; anything below it with no fraction fits.
                if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    self.visit_u64(v as u64)
                } else {
                    Err(E::custom("must be a whole number"))
                }
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// For optional body fields where `null` means nothing: absent is fine, `null` is refused
/// (`#[serde(default, deserialize_with = "h::non_null")]`).
pub(crate) fn non_null<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d)?
        .map(Some)
        .ok_or_else(|| de::Error::custom("must not be null"))
}
