//! Reading an API key from HTTP request headers (feature `http`).
//!
//! Keys arrive as `Authorization: Bearer <key>` (recommended) or `X-API-Key: <key>`. Both
//! present with different values, or either header more than once, is ambiguous; a
//! non-Bearer `Authorization` is not a key.

use http::HeaderMap;
use http::header::AUTHORIZATION;

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
    // Which of two copies a proxy or framework keeps differs; refuse rather than guess.
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
