//! Users' passwords and sign-in sessions: PBKDF2-HMAC-SHA256 hashes from `ring`, and the
//! hash under which a session token is stored (never the token itself).
//!
//! ```
//! use align_keys::PasswordHash;
//! let hash = PasswordHash::derive("correct horse battery staple", 100_000).unwrap();
//! assert!(hash.encode().starts_with("pbkdf2-sha256$100000$"));
//! assert!(hash.verify("correct horse battery staple"));
//! assert!(!hash.verify("correct horse battery stapler"));
//! let again = PasswordHash::parse(&hash.encode()).unwrap();
//! assert!(again.verify("correct horse battery staple"));
//! ```

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, pbkdf2};

use crate::domain::UserId;
use crate::error::{Error, Result};

/// The scheme name at the start of every stored hash.
const SCHEME: &str = "pbkdf2-sha256";
/// Bytes of random salt per password.
const SALT_LEN: usize = 16;
/// Bytes of derived key (SHA-256's output size: more would only cost the defender).
const HASH_LEN: usize = 32;
/// Iterations for new hashes unless configured otherwise (OWASP's 2023 figure for
/// PBKDF2-HMAC-SHA256).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// The fewest iterations accepted for a new hash.
pub const MIN_PBKDF2_ITERATIONS: u32 = 100_000;
/// The most iterations accepted (about a minute of CPU per sign-in beyond this).
pub const MAX_PBKDF2_ITERATIONS: u32 = 100_000_000;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// The longest password accepted (in characters), so a sign-in form cannot make the server
/// hash megabytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A salted PBKDF2-HMAC-SHA256 password hash, stored as
/// `pbkdf2-sha256$<iterations>$<base64 salt>$<base64 hash>` (standard alphabet, no padding).
///
/// `Debug` shows the scheme and iteration count only: the salt and hash are offline-guessing
/// material and stay out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt and `iterations` rounds.
    ///
    /// Fails with [`Error::InvalidInput`] for a password shorter than [`MIN_PASSWORD_LEN`] or
    /// longer than [`MAX_PASSWORD_LEN`] characters, or with control characters, and for an
    /// iteration count outside [`MIN_PBKDF2_ITERATIONS`]..=[`MAX_PBKDF2_ITERATIONS`]. This is
    /// slow on purpose (hundreds of milliseconds at the default): call it off async workers.
    pub fn derive(password: &str, iterations: u32) -> Result<Self> {
        validate_password(password)?;
        let iterations = checked_iterations(iterations)?;
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::Random)?;
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Ok(Self {
            iterations,
            salt,
            hash,
        })
    }

    /// A hash that no password matches (random salt and output) but that costs
    /// `iterations` rounds to check, like a real one: verify against it when there is no
    /// real hash (an unknown e-mail), so that the time taken does not tell.
    pub fn decoy(iterations: u32) -> Result<Self> {
        let iterations = checked_iterations(iterations)?;
        let mut salt = [0u8; SALT_LEN];
        let mut hash = [0u8; HASH_LEN];
        let rng = SystemRandom::new();
        rng.fill(&mut salt).map_err(|_| Error::Random)?;
        rng.fill(&mut hash).map_err(|_| Error::Random)?;
        Ok(Self {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` is the one this hash was made from. The comparison is constant-time
    /// (`ring::pbkdf2::verify`) and costs the stored iteration count whatever the answer.
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }

    /// The iteration count this hash was made with (to re-hash after raising the setting).
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// The stored form, `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
    pub fn encode(&self) -> String {
        format!(
            "{SCHEME}${}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(self.salt),
            STANDARD_NO_PAD.encode(self.hash)
        )
    }

    /// Reads [`PasswordHash::encode`]'s output; anything else is [`Error::Corrupt`].
    pub fn parse(text: &str) -> Result<Self> {
        let corrupt = || Error::Corrupt("password hash");
        let mut parts = text.split('$');
        let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(corrupt());
        };
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(corrupt)?;
        let decode = |b64: &str, out: &mut [u8]| -> Result<()> {
            let bytes = STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .map_err(|_| corrupt())?;
            if bytes.len() != out.len() {
                return Err(corrupt());
            }
            out.copy_from_slice(&bytes);
            Ok(())
        };
        let mut out = Self {
            iterations,
            salt: [0; SALT_LEN],
            hash: [0; HASH_LEN],
        };
        decode(salt, &mut out.salt)?;
        decode(hash, &mut out.hash)?;
        Ok(out)
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({SCHEME}, {} iterations)", self.iterations)
    }
}

fn checked_iterations(iterations: u32) -> Result<NonZeroU32> {
    if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
        return Err(Error::InvalidInput {
            field: "iterations",
            reason: "must be between 100000 and 100000000",
        });
    }
    NonZeroU32::new(iterations).ok_or(Error::InvalidInput {
        field: "iterations",
        reason: "must be between 100000 and 100000000",
    })
}

/// Checks a new password: [`MIN_PASSWORD_LEN`] to [`MAX_PASSWORD_LEN`] characters, no control
/// characters (a stray newline from a pipe is a mistake, not part of the password).
pub fn validate_password(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(Error::InvalidInput {
            field: "password",
            reason: "must be at least 12 characters",
        });
    }
    if len > MAX_PASSWORD_LEN {
        return Err(Error::InvalidInput {
            field: "password",
            reason: "must be at most 1024 characters",
        });
    }
    if password.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            field: "password",
            reason: "must not contain control characters",
        });
    }
    Ok(())
}

/// The SHA-256 of a session token: what the store keeps and looks sessions up by, so a copy
/// of the database holds no usable session. Compares in constant time.
#[derive(Clone, Copy, Eq)]
pub struct SessionHash(pub [u8; 32]);

impl SessionHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SessionHash {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for SessionHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0[..8]);
    }
}

impl fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionHash(..)")
    }
}

/// A signed-in user's session (the console's), stored under the [`SessionHash`] of its token.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSession {
    /// Whose session it is.
    pub user_id: UserId,
    /// The session's anti-CSRF token: forms carry it back, compared in constant time.
    pub csrf: [u8; 32],
    /// When the user signed in.
    pub created_at: DateTime<Utc>,
    /// When the session stops working, whatever happens meanwhile.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for UserSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSession")
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn short_long_and_control_character_passwords_are_refused() {
        for bad in ["short", "eleven char", "twelve chars\n", &"x".repeat(1025)] {
            assert!(matches!(
                PasswordHash::derive(bad, MIN_PBKDF2_ITERATIONS),
                Err(Error::InvalidInput {
                    field: "password",
                    ..
                })
            ));
        }
        assert!(validate_password("twelve chars").is_ok());
    }

    #[test]
    fn iteration_counts_below_the_floor_are_refused() {
        assert!(matches!(
            PasswordHash::derive("a long enough password", 99_999),
            Err(Error::InvalidInput {
                field: "iterations",
                ..
            })
        ));
    }

    #[test]
    fn each_hash_has_its_own_salt_and_never_shows_itself() {
        let a = PasswordHash::derive("a long enough password", MIN_PBKDF2_ITERATIONS).unwrap();
        let b = PasswordHash::derive("a long enough password", MIN_PBKDF2_ITERATIONS).unwrap();
        assert_ne!(a.encode(), b.encode());
        assert!(a.verify("a long enough password") && b.verify("a long enough password"));
        let shown = format!("{a:?}");
        assert_eq!(shown, "PasswordHash(pbkdf2-sha256, 100000 iterations)");
        let encoded = a.encode();
        let salt = encoded.split('$').nth(2).unwrap();
        assert!(!shown.contains(salt));
    }

    #[test]
    fn malformed_stored_hashes_are_corrupt_not_panics() {
        let good = PasswordHash::derive("a long enough password", MIN_PBKDF2_ITERATIONS)
            .unwrap()
            .encode();
        let parts: Vec<&str> = good.split('$').collect();
        for bad in [
            String::new(),
            "pbkdf2-sha256".into(),
            format!("argon2id${}${}${}", parts[1], parts[2], parts[3]),
            format!("pbkdf2-sha256$0${}${}", parts[2], parts[3]),
            format!("pbkdf2-sha256$x${}${}", parts[2], parts[3]),
            format!("pbkdf2-sha256${}$!!${}", parts[1], parts[3]),
            format!("pbkdf2-sha256${}${}$AAAA", parts[1], parts[2]),
            format!("{good}$extra"),
        ] {
            assert!(
                matches!(PasswordHash::parse(&bad), Err(Error::Corrupt(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_decoy_matches_nothing_and_costs_what_a_real_hash_costs() {
        let real = PasswordHash::derive("a long enough password", MIN_PBKDF2_ITERATIONS).unwrap();
        let decoy = PasswordHash::decoy(MIN_PBKDF2_ITERATIONS).unwrap();
        assert_eq!(decoy.iterations(), real.iterations());
        assert!(!decoy.verify("a long enough password"));
        assert!(!decoy.verify(""));
    }

    #[test]
    fn session_hashes_are_sha256_of_the_token() {
        let h = SessionHash::of("abc");
        assert_eq!(
            h.0[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf"
        );
        assert_eq!(format!("{h:?}"), "SessionHash(..)");
    }
}
