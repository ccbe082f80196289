//! The in-memory idempotency table: one instance's replies, bounded in entries and bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use zeroize::Zeroizing;

use crate::ApiError;

/// How long a key's result is kept.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;
/// What an entry costs beyond its key and reply: the map and queue slots, the fingerprint.
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// The bounds of the idempotency table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Entries at most (default 100,000).
    pub max_entries: usize,
    /// Bytes at most, replies and keys counted (default 64 MiB).
    pub max_bytes: usize,
    /// Bytes one API key's entries may hold (default 1 MiB).
    pub max_bytes_per_key: usize,
    /// Replies longer than this are not kept (default 64 KiB).
    pub max_reply_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_bytes_per_key: 1024 * 1024,
            max_reply_bytes: 64 * 1024,
        }
    }
}

/// (caller, `Idempotency-Key`).
type Slot = (Arc<str>, String);
/// One caller's bytes held and its entries in the order they were made (generation, key).
type KeyEntries = (usize, VecDeque<(u64, String)>);

#[derive(Debug)]
enum State {
    InFlight,
    Done(Stored),
}

/// A response kept for replay.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The status answered.
    pub status: StatusCode,
    /// The body answered (zeroed when the last copy is dropped: it may hold a minted token).
    pub body: Arc<Zeroizing<Vec<u8>>>,
}

#[derive(Debug)]
struct Entry {
    fingerprint: [u8; 32],
    state: State,
    at: Instant,
    /// Tells this entry from an older one of the same slot in the queues.
    generation: u64,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Slot, Entry>,
    /// Every entry in the order it was made (stale items are skipped when popped).
    order: VecDeque<(u64, Slot)>,
    /// Each API key's entries in the order they were made.
    per_key: HashMap<Arc<str>, KeyEntries>,
    bytes: usize,
    next_generation: u64,
}

impl Table {
    fn remove(&mut self, slot: &Slot) -> Option<Entry> {
        let e = self.entries.remove(slot)?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        if let Some((used, _)) = self.per_key.get_mut(&slot.0) {
            *used = used.saturating_sub(e.bytes);
            if *used == 0 {
                self.per_key.remove(&slot.0);
            }
        }
        Some(e)
    }

    /// Adds an entry of `bytes` for `slot` (not in the table), evicting the key's own oldest
    /// entries, then anyone's, to stay within `budget`; returns its generation.
    fn insert(
        &mut self,
        slot: Slot,
        fingerprint: [u8; 32],
        state: State,
        bytes: usize,
        budget: &Budget,
    ) -> u64 {
        while self.entries.len() >= budget.max_entries && self.evict_oldest() {}
        while self
            .per_key
            .get(&slot.0)
            .is_some_and(|(used, _)| used.saturating_add(bytes) > budget.max_bytes_per_key)
            && self.evict_oldest_of(&slot.0)
        {}
        while self.bytes.saturating_add(bytes) > budget.max_bytes && self.evict_oldest() {}
        let generation = self.next_generation;
        self.next_generation += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        let (used, queue) = self.per_key.entry(Arc::clone(&slot.0)).or_default();
        *used = used.saturating_add(bytes);
        queue.push_back((generation, slot.1.clone()));
        self.order.push_back((generation, slot.clone()));
        self.entries.insert(
            slot,
            Entry {
                fingerprint,
                state,
                at: Instant::now(),
                generation,
                bytes,
            },
        );
        generation
    }

    /// Removes the entry at `slot` if it is still the one queued as `generation` (a queue
    /// holds stale places of entries replaced or removed since); false when it is not.
    fn remove_if_current(&mut self, slot: &Slot, generation: u64) -> bool {
        let current = self
            .entries
            .get(slot)
            .is_some_and(|e| e.generation == generation);
        if current {
            self.remove(slot);
        }
        current
    }

    /// Removes the oldest live entry of the whole table; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((generation, slot)) = self.order.pop_front() {
            if self.remove_if_current(&slot, generation) {
                return true;
            }
        }
        false
    }

    /// Removes `key`'s oldest live entry; false when it has none.
    fn evict_oldest_of(&mut self, key: &Arc<str>) -> bool {
        loop {
            let Some((generation, idem)) = self
                .per_key
                .get_mut(key)
                .and_then(|(_, queue)| queue.pop_front())
            else {
                return false;
            };
            if self.remove_if_current(&(Arc::clone(key), idem), generation) {
                return true;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((generation, slot)) = self.order.front() {
            match self.entries.get(slot) {
                Some(e) if e.generation == *generation && now.duration_since(e.at) < TTL => {
                    break;
                }
                Some(e) if e.generation == *generation => {
                    let slot = slot.clone();
                    self.order.pop_front();
                    self.remove(&slot);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
        // Stale queue items of removed entries are dropped as they reach the front; keep the
        // queues from growing past the table when entries are removed out of order.
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|(g, slot)| entries.get(slot).is_some_and(|e| e.generation == *g));
        }
    }
}

/// The in-memory idempotency table.
#[derive(Debug, Default)]
pub(crate) struct Idempotency {
    table: Arc<Mutex<Table>>,
    budget: Budget,
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
    table: Arc<Mutex<Table>>,
    budget: Budget,
    slot: Option<(Slot, u64)>,
}

/// The fingerprint of a request: method, path and query, body.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> [u8; 32] {
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
pub fn validate_key(value: &str) -> Result<String, ApiError> {
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
    /// A table bounded by `budget`.
    #[cfg(test)]
    pub(crate) fn new(budget: Budget) -> Self {
        Self {
            table: Arc::default(),
            budget,
        }
    }

    /// Bytes held now (replies, keys and bookkeeping), for metrics.
    pub(crate) fn bytes(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Registers a request, or says how to answer it.
    pub(crate) fn begin(
        &self,
        api_key: &str,
        idem_key: String,
        fingerprint: [u8; 32],
    ) -> Result<Begin, ApiError> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.expire(Instant::now());
        let slot: Slot = (Arc::from(api_key), idem_key);
        if let Some(e) = table.entries.get(&slot) {
            if e.fingerprint != fingerprint {
                return Err(ApiError::idempotency_key_reused());
            }
            return match &e.state {
                State::InFlight => Err(ApiError::idempotency_conflict()),
                State::Done(stored) => Ok(Begin::Replay(stored.clone())),
            };
        }
        let bytes = ENTRY_OVERHEAD + slot.1.len();
        let generation = table.insert(
            slot.clone(),
            fingerprint,
            State::InFlight,
            bytes,
            &self.budget,
        );
        Ok(Begin::Run(Ticket {
            table: Arc::clone(&self.table),
            budget: self.budget,
            slot: Some((slot, generation)),
        }))
    }
}

impl Ticket {
    /// Stores the response for replay. Server errors free the key instead, and so does a
    /// reply over the size budget (a retry then runs again).
    pub(crate) fn complete(mut self, status: StatusCode, body: &Bytes) {
        let Some((slot, generation)) = self.slot.take() else {
            return;
        };
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = table
            .entries
            .get(&slot)
            .is_some_and(|e| e.generation == generation);
        if !ours {
            return;
        }
        if status.is_server_error()
            || body.len() > self.budget.max_reply_bytes
            || body.len() > self.budget.max_bytes_per_key
        {
            table.remove(&slot);
            return;
        }
        // Taken out and put back with its reply: eviction to make room can then never take
        // this entry itself. Its 24 hours count from now.
        if let Some(e) = table.remove(&slot) {
            let bytes = ENTRY_OVERHEAD + slot.1.len() + body.len();
            let stored = State::Done(Stored {
                status,
                body: Arc::new(Zeroizing::new(body.to_vec())),
            });
            table.insert(slot, e.fingerprint, stored, bytes, &self.budget);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((slot, generation)) = self.slot.take() {
            let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            if table
                .entries
                .get(&slot)
                .is_some_and(|e| e.generation == generation)
            {
                table.remove(&slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_then_replay_then_reuse_is_refused() {
        let t = Idempotency::default();
        let k = uuid::Uuid::new_v4().to_string();
        let fp = fingerprint("POST", "/api/v1/keys", b"{}");
        let Begin::Run(ticket) = t.begin(&k, "a".into(), fp).unwrap() else {
            panic!()
        };
        assert_eq!(
            t.begin(&k, "a".into(), fp).unwrap_err().code,
            "idempotency_conflict"
        );
        ticket.complete(StatusCode::CREATED, &Bytes::from_static(b"{\"x\":1}"));
        let Begin::Replay(s) = t.begin(&k, "a".into(), fp).unwrap() else {
            panic!()
        };
        assert_eq!(s.status, StatusCode::CREATED);
        assert_eq!(&s.body[..], b"{\"x\":1}");
        let other = fingerprint("POST", "/api/v1/keys", b"{\"y\":2}");
        assert_eq!(
            t.begin(&k, "a".into(), other).unwrap_err().code,
            "idempotency_key_reused"
        );
        // Another API key has its own namespace.
        assert!(matches!(
            t.begin(&uuid::Uuid::new_v4().to_string(), "a".into(), other)
                .unwrap(),
            Begin::Run(_)
        ));
    }

    #[test]
    fn an_abandoned_or_failed_request_frees_the_key() {
        let t = Idempotency::default();
        let k = uuid::Uuid::new_v4().to_string();
        let fp = fingerprint("POST", "/p", b"");
        drop(t.begin(&k, "a".into(), fp).unwrap());
        let Begin::Run(ticket) = t.begin(&k, "a".into(), fp).unwrap() else {
            panic!()
        };
        ticket.complete(StatusCode::INTERNAL_SERVER_ERROR, &Bytes::new());
        assert!(matches!(
            t.begin(&k, "a".into(), fp).unwrap(),
            Begin::Run(_)
        ));
    }

    fn run(t: &Idempotency, k: &str, idem: &str, reply: &[u8]) {
        let fp = fingerprint("POST", "/p", idem.as_bytes());
        let Begin::Run(ticket) = t.begin(k, idem.into(), fp).unwrap() else {
            panic!("{idem} was not new")
        };
        ticket.complete(StatusCode::BAD_REQUEST, &Bytes::copy_from_slice(reply));
    }

    fn replays(t: &Idempotency, k: &str, idem: &str) -> bool {
        let fp = fingerprint("POST", "/p", idem.as_bytes());
        matches!(t.begin(k, idem.into(), fp).unwrap(), Begin::Replay(_))
    }

    #[test]
    fn issue_21_finding_1_a_reply_over_the_size_budget_is_not_kept() {
        let t = Idempotency::new(Budget {
            max_reply_bytes: 1000,
            ..Budget::default()
        });
        let k = uuid::Uuid::new_v4().to_string();
        run(&t, &k, "big", &[b'x'; 1001]);
        run(&t, &k, "small", &[b'x'; 1000]);
        assert!(!replays(&t, &k, "big"));
        assert!(replays(&t, &k, "small"));
        assert!(t.bytes() < 2 * 1000);
    }

    #[test]
    fn issue_21_finding_1_one_key_cannot_take_more_than_its_share() {
        let t = Idempotency::new(Budget {
            max_bytes_per_key: 10_000,
            max_bytes: 100_000,
            ..Budget::default()
        });
        let (flooder, other) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        run(&t, &other, "mine", b"{}");
        for i in 0..1000 {
            run(&t, &flooder, &format!("k{i}"), &[b'x'; 900]);
        }
        // The flooder's own oldest entries went; the other key's entry stayed.
        assert!(replays(&t, &other, "mine"));
        assert!(replays(&t, &flooder, "k999"));
        assert!(!replays(&t, &flooder, "k0"));
        assert!(t.bytes() <= 10_000 + 1_000, "{}", t.bytes());
    }

    #[test]
    fn issue_21_finding_1_the_table_stays_within_its_total_budget() {
        let budget = Budget {
            max_bytes: 50_000,
            max_bytes_per_key: 10_000,
            ..Budget::default()
        };
        let t = Idempotency::new(budget);
        for i in 0..2000 {
            run(
                &t,
                &uuid::Uuid::new_v4().to_string(),
                &format!("k{i}"),
                &[b'x'; 500],
            );
            assert!(t.bytes() <= budget.max_bytes, "{}", t.bytes());
        }
        // The newest are kept, the oldest went.
        let table = t.table.lock().unwrap();
        assert!(table.entries.len() <= 50_000 / 500);
        assert!(table.order.len() <= 2 * table.entries.len() + 1024);
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("abc-123").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"x".repeat(256)).is_err());
        assert!(validate_key("tab\there").is_err());
    }
}
