//! Refusing query parameters that look like credentials.
//!
//! Receivers authenticate deliveries by their signature. A URL is shown in dashboards, logs
//! and delivery records, so a secret in it leaks; we refuse such URLs at registration.

use url::Url;

use super::UrlDefect;

/// Name fragments that mark a credential, compared after lower-casing and removing
/// everything but letters and digits (`api_key`, `apiKey`, `API-KEY` → `apikey`).
const NAME_FRAGMENTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "session",
    "jwt",
    "bearer",
    "whsec",
];

/// Whole words (split on non-alphanumerics) that mark a credential.
const NAME_WORDS: &[&str] = &["key", "sig", "pwd", "pass", "auth", "hmac"];

/// Prefixes of Align's own secret formats, and widely used ones.
const VALUE_PREFIXES: &[&str] = &["ako_", "akt_", "whsec_", "whsk_", "eyj"];

pub(super) fn check(url: &Url) -> Result<(), UrlDefect> {
    for (name, value) in url.query_pairs() {
        if name_looks_secret(&name) || value_looks_secret(&value) {
            let shown: String = name.chars().take(40).collect();
            return Err(UrlDefect::SecretInQuery(shown));
        }
    }
    Ok(())
}

fn name_looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let compact: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    NAME_FRAGMENTS.iter().any(|f| compact.contains(f))
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .chain(split_camel(name).iter().map(String::as_str))
            .any(|w| NAME_WORDS.contains(&w))
}

fn split_camel(name: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    for c in name.chars() {
        if c.is_ascii_uppercase() && words.last().is_some_and(|w| !w.is_empty()) {
            words.push(String::new());
        }
        if let Some(w) = words.last_mut() {
            w.push(c.to_ascii_lowercase());
        }
    }
    words
}

/// A value looks secret if it has one of our secret prefixes, or is a long run of
/// token characters mixing letters and digits (a random token), unless it is a UUID.
fn value_looks_secret(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if VALUE_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return true;
    }
    if value.len() < 32 || is_uuid(value) {
        return false;
    }
    let tokenish = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_+/=.~".contains(c));
    let digits = value.chars().any(|c| c.is_ascii_digit());
    let letters = value.chars().filter(char::is_ascii_alphabetic).count();
    tokenish && digits && letters >= 8
}

fn is_uuid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
