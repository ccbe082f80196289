//! The byte form of a request-log record in a segment file (format in `docs/audit-chain.md`,
//! "The request-log segments").
//!
//! ```text
//! frame = u32 body length (LE) ‖ u32 CRC-32 of the body (LE) ‖ body
//! body  = u8 version (1) ‖ u64 sequence ‖ raw32 previous hash ‖ raw32 hash ‖ raw16 id ‖
//!         i64 time (ms) ‖ ostr organisation ‖ ostr environment ‖ actor ‖ str action ‖
//!         ostr target ‖ ostr request id ‖ ostr method ‖ ostr path ‖ opt u16 status ‖
//!         opt u64 latency (µs) ‖ ostr subject ‖ str metadata ‖
//!         opt (u32 length ‖ personal data in its compact form)
//! actor = u8 0 (system) | u8 1 ‖ str id ‖ str prefix (API key) | u8 2 ‖ str id (user)
//! str   = varint length ‖ UTF-8 bytes;  ostr / opt = u8 0 | u8 1 ‖ value; integers LE
//! ```
//!
//! The CRC tells a frame cut short by a crash from a whole one; the chain's hashes, not the
//! CRC, protect the content.

use chrono::DateTime;
use uuid::Uuid;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::personal::compact;
use crate::record::{Actor, Entry, Record, Stream};

const VERSION: u8 = 1;
/// Frame header: length and CRC.
pub(super) const HEADER: usize = 8;
/// A body longer than this is not a frame (records are bounded well below it).
const MAX_BODY: usize = 16 << 20;
const CORRUPT: Error = Error::Corrupt("request-log segment");

/// Appends `r`'s frame to `out`.
pub(super) fn encode(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let e = &r.entry;
    out.push(VERSION);
    out.extend_from_slice(&r.sequence.to_le_bytes());
    out.extend_from_slice(r.prev_hash.as_bytes());
    out.extend_from_slice(r.hash.as_bytes());
    out.extend_from_slice(e.id.as_bytes());
    out.extend_from_slice(&e.time.timestamp_millis().to_le_bytes());
    ostr(out, e.organization.as_deref());
    ostr(out, e.environment.map(|v| v.as_str()));
    match &e.actor {
        Actor::System => out.push(0),
        Actor::ApiKey { id, prefix } => {
            out.push(1);
            str(out, id);
            str(out, prefix);
        }
        Actor::User { id } => {
            out.push(2);
            str(out, id);
        }
    }
    str(out, &e.action);
    ostr(out, e.target.as_deref());
    ostr(out, e.request_id.as_deref());
    ostr(out, e.method.as_deref());
    ostr(out, e.path.as_deref());
    match e.status {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    match e.latency_us {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            out.extend_from_slice(&l.to_le_bytes());
        }
    }
    ostr(out, e.subject.as_deref());
    str(out, &e.metadata);
    match &e.personal {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            // A fixed-width length, patched once the compact form is written.
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            compact::encode(p, out);
            let n = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
            out[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
    }
    let len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    // Bodies are far below 4 GiB (every field is bounded by the entry builder).
    out[start..start + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn str(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn ostr(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            str(out, s);
        }
    }
}

/// What is at the start of a byte slice.
pub(super) enum Next<'a> {
    /// A whole frame with a matching CRC: its body and the frame's length.
    Frame(&'a [u8], usize),
    /// Nothing left.
    End,
    /// Fewer bytes than the frame announces: a write cut short (at the end of a segment).
    Torn,
    /// A whole frame whose CRC does not match, or an impossible length.
    Bad,
}

/// The frame at the start of `bytes`.
pub(super) fn next(bytes: &[u8]) -> Next<'_> {
    if bytes.is_empty() {
        return Next::End;
    }
    let Some(header) = bytes.get(..HEADER) else {
        return Next::Torn;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_BODY {
        return Next::Bad;
    }
    let Some(body) = bytes.get(HEADER..HEADER + len) else {
        return Next::Torn;
    };
    if crc32fast::hash(body) != crc {
        return Next::Bad;
    }
    Next::Frame(body, HEADER + len)
}

/// A frame's body read in place: the fields queries filter on, borrowed; the rest decoded
/// only by [`View::record`].
pub(super) struct View<'a> {
    pub(super) sequence: u64,
    pub(super) time_ms: i64,
    pub(super) organization: Option<&'a str>,
    pub(super) actor_id: Option<&'a str>,
    pub(super) action: &'a str,
    pub(super) target: Option<&'a str>,
    pub(super) status: Option<u16>,
    pub(super) subject: Option<&'a str>,
    pub(super) metadata: &'a str,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(CORRUPT);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| CORRUPT)
    }
    fn varint(&mut self) -> Result<usize> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f).checked_shl(shift).ok_or(CORRUPT)?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(CORRUPT)
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CORRUPT)
    }
    fn flag(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CORRUPT),
        }
    }
    fn ostr(&mut self) -> Result<Option<&'a str>> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<'a> View<'a> {
    /// Reads the filterable fields of `body`.
    pub(super) fn of(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader(body);
        if r.byte()? != VERSION {
            return Err(CORRUPT);
        }
        let sequence = u64::from_le_bytes(r.array()?);
        r.take(32 + 32 + 16)?;
        let time_ms = i64::from_le_bytes(r.array()?);
        let organization = r.ostr()?;
        r.ostr()?;
        let actor_id = match r.byte()? {
            0 => None,
            1 => {
                let id = r.str()?;
                r.str()?;
                Some(id)
            }
            2 => Some(r.str()?),
            _ => return Err(CORRUPT),
        };
        let action = r.str()?;
        let target = r.ostr()?;
        r.ostr()?;
        r.ostr()?;
        r.ostr()?;
        let status = if r.flag()? {
            Some(u16::from_le_bytes(r.array()?))
        } else {
            None
        };
        if r.flag()? {
            r.take(8)?;
        }
        let subject = r.ostr()?;
        let metadata = r.str()?;
        Ok(Self {
            sequence,
            time_ms,
            organization,
            actor_id,
            status,
            metadata,
            action,
            target,
            subject,
        })
    }

    /// Whether the record concerns data subject `s` (as subject or actor).
    pub(super) fn concerns(&self, s: &str) -> bool {
        self.subject == Some(s) || self.actor_id == Some(s)
    }
}

/// Decodes a frame's body into its record.
pub(super) fn decode(body: &[u8]) -> Result<Record> {
    let mut r = Reader(body);
    if r.byte()? != VERSION {
        return Err(CORRUPT);
    }
    let sequence = u64::from_le_bytes(r.array()?);
    let prev_hash = Digest::from_slice(r.take(32)?).ok_or(CORRUPT)?;
    let hash = Digest::from_slice(r.take(32)?).ok_or(CORRUPT)?;
    let id = Uuid::from_bytes(r.array()?);
    let time = DateTime::from_timestamp_millis(i64::from_le_bytes(r.array()?)).ok_or(CORRUPT)?;
    let organization = r.ostr()?.map(str::to_owned);
    let environment = match r.ostr()? {
        None => None,
        Some(name) => Some(align_core::Environment::from_name(name).ok_or(CORRUPT)?),
    };
    let actor = match r.byte()? {
        0 => Actor::System,
        1 => Actor::ApiKey {
            id: r.str()?.to_owned(),
            prefix: r.str()?.to_owned(),
        },
        2 => Actor::User {
            id: r.str()?.to_owned(),
        },
        _ => return Err(CORRUPT),
    };
    let action = r.str()?.to_owned();
    let target = r.ostr()?.map(str::to_owned);
    let request_id = r.ostr()?.map(str::to_owned);
    let method = r.ostr()?.map(str::to_owned);
    let path = r.ostr()?.map(str::to_owned);
    let status = if r.flag()? {
        Some(u16::from_le_bytes(r.array()?))
    } else {
        None
    };
    let latency_us = if r.flag()? {
        Some(u64::from_le_bytes(r.array()?))
    } else {
        None
    };
    let subject = r.ostr()?.map(str::to_owned);
    let metadata = r.str()?.to_owned();
    let personal = if r.flag()? {
        let n = u32::from_le_bytes(r.array()?) as usize;
        Some(compact::decode(r.take(n)?, &mut Vec::with_capacity(128))?)
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(CORRUPT);
    }
    Ok(Record {
        sequence,
        prev_hash,
        hash,
        entry: Entry {
            id,
            stream: Stream::Request,
            time,
            organization,
            environment,
            actor,
            action,
            target,
            request_id,
            method,
            path,
            status,
            latency_us,
            subject,
            metadata,
            personal,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;
    use crate::record::Head;

    fn record(n: u64) -> Record {
        let entry = Entry::request("GET", "/api/v1/me")
            .actor(Actor::ApiKey {
                id: format!("key_{n}"),
                prefix: "ako_00000000".into(),
            })
            .organization("org_1")
            .status(200)
            .latency(std::time::Duration::from_micros(41))
            .ip("203.0.113.9".parse().unwrap())
            .user_agent("curl/8")
            .request_id("req_1")
            .build()
            .unwrap();
        let mut head = Head {
            sequence: n - 1,
            hash: Digest::of(b"prev"),
        };
        crate::chain::seal(entry, &mut head, &mut Vec::new())
    }

    #[test]
    fn frames_round_trip_and_tell_torn_from_bad() {
        let mut bytes = Vec::new();
        let (a, b) = (record(1), record(2));
        encode(&a, &mut bytes);
        encode(&b, &mut bytes);
        let Next::Frame(body, used) = next(&bytes) else {
            panic!("no frame")
        };
        assert_eq!(decode(body).unwrap(), a);
        let view = View::of(body).unwrap();
        assert_eq!((view.sequence, view.actor_id), (1, Some("key_1")));
        assert!(view.concerns("key_1") && !view.concerns("key_2"));
        let Next::Frame(body, _) = next(&bytes[used..]) else {
            panic!("no frame")
        };
        assert_eq!(decode(body).unwrap(), b);
        assert!(matches!(next(&bytes[used..bytes.len() - 1]), Next::Torn));
        let mut flipped = bytes.clone();
        flipped[HEADER + 20] ^= 1;
        assert!(matches!(next(&flipped), Next::Bad));
        assert!(matches!(next(&[]), Next::End));
    }
}
