//! Finding and masking secrets in text and JSON before anything is logged or stored.
//!
//! The [`Redactor`] replaces
//! - API keys (`ako_…`/`akt_…`, also malformed or truncated ones) by their 12-character prefix
//!   and `…`;
//! - keys of a key space (DESIGN §12: `{tag}_{id8}_{49 characters}`, a tag of 2–8 lowercase
//!   letters) by their `{tag}_{id8}` prefix and `…`, recognised by their whole shape (a string of
//!   that shape that is no key is masked too, and so is one glued to the word before it:
//!   masking too much is the safe side);
//! - webhook secrets (`whsec_…`, `whsk_…`) by their tag and `…`;
//! - the credential of `Authorization` / `X-API-Key` (and similar) headers, in `Name: value`
//!   text, `name=value` pairs and JSON fields, by `…` (keeping the scheme, e.g. `Bearer …`).
//!
//! Matches are found independently at every position and merged, so surrounding text can never
//! hide part of a token from the scan.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

/// How many characters of an API key identify it and may be shown: the tag, `_` and the
/// 8-character key id (`ako_9311c954`).
pub const TOKEN_PREFIX_LEN: usize = 12;
const PREFIX_LEN: usize = TOKEN_PREFIX_LEN;

/// The text that replaces every secret part.
pub const MASK: &str = "…";

const WEBHOOK_TAGS: [&[u8]; 2] = [b"whsec_", b"whsk_"];
/// Header and field names whose values are credentials (compared case-insensitively, with `_`
/// read as `-`).
const SENSITIVE_NAMES: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "apikey",
    "password",
    "cookie",
    "set-cookie",
];
/// Names searched for in free text (the `Name: value` / `name=value` forms).
const TEXT_HEADER_NAMES: [&[u8]; 3] = [b"authorization", b"x-api-key", b"x_api_key"];
const SCHEMES: [&[u8]; 5] = [b"bearer", b"basic", b"token", b"digest", b"apikey"];

/// Masks API keys, webhook secrets and credential headers in text and JSON.
///
/// ```
/// use align_core::Redactor;
/// let r = Redactor::new();
/// // A test-vector token (a fixture, not a key).
/// let fixture = concat!("ako_9311c954_", "00000000000000000000000000000000000000000000", "Rws4U");
/// let line = format!("GET /me Authorization: Bearer {fixture}");
/// assert_eq!(r.redact_text(&line), "GET /me Authorization: Bearer ako_9311c954…");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Redactor {
    _private: (),
}

impl Redactor {
    /// A redactor with the built-in rules.
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// `text` with every secret masked; borrowed unchanged when nothing was found.
    pub fn redact_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let ranges = find_secret_ranges(text.as_bytes());
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(apply(text, &ranges))
    }

    /// The value of header `name` as it may be logged: credentials masked (keeping the
    /// scheme and a key's prefix), anything else scanned like free text.
    pub fn redact_header_value<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if is_sensitive_name(name) {
            Cow::Owned(mask_credential(value))
        } else {
            self.redact_text(value)
        }
    }

    /// Masks secrets everywhere in `value`: every string (and object key) is scanned, and the
    /// values of credential-named fields (`authorization`, `x-api-key`, `password`, …) are
    /// masked whatever they look like.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.redact_text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let needs_key_rewrite = map
                    .keys()
                    .any(|k| !find_secret_ranges(k.as_bytes()).is_empty());
                if needs_key_rewrite {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.redact_text(&k).into_owned(), v);
                    }
                }
                for (k, v) in map.iter_mut() {
                    if is_sensitive_name(k) {
                        mask_sensitive_value(v);
                    } else {
                        self.redact_json(v);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// Whether a header or field `name` carries a credential.
pub fn is_sensitive_name(name: &str) -> bool {
    SENSITIVE_NAMES.iter().any(|s| {
        s.len() == name.len()
            && s.bytes().zip(name.bytes()).all(|(a, b)| {
                let b = if b == b'_' {
                    b'-'
                } else {
                    b.to_ascii_lowercase()
                };
                a == b
            })
    })
}

fn mask_sensitive_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = mask_credential(s),
        Value::Array(items) => items.iter_mut().for_each(mask_sensitive_value),
        Value::Null => {}
        other => *other = Value::String(MASK.to_owned()),
    }
}

/// Masks a whole credential value: keeps a known scheme word and a key's prefix.
fn mask_credential(value: &str) -> String {
    let trimmed = value.trim_start();
    let (scheme, rest) = split_scheme(trimmed.as_bytes());
    let mut out = String::with_capacity(scheme + PREFIX_LEN + MASK.len() + 1);
    out.push_str(&trimmed[..scheme]);
    let rest_str = &trimmed[scheme..];
    if rest.is_empty() {
        out.push_str(MASK);
        return out;
    }
    if token_match_at(rest, 0).is_some() {
        out.push_str(&rest_str[..PREFIX_LEN]);
    }
    out.push_str(MASK);
    out
}

/// Length of a leading `Scheme ` (scheme word plus spaces), and the bytes after it.
fn split_scheme(b: &[u8]) -> (usize, &[u8]) {
    let word = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let spaces = b[word..].iter().take_while(|c| **c == b' ').count();
    if word > 0 && spaces > 0 && SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(&b[..word])) {
        (word + spaces, &b[word + spaces..])
    } else {
        (0, b)
    }
}

/// If a token-shaped string starts at `i`, the range of its secret part (after the prefix).
fn token_match_at(b: &[u8], i: usize) -> Option<Range<usize>> {
    let head = b.get(i..i + PREFIX_LEN + 1)?;
    let tag_ok = head[..3].eq_ignore_ascii_case(b"ako") || head[..3].eq_ignore_ascii_case(b"akt");
    if !tag_ok || head[3] != b'_' || head[PREFIX_LEN] != b'_' {
        return None;
    }
    if !head[4..PREFIX_LEN].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let start = i + PREFIX_LEN;
    let run = alnum_run(b, start + 1);
    (run > 0).then(|| start..start + 1 + run)
}

/// Length of a key space's token body after its id: 43 secret and 6 checksum characters.
const KEYSPACE_BODY_LEN: usize = 49;

/// If `b[i]` is the `_` after a key-space tag (2–8 lowercase letters; also when more letters
/// come before it: text glued to a token must not hide it) and a key-space token follows
/// (`{id8}_` and exactly 49 letters and digits), the range of its secret part.
fn keyspace_token_at(b: &[u8], i: usize) -> Option<Range<usize>> {
    let tag = b[..i]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_lowercase())
        .count();
    if tag < 2 {
        return None;
    }
    let id = b.get(i + 1..i + 9)?;
    if !id
        .iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        || b.get(i + 9) != Some(&b'_')
    {
        return None;
    }
    let start = i + 10;
    (alnum_run(b, start) == KEYSPACE_BODY_LEN).then(|| start - 1..start + KEYSPACE_BODY_LEN)
}

fn alnum_run(b: &[u8], from: usize) -> usize {
    b.get(from..).map_or(0, |rest| {
        rest.iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count()
    })
}

fn webhook_secret_at(b: &[u8], i: usize) -> Option<Range<usize>> {
    let tag = WEBHOOK_TAGS.iter().find(|t| b[i..].starts_with(t))?;
    let start = i + tag.len();
    let run = b[start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_'))
        .count();
    (run > 0).then(|| start..start + run)
}

/// `Authorization: Bearer x`, `x-api-key=x`, `"X-API-Key": "x"`: the range of the credential.
fn header_credential_at(b: &[u8], i: usize) -> Option<Range<usize>> {
    let name = TEXT_HEADER_NAMES
        .iter()
        .find(|n| b.len() >= i + n.len() && b[i..i + n.len()].eq_ignore_ascii_case(n))?;
    let mut j = i + name.len();
    j += b[j..]
        .iter()
        .take_while(|c| matches!(c, b'"' | b'\''))
        .count();
    j += b[j..]
        .iter()
        .take_while(|c| **c == b' ' || **c == b'\t')
        .count();
    if !matches!(b.get(j), Some(b':' | b'=')) {
        return None;
    }
    j += 1;
    j += b[j..]
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'"' | b'\''))
        .count();
    let (scheme, _) = split_scheme(&b[j..]);
    j += scheme;
    let len = b[j..]
        .iter()
        .take_while(|c| {
            !c.is_ascii_whitespace()
                && !matches!(
                    c,
                    b'"' | b'\'' | b',' | b';' | b'&' | b'}' | b')' | b']' | b'<' | b'>'
                )
        })
        .count();
    if len == 0 {
        return None;
    }
    // A key keeps its prefix visible; the token rule masks the rest.
    let start = if token_match_at(b, j).is_some() {
        j + PREFIX_LEN
    } else {
        j
    };
    Some(start..j + len)
}

/// All secret ranges in `b`, sorted and merged.
fn find_secret_ranges(b: &[u8]) -> Vec<Range<usize>> {
    if !may_hold_secret(b) {
        return Vec::new();
    }
    scan(b)
}

/// Whether `b` could hold a secret at all: every rule needs a `_` (a key's `ako_` or `akt_`, a
/// webhook secret's tag, `x_api_key`) or a `:` or `=` (what follows a credential header's
/// name). Most logged text has none (ids, paths, methods, IPv4 addresses), and this check
/// (`memchr`'s vectorised search) is a fraction of the scan's cost: every request's log entry
/// runs it on each field.
fn may_hold_secret(b: &[u8]) -> bool {
    memchr::memchr3(b'_', b':', b'=', b).is_some()
}

/// The secret ranges of `b`, by every rule, sorted and merged.
fn scan(b: &[u8]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (i, &c) in b.iter().enumerate() {
        let found = match c.to_ascii_lowercase() {
            b'a' => token_match_at(b, i).or_else(|| header_credential_at(b, i)),
            b'_' => keyspace_token_at(b, i),
            b'w' => webhook_secret_at(b, i),
            b'x' => header_credential_at(b, i),
            _ => None,
        };
        if let Some(r) = found {
            ranges.push(r);
        }
    }
    if ranges.len() > 1 {
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        ranges = merged;
    }
    ranges
}

fn apply(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{may_hold_secret, scan};

    /// Text made of the pieces the rules look for, and of what surrounds them.
    fn text() -> impl Strategy<Value = String> {
        const PIECES: [&str; 10] = [
            "ako_",
            "akt_",
            "AKO_",
            "whsec_",
            "whsk_",
            "authorization",
            "Authorization",
            "x-api-key",
            "X_API_KEY",
            "Bearer ",
        ];
        let piece = prop_oneof![
            proptest::sample::select(&PIECES[..]).prop_map(str::to_owned),
            "[:=_ \"'\t-]",
            "[a-zA-Z0-9]{1,12}",
            "[ -~]{0,6}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        /// The quick check never hides a secret the scan would find.
        #[test]
        fn text_without_separators_holds_no_secret(t in text()) {
            let b = t.as_bytes();
            prop_assert!(may_hold_secret(b) || scan(b).is_empty(), "{:?}", t);
            // The same text without those characters: the scan agrees there is nothing.
            let stripped: String = t.chars().filter(|c| !matches!(c, '_' | ':' | '=')).collect();
            prop_assert!(!may_hold_secret(stripped.as_bytes()));
            prop_assert!(scan(stripped.as_bytes()).is_empty(), "{:?}", stripped);
        }
    }

    /// A key-space token like the ones `align_keys::generate_keyspace_token` mints (built
    /// here from its shape: a fixture, not a key).
    fn keyspace_token() -> impl Strategy<Value = (String, String)> {
        ("[a-z]{2,8}", "[0-9a-f]{8}", "[0-9A-Za-z]{49}")
            .prop_map(|(tag, id, body)| (format!("{tag}_{id}"), format!("{tag}_{id}_{body}")))
    }

    proptest! {
        /// A key-space token anywhere in text leaves only its prefix, whatever surrounds it.
        #[test]
        fn keyspace_tokens_are_masked_to_their_prefix(
            (prefix, token) in keyspace_token(),
            before in "[ -~]{0,12}",
            after in "[ :,;\"'}\n]{0,3}",
        ) {
            let before: String = before.chars().filter(|c| !c.is_ascii_alphanumeric()).collect();
            let line = format!("{before}{token}{after}");
            let masked = crate::Redactor::new().redact_text(&line);
            prop_assert!(!masked.contains(&token[prefix.len() + 1..]), "{masked}");
            prop_assert!(masked.contains(&format!("{prefix}…")), "{masked}");
        }
    }

    #[test]
    fn only_the_whole_keyspace_shape_is_masked() {
        let r = crate::Redactor::new();
        let body = "A".repeat(49);
        // Not that shape: a one-letter tag, a short or long body, an id that is not hex.
        for t in [
            format!("x_0123abcd_{body}"),
            format!("acme_0123abcd_{}", &body[..48]),
            format!("acme_0123abcd_{body}A"),
            format!("acme_0123abcz_{body}"),
            "user_id_session_name".to_owned(),
        ] {
            assert_eq!(r.redact_text(&t), t, "{t}");
        }
        assert_eq!(
            r.redact_text(&format!("key acme_0123abcd_{body}.")),
            "key acme_0123abcd…."
        );
    }

    #[test]
    fn ids_paths_and_methods_skip_the_scan() {
        for t in [
            "3f2a6c1e-9b7d-4c2a-8e1f-0a9b8c7d6e5f",
            "/api/v1/me",
            "GET",
            "127.0.0.1",
        ] {
            assert!(!may_hold_secret(t.as_bytes()), "{t}");
        }
        for t in [
            "ako_9311c954_x",
            "Authorization: Bearer x",
            "x-api-key=x",
            "::1",
        ] {
            assert!(may_hold_secret(t.as_bytes()), "{t}");
        }
    }
}
