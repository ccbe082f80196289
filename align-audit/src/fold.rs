//! Folding floods of requests in the request log: the engine behind
//! [`RequestLogLayer::fold_rejections_after`](crate::RequestLogLayer::fold_rejections_after)
//! and the reference server's request log.
//!
//! Every request is accounted for in the request log, but a client hammering a service with a
//! bad key (`401`), past its limit (`429`), or without any key at all (an unknown route's
//! `404`, a health check, the docs) would otherwise cost one hash-chained entry per request:
//! the most expensive part of answering it, and a way to fill the disk (about 400 bytes per
//! entry; an outside review wrote 65 GB an hour of `404`s). So, per client and second, the
//! first `after` such requests with the same status get their own entries as usual; the rest
//! of that second are counted, and one *summary* entry records them: the first folded
//! request's entry with `metadata.folded = {count, lastRequestId, lastAt}`
//! ([`Summary::metadata`]). Requests made with a verified key are folded only when rejected
//! (`401`, `429`; see [`foldable`]): the rest are bounded by the key's own rate limit and each
//! keeps its entry.
//!
//! A client ([`Client`]) is the status, the key (when one was verified) and the IP address
//! (for IPv6, its /64, which one host usually holds whole: [`client_network`]). Summaries are
//! handed back when the client's next second begins ([`Verdict::Log`]), by a once-a-second
//! sweep ([`Folds::take_finished`]), and on shutdown ([`Folds::take_all`]). At most
//! [`MAX_CLIENTS`] clients are folded at once; requests of clients beyond that are logged one
//! by one, so a spread-out flood is never lost, only not made cheaper.
//!
//! The engine sits on the path of every rejected request: the table is sharded (requests of
//! different clients rarely share a lock), a client is hashed once (with a randomly keyed
//! hasher, so no client can choose its shard), and a request folded into a summary already
//! begun allocates nothing (it gives up only its id, by move: [`FoldRequest::into_id`]).
//!
//! ```
//! use align_audit::fold::{FoldRequest, Folds, Verdict};
//! use chrono::{DateTime, TimeZone, Utc};
//!
//! /// What this service keeps of a request until it is logged.
//! struct Seen { id: String, at: DateTime<Utc> }
//!
//! impl FoldRequest for Seen {
//!     type Id = String;
//!     fn started(&self) -> DateTime<Utc> { self.at }
//!     fn id(&self) -> String { self.id.clone() }
//!     fn into_id(self) -> String { self.id }
//! }
//!
//! let folds: Folds<u64, Seen> = Folds::new(2);
//! let ip = "203.0.113.7".parse().unwrap();
//! let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
//! let logged = (0..5)
//!     .map(|n| folds.judge(401, None, ip, Seen { id: format!("req-{n}"), at }))
//!     .filter(|v| matches!(v, Verdict::Log { .. }))
//!     .count();
//! assert_eq!(logged, 2);
//! // A second later the sweep hands over the summary of the other three.
//! let summaries = folds.take_finished(at + chrono::Duration::seconds(1));
//! assert_eq!(summaries[0].count, 3);
//! assert_eq!(summaries[0].first.id, "req-2");
//! assert_eq!(summaries[0].metadata()["folded"]["lastRequestId"], "req-4");
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, Utc};

/// Clients whose requests are being counted at once (in all shards together).
pub const MAX_CLIENTS: usize = 65_536;
/// How many foldable requests of one client and second get their own entries by default.
pub const DEFAULT_FOLD_AFTER: u32 = 100;
/// Shards of the client table: requests of different clients rarely share a lock.
const SHARDS: usize = 16;

/// Whether a request answered `status` may be folded: any that no verified key made
/// (`keyed == false`: whatever a client can cause without a key), and rejections (`401`,
/// `429`) of keyed requests.
///
/// ```
/// use align_audit::fold::foldable;
/// assert!(foldable(404, false) && foldable(200, false));
/// assert!(foldable(429, true) && foldable(401, true));
/// assert!(!foldable(200, true) && !foldable(403, true));
/// ```
pub fn foldable(status: u16, keyed: bool) -> bool {
    !keyed || matches!(status, 401 | 429)
}

/// The network a client address stands for: an IPv4 address itself (also when mapped into
/// IPv6), an IPv6 address's /64, which one host usually holds whole.
///
/// ```
/// use align_audit::fold::client_network;
/// let net = |s: &str| client_network(s.parse().unwrap()).to_string();
/// assert_eq!(net("2001:db8::1:2:3:4"), "2001:db8::");
/// assert_eq!(net("::ffff:192.0.2.1"), "192.0.2.1");
/// ```
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Who made a request: requests are counted per client (status, verified key, network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client<K> {
    /// The response's status.
    pub status: u16,
    /// The verified key, if any.
    pub key: Option<K>,
    /// The address's network ([`client_network`]).
    pub network: IpAddr,
}

impl<K> Client<K> {
    /// The client of a request from `ip`, made with `key`, answered `status`.
    pub fn new(status: u16, key: Option<K>, ip: IpAddr) -> Self {
        Self {
            status,
            key,
            network: client_network(ip),
        }
    }
}

/// What the engine needs of a request it may fold; the request itself (everything its entry
/// needs) is what a caller hands [`Folds::judge`], and gets back when it is to be logged.
pub trait FoldRequest {
    /// A request's id as a summary keeps it for `lastRequestId` (an empty id is left out).
    type Id: AsRef<str>;

    /// When the request started: it is counted in this wall-clock second.
    fn started(&self) -> DateTime<Utc>;

    /// A copy of the request's id, for the summary it begins (which keeps the request too).
    fn id(&self) -> Self::Id;

    /// The request's id, given up by a request folded into a summary already begun (moved,
    /// so folding it allocates nothing).
    fn into_id(self) -> Self::Id;
}

/// A client with its keyed hash, computed once per request: it picks the shard (bits 32-35)
/// and is the table's hash too (whose buckets use the low bits and whose tags the top seven),
/// so the client is hashed once rather than twice.
#[derive(Debug, Clone, Copy)]
struct Hashed<K> {
    hash: u64,
    client: Client<K>,
}

impl<K: PartialEq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.client == other.client
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the table the hash [`Hashed`] carries.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called ([`Hashed`]'s `Hash`); fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One shard of the client table.
type Shard<K, P> = HashMap<Hashed<K>, Window<P>, BuildHasherDefault<PassThrough>>;

/// The requests of one client folded within one second: the summary entry to write.
#[non_exhaustive]
pub struct Summary<P: FoldRequest> {
    /// The first folded request: its entry carries the summary.
    pub first: P,
    /// The status of every folded request.
    pub status: u16,
    /// Requests folded, the first included.
    pub count: u64,
    /// The last folded request's id.
    pub last_id: P::Id,
    /// When the last folded request started.
    pub last_at: DateTime<Utc>,
}

impl<P: FoldRequest> std::fmt::Debug for Summary<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The requests themselves stay out of logs.
        f.debug_struct("Summary")
            .field("status", &self.status)
            .field("count", &self.count)
            .field("last_at", &self.last_at)
            .finish_non_exhaustive()
    }
}

impl<P: FoldRequest> Summary<P> {
    /// `metadata` of the summary entry: `{"folded": {count, lastRequestId, lastAt}}`, the
    /// time in RFC 3339 UTC with milliseconds.
    pub fn metadata(&self) -> serde_json::Value {
        let mut folded = serde_json::Map::new();
        folded.insert("count".into(), self.count.into());
        let id = self.last_id.as_ref();
        if !id.is_empty() {
            folded.insert("lastRequestId".into(), id.into());
        }
        folded.insert(
            "lastAt".into(),
            self.last_at
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .into(),
        );
        serde_json::json!({ "folded": folded })
    }
}

struct Window<P: FoldRequest> {
    /// The wall-clock second (Unix time) being counted.
    second: i64,
    /// Foldable requests seen in it.
    seen: u32,
    folded: Option<Box<Summary<P>>>,
}

/// What to do with a finished request's entry.
pub enum Verdict<P: FoldRequest> {
    /// Log it as usual; `finished` is a summary of the client's previous second to log too.
    Log {
        /// The request handed in, back.
        request: P,
        /// A finished summary, if the client's previous second folded requests.
        finished: Option<Box<Summary<P>>>,
    },
    /// Counted in the client's current summary: nothing to log now.
    Folded,
}

impl<P: FoldRequest> std::fmt::Debug for Verdict<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log { finished, .. } => f
                .debug_struct("Log")
                .field("finished", finished)
                .finish_non_exhaustive(),
            Self::Folded => f.write_str("Folded"),
        }
    }
}

/// The per-client counts (see the module docs): `K` is what identifies a verified key (an id,
/// or a hash of one), `P` what the caller keeps of a request until its entry is written.
///
/// Shared by reference (`Arc<Folds<…>>`) between the request path and the sweep.
pub struct Folds<K, P: FoldRequest> {
    after: u32,
    /// Picks a client's shard (keyed randomly, like the maps, so no client can choose one).
    hasher: RandomState,
    shards: Vec<Mutex<Shard<K, P>>>,
}

impl<K, P: FoldRequest> std::fmt::Debug for Folds<K, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folds")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy, P: FoldRequest> Folds<K, P> {
    /// Folds each client's foldable requests after the first `after` in a second; `0` never
    /// folds.
    pub fn new(after: u32) -> Self {
        Self {
            after,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// How many foldable requests of a client and second get their own entries (`0`: all).
    pub fn after(&self) -> u32 {
        self.after
    }

    /// Decides about one finished `request` from `ip`, made with the verified `key` (if any)
    /// and answered `status`: only [`foldable`] requests are ever folded, and none when
    /// folding is off.
    pub fn judge(&self, status: u16, key: Option<K>, ip: IpAddr, request: P) -> Verdict<P> {
        if self.after == 0 || !foldable(status, key.is_some()) {
            return Verdict::Log {
                request,
                finished: None,
            };
        }
        let client = Client::new(status, key, ip);
        let client = Hashed {
            hash: self.hasher.hash_one(client),
            client,
        };
        let started = request.started();
        let second = started.timestamp();
        let shard = ((client.hash >> 32) % SHARDS as u64) as usize;
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= MAX_CLIENTS / SHARDS && !shard.contains_key(&client) {
            return Verdict::Log {
                request,
                finished: None,
            };
        }
        let window = shard.entry(client).or_insert(Window {
            second,
            seen: 0,
            folded: None,
        });
        let mut finished = None;
        if window.second != second {
            finished = window.folded.take();
            window.second = second;
            window.seen = 0;
        }
        window.seen = window.seen.saturating_add(1);
        if window.seen <= self.after {
            return Verdict::Log { request, finished };
        }
        match &mut window.folded {
            Some(s) => {
                s.count += 1;
                s.last_at = started;
                s.last_id = request.into_id();
            }
            None => {
                window.folded = Some(Box::new(Summary {
                    last_id: request.id(),
                    last_at: started,
                    first: request,
                    status,
                    count: 1,
                }));
            }
        }
        // `finished` is only set when the second turned over, and then this request is the
        // first of its second: logged above, never folded.
        debug_assert!(finished.is_none());
        Verdict::Folded
    }

    /// Summaries of seconds before `now`'s, and forgets those clients (the periodic sweep).
    pub fn take_finished(&self, now: DateTime<Utc>) -> Vec<Summary<P>> {
        let second = now.timestamp();
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|_, w| {
                if w.second >= second {
                    return true;
                }
                out.extend(w.folded.take().map(|s| *s));
                false
            });
        }
        out
    }

    /// Every summary, finished or not, and forgets every client (on shutdown).
    pub fn take_all(&self) -> Vec<Summary<P>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(shard.drain().filter_map(|(_, w)| w.folded.map(|s| *s)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    #[derive(Debug)]
    struct Seen {
        id: String,
        at: DateTime<Utc>,
    }

    impl FoldRequest for Seen {
        type Id = String;
        fn started(&self) -> DateTime<Utc> {
            self.at
        }
        fn id(&self) -> String {
            self.id.clone()
        }
        fn into_id(self) -> String {
            self.id
        }
    }

    fn seen(n: u32, at: DateTime<Utc>) -> Seen {
        Seen {
            id: format!("req-{n}"),
            at,
        }
    }

    fn at(secs: i64, millis: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, millis * 1_000_000).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn logged(v: &Verdict<Seen>) -> bool {
        matches!(v, Verdict::Log { .. })
    }

    #[test]
    fn the_first_requests_of_a_second_are_logged_and_the_rest_summarised() {
        let folds: Folds<u64, Seen> = Folds::new(3);
        let verdicts: Vec<_> = (0..10)
            .map(|i| folds.judge(401, None, ip("203.0.113.7"), seen(i, at(0, i * 10))))
            .collect();
        assert!(verdicts[..3].iter().all(logged));
        assert!(verdicts[3..].iter().all(|v| !logged(v)));
        let Verdict::Log { finished, request } =
            folds.judge(401, None, ip("203.0.113.7"), seen(10, at(1, 0)))
        else {
            panic!("the first request of a second is logged");
        };
        assert_eq!(request.id, "req-10", "a logged request comes back");
        let summary = finished.unwrap();
        assert_eq!((summary.count, summary.status), (7, 401));
        assert_eq!(summary.first.id, "req-3");
        assert_eq!(summary.last_id, "req-9");
        assert_eq!(summary.last_at, at(0, 90));
        let meta = summary.metadata();
        assert_eq!(meta["folded"]["count"], 7);
        assert_eq!(meta["folded"]["lastRequestId"], "req-9");
        assert_eq!(meta["folded"]["lastAt"], "2027-01-15T08:00:00.090Z");
    }

    #[test]
    fn keyed_requests_are_folded_only_when_rejected_and_per_key() {
        let folds: Folds<u8, Seen> = Folds::new(1);
        let t = at(0, 0);
        let judge = |n, key, status| logged(&folds.judge(status, key, ip("192.0.2.1"), seen(n, t)));
        for n in 0..5 {
            assert!(
                judge(n, Some(1), 200),
                "a keyed accepted request is never folded"
            );
        }
        assert!(judge(10, Some(1), 429));
        assert!(!judge(11, Some(1), 429));
        assert!(judge(12, Some(2), 429), "another key is another client");
        assert!(judge(13, None, 429), "so is no key");
        assert_eq!(folds.take_all().len(), 1);
    }

    #[test]
    fn an_empty_id_is_left_out_of_the_summary() {
        let folds: Folds<u64, Seen> = Folds::new(1);
        for _ in 0..3 {
            folds.judge(
                404,
                None,
                ip("192.0.2.1"),
                Seen {
                    id: String::new(),
                    at: at(0, 0),
                },
            );
        }
        let meta = folds.take_all()[0].metadata();
        assert_eq!(meta["folded"]["count"], 2);
        assert!(meta["folded"].get("lastRequestId").is_none());
    }
}
