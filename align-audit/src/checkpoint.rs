//! Signed checkpoints: what is left of a stream's pruned beginning, so verification can start
//! after it.

use chrono::{DateTime, Utc};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::encode::{CHECKPOINT_TAG, Encoder, stream_name};
use crate::error::{Error, Result};
use crate::record::{Head, Stream};
use crate::serde_util::time_ms;

/// The operator's secret for signing checkpoints (HMAC-SHA256). Keep it outside the database:
/// whoever holds it can sign a checkpoint, so it must not sit beside the records it protects.
#[derive(Clone)]
pub struct CheckpointKey(hmac::Key);

impl CheckpointKey {
    /// A key from at least 32 secret bytes (for example a file of random bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 32 {
            return Err(Error::WeakCheckpointKey);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// 32 fresh random bytes for a new key; store them, then call [`from_bytes`](Self::from_bytes).
    pub fn generate_bytes() -> Result<[u8; 32]> {
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| Error::Random)?;
        Ok(b)
    }
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointKey(..)")
    }
}

/// Stands in for the records of a stream that retention removed: the last removed sequence
/// and its hash, signed with the operator's [`CheckpointKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    stream: Stream,
    sequence: u64,
    hash: Digest,
    #[serde(with = "time_ms")]
    created_at: DateTime<Utc>,
    signature: Digest,
}

impl Checkpoint {
    /// A signed checkpoint after the record `last_pruned`.
    pub(crate) fn sign(
        stream: Stream,
        last_pruned: Head,
        created_at: DateTime<Utc>,
        key: &CheckpointKey,
    ) -> Self {
        let created_at =
            DateTime::from_timestamp_millis(created_at.timestamp_millis()).unwrap_or(created_at);
        let mut cp = Self {
            stream,
            sequence: last_pruned.sequence,
            hash: last_pruned.hash,
            created_at,
            signature: Digest::ZERO,
        };
        let tag = hmac::sign(&key.0, &cp.preimage());
        cp.signature = Digest::from_slice(tag.as_ref()).unwrap_or(Digest::ZERO);
        cp
    }

    /// Rebuilds a stored checkpoint (the signature is checked by verification, not here).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn from_parts(
        stream: Stream,
        last_pruned: Head,
        created_at: DateTime<Utc>,
        signature: Digest,
    ) -> Self {
        Self {
            stream,
            sequence: last_pruned.sequence,
            hash: last_pruned.hash,
            created_at,
            signature,
        }
    }

    fn preimage(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        let mut enc = Encoder(&mut buf);
        enc.bytes(CHECKPOINT_TAG);
        enc.bytes(stream_name(self.stream));
        enc.u64(self.sequence);
        enc.raw(self.hash.as_bytes());
        enc.i64(self.created_at.timestamp_millis());
        buf
    }

    /// Whether `key` signed this checkpoint (constant-time comparison).
    pub fn is_signed_by(&self, key: &CheckpointKey) -> bool {
        hmac::verify(&key.0, &self.preimage(), self.signature.as_bytes()).is_ok()
    }

    /// The stream it belongs to.
    pub fn stream(&self) -> Stream {
        self.stream
    }
    /// The last sequence removed, and its hash: where the remaining chain continues.
    pub fn last_pruned(&self) -> Head {
        Head {
            sequence: self.sequence,
            hash: self.hash,
        }
    }
    /// When the pruning happened.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// The HMAC-SHA256 tag.
    pub fn signature(&self) -> &Digest {
        &self.signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_every_field() {
        let key = CheckpointKey::from_bytes(&[7; 32]).unwrap();
        let other = CheckpointKey::from_bytes(&[8; 32]).unwrap();
        let head = Head {
            sequence: 9,
            hash: Digest::of(b"x"),
        };
        let cp = Checkpoint::sign(Stream::Audit, head, Utc::now(), &key);
        assert!(cp.is_signed_by(&key));
        assert!(!cp.is_signed_by(&other));
        let mut moved = cp.clone();
        moved.sequence = 10;
        assert!(!moved.is_signed_by(&key));
        assert!(CheckpointKey::from_bytes(&[1; 16]).is_err());
    }
}
