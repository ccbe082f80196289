//! Random bytes for record ids and personal-data salts, drawn from the system generator
//! (`ring::rand::SystemRandom`) a block at a time.
//!
//! A request-log entry needs 32 random bytes (a UUID v4 and a salt). Asking the kernel for
//! them one entry at a time costs two system calls per request; a per-thread block of
//! [`BLOCK`] bytes costs one per 32 entries. The bytes are the system generator's own, used
//! once each and zeroed as they are handed out, so a salt does not outlive its record in
//! this buffer (erasure drops it from the record).

use std::cell::RefCell;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Bytes drawn from the system generator at once.
const BLOCK: usize = 1024;

struct Pool {
    bytes: [u8; BLOCK],
    /// Bytes already handed out (the start of `bytes`).
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { bytes: [0; BLOCK], used: BLOCK })
    };
}

/// Fills `out` with fresh random bytes (at most [`BLOCK`] at a time).
pub(crate) fn fill(out: &mut [u8]) -> Result<()> {
    if out.len() > BLOCK {
        return SystemRandom::new().fill(out).map_err(|_| Error::Random);
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if BLOCK - pool.used < out.len() {
            SystemRandom::new()
                .fill(&mut pool.bytes)
                .map_err(|_| Error::Random)?;
            pool.used = 0;
        }
        let start = pool.used;
        let taken = &mut pool.bytes[start..start + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        pool.used += out.len();
        Ok(())
    })
}

/// A fresh UUID v4.
pub(crate) fn uuid_v4() -> Result<uuid::Uuid> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    #[test]
    fn ids_are_version_4_and_do_not_repeat_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(3 * BLOCK / 16) {
            let id = uuid_v4().unwrap();
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn requests_larger_than_a_block_are_served_directly() {
        let mut big = vec![0u8; BLOCK + 1];
        fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }
}
