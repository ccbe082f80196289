//! Anchors: signed statements of where a stream's chain stood, kept outside the database, so
//! that cutting off the newest records and rewriting the stored head to match is detected.
//!
//! The stored head only proves that the records agree with each other and with a head kept in
//! the same database: whoever can delete the newest rows can rewrite the head too. An anchor
//! is the head as it stood at some moment, signed with an Ed25519 key kept outside the
//! database and written where the database's writers cannot reach it (a file beside it, a
//! webhook, another machine). A chain verified against an anchor must still hold the
//! anchored record, with the anchored hash.

mod log;

use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, hex_decode, hex_encode};
use crate::encode::{ANCHOR_TAG, Encoder, stream_name};
use crate::error::{Error, Result};
use crate::record::{Head, Stream};
use crate::serde_util::{hex_array, time_ms};

pub use log::AnchorLog;

/// Bytes of a key id: the start of the SHA-256 of the public key.
const KEY_ID_LEN: usize = 8;
/// Bytes of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;

/// The key that signs anchors: an Ed25519 key pair (`ring`), read from a PKCS#8 document.
///
/// Keep the document outside the database, readable only by the service (Align keeps it in
/// `DIR/audit-anchor-key`, mode 0600). Verification needs only the [`AnchorPublicKey`].
///
/// ```
/// use align_audit::{AnchorKey, Digest, Head, Stream};
/// let key = AnchorKey::from_pkcs8(&AnchorKey::generate_pkcs8()?)?;
/// let head = Head { sequence: 42, hash: Digest::of(b"record 42") };
/// let anchor = key.sign(Stream::Audit, head, chrono::Utc::now());
/// assert!(anchor.is_signed_by(key.public_key()));
/// # Ok::<(), align_audit::Error>(())
/// ```
pub struct AnchorKey {
    pair: Ed25519KeyPair,
    public: AnchorPublicKey,
}

impl AnchorKey {
    /// A new key as a PKCS#8 (v2) document. The bytes are the secret: store them in a file
    /// only the service can read, then load them with [`from_pkcs8`](Self::from_pkcs8).
    pub fn generate_pkcs8() -> Result<Vec<u8>> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| Error::Random)?;
        Ok(doc.as_ref().to_vec())
    }

    /// The key in `pkcs8`, as [`generate_pkcs8`](Self::generate_pkcs8) made it.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| Error::InvalidAnchorKey)?;
        let public = AnchorPublicKey::from_bytes(pair.public_key().as_ref())
            .ok_or(Error::InvalidAnchorKey)?;
        Ok(Self { pair, public })
    }

    /// The public half, which verifies this key's anchors.
    pub fn public_key(&self) -> &AnchorPublicKey {
        &self.public
    }

    /// An anchor stating that `stream`'s chain ended at `head` at `created_at` (kept to the
    /// millisecond).
    pub fn sign(&self, stream: Stream, head: Head, created_at: DateTime<Utc>) -> Anchor {
        let created_at =
            DateTime::from_timestamp_millis(created_at.timestamp_millis()).unwrap_or(created_at);
        let mut anchor = Anchor {
            stream,
            sequence: head.sequence,
            hash: head.hash,
            created_at,
            key_id: self.public.id,
            signature: [0; SIGNATURE_LEN],
        };
        let signature = self.pair.sign(&anchor.preimage());
        // An Ed25519 signature is always 64 bytes.
        if let Ok(bytes) = <[u8; SIGNATURE_LEN]>::try_from(signature.as_ref()) {
            anchor.signature = bytes;
        }
        anchor
    }
}

/// Shows the key id only: the key pair is secret.
impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorKey")
            .field("key_id", &self.public.id())
            .finish_non_exhaustive()
    }
}

/// The public half of an [`AnchorKey`]: 32 bytes, shown as 64 hex characters, and known by
/// its id (the first 8 bytes of their SHA-256, as 16 hex characters) in every anchor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnchorPublicKey {
    bytes: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl AnchorPublicKey {
    /// The key from its 32 bytes; `None` for another length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = <[u8; 32]>::try_from(bytes).ok()?;
        let digest = Digest::of(&bytes);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_bytes()[..KEY_ID_LEN]);
        Some(Self { bytes, id })
    }

    /// The key from 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0; 32];
        hex_decode(text.trim(), &mut bytes).then(|| Self::from_bytes(&bytes))?
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.bytes)
    }

    /// The key id anchors carry: 16 lowercase hex characters.
    pub fn id(&self) -> String {
        hex_encode(&self.id)
    }
}

impl std::fmt::Debug for AnchorPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnchorPublicKey({})", self.to_hex())
    }
}

/// A signed statement that a stream's chain ended at `sequence`, whose record hashed to
/// `hash`, at `created_at`.
///
/// Serialises as one JSON object (`stream`, `sequence`, `hash`, `createdAt`, `keyId`,
/// `signature`): a line of the [`AnchorLog`], and the `data` of an `audit.checkpoint` event.
/// It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Anchor {
    stream: Stream,
    sequence: u64,
    hash: Digest,
    #[serde(with = "time_ms")]
    created_at: DateTime<Utc>,
    #[serde(with = "hex_array")]
    key_id: [u8; KEY_ID_LEN],
    #[serde(with = "hex_array")]
    signature: [u8; SIGNATURE_LEN],
}

impl Anchor {
    /// The bytes the signature covers (format in `docs/audit-chain.md`).
    fn preimage(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(96);
        let mut enc = Encoder(&mut buf);
        enc.bytes(ANCHOR_TAG);
        enc.bytes(stream_name(self.stream));
        enc.u64(self.sequence);
        enc.raw(self.hash.as_bytes());
        enc.i64(self.created_at.timestamp_millis());
        enc.raw(&self.key_id);
        buf
    }

    /// Whether `key` made this anchor: the key ids match and the signature verifies.
    pub fn is_signed_by(&self, key: &AnchorPublicKey) -> bool {
        self.key_id == key.id
            && UnparsedPublicKey::new(&ED25519, key.as_bytes())
                .verify(&self.preimage(), &self.signature)
                .is_ok()
    }

    /// The stream it anchors.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Where the chain ended: the anchored sequence and its record's hash.
    pub fn head(&self) -> Head {
        Head {
            sequence: self.sequence,
            hash: self.hash,
        }
    }

    /// When it was made.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The id of the key that signed it (16 hex characters).
    pub fn key_id(&self) -> String {
        hex_encode(&self.key_id)
    }

    /// The Ed25519 signature (64 bytes).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// An anchor to hold a chain to, with the key it must be signed with; see
/// [`AuditSink::verify_against`](crate::AuditSink::verify_against).
#[derive(Debug, Clone)]
pub struct AnchorCheck {
    anchor: Anchor,
    key: AnchorPublicKey,
}

impl AnchorCheck {
    /// Checks chains against `anchor`, which `key` must have signed.
    pub fn new(anchor: Anchor, key: AnchorPublicKey) -> Self {
        Self { anchor, key }
    }

    /// The anchor.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// Whether the anchor's signature is the key's.
    pub(crate) fn is_genuine(&self) -> bool {
        self.anchor.is_signed_by(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AnchorKey {
        AnchorKey::from_pkcs8(&AnchorKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn head(sequence: u64) -> Head {
        Head {
            sequence,
            hash: Digest::of(&sequence.to_be_bytes()),
        }
    }

    #[test]
    fn an_anchor_round_trips_through_json_and_still_verifies() {
        let key = key();
        let anchor = key.sign(Stream::Request, head(7), Utc::now());
        let text = serde_json::to_string(&anchor).unwrap();
        let back: Anchor = serde_json::from_str(&text).unwrap();
        assert_eq!(back, anchor);
        assert!(back.is_signed_by(key.public_key()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["stream"], "request");
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["keyId"], key.public_key().id());
        assert_eq!(v["signature"].as_str().unwrap().len(), 128);
    }

    #[test]
    fn the_signature_binds_every_field_and_the_key() {
        let key = key();
        let other = self::key();
        let anchor = key.sign(Stream::Audit, head(9), Utc::now());
        assert!(anchor.is_signed_by(key.public_key()));
        assert!(!anchor.is_signed_by(other.public_key()));
        let mut changed = anchor.clone();
        changed.sequence = 8;
        assert!(!changed.is_signed_by(key.public_key()));
        let mut changed = anchor.clone();
        changed.hash = Digest::of(b"another record");
        assert!(!changed.is_signed_by(key.public_key()));
        let mut changed = anchor.clone();
        changed.stream = Stream::Request;
        assert!(!changed.is_signed_by(key.public_key()));
        let mut changed = anchor.clone();
        changed.created_at += chrono::TimeDelta::milliseconds(1);
        assert!(!changed.is_signed_by(key.public_key()));
        let mut changed = anchor;
        changed.signature[0] ^= 1;
        assert!(!changed.is_signed_by(key.public_key()));
    }

    #[test]
    fn keys_are_rejected_unless_ed25519_pkcs8_and_never_shown() {
        assert!(matches!(
            AnchorKey::from_pkcs8(b"not a key"),
            Err(Error::InvalidAnchorKey)
        ));
        let pkcs8 = AnchorKey::generate_pkcs8().unwrap();
        let key = AnchorKey::from_pkcs8(&pkcs8).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key().id()), "{shown}");
        assert!(!shown.contains(&hex_encode(&pkcs8[16..48])), "{shown}");
        let public = key.public_key();
        assert_eq!(AnchorPublicKey::from_hex(&public.to_hex()), Some(*public));
        assert_eq!(AnchorPublicKey::from_hex("abcd"), None);
        assert_eq!(public.id().len(), 16);
    }
}
