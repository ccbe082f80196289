//! Hashing presented tokens for storage and lookup. Only hashes are stored, never tokens.

use std::fmt;

use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// A 32-byte token hash: what the store keeps and looks keys up by.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl PartialEq for KeyHash {
    /// Constant-time comparison: the words are folded without early exit and only the final
    /// word goes through `subtle`.
    fn eq(&self, other: &Self) -> bool {
        let mut diff = 0u64;
        for (a, b) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            let mut wa = [0u8; 8];
            let mut wb = [0u8; 8];
            wa.copy_from_slice(a);
            wb.copy_from_slice(b);
            diff |= u64::from_ne_bytes(wa) ^ u64::from_ne_bytes(wb);
        }
        diff.ct_eq(&0).into()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The bytes are already a uniform hash; the first eight are plenty for a table.
        state.write_u64(u64::from_le_bytes([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], self.0[6], self.0[7],
        ]));
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "KeyHash({}…)", &hex[..16])
    }
}

/// Turns a token into the hash under which it is stored.
///
/// Implement it to bring your own scheme; [`Sha256Hasher`] is the default and
/// [`HmacSha256Hasher`] adds a pepper kept outside the database.
pub trait KeyHasher: Send + Sync + 'static {
    /// Hashes the whole token.
    fn hash(&self, token: &str) -> KeyHash;
}

/// SHA-256 of the whole token (DESIGN §3 default).
///
/// ```
/// use align_keys::{KeyHasher, Sha256Hasher};
/// // The first valid vector of `test-vectors/token-format.json` (a fixture, not a key).
/// let fixture = concat!("ako_9311c954_", "00000000000000000000000000000000000000000000", "Rws4U");
/// let h = Sha256Hasher.hash(fixture);
/// assert!(h.to_hex().starts_with("ef1eb603"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Hasher;

impl KeyHasher for Sha256Hasher {
    fn hash(&self, token: &str) -> KeyHash {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyHash(out)
    }
}

/// HMAC-SHA256 of the token under a secret pepper: a stolen database alone cannot confirm a
/// guessed token. Keep the pepper outside the database; changing it invalidates every key.
pub struct HmacSha256Hasher {
    key: hmac::Key,
}

impl HmacSha256Hasher {
    /// Builds a hasher from `pepper` (use at least 32 random bytes).
    pub fn new(pepper: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper),
        }
    }
}

impl fmt::Debug for HmacSha256Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSha256Hasher([redacted])")
    }
}

impl KeyHasher for HmacSha256Hasher {
    fn hash(&self, token: &str) -> KeyHash {
        let tag = hmac::sign(&self.key, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        KeyHash(out)
    }
}
