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

/// Whether [`coarse_values`] has something to give, without building it.
#[cfg(feature = "sqlite")]
fn has_coarse_form(values: &Values) -> bool {
    values
        .get(IP)
        .is_some_and(|ip| ip.parse::<IpAddr>().is_ok())
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

/// The compact form of personal data the SQLite sink stores (format in `docs/audit-chain.md`).
///
/// While a record still holds its salt and values, its commitments follow from them and are
/// not stored: the record hash binds them, so an altered value or salt is still detected (as a
/// hash mismatch). Once anonymisation or erasure drops the salt, the commitments are stored.
/// A request-log row holds about 50 bytes of personal data this way instead of about 270 as
/// JSON, which is most of what the writer thread spends per row.
#[cfg(feature = "sqlite")]
pub(crate) mod compact {
    use super::{Personal, SALT_LEN, Salt, Values, coarse_values, commit, has_coarse_form};
    use crate::digest::Digest;
    use crate::error::{Error, Result};

    const VERSION: u8 = 1;
    /// Salt and values follow; the commitment is computed from them.
    const OPEN: u8 = 0x01;
    /// The coarse commitment is computed from the salt and the IP address (with `OPEN`).
    const COARSE_DERIVED: u8 = 0x02;
    /// The coarse commitment is stored.
    const COARSE_STORED: u8 = 0x04;
    /// The coarse salt and coarse values follow.
    const COARSE_OPEN: u8 = 0x08;
    const KNOWN: u8 = OPEN | COARSE_DERIVED | COARSE_STORED | COARSE_OPEN;
    const CORRUPT: Error = Error::Corrupt("personal data");

    /// Appends `p`'s compact form to `out`.
    ///
    /// Relies on what [`Personal::new`] guarantees of data that still holds its values: the
    /// commitment opens to the salt and values, and the coarse commitment (if any) to the
    /// network of the held IP address. Data read back from storage in that state is only
    /// ever stored again unchanged.
    pub(crate) fn encode(p: &Personal, out: &mut Vec<u8>) {
        let open = match (&p.salt, &p.values) {
            (Some(salt), Some(values)) => Some((salt, values)),
            _ => None,
        };
        let coarse_derived = p.coarse_commitment.is_some()
            && open.is_some_and(|(_, values)| has_coarse_form(values));
        let mut flags = 0;
        if open.is_some() {
            flags |= OPEN;
        }
        if coarse_derived {
            flags |= COARSE_DERIVED;
        } else if p.coarse_commitment.is_some() {
            flags |= COARSE_STORED;
        }
        let coarse_open = match (&p.coarse_salt, &p.coarse_values) {
            (Some(salt), Some(values)) => Some((salt, values)),
            _ => None,
        };
        if coarse_open.is_some() {
            flags |= COARSE_OPEN;
        }
        out.push(VERSION);
        out.push(flags);
        if open.is_none() {
            out.extend_from_slice(p.commitment.as_bytes());
        }
        if let (false, Some(c)) = (coarse_derived, &p.coarse_commitment) {
            out.extend_from_slice(c.as_bytes());
        }
        for (salt, values) in open.into_iter().chain(coarse_open) {
            out.extend_from_slice(&salt.0);
            varint(out, values.0.len());
            for (name, value) in values.iter() {
                varint(out, name.len());
                out.extend_from_slice(name.as_bytes());
                varint(out, value.len());
                out.extend_from_slice(value.as_bytes());
            }
        }
    }

    /// Reads what [`encode`] wrote; `buf` is scratch space for the commitments it computes.
    pub(crate) fn decode(bytes: &[u8], buf: &mut Vec<u8>) -> Result<Personal> {
        let mut r = Reader(bytes);
        if r.byte()? != VERSION {
            return Err(CORRUPT);
        }
        let flags = r.byte()?;
        if flags & !KNOWN != 0
            || flags & (COARSE_DERIVED | COARSE_STORED) == COARSE_DERIVED | COARSE_STORED
            || (flags & COARSE_DERIVED != 0 && flags & OPEN == 0)
        {
            return Err(CORRUPT);
        }
        // In the order they are written.
        let stored = (flags & OPEN == 0).then(|| r.digest()).transpose()?;
        let coarse_stored = (flags & COARSE_STORED != 0)
            .then(|| r.digest())
            .transpose()?;
        let open = (flags & OPEN != 0).then(|| r.opening()).transpose()?;
        let coarse_open = (flags & COARSE_OPEN != 0)
            .then(|| r.opening())
            .transpose()?;
        if !r.0.is_empty() {
            return Err(CORRUPT);
        }
        let commitment = match (&open, stored) {
            (Some((salt, values)), _) => commit(salt, values, buf),
            (None, Some(c)) => c,
            (None, None) => return Err(CORRUPT),
        };
        let coarse_commitment = match &open {
            Some((salt, values)) if flags & COARSE_DERIVED != 0 => {
                let coarse = coarse_values(values).ok_or(CORRUPT)?;
                Some(commit(&salt.coarse(), &coarse, buf))
            }
            _ => coarse_stored,
        };
        let (salt, values) = open.unzip();
        let (coarse_salt, coarse_values) = coarse_open.unzip();
        Ok(Personal {
            commitment,
            salt,
            values,
            coarse_commitment,
            coarse_salt,
            coarse_values,
        })
    }

    /// LEB128: seven bits a byte, low bits first.
    fn varint(out: &mut Vec<u8>, mut n: usize) {
        while n >= 0x80 {
            out.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    struct Reader<'a>(&'a [u8]);

    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8]> {
            if n > self.0.len() {
                return Err(CORRUPT);
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn byte(&mut self) -> Result<u8> {
            Ok(self.take(1)?[0])
        }
        fn varint(&mut self) -> Result<usize> {
            let mut n: usize = 0;
            for shift in (0..usize::BITS).step_by(7) {
                let b = self.byte()?;
                n |= usize::from(b & 0x7f).checked_shl(shift).ok_or(CORRUPT)?;
                if b & 0x80 == 0 {
                    return Ok(n);
                }
            }
            Err(CORRUPT)
        }
        fn digest(&mut self) -> Result<Digest> {
            Digest::from_slice(self.take(32)?).ok_or(CORRUPT)
        }
        fn text(&mut self) -> Result<String> {
            let n = self.varint()?;
            let bytes = self.take(n)?;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| CORRUPT)
        }
        fn opening(&mut self) -> Result<(Salt, Values)> {
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(self.take(SALT_LEN)?);
            let count = self.varint()?;
            let mut values = Values::new();
            for _ in 0..count {
                let name = self.text()?;
                let value = self.text()?;
                values.insert(name, value);
            }
            if values.0.len() != count {
                return Err(CORRUPT);
            }
            Ok((Salt(salt), values))
        }
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

    #[cfg(feature = "sqlite")]
    mod compact_form {
        use super::super::compact::{decode, encode};
        use super::*;
        use proptest::prelude::*;

        fn round_trip(p: &Personal) -> Vec<u8> {
            let mut out = Vec::new();
            encode(p, &mut out);
            assert_eq!(&decode(&out, &mut Vec::new()).unwrap(), p);
            out
        }

        #[test]
        fn every_state_reads_back_as_written_and_only_lost_openings_cost_commitments() {
            let ip: IpAddr = "203.0.113.77".parse().unwrap();
            let v = values(&[(IP, "203.0.113.77"), (USER_AGENT, "curl/8")]);
            let mut p = Personal::new(v, Some(ip)).unwrap().unwrap();
            // Version, flags, salt, count, two (length, name, length, value): no commitment.
            let present = round_trip(&p);
            assert_eq!(
                present.len(),
                2 + 16 + 1 + (1 + 2 + 1 + 12) + (1 + 9 + 1 + 6)
            );
            assert!(p.anonymise());
            round_trip(&p);
            assert!(p.erase());
            assert_eq!(round_trip(&p).len(), 2 + 32 + 32);

            let v6: IpAddr = "2001:db8:1:2::7".parse().unwrap();
            let p = Personal::new(values(&[(IP, &ip_text(v6))]), Some(v6))
                .unwrap()
                .unwrap();
            round_trip(&p);
            let p = Personal::new(values(&[("email", "a@example.com")]), None)
                .unwrap()
                .unwrap();
            round_trip(&p);
        }

        #[test]
        fn malformed_bytes_are_corrupt_not_a_panic() {
            let ip: IpAddr = "203.0.113.77".parse().unwrap();
            let p = Personal::new(values(&[(IP, "203.0.113.77")]), Some(ip))
                .unwrap()
                .unwrap();
            let mut good = Vec::new();
            encode(&p, &mut good);
            for cut in 0..good.len() {
                assert!(
                    decode(&good[..cut], &mut Vec::new()).is_err(),
                    "cut at {cut}"
                );
            }
            let mut trailing = good.clone();
            trailing.push(0);
            assert!(decode(&trailing, &mut Vec::new()).is_err());
            for (at, byte) in [(0, 2), (1, 0x40), (1, 0x06), (1, 0x02)] {
                let mut bad = good.clone();
                bad[at] = byte;
                assert!(decode(&bad, &mut Vec::new()).is_err(), "{at}: {byte:#x}");
            }
        }

        proptest! {
            #[test]
            fn any_values_round_trip_and_any_bytes_decode_without_panicking(
                pairs in proptest::collection::btree_map("[a-zA-Z]{1,12}", ".{0,300}", 0..4),
                octets in proptest::option::of(any::<[u8; 4]>()),
                step in 0u8..3,
                noise in proptest::collection::vec(any::<u8>(), 0..80),
            ) {
                let mut v = Values::new();
                for (name, value) in pairs {
                    v.insert(name, value);
                }
                let ip = octets.map(IpAddr::from);
                if let Some(ip) = ip {
                    v.insert(IP.to_owned(), ip_text(ip));
                }
                if let Some(mut p) = Personal::new(v, ip).unwrap() {
                    if step >= 1 {
                        p.anonymise();
                    }
                    if step >= 2 {
                        p.erase();
                    }
                    round_trip(&p);
                }
                let _ = decode(&noise, &mut Vec::new());
            }
        }
    }
}
