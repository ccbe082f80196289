//! Endpoint secrets: symmetric `whsec_` secrets (scheme `v1`) and ed25519 `whsk_`/`whpk_`
//! key pairs (scheme `v1a`).
//!
//! None of these types print their material: `Debug` shows only the kind. The text form is
//! reached through `expose`, which returns an [`align_core::Secret`] so that it, too, stays
//! redacted wherever it travels.

use std::fmt;
use std::sync::Arc;

use align_core::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use text::{V1_SIGNATURE_LEN, dotted, v1_signature};

mod text;

/// Prefix of symmetric secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of ed25519 signing (private) keys.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of ed25519 verifying (public) keys.
pub const VERIFYING_KEY_PREFIX: &str = "whpk_";
/// Shortest secret accepted, in bytes (Standard Webhooks: 24).
pub const MIN_SECRET_BYTES: usize = 24;
/// Longest secret accepted, in bytes (Standard Webhooks: 64).
pub const MAX_SECRET_BYTES: usize = 64;
/// Length of secrets this crate generates, in bytes.
pub const DEFAULT_SECRET_BYTES: usize = 32;

/// A symmetric signing secret, `whsec_` + base64 of 24–64 random bytes.
///
/// ```
/// use align_webhooks::SigningSecret;
/// // The Standard Webhooks specification's example secret (a fixture, not a key).
/// let s = SigningSecret::parse(concat!("whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
/// let sig = s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
/// assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// assert_eq!(format!("{s:?}"), "SigningSecret([redacted])");
/// ```
#[derive(Clone)]
pub struct SigningSecret {
    bytes: Zeroizing<Vec<u8>>,
    key: hmac::Key,
}

impl SigningSecret {
    /// Generates a fresh 32-byte secret from the system's secure random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new(vec![0_u8; DEFAULT_SECRET_BYTES]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Random)?;
        Ok(Self::from_checked(bytes))
    }

    /// Parses `whsec_<base64>`; the decoded secret must be 24 to 64 bytes long.
    pub fn parse(text: &str) -> Result<Self> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(Error::MalformedSecret)?;
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| Error::MalformedSecret)?);
        Self::from_bytes(&bytes)
    }

    /// Wraps raw secret bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(Error::MalformedSecret);
        }
        Ok(Self::from_checked(Zeroizing::new(bytes.to_vec())))
    }

    fn from_checked(bytes: Zeroizing<Vec<u8>>) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        Self { bytes, key }
    }

    /// The `whsec_…` text, to show the endpoint's owner once.
    pub fn expose(&self) -> Secret {
        Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(&*self.bytes)))
    }

    /// The raw HMAC tag over `{msg_id}.{timestamp}.{body}`.
    pub fn tag(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let mut buf = [0_u8; 24];
        let middle = dotted(timestamp, &mut buf);
        // Small messages (most events) start in a smaller buffer: it is zeroed on every call.
        if msg_id.len() + middle.len() + body.len() <= SMALL_HEAD {
            self.tag_in::<SMALL_HEAD>(msg_id.as_bytes(), middle, body)
        } else {
            self.tag_in::<HEAD>(msg_id.as_bytes(), middle, body)
        }
    }

    /// [`SigningSecret::tag`] starting in a stack buffer of `N` bytes (a multiple of the
    /// SHA-256 block).
    ///
    /// ring charges a visible fixed cost per `update`, and a piece that ends mid-block is
    /// copied into its pending buffer anyway. So the id, the timestamp and the start of the
    /// body are copied into one block-aligned stack buffer: a small message is then hashed in
    /// one call, a larger one in two, the second starting on a block boundary.
    fn tag_in<const N: usize>(&self, msg_id: &[u8], middle: &[u8], body: &[u8]) -> hmac::Tag {
        let mut head = [0_u8; N];
        let (id_part, rest) = head.split_at_mut(msg_id.len().min(N));
        let (middle_part, rest) = rest.split_at_mut(middle.len().min(rest.len()));
        if id_part.len() != msg_id.len() || middle_part.len() != middle.len() {
            // An id too long for the buffer: not ours, but signable all the same.
            let mut ctx = hmac::Context::with_key(&self.key);
            ctx.update(msg_id);
            ctx.update(middle);
            ctx.update(body);
            return ctx.sign();
        }
        id_part.copy_from_slice(msg_id);
        middle_part.copy_from_slice(middle);
        let (body_head, body_rest) = body.split_at(body.len().min(rest.len()));
        rest[..body_head.len()].copy_from_slice(body_head);
        let filled = N - rest.len() + body_head.len();
        if body_rest.is_empty() {
            return hmac::sign(&self.key, &head[..filled]);
        }
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&head);
        ctx.update(body_rest);
        ctx.sign()
    }

    /// The `v1,<base64>` signature of a message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // The text is made on the stack and copied into a `String` of its exact size; the
        // allocation comes after the hash, where it overlaps the hash's last rounds.
        let tag = self.tag(msg_id, timestamp, body);
        match <&[u8; 32]>::try_from(tag.as_ref()) {
            Ok(tag) => v1_signature(tag).as_str().map(str::to_owned),
            Err(_) => None,
        }
        .unwrap_or_else(|| {
            // Unreachable (HMAC-SHA256 tags are 32 bytes, base64 is ASCII); it keeps the
            // code free of `unwrap` and still answers correctly.
            let mut out = String::with_capacity(V1_SIGNATURE_LEN);
            out.push_str("v1,");
            STANDARD.encode_string(tag.as_ref(), &mut out);
            out
        })
    }

    /// Appends the `v1,<base64>` signature of a message to `out` (47 bytes), for callers
    /// that assemble a header value from several signatures.
    pub fn sign_to(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let tag = self.tag(msg_id, timestamp, body);
        let Ok(tag) = <&[u8; 32]>::try_from(tag.as_ref()) else {
            // HMAC-SHA256 tags are 32 bytes; this only keeps the code free of `unwrap`.
            out.push_str("v1,");
            STANDARD.encode_string(tag.as_ref(), out);
            return;
        };
        // Base64 is ASCII, so this never takes the error branch.
        if let Some(sig) = v1_signature(tag).as_str() {
            out.push_str(sig);
        }
    }
}

/// Size of the stack buffer signing starts in: four SHA-256 blocks.
const HEAD: usize = 256;

/// Size of the stack buffer for messages that fit in two SHA-256 blocks.
const SMALL_HEAD: usize = 128;

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.bytes.as_slice().ct_eq(other.bytes.as_slice()))
    }
}

impl Eq for SigningSecret {}

/// An ed25519 signing key, `whsk_` + base64 of the 32-byte seed followed by the 32-byte
/// public key (the 64-byte form most ed25519 libraries print). A bare 32-byte seed is
/// accepted too.
#[derive(Clone)]
pub struct SigningKey {
    seed: Zeroizing<Vec<u8>>,
    pair: Arc<Ed25519KeyPair>,
}

impl SigningKey {
    /// Generates a fresh key pair.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new(vec![0_u8; 32]);
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Error::Random)?;
        Self::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<Vec<u8>>) -> Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| Error::MalformedKey)?;
        Ok(Self {
            seed,
            pair: Arc::new(pair),
        })
    }

    /// Parses `whsk_<base64>`.
    pub fn parse(text: &str) -> Result<Self> {
        let b64 = text
            .strip_prefix(SIGNING_KEY_PREFIX)
            .ok_or(Error::MalformedKey)?;
        let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| Error::MalformedKey)?);
        match raw.len() {
            32 => Self::from_seed(raw),
            64 => {
                let key = Self::from_seed(Zeroizing::new(raw[..32].to_vec()))?;
                if key.pair.public_key().as_ref() != &raw[32..] {
                    return Err(Error::MalformedKey);
                }
                Ok(key)
            }
            _ => Err(Error::MalformedKey),
        }
    }

    /// The `whsk_…` text (seed and public key).
    pub fn expose(&self) -> Secret {
        let mut raw = Zeroizing::new(Vec::with_capacity(64));
        raw.extend_from_slice(&self.seed);
        raw.extend_from_slice(self.pair.public_key().as_ref());
        Secret::new(format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(&*raw)))
    }

    /// The public half, to hand to receivers.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut bytes = [0_u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey { bytes }
    }

    /// The `v1a,<base64>` signature of a message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let msg = signed_content(msg_id, timestamp, body);
        let sig = self.pair.sign(&msg);
        let mut out = String::with_capacity(4 + 88);
        out.push_str("v1a,");
        STANDARD.encode_string(sig.as_ref(), &mut out);
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// An ed25519 public key, `whpk_` + base64 of 32 bytes. Not secret; `Debug` prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    bytes: [u8; 32],
}

impl VerifyingKey {
    /// Parses `whpk_<base64>`.
    pub fn parse(text: &str) -> Result<Self> {
        let b64 = text
            .strip_prefix(VERIFYING_KEY_PREFIX)
            .ok_or(Error::MalformedKey)?;
        let raw = STANDARD.decode(b64).map_err(|_| Error::MalformedKey)?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| Error::MalformedKey)?;
        Ok(Self { bytes })
    }

    /// The `whpk_…` text.
    pub fn to_text(&self) -> String {
        format!("{VERIFYING_KEY_PREFIX}{}", STANDARD.encode(self.bytes))
    }

    /// Whether `signature` (raw 64 bytes) signs the message.
    pub(crate) fn verify_raw(&self, msg_id: &str, timestamp: i64, body: &[u8], sig: &[u8]) -> bool {
        let msg = signed_content(msg_id, timestamp, body);
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(&msg, sig)
            .is_ok()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.to_text())
    }
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut buf = [0_u8; 24];
    let middle = dotted(timestamp, &mut buf);
    let mut msg = Vec::with_capacity(msg_id.len() + middle.len() + body.len());
    msg.extend_from_slice(msg_id.as_bytes());
    msg.extend_from_slice(middle);
    msg.extend_from_slice(body);
    msg
}

/// The key an endpoint signs with: a symmetric secret (`v1`) or an ed25519 key (`v1a`).
#[derive(Clone, Debug)]
pub enum EndpointKey {
    /// HMAC-SHA256 with a `whsec_` secret.
    Symmetric(SigningSecret),
    /// ed25519 with a `whsk_` key.
    Asymmetric(SigningKey),
}

impl EndpointKey {
    /// Parses `whsec_…` or `whsk_…`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with(SIGNING_KEY_PREFIX) {
            SigningKey::parse(text).map(Self::Asymmetric)
        } else {
            SigningSecret::parse(text).map(Self::Symmetric)
        }
    }

    /// The text form (`whsec_…` or `whsk_…`).
    pub fn expose(&self) -> Secret {
        match self {
            Self::Symmetric(s) => s.expose(),
            Self::Asymmetric(k) => k.expose(),
        }
    }

    /// The versioned signature (`v1,…` or `v1a,…`).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Self::Symmetric(s) => s.sign(msg_id, timestamp, body),
            Self::Asymmetric(k) => k.sign(msg_id, timestamp, body),
        }
    }

    /// Appends the versioned signature to `out`, as [`EndpointKey::sign`] returns it.
    pub fn sign_to(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        match self {
            Self::Symmetric(s) => s.sign_to(msg_id, timestamp, body, out),
            Self::Asymmetric(k) => out.push_str(&k.sign(msg_id, timestamp, body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{STANDARD, SigningSecret};
    use base64::Engine;
    use ring::hmac;

    #[test]
    fn signatures_are_the_hmac_of_the_concatenated_message_at_every_length() {
        let raw = [0x5a_u8; 32];
        let secret = SigningSecret::from_bytes(&raw).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &raw);
        let body: Vec<u8> = (0..700_u32).map(|i| (i % 251) as u8).collect();
        let long_id = "m".repeat(300);
        for id in ["msg_p5jXN8AQM9LWM0D4loKWxJek", "", long_id.as_str()] {
            for len in (0..=body.len()).filter(|n| *n < 300 || n % 61 == 0) {
                let ts = 1_614_265_330;
                let whole = [id.as_bytes(), format!(".{ts}.").as_bytes(), &body[..len]].concat();
                let expected = hmac::sign(&key, &whole);
                let tag = secret.tag(id, ts, &body[..len]);
                assert_eq!(
                    tag.as_ref(),
                    expected.as_ref(),
                    "id {} body {len}",
                    id.len()
                );
                let sig = secret.sign(id, ts, &body[..len]);
                assert_eq!(sig, format!("v1,{}", STANDARD.encode(expected.as_ref())));
            }
        }
    }
}
