//! `Idempotency-Key` on POST: per API key, for 24 hours.
//!
//! The first request with a key runs; while it runs, a second gets `409 idempotency_conflict`;
//! afterwards the same request gets the stored status and body again with
//! `Idempotent-Replayed: true`, and a different request with the same key gets
//! `422 idempotency_key_reused`. Stored responses (a replayed mint must return the same token)
//! are kept **in memory only**, zeroed when dropped, and never written to disk: a restart
//! forgets them. Server errors (5xx) are not stored, so the client may retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_keys::KeyId;
use bytes::Bytes;
use http::StatusCode;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// How long a key's result is kept.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Most entries kept; the oldest are dropped first beyond this.
const CAPACITY: usize = 100_000;
/// Longest accepted `Idempotency-Key`.
pub(crate) const MAX_KEY_LEN: usize = 255;

type Slot = (KeyId, String);

#[derive(Debug)]
enum State {
    InFlight,
    Done(Stored),
}

/// A response kept for replay.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) body: Arc<Zeroizing<Vec<u8>>>,
}

#[derive(Debug)]
struct Entry {
    fingerprint: [u8; 32],
    state: State,
    at: Instant,
}

/// The in-memory idempotency table.
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    entries: Arc<Mutex<HashMap<Slot, Entry>>>,
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug)]
pub(crate) enum Begin {
    /// Run it; complete the ticket with its response.
    Run(Ticket),
    /// Answer with this stored response.
    Replay(Stored),
}

/// The right to run a request; dropping it without completing frees the key again.
#[derive(Debug)]
pub(crate) struct Ticket {
    entries: Arc<Mutex<HashMap<Slot, Entry>>>,
    slot: Option<Slot>,
}

/// The fingerprint of a request: method, path and query, body.
pub(crate) fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [method.as_bytes(), path_and_query.as_bytes(), body] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Checks an `Idempotency-Key` header value.
pub(crate) fn validate_key(value: &str) -> Result<String, ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid_request(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ))
    }
}

impl Idempotency {
    /// Registers a request, or says how to answer it.
    pub(crate) fn begin(
        &self,
        api_key: KeyId,
        idem_key: String,
        fingerprint: [u8; 32],
    ) -> Result<Begin, ApiError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (api_key, idem_key);
        if let Some(e) = entries.get(&slot) {
            if now.duration_since(e.at) < TTL {
                if e.fingerprint != fingerprint {
                    return Err(ApiError::idempotency_key_reused());
                }
                return match &e.state {
                    State::InFlight => Err(ApiError::idempotency_conflict()),
                    State::Done(stored) => Ok(Begin::Replay(stored.clone())),
                };
            }
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now.duration_since(e.at) < TTL);
            if entries.len() >= CAPACITY {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            slot.clone(),
            Entry {
                fingerprint,
                state: State::InFlight,
                at: now,
            },
        );
        Ok(Begin::Run(Ticket {
            entries: Arc::clone(&self.entries),
            slot: Some(slot),
        }))
    }
}

impl Ticket {
    /// Stores the response for replay (not for server errors, which free the key instead).
    pub(crate) fn complete(mut self, status: StatusCode, body: &Bytes) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if status.is_server_error() {
            entries.remove(&slot);
            return;
        }
        if let Some(e) = entries.get_mut(&slot) {
            e.state = State::Done(Stored {
                status,
                body: Arc::new(Zeroizing::new(body.to_vec())),
            });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            entries.remove(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_then_replay_then_reuse_is_refused() {
        let t = Idempotency::default();
        let k = KeyId::new();
        let fp = fingerprint("POST", "/api/v1/keys", b"{}");
        let Begin::Run(ticket) = t.begin(k, "a".into(), fp).unwrap() else {
            panic!()
        };
        assert_eq!(
            t.begin(k, "a".into(), fp).unwrap_err().code,
            "idempotency_conflict"
        );
        ticket.complete(StatusCode::CREATED, &Bytes::from_static(b"{\"x\":1}"));
        let Begin::Replay(s) = t.begin(k, "a".into(), fp).unwrap() else {
            panic!()
        };
        assert_eq!(s.status, StatusCode::CREATED);
        assert_eq!(&s.body[..], b"{\"x\":1}");
        let other = fingerprint("POST", "/api/v1/keys", b"{\"y\":2}");
        assert_eq!(
            t.begin(k, "a".into(), other).unwrap_err().code,
            "idempotency_key_reused"
        );
        // Another API key has its own namespace.
        assert!(matches!(
            t.begin(KeyId::new(), "a".into(), other).unwrap(),
            Begin::Run(_)
        ));
    }

    #[test]
    fn an_abandoned_or_failed_request_frees_the_key() {
        let t = Idempotency::default();
        let k = KeyId::new();
        let fp = fingerprint("POST", "/p", b"");
        drop(t.begin(k, "a".into(), fp).unwrap());
        let Begin::Run(ticket) = t.begin(k, "a".into(), fp).unwrap() else {
            panic!()
        };
        ticket.complete(StatusCode::INTERNAL_SERVER_ERROR, &Bytes::new());
        assert!(matches!(t.begin(k, "a".into(), fp).unwrap(), Begin::Run(_)));
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("abc-123").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"x".repeat(256)).is_err());
        assert!(validate_key("tab\there").is_err());
    }
}
