//! Request ids: UUID v4 without a system call per request.
//!
//! `Uuid::new_v4` asks the kernel for 16 random bytes (`getrandom`) on every call, a
//! measurable share of a cheap request. Instead each thread draws one random 128-bit key from
//! the kernel the first time, then derives every id from a per-thread counter through the
//! SplitMix64 finaliser (a bijection of 64-bit words) keyed with it: ids within a thread never
//! repeat before the version and variant bits are applied, and ids look as random as before.
//! They are identifiers, not secrets: nothing relies on them being unpredictable.

use std::cell::Cell;

/// One thread's key and counter.
struct State {
    key: (u64, u64),
    counter: Cell<u64>,
}

thread_local! {
    static STATE: State = State {
        key: uuid::Uuid::new_v4().as_u64_pair(),
        counter: Cell::new(0),
    };
}

/// SplitMix64's output function: a bijection on `u64` with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh UUID v4.
pub(crate) fn new() -> uuid::Uuid {
    STATE.with(|s| {
        let n = s.counter.get().wrapping_add(1);
        s.counter.set(n);
        let hi = mix(s.key.0.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let lo = mix(s.key.1 ^ n);
        uuid::Builder::from_random_bytes((u128::from(hi) << 64 | u128::from(lo)).to_be_bytes())
            .into_uuid()
    })
}

/// A fresh UUID v4 in its hyphenated lower-case form.
pub(crate) fn new_string() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    new().hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn ids_are_version_4_and_distinct() {
        let ids: HashSet<uuid::Uuid> = (0..100_000).map(|_| super::new()).collect();
        assert_eq!(ids.len(), 100_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn strings_parse_back() {
        let s = super::new_string();
        assert_eq!(s.len(), 36);
        let parsed: uuid::Uuid = s.parse().unwrap_or_default();
        assert_eq!(parsed.to_string(), s);
    }
}
