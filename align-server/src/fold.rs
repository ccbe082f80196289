//! Folding floods of requests in the request log.
//!
//! Every request is accounted for in the request log, but a client hammering the server with
//! a bad key (`401`), past its limit (`429`), or without any key at all (an unknown route's
//! `404`, `/healthz`, a `400` for ambiguous credentials, the docs) would otherwise cost one
//! hash-chained row per request: the most expensive part of answering it, and a way to fill
//! the disk (about 400 bytes per row; an outside review wrote 65 GB an hour with `404`s, issue
//! 21 finding 2). So, per client and second, the first
//! [`crate::config::Config::fold_rejections_after`] such requests with the same status get
//! their own entries as usual; the rest of that second are counted, and one *summary* entry
//! records them: the first folded request's fields (id, time, method, path, IP, user agent,
//! key) with `metadata.folded = {count, lastRequestId, lastAt}`. Requests made with a valid
//! key are folded only when rejected (`401`, `429`): the rest are bounded by the key's own
//! rate limit and each keeps its entry.
//!
//! A client is the status, the key (when one was verified) and the IP address (for IPv6, its
//! /64, which one host usually holds whole). Summaries are written when the client's next
//! second begins, by the once-a-second [`Folds::take_finished`] sweep, and on shutdown
//! ([`Folds::take_all`]). At most [`MAX_CLIENTS`] clients are folded at once; rejections of
//! clients beyond that are logged one by one, so a spread-out flood is never lost, only not
//! made cheaper.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use align_keys::{KeyId, KeyRecord};
use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;

use crate::audit::RequestMeta;

/// Clients whose rejections are being counted at once (in all shards together).
pub(crate) const MAX_CLIENTS: usize = 65_536;
/// Shards of the client table: requests of different clients rarely share a lock.
const SHARDS: usize = 16;

/// Whether a request answered `status` may be folded: any that no valid key made (whatever
/// a client can cause without a key), and rejections (`401`, `429`) of keyed requests.
pub(crate) fn foldable(status: StatusCode, keyed: bool) -> bool {
    !keyed
        || matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
        )
}

/// Who was rejected: rejections are counted per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Client {
    status: u16,
    key: Option<KeyId>,
    net: IpAddr,
}

impl Client {
    fn of(status: StatusCode, key: Option<&KeyRecord>, ip: IpAddr) -> Self {
        Self {
            status: status.as_u16(),
            key: key.map(|k| k.id),
            net: crate::http::client_network(ip),
        }
    }
}

/// A client with its keyed hash, computed once per request: it picks the shard (bits 32-35)
/// and is the table's hash too (whose buckets use the low bits and whose tags the top seven),
/// so the client is hashed once rather than twice.
#[derive(Debug, Clone, Copy)]
struct Hashed {
    hash: u64,
    client: Client,
}

impl PartialEq for Hashed {
    fn eq(&self, other: &Self) -> bool {
        self.client == other.client
    }
}

impl Eq for Hashed {}

impl Hash for Hashed {
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
type Shard = HashMap<Hashed, Window, BuildHasherDefault<PassThrough>>;

/// The rejections of one client folded within one second.
#[derive(Debug)]
pub(crate) struct Summary {
    /// The first folded request: its entry carries the summary.
    pub(crate) first: RequestMeta,
    /// Its latency.
    pub(crate) latency: Duration,
    /// The key it presented, when one was verified.
    pub(crate) caller: Option<Arc<KeyRecord>>,
    /// Its status.
    pub(crate) status: StatusCode,
    /// Requests folded, the first included.
    pub(crate) count: u64,
    /// The last folded request's id.
    pub(crate) last_request_id: String,
    /// When the last folded request started.
    pub(crate) last_at: DateTime<Utc>,
}

impl Summary {
    /// `metadata.folded` of the summary entry.
    pub(crate) fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "folded": {
                "count": self.count,
                "lastRequestId": self.last_request_id,
                "lastAt": self.last_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            }
        })
    }
}

#[derive(Debug)]
struct Window {
    /// The wall-clock second (Unix time) being counted.
    second: i64,
    /// Rejections seen in it.
    seen: u32,
    folded: Option<Box<Summary>>,
}

/// What to do with a rejected request's entry.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Log it as usual; `finished` is a summary of the client's previous second to log too.
    Log {
        /// The meta handed in, back.
        meta: RequestMeta,
        /// A finished summary, if the client's previous second folded requests.
        finished: Option<Box<Summary>>,
    },
    /// Counted in the current summary: nothing to log now.
    Folded,
}

/// The per-client counts (see the module docs).
#[derive(Debug)]
pub(crate) struct Folds {
    after: u32,
    /// Picks a client's shard (keyed randomly, like the maps, so no client can choose one).
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl Folds {
    /// Folds each client's rejections after the first `after` in a second; `0` never folds.
    pub(crate) fn new(after: u32) -> Self {
        Self {
            after,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Decides about one finished request answered `status`: only [`foldable`] requests are
    /// ever folded, and none when folding is off.
    pub(crate) fn judge(
        &self,
        meta: RequestMeta,
        caller: Option<&Arc<KeyRecord>>,
        status: StatusCode,
        latency: Duration,
    ) -> Verdict {
        if self.after == 0 || !foldable(status, caller.is_some()) {
            return Verdict::Log {
                meta,
                finished: None,
            };
        }
        let client = Client::of(status, caller.map(|k| &**k), meta.peer.ip());
        let client = Hashed {
            hash: self.hasher.hash_one(client),
            client,
        };
        let second = meta.started.timestamp();
        let shard = ((client.hash >> 32) % SHARDS as u64) as usize;
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= MAX_CLIENTS / SHARDS && !shard.contains_key(&client) {
            return Verdict::Log {
                meta,
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
            return Verdict::Log { meta, finished };
        }
        match &mut window.folded {
            Some(s) => {
                s.count += 1;
                s.last_at = meta.started;
                s.last_request_id = meta.request_id;
            }
            None => {
                window.folded = Some(Box::new(Summary {
                    last_request_id: meta.request_id.clone(),
                    last_at: meta.started,
                    first: meta,
                    latency,
                    caller: caller.cloned(),
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
    pub(crate) fn take_finished(&self, now: DateTime<Utc>) -> Vec<Summary> {
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

    /// Every summary, finished or not (on shutdown).
    pub(crate) fn take_all(&self) -> Vec<Summary> {
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

    fn meta(n: u32, ip: &str, at: DateTime<Utc>) -> RequestMeta {
        RequestMeta {
            request_id: format!("req-{n}"),
            peer: std::net::SocketAddr::new(ip.parse().unwrap(), 40_000),
            user_agent: None,
            method: "GET".into(),
            path: "/api/v1/me".into(),
            started: at,
            user: std::sync::OnceLock::new(),
        }
    }

    fn at(secs: i64, millis: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, millis * 1_000_000).unwrap()
    }

    fn key_record() -> KeyRecord {
        KeyRecord {
            id: KeyId::new(),
            name: "k".into(),
            prefix: "ako_00000000".into(),
            environment: align_keys::Environment::Live,
            organization_id: align_keys::OrganizationId::new(),
            scope: align_keys::Scope::Organization,
            permissions: None,
            unrecognized_permissions: vec![],
            vocabulary: &align_keys::Vocabulary::SERVER,
            owner_id: None,
            meta: None,
            created_by: align_keys::UserId::new(),
            created_at: at(0, 0),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            suspended_at: None,
            rotated_from: None,
            rate_limit_per_minute: None,
            allowed_cidrs: vec![],
        }
    }

    fn logged(v: &Verdict) -> bool {
        matches!(v, Verdict::Log { .. })
    }

    #[test]
    fn the_first_rejections_of_a_second_are_logged_and_the_rest_summarised() {
        let folds = Folds::new(3);
        let s = StatusCode::UNAUTHORIZED;
        let verdicts: Vec<Verdict> = (0..10)
            .map(|i| {
                folds.judge(
                    meta(i, "203.0.113.7", at(0, i * 10)),
                    None,
                    s,
                    Duration::ZERO,
                )
            })
            .collect();
        assert!(verdicts[..3].iter().all(logged));
        assert!(verdicts[3..].iter().all(|v| !logged(v)));
        // The next second starts afresh and hands over the summary of the last one.
        let Verdict::Log { finished, .. } =
            folds.judge(meta(10, "203.0.113.7", at(1, 0)), None, s, Duration::ZERO)
        else {
            panic!("the first rejection of a second is logged");
        };
        let summary = finished.unwrap();
        assert_eq!(summary.count, 7);
        assert_eq!(summary.first.request_id, "req-3");
        assert_eq!(summary.last_request_id, "req-9");
        assert_eq!(summary.last_at, at(0, 90));
        assert_eq!(summary.metadata()["folded"]["count"], 7);
        assert!(folds.take_all().is_empty());
    }

    #[test]
    fn clients_statuses_and_accepted_requests_are_counted_apart() {
        let folds = Folds::new(1);
        let t = at(0, 0);
        // Whether request `n` from `ip` answered `status` gets its own entry.
        let judge = |n: u32, ip: &str, status: StatusCode| {
            logged(&folds.judge(meta(n, ip, t), None, status, Duration::ZERO))
        };
        let u = StatusCode::UNAUTHORIZED;
        assert!(judge(0, "203.0.113.7", u));
        assert!(!judge(1, "203.0.113.7", u));
        assert!(judge(2, "203.0.113.8", u));
        assert!(judge(3, "203.0.113.7", StatusCode::TOO_MANY_REQUESTS));
        // Without a key anything a client can cause is folded (`/healthz`, unknown routes)...
        assert!(judge(4, "203.0.113.7", StatusCode::OK));
        assert!(!judge(5, "203.0.113.7", StatusCode::OK));
        assert!(judge(6, "203.0.113.7", StatusCode::NOT_FOUND));
        assert!(!judge(7, "203.0.113.7", StatusCode::NOT_FOUND));
        // ...but a valid key's accepted requests never are (its rate limit bounds them).
        let key = Arc::new(key_record());
        for i in 20..24 {
            let v = folds.judge(
                meta(i, "203.0.113.9", t),
                Some(&key),
                StatusCode::OK,
                Duration::ZERO,
            );
            assert!(logged(&v), "a keyed accepted request is never folded");
        }
        // One IPv6 /64 is one client.
        assert!(judge(8, "2001:db8::1", u));
        assert!(!judge(9, "2001:db8::ffff", u));
        assert!(judge(10, "2001:db8:0:1::1", u));
        let summaries = folds.take_finished(at(1, 0));
        // 401 from .7 and from 2001:db8::/64, 200 and 404 from .7 without a key.
        assert_eq!(summaries.len(), 4);
        assert!(summaries.iter().all(|s| s.count == 1));
        assert!(folds.take_finished(at(2, 0)).is_empty());
    }

    #[test]
    fn zero_never_folds_and_the_sweep_keeps_the_current_second() {
        let off = Folds::new(0);
        for i in 0..100 {
            let v = off.judge(
                meta(i, "203.0.113.7", at(0, 0)),
                None,
                StatusCode::UNAUTHORIZED,
                Duration::ZERO,
            );
            assert!(logged(&v));
        }
        let folds = Folds::new(1);
        for i in 0..5 {
            folds.judge(
                meta(i, "203.0.113.7", at(0, 500)),
                None,
                StatusCode::UNAUTHORIZED,
                Duration::ZERO,
            );
        }
        assert!(folds.take_finished(at(0, 900)).is_empty(), "still counting");
        assert_eq!(folds.take_all()[0].count, 4);
    }

    #[test]
    fn beyond_the_client_limit_rejections_are_logged_one_by_one() {
        let folds = Folds::new(1);
        let t = at(0, 0);
        let mut folded = 0;
        for n in 0..(MAX_CLIENTS as u32 + 5_000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
            for _ in 0..2 {
                let v = folds.judge(
                    meta(n, &ip, t),
                    None,
                    StatusCode::UNAUTHORIZED,
                    Duration::ZERO,
                );
                folded += usize::from(!logged(&v));
            }
        }
        assert!(folded <= MAX_CLIENTS, "{folded}");
        assert!(folded > MAX_CLIENTS / 2, "{folded}");
    }
}
