//! Reading an API key from HTTP request headers (feature `http`).
//!
//! Keys arrive as `Authorization: Bearer <key>` (recommended) or `X-API-Key: <key>`. Both
//! present with different values, or either header more than once, is ambiguous; a
//! non-Bearer `Authorization` is not a key.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// `X-API-Key`.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The one value of header `name`; the header more than once is ambiguous.
fn only<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, CredentialProblem> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(CredentialProblem::Ambiguous);
    }
    Ok(first)
}

/// Why no key could be taken from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialProblem {
    /// Neither header carries a key (`401 missing_key`).
    Missing,
    /// A header is present but not a usable credential (`401 invalid_key`).
    Malformed,
    /// Both headers carry different keys, or a header comes more than once
    /// (`400 ambiguous_credentials`).
    Ambiguous,
}

/// The key presented in `headers`.
///
/// ```
/// use align_keys::http::{presented_key, CredentialProblem};
/// let mut h = http::HeaderMap::new();
/// assert_eq!(presented_key(&h), Err(CredentialProblem::Missing));
/// h.insert("authorization", "Bearer ako_x".parse().unwrap());
/// assert_eq!(presented_key(&h), Ok("ako_x"));
/// h.insert("x-api-key", "akt_y".parse().unwrap());
/// assert_eq!(presented_key(&h), Err(CredentialProblem::Ambiguous));
/// let mut twice = http::HeaderMap::new();
/// twice.append("authorization", "Bearer ako_x".parse().unwrap());
/// twice.append("authorization", "Bearer ako_z".parse().unwrap());
/// assert_eq!(presented_key(&twice), Err(CredentialProblem::Ambiguous));
/// let mut joined = http::HeaderMap::new();
/// joined.insert("authorization", "Bearer ako_x, Bearer ako_z".parse().unwrap());
/// assert_eq!(presented_key(&joined), Err(CredentialProblem::Ambiguous));
/// ```
pub fn presented_key(headers: &HeaderMap) -> Result<&str, CredentialProblem> {
    // Which of two copies a proxy or framework keeps differs; refuse rather than guess. One
    // lookup per header (a name given as a string would be parsed again on every lookup).
    let authorization = only(headers, &AUTHORIZATION)?;
    let x_api_key = only(headers, &X_API_KEY)?;
    let bearer = match authorization {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| CredentialProblem::Malformed)?.trim();
            let (scheme, rest) = v.split_once(' ').ok_or(CredentialProblem::Malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(CredentialProblem::Malformed);
            }
            Some(rest.trim())
        }
    };
    let api_key = match x_api_key {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| CredentialProblem::Malformed)?.trim()),
    };
    // A proxy may join repeated headers into one, comma-separated: two credentials still.
    // Tokens never hold a comma.
    if bearer.is_some_and(|k| k.contains(',')) || api_key.is_some_and(|k| k.contains(',')) {
        return Err(CredentialProblem::Ambiguous);
    }
    match (bearer, api_key) {
        (Some(a), Some(b)) if a != b => Err(CredentialProblem::Ambiguous),
        (Some(k), _) | (None, Some(k)) if !k.is_empty() => Ok(k),
        (None, None) => Err(CredentialProblem::Missing),
        _ => Err(CredentialProblem::Malformed),
    }
}

/// How a key-store or policy error is answered over HTTP (DESIGN §4): malformed tokens are
/// `401 invalid_key`; objects outside the caller's scope and missing ones are both `404` (never
/// leak existence); other denials `403`; a final key `409 key_not_active`; bad input `400`; a
/// busy or unreachable store `503`; a store that cannot be written (disk full, read-only) `503`
/// with `Retry-After: 5`; anything else `500`, logged.
impl From<crate::Error> for align_http::ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::{Denial, Error as K};
        match e {
            K::MalformedToken(_) => Self::invalid_key(),
            K::Forbidden(Denial::OutsideScope) | K::NotFound(_) => Self::not_found(),
            K::Forbidden(d) => Self::forbidden(d.to_string()),
            K::KeyNotActive => Self::key_not_active(),
            K::InvalidInput { field, reason } => Self::invalid_request(format!("{field} {reason}")),
            K::InvalidCursor => Self::invalid_request("cursor is not valid"),
            K::AlreadyExists(kind) => Self::invalid_request(format!("{kind} already exists")),
            other if other.is_transient() => {
                tracing::warn!(error = %other, "key store busy");
                Self::unavailable()
            }
            #[cfg(feature = "sqlite")]
            K::Sqlite(ref e) if align_core::sqlite::is_unwritable(e) => {
                tracing::error!(error = %e, "key store cannot be written");
                Self::storage_unwritable()
            }
            other => {
                tracing::error!(error = %other, "key store failure");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The implementation before the headers were looked up once each: the reference.
    fn reference(headers: &HeaderMap) -> Result<&str, CredentialProblem> {
        for name in [AUTHORIZATION.as_str(), "x-api-key"] {
            if headers.get_all(name).iter().nth(1).is_some() {
                return Err(CredentialProblem::Ambiguous);
            }
        }
        let bearer = match headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v.to_str().map_err(|_| CredentialProblem::Malformed)?.trim();
                let (scheme, rest) = v.split_once(' ').ok_or(CredentialProblem::Malformed)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(CredentialProblem::Malformed);
                }
                Some(rest.trim())
            }
        };
        let api_key = match headers.get("x-api-key") {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| CredentialProblem::Malformed)?.trim()),
        };
        if bearer.is_some_and(|k| k.contains(',')) || api_key.is_some_and(|k| k.contains(',')) {
            return Err(CredentialProblem::Ambiguous);
        }
        match (bearer, api_key) {
            (Some(a), Some(b)) if a != b => Err(CredentialProblem::Ambiguous),
            (Some(k), _) | (None, Some(k)) if !k.is_empty() => Ok(k),
            (None, None) => Err(CredentialProblem::Missing),
            _ => Err(CredentialProblem::Malformed),
        }
    }

    const AUTHORIZATIONS: [&[u8]; 8] = [
        b"Bearer ako_x",
        b"bearer ako_y",
        b"Basic dXNlcjpwdw==",
        b"Bearer",
        b"Bearer ",
        b"Bearer ako_x, Bearer ako_z",
        b"Bearer ak\xffo",
        b"  Bearer   ako_x  ",
    ];
    const API_KEYS: [&[u8]; 6] = [b"ako_x", b"ako_y", b"", b" ", b"a,b", b"ak\xffo"];

    proptest! {
        #[test]
        fn answers_as_the_reference_for_any_mix_of_the_two_headers(
            auth in proptest::collection::vec(0..AUTHORIZATIONS.len(), 0..3),
            keys in proptest::collection::vec(0..API_KEYS.len(), 0..3),
        ) {
            let mut headers = HeaderMap::new();
            for i in auth {
                headers.append(AUTHORIZATION, HeaderValue::from_bytes(AUTHORIZATIONS[i]).map_err(|e| TestCaseError::fail(e.to_string()))?);
            }
            for i in keys {
                headers.append(X_API_KEY, HeaderValue::from_bytes(API_KEYS[i]).map_err(|e| TestCaseError::fail(e.to_string()))?);
            }
            prop_assert_eq!(presented_key(&headers), reference(&headers));
        }
    }
}
