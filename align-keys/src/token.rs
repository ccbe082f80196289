//! The API key token format (DESIGN §3): `{tag}_{id8}_{secret}{check}`.
//!
//! - `tag`: `ako` (live) or `akt` (sandbox);
//! - `id8`: 8 random lowercase hex characters; `{tag}_{id8}` is the 12-character **prefix**;
//! - `secret`: 43 base62 characters (256 bits), sampled without bias;
//! - `check`: CRC32 (IEEE) of everything before it, base62, 6 characters, zero-padded.
//!
//! [`parse`] rejects any malformed token before a store is consulted.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
pub use align_core::Environment;
use align_core::Secret;

/// The base62 alphabet, in the order the checksum uses: digits, upper case, lower case.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the key prefix `{tag}_{id8}`.
pub const PREFIX_LEN: usize = align_core::TOKEN_PREFIX_LEN;
/// Number of base62 characters in the secret part.
pub const SECRET_LEN: usize = 43;
/// Number of base62 characters in the checksum.
pub const CHECK_LEN: usize = 6;
/// Total length of a token.
pub const TOKEN_LEN: usize = PREFIX_LEN + 1 + SECRET_LEN + CHECK_LEN;

const ID_LEN: usize = 8;
/// Bytes after the tag's `_`: `{id8}_{secret}{check}`.
pub(crate) const BODY_AFTER_TAG: usize = ID_LEN + 1 + SECRET_LEN + CHECK_LEN;
const _: () = assert!(TOKEN_LEN == 4 + BODY_AFTER_TAG && PREFIX_LEN == 4 + ID_LEN);

/// Why a string is not a well-formed token. Says what is wrong, never what the input was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDefect {
    /// It does not start with `ako_` or `akt_`.
    UnknownTag,
    /// It is not exactly 62 characters long.
    WrongLength,
    /// The 8-character id is not lowercase hex, or a separator is missing.
    BadId,
    /// The secret or checksum holds a character outside base62.
    BadCharacter,
    /// The checksum does not match: the key was mistyped or altered.
    ChecksumMismatch,
    /// The tag of a key-space token is not 2 to 8 lowercase ASCII letters followed by `_`,
    /// or is `ako`/`akt`, which belong to Align's own keys
    /// ([`keyspace_token`](crate::keyspace_token)).
    BadKeyspaceTag,
}

impl fmt::Display for TokenDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownTag => "it does not start with ako_ or akt_",
            Self::WrongLength => "it does not have the length of an API key",
            Self::BadId => "the key id is not 8 lowercase hex characters",
            Self::BadCharacter => "it contains a character outside base62",
            Self::ChecksumMismatch => "its checksum does not match (mistyped or altered)",
            Self::BadKeyspaceTag => {
                "it does not start with a key space's prefix (2 to 8 lowercase letters, \
                 not ako or akt) and _"
            }
        })
    }
}

/// A token that passed [`parse`]: borrowed, so parsing allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    token: &'a str,
    environment: Environment,
}

impl<'a> ParsedToken<'a> {
    /// The environment named by the tag.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The 12-character public prefix, e.g. `ako_9311c954`.
    pub fn prefix(&self) -> &'a str {
        &self.token[..PREFIX_LEN]
    }

    /// The whole token, for hashing. Treat it as secret.
    pub fn as_secret_str(&self) -> &'a str {
        self.token
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedToken({}…)", self.prefix())
    }
}

/// Checks the format and checksum of `token` without any lookup.
///
/// ```
/// use align_keys::token::{parse, Environment};
/// // Test vectors from `test-vectors/token-format.json` (fixtures, not keys).
/// let fixture = concat!("ako_9311c954_", "00000000000000000000000000000000000000000000", "Rws4U");
/// let t = parse(fixture).unwrap();
/// assert_eq!(t.environment(), Environment::Live);
/// assert_eq!(t.prefix(), "ako_9311c954");
/// let altered = concat!("ako_9311c954_", "00000000000000000000000000000000000000000001", "Rws4U");
/// assert!(parse(altered).is_err());
/// ```
pub fn parse(token: &str) -> Result<ParsedToken<'_>> {
    let bytes = token.as_bytes();
    let environment = bytes
        .get(..3)
        .and_then(Environment::from_tag)
        .filter(|_| bytes.get(3) == Some(&b'_'))
        .ok_or(Error::MalformedToken(TokenDefect::UnknownTag))?;
    check_body(bytes, 3).map_err(Error::MalformedToken)?;
    Ok(ParsedToken { token, environment })
}

/// Checks everything after a `tag_len`-byte tag and its `_`: the length, the 8-hex id and its
/// separator, the base62 secret and checksum, and (in constant time) the checksum itself.
/// Shared by Align's tokens and key-space tokens, which differ only in their tags.
pub(crate) fn check_body(bytes: &[u8], tag_len: usize) -> Result<(), TokenDefect> {
    if bytes.len() != tag_len + 1 + BODY_AFTER_TAG {
        return Err(TokenDefect::WrongLength);
    }
    let id_start = tag_len + 1;
    let id_end = id_start + ID_LEN;
    if all_in_class(&bytes[id_start..id_end], HEX_LOWER) == 0 || bytes[id_end] != b'_' {
        return Err(TokenDefect::BadId);
    }
    if all_in_class(&bytes[id_end + 1..], BASE62_CLASS) == 0 {
        return Err(TokenDefect::BadCharacter);
    }
    let body_len = bytes.len() - CHECK_LEN;
    let expected = checksum(&bytes[..body_len]);
    if !bool::from(expected.ct_eq(&bytes[body_len..])) {
        return Err(TokenDefect::ChecksumMismatch);
    }
    Ok(())
}

const BASE62_CLASS: u8 = 1;
const HEX_LOWER: u8 = 2;

/// Character classes of every byte value, so validation is a branch-free fold.
const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 62 {
        t[BASE62[i] as usize] |= BASE62_CLASS;
        i += 1;
    }
    let mut i = 0;
    while i < 16 {
        t[HEX[i] as usize] |= HEX_LOWER;
        i += 1;
    }
    t
};

/// Non-zero when every byte of `bytes` is in `class`.
fn all_in_class(bytes: &[u8], class: u8) -> u8 {
    bytes
        .iter()
        .fold(class, |acc, b| acc & CLASSES[*b as usize])
}

/// The 6-character base62 CRC32 checksum of `body` (everything before the checksum).
pub fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A freshly minted token: the secret (shown once) and its public prefix.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The whole token. Show it to its owner once, then drop it.
    pub token: Secret,
    /// The 12-character prefix that identifies the key from now on.
    pub prefix: String,
    /// The environment the token belongs to.
    pub environment: Environment,
}

/// Mints a new token for `environment` from the operating system's CSPRNG.
///
/// ```
/// use align_keys::token::{generate, parse, Environment};
/// let minted = generate(Environment::Sandbox).unwrap();
/// let parsed = parse(minted.token.expose()).unwrap();
/// assert_eq!(parsed.prefix(), minted.prefix);
/// assert!(minted.prefix.starts_with("akt_"));
/// ```
pub fn generate(environment: Environment) -> Result<MintedToken> {
    generate_with(&SystemRandom::new(), environment)
}

/// Mints a token from the given random source (tests may pass a fixed one).
pub fn generate_with(rng: &dyn SecureRandom, environment: Environment) -> Result<MintedToken> {
    let (token, prefix) = mint(rng, environment.tag())?;
    Ok(MintedToken {
        token,
        prefix,
        environment,
    })
}

/// Mints `{tag}_{id8}_{secret}{check}` for any tag: the token and its prefix `{tag}_{id8}`.
pub(crate) fn mint(rng: &dyn SecureRandom, tag: &str) -> Result<(Secret, String)> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(tag.len() + 1 + BODY_AFTER_TAG));
    out.extend_from_slice(tag.as_bytes());
    out.push(b'_');
    let mut id = [0u8; ID_LEN / 2];
    rng.fill(&mut id).map_err(|_| Error::Random)?;
    for b in id {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0x0f) as usize]);
    }
    let prefix_len = out.len();
    out.push(b'_');
    push_base62_secret(rng, &mut out)?;
    let check = checksum(&out);
    out.extend_from_slice(&check);
    // Every byte pushed above is ASCII (the tag included, for both callers), so this cannot
    // fail; map the impossible case anyway.
    let token = String::from_utf8(std::mem::take(&mut *out)).map_err(|_| Error::Random)?;
    let prefix = token[..prefix_len].to_owned();
    Ok((Secret::new(token), prefix))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `SECRET_LEN` uniform base62 characters. Each random byte's top six bits give a value
/// in 0..64; values 62 and 63 are rejected, so every character is equally likely.
fn push_base62_secret(rng: &dyn SecureRandom, out: &mut Vec<u8>) -> Result<()> {
    let mut pool = zeroize::Zeroizing::new([0u8; 64]);
    let mut remaining = SECRET_LEN;
    while remaining > 0 {
        rng.fill(&mut pool[..]).map_err(|_| Error::Random)?;
        for &b in pool.iter() {
            let v = (b >> 2) as usize;
            if v < 62 {
                out.push(BASE62[v]);
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
        }
    }
    Ok(())
}
