//! Key-space tokens (DESIGN §12): the keys an organisation issues to its own customers.
//!
//! A key space has its own token tag, 2 to 8 lowercase ASCII letters other than `ako` and
//! `akt` ([`KeyspaceTag`]); its tokens follow the body and checksum rules of Align's own
//! ([`token`]):
//!
//! `{tag}_{id8}_{secret}{check}`: `id8` 8 lowercase hex, `secret` 43 base62, `check` the
//! 6-character base62 CRC32 of everything before it. `{tag}_{id8}` is the **prefix**, the only
//! part shown again after minting.
//!
//! The two formats never overlap: [`parse_keyspace_token`] refuses the `ako`/`akt` tags and
//! [`token::parse`] accepts nothing else, so a string is at most one kind
//! of key. Both reject a malformed or mistyped token before any store is consulted.
//!
//! ```
//! use align_keys::keyspace_token::{generate_keyspace_token, parse_keyspace_token, KeyspaceTag};
//!
//! let tag = KeyspaceTag::new("acme")?;
//! let minted = generate_keyspace_token(&tag)?;
//! assert!(minted.prefix.starts_with("acme_"));
//! assert_eq!(format!("{:?}", minted.token), "Secret([redacted])");
//!
//! let parsed = parse_keyspace_token(minted.token.expose())?;
//! assert_eq!(parsed.tag(), "acme");
//! assert_eq!(parsed.prefix(), minted.prefix);
//!
//! // Align's own keys are not key-space keys, and key-space keys do not open Align.
//! let align_key = align_keys::token::generate(align_keys::Environment::Live)?;
//! assert!(parse_keyspace_token(align_key.token.expose()).is_err());
//! assert!(align_keys::token::parse(minted.token.expose()).is_err());
//! # Ok::<(), align_keys::Error>(())
//! ```

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::token::{self, TokenDefect};
use align_core::Secret;

/// The shortest key-space tag.
pub const MIN_TAG_LEN: usize = 2;
/// The longest key-space tag.
pub const MAX_TAG_LEN: usize = 8;
/// Tags that belong to Align's own keys and no key space may take.
pub const RESERVED_TAGS: [&str; 2] = ["ako", "akt"];

/// The length of a key-space token whose tag is `tag_len` bytes long.
pub const fn token_len(tag_len: usize) -> usize {
    tag_len + 1 + token::BODY_AFTER_TAG
}

/// The length of a key-space token's prefix (`{tag}_{id8}`) for a `tag_len`-byte tag.
pub const fn prefix_len(tag_len: usize) -> usize {
    tag_len + 1 + 8
}

/// Which rule `tag` breaks, if any.
fn tag_rule(tag: &[u8]) -> Result<(), &'static str> {
    if tag.len() < MIN_TAG_LEN || tag.len() > MAX_TAG_LEN {
        return Err("a key space's token prefix must be 2 to 8 characters long");
    }
    if !tag.iter().all(u8::is_ascii_lowercase) {
        return Err("a key space's token prefix holds only lowercase ASCII letters (a-z)");
    }
    if RESERVED_TAGS.iter().any(|r| r.as_bytes() == tag) {
        return Err("ako and akt are the prefixes of Align's own keys");
    }
    Ok(())
}

/// A key space's token tag: 2 to 8 lowercase ASCII letters, not `ako` or `akt`.
///
/// ```
/// use align_keys::keyspace_token::KeyspaceTag;
/// assert_eq!(KeyspaceTag::new("acme").unwrap().as_str(), "acme");
/// for bad in ["a", "toolongtag", "Acme", "ac1", "ako", "akt", "ac_me"] {
///     assert!(KeyspaceTag::new(bad).is_err(), "{bad}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyspaceTag(String);

impl KeyspaceTag {
    /// Validates `tag`; the error ([`Error::InvalidInput`] on field `prefix`) names the rule it
    /// breaks.
    pub fn new(tag: &str) -> Result<Self> {
        tag_rule(tag.as_bytes()).map_err(|reason| Error::InvalidInput {
            field: "prefix",
            reason,
        })?;
        Ok(Self(tag.to_owned()))
    }

    /// The tag, e.g. `acme`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyspaceTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyspaceTag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for KeyspaceTag {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for KeyspaceTag {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        tag_rule(s.as_bytes()).map_err(|reason| Error::InvalidInput {
            field: "prefix",
            reason,
        })?;
        Ok(Self(s))
    }
}

impl From<KeyspaceTag> for String {
    fn from(t: KeyspaceTag) -> Self {
        t.0
    }
}

/// A freshly minted key-space token: the secret (shown once) and its public prefix.
#[derive(Debug, Clone)]
pub struct MintedKeyspaceToken {
    /// The whole token. Show it to its owner once, then drop it.
    pub token: Secret,
    /// The prefix `{tag}_{id8}` that identifies the key from now on.
    pub prefix: String,
    /// The key space's tag the token carries.
    pub tag: KeyspaceTag,
}

/// Mints a token of the key space tagged `tag` from the operating system's CSPRNG.
pub fn generate_keyspace_token(tag: &KeyspaceTag) -> Result<MintedKeyspaceToken> {
    generate_keyspace_token_with(&SystemRandom::new(), tag)
}

/// Mints a token of the key space tagged `tag` from the given random source (tests may pass a
/// fixed one).
pub fn generate_keyspace_token_with(
    rng: &dyn SecureRandom,
    tag: &KeyspaceTag,
) -> Result<MintedKeyspaceToken> {
    let (token, prefix) = token::mint(rng, tag.as_str())?;
    Ok(MintedKeyspaceToken {
        token,
        prefix,
        tag: tag.clone(),
    })
}

/// A key-space token that passed [`parse_keyspace_token`]: borrowed, so parsing allocates
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKeyspaceToken<'a> {
    token: &'a str,
    tag_len: usize,
}

impl<'a> ParsedKeyspaceToken<'a> {
    /// The key space's tag, e.g. `acme` (a valid [`KeyspaceTag`]).
    pub fn tag(&self) -> &'a str {
        &self.token[..self.tag_len]
    }

    /// The public prefix `{tag}_{id8}`, e.g. `acme_9311c954`.
    pub fn prefix(&self) -> &'a str {
        &self.token[..prefix_len(self.tag_len)]
    }

    /// The whole token, for hashing. Treat it as secret.
    pub fn as_secret_str(&self) -> &'a str {
        self.token
    }
}

impl fmt::Debug for ParsedKeyspaceToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedKeyspaceToken({}…)", self.prefix())
    }
}

/// Checks the format and checksum of a key-space token without any lookup: the tag (2 to 8
/// lowercase letters, not `ako`/`akt`, then `_`), the length that tag calls for, the id, the
/// characters and, in constant time, the checksum. Any defect is
/// [`Error::MalformedToken`].
///
/// ```
/// use align_keys::keyspace_token::parse_keyspace_token;
/// use align_keys::token::checksum;
/// // A fixture built at run time (all-zero id and secret), not a key.
/// let body = format!("acme_00000000_{}", "0".repeat(43));
/// let check = checksum(body.as_bytes());
/// let fixture = format!("{body}{}", std::str::from_utf8(&check).unwrap());
/// let parsed = parse_keyspace_token(&fixture).unwrap();
/// assert_eq!((parsed.tag(), parsed.prefix()), ("acme", "acme_00000000"));
/// // One character changed: the checksum no longer matches.
/// assert!(parse_keyspace_token(&fixture.replacen("acme_0", "acme_1", 1)).is_err());
/// ```
pub fn parse_keyspace_token(token: &str) -> Result<ParsedKeyspaceToken<'_>> {
    let bytes = token.as_bytes();
    let tag_len = bytes
        .iter()
        .take(MAX_TAG_LEN + 1)
        .position(|b| *b == b'_')
        .filter(|n| tag_rule(&bytes[..*n]).is_ok())
        .ok_or(Error::MalformedToken(TokenDefect::BadKeyspaceTag))?;
    token::check_body(bytes, tag_len).map_err(Error::MalformedToken)?;
    Ok(ParsedKeyspaceToken { token, tag_len })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure should panic")]
mod tests {
    use super::*;

    #[test]
    fn tag_errors_name_the_rule_they_break() {
        let reason = |t: &str| match KeyspaceTag::new(t) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "prefix");
                reason
            }
            other => panic!("{t}: {other:?}"),
        };
        assert!(reason("a").contains("2 to 8"));
        assert!(reason("abcdefghi").contains("2 to 8"));
        assert!(reason("").contains("2 to 8"));
        assert!(reason("Acme").contains("lowercase"));
        assert!(reason("ac9").contains("lowercase"));
        assert!(reason("acmé").contains("lowercase"));
        assert!(reason("ako").contains("Align"));
        assert!(reason("akt").contains("Align"));
        assert_eq!(KeyspaceTag::new("ab").unwrap().as_str(), "ab");
        assert_eq!(KeyspaceTag::new("abcdefgh").unwrap().as_str(), "abcdefgh");
    }

    #[test]
    fn tags_deserialize_only_when_valid() {
        let t: KeyspaceTag = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<KeyspaceTag>("\"ako\"").is_err());
    }

    #[test]
    fn each_defect_is_named() {
        let tag = KeyspaceTag::new("acme").unwrap();
        let t = generate_keyspace_token(&tag).unwrap();
        let t = t.token.expose();
        let defect = |s: &str| match parse_keyspace_token(s) {
            Err(Error::MalformedToken(d)) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(defect(&format!("{t}0")), TokenDefect::WrongLength);
        assert_eq!(defect(&t[..t.len() - 1]), TokenDefect::WrongLength);
        assert_eq!(
            defect(&format!("Acme{}", &t[4..])),
            TokenDefect::BadKeyspaceTag
        );
        assert_eq!(
            defect(&format!("ako{}", &t[4..])),
            TokenDefect::BadKeyspaceTag
        );
        assert_eq!(defect("abcdefghi_"), TokenDefect::BadKeyspaceTag);
        assert_eq!(defect(""), TokenDefect::BadKeyspaceTag);
        assert_eq!(
            defect(&format!("acme_ABCDEF12{}", &t[13..])),
            TokenDefect::BadId
        );
        let mut bad_char = t.as_bytes().to_vec();
        bad_char[20] = b'-';
        assert_eq!(
            defect(std::str::from_utf8(&bad_char).unwrap()),
            TokenDefect::BadCharacter
        );
        let mut altered = t.as_bytes().to_vec();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            defect(std::str::from_utf8(&altered).unwrap()),
            TokenDefect::ChecksumMismatch
        );
    }

    #[test]
    fn debug_of_a_parsed_token_shows_only_its_prefix() {
        let tag = KeyspaceTag::new("shop").unwrap();
        let t = generate_keyspace_token(&tag).unwrap();
        let parsed = parse_keyspace_token(t.token.expose()).unwrap();
        let shown = format!("{parsed:?} {t:?}");
        assert!(shown.contains(&t.prefix));
        assert!(!shown.contains(&t.token.expose()[prefix_len(4)..]));
    }
}
