//! Verifying incoming webhooks: the receiver's half of Standard Webhooks.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::secret::{SigningSecret, VerifyingKey};

/// Header carrying the message id (stable across retries; the de-duplication key).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the signing time, unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying space-separated `version,base64` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Default tolerance between the signing time and the receiver's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A key a receiver checks signatures with.
#[derive(Clone, Debug)]
pub enum VerificationKey {
    /// The endpoint's `whsec_` secret (scheme `v1`).
    Symmetric(SigningSecret),
    /// The sender's `whpk_` public key (scheme `v1a`).
    Asymmetric(VerifyingKey),
}

impl VerificationKey {
    /// Parses `whsec_…` or `whpk_…`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with(crate::secret::VERIFYING_KEY_PREFIX) {
            VerifyingKey::parse(text).map(Self::Asymmetric)
        } else {
            SigningSecret::parse(text).map(Self::Symmetric)
        }
    }

    fn matches(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        version: &str,
        sig: &[u8],
    ) -> bool {
        match (self, version) {
            (Self::Symmetric(secret), "v1") => {
                let tag = secret.tag(msg_id, timestamp, body);
                bool::from(tag.as_ref().ct_eq(sig))
            }
            (Self::Asymmetric(key), "v1a") => key.verify_raw(msg_id, timestamp, body, sig),
            _ => false,
        }
    }
}

/// A webhook whose signature and timestamp checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWebhook {
    /// The `webhook-id`: de-duplicate on this.
    pub id: String,
    /// The `webhook-timestamp`, unix seconds.
    pub timestamp: i64,
}

/// Anything that can tell a genuine webhook from a forged or replayed one.
///
/// [`WebhookVerifier`] is the standard implementation; the trait lets a receiver swap in a
/// test double or a verifier that looks keys up per tenant.
pub trait Verifier: Send + Sync {
    /// Checks the Standard Webhooks headers against `body`, with the clock at `now`
    /// (unix seconds).
    fn verify_at(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<VerifiedWebhook>;

    /// [`Verifier::verify_at`] with the system clock.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<VerifiedWebhook> {
        self.verify_at(headers, body, chrono::Utc::now().timestamp())
    }
}

/// Verifies Standard Webhooks signatures (`v1` and `v1a`) with one or more keys.
///
/// Several keys let a receiver accept both the old and the new secret while a rotation is
/// under way. Comparison of HMAC tags is constant-time.
///
/// ```
/// use align_webhooks::{SigningSecret, Verifier, WebhookVerifier};
/// // The Standard Webhooks specification's example secret (a fixture, not a key).
/// let secret = SigningSecret::parse(concat!("whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
/// let verifier = WebhookVerifier::new(secret);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap());
/// headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
/// headers.insert("webhook-signature",
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".parse().unwrap());
/// let ok = verifier.verify_at(&headers, br#"{"test": 2432232314}"#, 1614265330).unwrap();
/// assert_eq!(ok.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
/// ```
#[derive(Clone, Debug)]
pub struct WebhookVerifier {
    keys: Vec<VerificationKey>,
    tolerance: Duration,
}

impl WebhookVerifier {
    /// A verifier for one `whsec_` secret, default tolerance.
    pub fn new(secret: SigningSecret) -> Self {
        Self::with_keys(vec![VerificationKey::Symmetric(secret)])
    }

    /// A verifier accepting a signature by any of `keys`.
    pub fn with_keys(keys: Vec<VerificationKey>) -> Self {
        Self {
            keys,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Sets the accepted clock difference (both directions).
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks already-extracted header values.
    pub fn verify_parts(
        &self,
        msg_id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedWebhook> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Error::InvalidHeader(HEADER_TIMESTAMP))?;
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.saturating_sub(ts) > tolerance {
            return Err(Error::TimestampTooOld);
        }
        if ts.saturating_sub(now) > tolerance {
            return Err(Error::TimestampTooNew);
        }
        let mut any_well_formed = false;
        for candidate in signatures.split(' ').filter(|s| !s.is_empty()) {
            let Some((version, b64)) = candidate.split_once(',') else {
                continue;
            };
            let Ok(sig) = STANDARD.decode(b64) else {
                continue;
            };
            any_well_formed = true;
            if self
                .keys
                .iter()
                .any(|k| k.matches(msg_id, ts, body, version, &sig))
            {
                return Ok(VerifiedWebhook {
                    id: msg_id.to_owned(),
                    timestamp: ts,
                });
            }
        }
        if any_well_formed {
            Err(Error::InvalidSignature)
        } else {
            Err(Error::InvalidHeader(HEADER_SIGNATURE))
        }
    }
}

impl Verifier for WebhookVerifier {
    fn verify_at(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<VerifiedWebhook> {
        let id = header(headers, HEADER_ID)?;
        let ts = header(headers, HEADER_TIMESTAMP)?;
        let sig = header(headers, HEADER_SIGNATURE)?;
        self.verify_parts(id, ts, sig, body, now)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str> {
    headers
        .get(name)
        .ok_or(Error::MissingHeader(name))?
        .to_str()
        .map_err(|_| Error::InvalidHeader(name))
}
