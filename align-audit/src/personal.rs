//! A record's personal data (IP address, user agent, anything the record marks personal) and
//! the salted commitments through which the hash chain covers it.
//!
//! The chain hashes a *commitment* `SHA-256(salt ‖ encoding of the values)`, never the values.
//! Every privacy operation acts on a record's personal data as a whole, so one commitment
//! covers all of it, with one random salt per record. Dropping the values and the salt
//! (anonymisation, erasure) leaves the commitment, so the chain still verifies; without the
//! salt the commitment no longer reveals the values, not even a guessable IPv4 address.
//!
//! When the record has an IP address it also carries a *coarse* commitment to its /24 (IPv4)
//! or /48 (IPv6) network. Its salt is derived one-way from the record's salt, so it needs no
//! storage until anonymisation reveals it; from then on the network stays verifiable.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, hex_decode, hex_encode_into};
use crate::encode::Encoder;
use crate::error::Result;
use crate::privacy::coarsen_ip;

/// The name of the personal value holding the client IP address.
pub const IP: &str = "ip";
/// The name of the personal value holding the user agent.
pub const USER_AGENT: &str = "userAgent";

const SALT_LEN: usize = 16;
const COARSE_SALT_TAG: &[u8] = b"align-audit/coarse-salt/v1";

/// Personal values by name, kept sorted so their encoding is canonical. A sorted vector
/// rather than a map: records hold one or two values, and verification walks millions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Values(Vec<(String, String)>);

impl Values {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub(crate) fn insert(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl IntoIterator for Values {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A map: names arrive unique, and the B-tree hands them back sorted.
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// A random per-record salt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Salt([u8; SALT_LEN]);

impl Salt {
    fn random() -> Result<Self> {
        let mut s = [0u8; SALT_LEN];
        crate::random::fill(&mut s)?;
        Ok(Self(s))
    }

    /// The coarse commitment's salt: one-way from the record's, so revealing it on
    /// anonymisation says nothing about the record's salt.
    fn coarse(&self) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(COARSE_SALT_TAG);
        ctx.update(&self.0);
        let d = ctx.finish();
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(&d.as_ref()[..SALT_LEN]);
        Self(s)
    }
}

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 2 * SALT_LEN];
        s.serialize_str(hex_encode_into(&self.0, &mut text))
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

/// `SHA-256(salt ‖ u64 count ‖ (str name ‖ str value)…)`, names in sorted order; `buf` is
/// scratch space (verification reuses one across records).
fn commit(salt: &Salt, values: &Values, buf: &mut Vec<u8>) -> Digest {
    buf.clear();
    buf.extend_from_slice(&salt.0);
    let mut enc = Encoder(buf);
    enc.u64(values.0.len() as u64);
    for (name, value) in values.iter() {
        enc.str(name);
        enc.str(value);
    }
    Digest::of(buf)
}

/// The coarse forms of the values that have one (the IP address's network).
fn coarse_values(values: &Values) -> Option<Values> {
    values.get(IP)?.parse().ok().map(coarse_of)
}

/// The coarse values of a record whose IP address is `ip`.
fn coarse_of(ip: IpAddr) -> Values {
    Values(vec![(IP.to_owned(), ip_text(coarsen_ip(ip)))])
}

/// `ip.to_string()`, without the formatting machinery for IPv4 (two addresses per request-log
/// entry).
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// What a record's personal data still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalState {
    /// The values as recorded.
    Present,
    /// Only the IP address's network is left.
    Anonymised,
    /// Nothing is left but the commitments.
    Erased,
}

/// A record's personal values with their commitments (stored form: see
/// `docs/audit-chain.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Personal {
    commitment: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<Salt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coarse_commitment: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coarse_salt: Option<Salt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coarse_values: Option<Values>,
}

impl Personal {
    /// Commits `values` (none: no personal data, `None`) under a fresh salt. `ip` is the
    /// address held under [`IP`] in `values`, if any (already parsed).
    pub(crate) fn new(values: Values, ip: Option<IpAddr>) -> Result<Option<Self>> {
        if values.is_empty() {
            return Ok(None);
        }
        let salt = Salt::random()?;
        let mut buf = Vec::with_capacity(128);
        let coarse_commitment = ip.map(|ip| commit(&salt.coarse(), &coarse_of(ip), &mut buf));
        Ok(Some(Self {
            commitment: commit(&salt, &values, &mut buf),
            salt: Some(salt),
            values: Some(values),
            coarse_commitment,
            coarse_salt: None,
            coarse_values: None,
        }))
    }

    /// The value called `name` still held: the original, else its coarse form.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values
            .as_ref()
            .or(self.coarse_values.as_ref())?
            .get(name)
    }

    /// Every value still held, by name.
    pub(crate) fn held(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .as_ref()
            .or(self.coarse_values.as_ref())
            .into_iter()
            .flat_map(Values::iter)
    }

    pub(crate) fn state(&self) -> PersonalState {
        if self.values.is_some() {
            PersonalState::Present
        } else if self.coarse_values.is_some() {
            PersonalState::Anonymised
        } else {
            PersonalState::Erased
        }
    }

    /// Keeps only the IP address's network (opened under the derived salt). True when
    /// something changed.
    pub(crate) fn anonymise(&mut self) -> bool {
        let (Some(salt), Some(values)) = (self.salt.take(), self.values.take()) else {
            return false;
        };
        let coarse_salt = salt.coarse();
        if let (Some(expected), Some(coarse)) = (self.coarse_commitment, coarse_values(&values)) {
            // A coarse form that does not open its commitment was never written by this
            // crate; keep nothing rather than a value the chain does not cover.
            if commit(&coarse_salt, &coarse, &mut Vec::new()) == expected {
                self.coarse_salt = Some(coarse_salt);
                self.coarse_values = Some(coarse);
            }
        }
        true
    }

    /// Keeps nothing but the commitments. True when something changed.
    pub(crate) fn erase(&mut self) -> bool {
        let had = self.salt.is_some()
            || self.values.is_some()
            || self.coarse_salt.is_some()
            || self.coarse_values.is_some();
        self.salt = None;
        self.values = None;
        self.coarse_salt = None;
        self.coarse_values = None;
        had
    }

    /// Whether everything held matches its commitment; `buf` is scratch space.
    pub(crate) fn holds(&self, buf: &mut Vec<u8>) -> bool {
        let full = match (&self.salt, &self.values) {
            (None, None) => true,
            (Some(salt), Some(values)) => commit(salt, values, buf) == self.commitment,
            _ => false,
        };
        let coarse = match (
            &self.coarse_salt,
            &self.coarse_values,
            &self.coarse_commitment,
        ) {
            (None, None, _) => true,
            (Some(salt), Some(values), Some(c)) => commit(salt, values, buf) == *c,
            _ => false,
        };
        full && coarse
    }

    /// The commitments the chain hashes.
    pub(crate) fn commitments(&self) -> (&Digest, Option<&Digest>) {
        (&self.commitment, self.coarse_commitment.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        let mut v = Values::new();
        for (k, val) in pairs {
            v.insert((*k).to_owned(), (*val).to_owned());
        }
        v
    }

    #[test]
    fn anonymised_data_keeps_the_network_and_the_commitments() {
        let ip: IpAddr = "203.0.113.77".parse().unwrap();
        let v = values(&[(IP, "203.0.113.77"), (USER_AGENT, "curl/8")]);
        let mut p = Personal::new(v, Some(ip)).unwrap().unwrap();
        let before = (p.commitment, p.coarse_commitment);
        assert!(p.holds(&mut Vec::new()));
        assert!(p.anonymise());
        assert!(!p.anonymise());
        assert_eq!(p.value(IP), Some("203.0.113.0"));
        assert_eq!(p.value(USER_AGENT), None);
        assert_eq!(p.state(), PersonalState::Anonymised);
        assert!(p.holds(&mut Vec::new()));
        assert!(p.erase());
        assert_eq!((p.value(IP), p.state()), (None, PersonalState::Erased));
        assert_eq!((p.commitment, p.coarse_commitment), before);
    }

    #[test]
    fn ip_text_is_the_display_form() {
        for n in (0..=u32::MAX)
            .step_by(65_521)
            .chain([0, 1, 10, 99, 100, 255, u32::MAX])
        {
            let ip = IpAddr::from(n.to_be_bytes());
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(ip_text(v6), "2001:db8::7");
    }

    #[test]
    fn altered_values_no_longer_hold() {
        let mut p = Personal::new(values(&[(USER_AGENT, "curl/8")]), None)
            .unwrap()
            .unwrap();
        if let Some(v) = p.values.as_mut() {
            v.insert(USER_AGENT.into(), "curl/9".into());
            assert_eq!(v.get(USER_AGENT), Some("curl/9"));
        }
        assert!(!p.holds(&mut Vec::new()));
        assert!(Personal::new(Values::new(), None).unwrap().is_none());
    }
}
