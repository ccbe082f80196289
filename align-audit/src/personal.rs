//! Personal fields (IP address, user agent, anything a record marks personal) and the salted
//! commitments through which the hash chain covers them.
//!
//! The chain hashes a field's *commitment* `SHA-256(salt ‖ value)`, never the value itself.
//! Dropping the value and its salt (anonymisation, erasure) leaves the commitment, so the chain
//! still verifies; without the salt the commitment no longer reveals the value, not even a
//! guessable one such as an IPv4 address. An IP address also carries a second, *coarse*
//! commitment to its /24 (IPv4) or /48 (IPv6) network, which stays verifiable after
//! anonymisation.

use std::net::IpAddr;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, hex_decode, hex_encode};
use crate::error::{Error, Result};
use crate::privacy::coarsen_ip;

/// The name of the personal field holding the client IP address.
pub const IP: &str = "ip";
/// The name of the personal field holding the user agent.
pub const USER_AGENT: &str = "userAgent";

const SALT_LEN: usize = 16;

/// A random per-value salt; it never leaves a record except in the JSON Lines sink's file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Salt([u8; SALT_LEN]);

impl Salt {
    fn random(rng: &SystemRandom) -> Result<Self> {
        let mut s = [0u8; SALT_LEN];
        rng.fill(&mut s).map_err(|_| Error::Random)?;
        Ok(Self(s))
    }
}

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex_encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut s = [0u8; SALT_LEN];
        if hex_decode(&text, &mut s) {
            Ok(Self(s))
        } else {
            Err(serde::de::Error::custom("expected 32 hex characters"))
        }
    }
}

/// `SHA-256(salt ‖ value)`; the salt has a fixed length, so the split is unambiguous.
fn commit(salt: &Salt, value: &str) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&salt.0);
    ctx.update(value.as_bytes());
    Digest::from_ring(&ctx.finish())
}

/// One commitment and, while the value is still held, its opening (salt and value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Commitment {
    commitment: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<Salt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl Commitment {
    fn new(value: String, rng: &SystemRandom) -> Result<Self> {
        let salt = Salt::random(rng)?;
        Ok(Self {
            commitment: commit(&salt, &value),
            salt: Some(salt),
            value: Some(value),
        })
    }

    /// Whether what is held still matches: nothing held, or salt and value that open it.
    fn holds(&self) -> bool {
        match (&self.salt, &self.value) {
            (None, None) => true,
            (Some(salt), Some(value)) => commit(salt, value) == self.commitment,
            _ => false,
        }
    }

    fn drop_opening(&mut self) -> bool {
        let had = self.value.is_some() || self.salt.is_some();
        self.salt = None;
        self.value = None;
        had
    }
}

/// What a personal field still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalState {
    /// The value as recorded.
    Present,
    /// Only the coarse form (an IP address's network) is left.
    Anonymised,
    /// Nothing is left but the commitments.
    Erased,
}

/// A personal value inside a record, covered by the chain through salted commitments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalField {
    name: String,
    #[serde(flatten)]
    full: Commitment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coarse: Option<Commitment>,
}

impl PersonalField {
    pub(crate) fn ip(ip: IpAddr, rng: &SystemRandom) -> Result<Self> {
        Ok(Self {
            name: IP.to_owned(),
            full: Commitment::new(ip.to_string(), rng)?,
            coarse: Some(Commitment::new(coarsen_ip(ip).to_string(), rng)?),
        })
    }

    pub(crate) fn text(name: String, value: String, rng: &SystemRandom) -> Result<Self> {
        Ok(Self {
            name,
            full: Commitment::new(value, rng)?,
            coarse: None,
        })
    }

    /// The field's name (`ip`, `userAgent`, or the name the record gave it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value still held: the original, else the coarse form, else nothing.
    pub fn value(&self) -> Option<&str> {
        self.full
            .value
            .as_deref()
            .or_else(|| self.coarse.as_ref().and_then(|c| c.value.as_deref()))
    }

    /// Whether the field is intact, anonymised or erased.
    pub fn state(&self) -> PersonalState {
        if self.full.value.is_some() {
            PersonalState::Present
        } else if self.coarse.as_ref().is_some_and(|c| c.value.is_some()) {
            PersonalState::Anonymised
        } else {
            PersonalState::Erased
        }
    }

    /// Keeps only the coarse form (or nothing, when there is none). True when something changed.
    pub(crate) fn anonymise(&mut self) -> bool {
        self.full.drop_opening()
    }

    /// Keeps nothing but the commitments. True when something changed.
    pub(crate) fn erase(&mut self) -> bool {
        let a = self.full.drop_opening();
        let b = self.coarse.as_mut().is_some_and(Commitment::drop_opening);
        a || b
    }

    /// Whether every value still held matches its commitment.
    pub(crate) fn holds(&self) -> bool {
        self.full.holds() && self.coarse.as_ref().is_none_or(Commitment::holds)
    }

    /// The commitments the chain hashes: the full one and, if any, the coarse one.
    pub(crate) fn commitments(&self) -> (&Digest, Option<&Digest>) {
        (
            &self.full.commitment,
            self.coarse.as_ref().map(|c| &c.commitment),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymised_ip_keeps_its_network_and_its_commitments() {
        let rng = SystemRandom::new();
        let mut f = PersonalField::ip("203.0.113.77".parse().unwrap(), &rng).unwrap();
        let before = (*f.commitments().0, f.commitments().1.copied());
        assert!(f.holds());
        assert!(f.anonymise());
        assert_eq!(f.value(), Some("203.0.113.0"));
        assert_eq!(f.state(), PersonalState::Anonymised);
        assert!(f.holds());
        assert!(f.erase());
        assert_eq!(f.value(), None);
        assert_eq!(f.state(), PersonalState::Erased);
        assert_eq!((*f.commitments().0, f.commitments().1.copied()), before);
    }

    #[test]
    fn altered_value_no_longer_holds() {
        let rng = SystemRandom::new();
        let mut f = PersonalField::text(USER_AGENT.into(), "curl/8".into(), &rng).unwrap();
        f.full.value = Some("curl/9".into());
        assert!(!f.holds());
    }
}
