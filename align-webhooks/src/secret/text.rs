//! The two pieces of text signing writes on every call, without allocating: the
//! `.{timestamp}.` between id and body, and the base64 of a tag.
//!
//! Both showed in profiles of signing small bodies, where ring's HMAC itself is only about
//! 220 ns; `itoa` and the `base64` crate do the same jobs in general form. Both write whole
//! words: what is written here is read back at once (hashed, validated, copied), and a load
//! that spans several smaller stores waits until they reach the cache.

/// Writes `.{timestamp}.` into `buf` and returns the written part. 24 bytes hold two dots,
/// a sign and 19 digits.
///
/// Timestamps of ten digits (September 2001 to November 2286: every one signing sees) take a
/// fast path that computes the digits in registers and stores them as two words: the bytes
/// are read back at once (copied next to the id, then hashed), and a load that spans many
/// one-byte stores must wait for them to reach the cache, which a profile showed as a few ns
/// on every signature. Other values are written two digits at a time, as `itoa` does.
pub(super) fn dotted(timestamp: i64, buf: &mut [u8; 24]) -> &[u8] {
    let n = timestamp.unsigned_abs();
    if timestamp >= 0 && (1_000_000_000..10_000_000_000).contains(&n) {
        let [a, b] = DIGIT_PAIRS[(n / 100_000_000) as usize];
        let rest = eight_digits(n % 100_000_000);
        // `.`, two digits, the first five of the other eight; then their last three and `.`.
        let first = u64::from_le_bytes([b'.', a, b, 0, 0, 0, 0, 0]) | (rest << 24);
        let second = (rest >> 40) | (u64::from(b'.') << 24);
        buf[..8].copy_from_slice(&first.to_le_bytes());
        buf[8..16].copy_from_slice(&second.to_le_bytes());
        return &buf[..12];
    }
    let mut end = buf.len() - 1;
    buf[end] = b'.';
    let mut n = n;
    while n >= 10 {
        let [hi, lo] = DIGIT_PAIRS[(n % 100) as usize];
        n /= 100;
        end -= 2;
        buf[end] = hi;
        buf[end + 1] = lo;
    }
    if n > 0 || end == buf.len() - 1 {
        end -= 1;
        buf[end] = b'0' + n as u8;
    }
    if timestamp < 0 {
        end -= 1;
        buf[end] = b'-';
    }
    end -= 1;
    buf[end] = b'.';
    &buf[end..]
}

/// The eight decimal digits of `n` (below 10^8) as ASCII, the first digit in the lowest
/// byte (so `to_le_bytes` gives them in reading order). Splits 8 digits into two lanes of 4,
/// then 4 lanes of 2, then 8 of 1, dividing every lane at once by multiplying with a scaled
/// reciprocal (exact for the lane ranges involved: 10486/2^20 for values below 10^4 by 100,
/// 103/2^10 for values below 100 by 10).
fn eight_digits(n: u64) -> u64 {
    let x = (n / 10_000) | ((n % 10_000) << 32);
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    (tens | ((x - tens * 10) << 8)) | 0x3030_3030_3030_3030
}

/// A `v1,<base64>` signature, padded to six words. Aligned to 8 so that its word stores
/// line up with the word loads that read it next (UTF-8 validation, the copy into a
/// `String`): a load served by one earlier store gets the data forwarded, a load spanning
/// two waits until they reach the cache.
#[repr(align(8))]
pub(super) struct V1Signature([u8; 48]);

impl V1Signature {
    /// The signature text (47 bytes).
    #[cfg(test)]
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0[..V1_SIGNATURE_LEN]
    }

    /// The signature text; `None` never happens (base64 is ASCII).
    ///
    /// All 48 bytes are validated, the zero byte after the text included: the standard
    /// library checks ASCII sixteen bytes at a time and the rest one byte at a time, so 48
    /// costs three steps where 47 would cost two and fifteen.
    pub(super) fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()?.get(..V1_SIGNATURE_LEN)
    }
}

/// `v1,` and the standard base64, padded, of a 32-byte tag (44 characters).
///
/// Reads the tag six bytes at a time (one big-endian word load each), turns them into eight
/// characters with four look-ups of twelve bits, and writes the text as whole aligned words.
/// Profiles of the byte-at-a-time form showed most of its time waiting on loads that
/// spanned several small stores.
pub(super) fn v1_signature(tag: &[u8; 32]) -> V1Signature {
    let word_at = |at: usize| {
        let mut w = [0_u8; 8];
        w.copy_from_slice(&tag[at..at + 8]);
        u64::from_be_bytes(w)
    };
    // Eight characters (big-endian) for the 48 bits at the top of `n`.
    let chars = |n: u64| {
        let pair = |shift: u32| u64::from(BASE64_PAIRS[((n >> shift) & 0xfff) as usize]);
        (pair(52) << 48) | (pair(40) << 32) | (pair(28) << 16) | pair(16)
    };
    let last = word_at(24);
    let groups = [
        chars(word_at(0)),
        chars(word_at(6)),
        chars(word_at(12)),
        chars(word_at(18)),
        chars(last),
        // 32 = 5 × 6 + 2: the last two bytes make three characters and one `=`.
        (chars(last << 48) & !0xff_ffff_ffff) | (u64::from(b'=') << 32),
    ];
    // "v1," then the characters, shifted by three bytes across the word boundaries.
    let mut out = V1Signature([0; 48]);
    let mut carry = u64::from_be_bytes(*b"v1,\0\0\0\0\0");
    for (dst, group) in out.0.chunks_exact_mut(8).zip(groups) {
        dst.copy_from_slice(&(carry | (group >> 24)).to_be_bytes());
        carry = group << 40;
    }
    out
}

/// Length of a `v1,<base64>` signature: the prefix and 44 base64 characters of 32 bytes.
pub(super) const V1_SIGNATURE_LEN: usize = 3 + 44;

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Every 12-bit value as its two base64 characters, the first in the high byte (8 KiB).
static BASE64_PAIRS: [u16; 4096] = {
    let mut table = [0_u16; 4096];
    let mut i = 0;
    while i < table.len() {
        table[i] = ((BASE64_ALPHABET[i >> 6] as u16) << 8) | BASE64_ALPHABET[i & 63] as u16;
        i += 1;
    }
    table
};

/// `00` to `99`.
static DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0_u8; 2]; 100];
    let mut i = 0;
    while i < table.len() {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::{dotted, v1_signature};

    #[test]
    fn tags_are_encoded_like_the_base64_crate() {
        let mut tag = [0_u8; 32];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5000 {
            // xorshift: a cheap spread over every byte value at every position.
            for b in &mut tag {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let expected = format!("v1,{}", STANDARD.encode(tag));
            assert_eq!(v1_signature(&tag).as_bytes(), expected.as_bytes());
        }
        for fill in [0x00, 0xff] {
            let expected = format!("v1,{}", STANDARD.encode([fill; 32]));
            assert_eq!(v1_signature(&[fill; 32]).as_bytes(), expected.as_bytes());
        }
    }

    #[test]
    fn timestamps_are_written_like_to_string() {
        let mut values = vec![0_i64, i64::MAX, i64::MIN, 1_614_265_330];
        for digits in 0..19 {
            let p = 10_i64.pow(digits);
            values.extend([p - 1, p, p + 1, -(p - 1), -p, -(p + 1)]);
        }
        // The ten-digit fast path: every digit value at every position, and its edges.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(1_000_000_000 + (state % 9_000_000_000) as i64);
        }
        for d in 0..10 {
            values.push(1_111_111_111 * d.max(1));
            values.push(9_999_999_999 - d);
        }
        for t in values {
            let mut buf = [0_u8; 24];
            assert_eq!(dotted(t, &mut buf), format!(".{t}.").as_bytes());
        }
    }
}
