//! Sealing entries into a stream's hash chain.

use crate::encode::{record_hash, record_preimage};
use crate::record::{Entry, Head, Receipt, Record};

/// Appends `entry` after `head`, moving `head` to the new record. `buf` is scratch space.
pub(crate) fn seal(entry: Entry, head: &mut Head, buf: &mut Vec<u8>) -> Record {
    let sequence = head.sequence + 1;
    let prev_hash = head.hash;
    let hash = record_hash(sequence, &prev_hash, &entry, buf);
    *head = Head { sequence, hash };
    Record {
        sequence,
        prev_hash,
        hash,
        entry,
    }
}

impl Record {
    /// The canonical bytes whose SHA-256 is this record's hash (format in
    /// `docs/audit-chain.md`); for independent verifiers and their tests.
    pub fn preimage(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(512);
        record_preimage(self.sequence, &self.prev_hash, &self.entry, &mut buf);
        buf
    }

    /// The receipt a durable append hands back for this record.
    pub(crate) fn receipt(&self) -> Receipt {
        Receipt {
            stream: self.entry.stream,
            sequence: self.sequence,
            hash: self.hash,
        }
    }
}
