//! The canonical encoding the chain hashes (specified in `docs/audit-chain.md`).
//!
//! Every variable-length item is length-prefixed and every optional item has a presence byte,
//! so two different records can never encode to the same bytes.

use serde_json::Value;

use crate::digest::Digest;
use crate::record::{Actor, Entry, Stream};

/// Domain-separation tag at the start of every record encoding.
pub(crate) const RECORD_TAG: &[u8] = b"align-audit/record/v1";
/// Domain-separation tag at the start of every checkpoint encoding.
pub(crate) const CHECKPOINT_TAG: &[u8] = b"align-audit/checkpoint/v1";

/// Domain-separation tag at the start of every anchor encoding.
pub(crate) const ANCHOR_TAG: &[u8] = b"align-audit/anchor/v1";

/// Appends canonical items to a byte buffer.
pub(crate) struct Encoder<'a>(pub(crate) &'a mut Vec<u8>);

impl Encoder<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// u32 big-endian length, then the bytes. Lengths over 4 GiB cannot occur (fields are
    /// capped far below), but saturate rather than wrap if they ever did.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
    }
    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(n) => {
                self.u8(1);
                self.u64(n);
            }
        }
    }
}

/// Writes the bytes whose SHA-256 is the hash of the record at `sequence` after `prev`.
pub(crate) fn record_preimage(sequence: u64, prev: &Digest, e: &Entry, buf: &mut Vec<u8>) {
    buf.clear();
    let mut enc = Encoder(buf);
    enc.bytes(RECORD_TAG);
    enc.str(e.stream.as_str());
    enc.u64(sequence);
    enc.raw(prev.as_bytes());
    enc.raw(e.id.as_bytes());
    enc.i64(e.time.timestamp_millis());
    enc.opt_str(e.organization.as_deref());
    enc.opt_str(e.environment.map(|v| v.as_str()));
    match &e.actor {
        Actor::System => enc.u8(0),
        Actor::ApiKey { id, prefix } => {
            enc.u8(1);
            enc.str(id);
            enc.str(prefix);
        }
        Actor::User { id } => {
            enc.u8(2);
            enc.str(id);
        }
    }
    enc.str(&e.action);
    enc.opt_str(e.target.as_deref());
    enc.opt_str(e.request_id.as_deref());
    enc.opt_str(e.method.as_deref());
    enc.opt_str(e.path.as_deref());
    enc.opt_u64(e.status.map(u64::from));
    enc.opt_u64(e.latency_us);
    enc.opt_str(e.subject.as_deref());
    enc.str(&e.metadata);
    match &e.personal {
        None => enc.u8(0),
        Some(p) => {
            enc.u8(1);
            let (full, coarse) = p.commitments();
            enc.raw(full.as_bytes());
            match coarse {
                None => enc.u8(0),
                Some(c) => {
                    enc.u8(1);
                    enc.raw(c.as_bytes());
                }
            }
        }
    }
}

/// The hash of the record at `sequence` after `prev`, using `buf` as scratch space.
pub(crate) fn record_hash(sequence: u64, prev: &Digest, e: &Entry, buf: &mut Vec<u8>) -> Digest {
    record_preimage(sequence, prev, e, buf);
    Digest::of(buf)
}

/// Bytes of the stream name for encodings that name a stream.
pub(crate) fn stream_name(s: Stream) -> &'static [u8] {
    s.as_str().as_bytes()
}

/// JSON text with object keys sorted (by UTF-8 bytes) and no insignificant whitespace.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(k) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"y":"é","z":[true,null]},"b":1}"#
        );
    }
}
