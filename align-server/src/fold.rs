//! The server's request log folds floods of requests with [`align_audit::fold`] (the module
//! docs there say what folding is): this adapter keys clients by the verified [`KeyId`] and
//! keeps, of the first folded request, what the server's entry needs ([`Logged`]: the
//! request's metadata, the key that made it, its latency). The number of requests of a client
//! and second that get their own entries is
//! [`crate::config::Config::fold_rejections_after`]; summaries are written when the client's
//! next second begins, by the once-a-second [`Folds::take_finished`] sweep, and on shutdown
//! ([`Folds::take_all`]).

use std::sync::Arc;
use std::time::Duration;

use align_audit::fold::{self, FoldRequest};
use align_keys::{KeyId, KeyRecord};
use chrono::{DateTime, Utc};
use http::StatusCode;

use crate::audit::RequestMeta;

/// What the server keeps of a folded request until its summary entry is written.
#[derive(Debug)]
pub(crate) struct Logged {
    /// The request's metadata.
    pub(crate) meta: RequestMeta,
    /// The key it presented, when one was verified.
    pub(crate) caller: Option<Arc<KeyRecord>>,
    /// Its latency.
    pub(crate) latency: Duration,
}

impl FoldRequest for Logged {
    type Id = String;

    fn started(&self) -> DateTime<Utc> {
        self.meta.started
    }

    fn id(&self) -> String {
        self.meta.request_id.clone()
    }

    fn into_id(self) -> String {
        self.meta.request_id
    }
}

/// The rejections of one client folded within one second.
pub(crate) type Summary = fold::Summary<Logged>;

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

/// The per-client counts.
#[derive(Debug)]
pub(crate) struct Folds(fold::Folds<KeyId, Logged>);

impl Folds {
    /// Folds each client's rejections after the first `after` in a second; `0` never folds.
    pub(crate) fn new(after: u32) -> Self {
        Self(fold::Folds::new(after))
    }

    /// Decides about one finished request answered `status`: only
    /// [`foldable`](fold::foldable) requests are ever folded, and none when folding is off.
    pub(crate) fn judge(
        &self,
        meta: RequestMeta,
        caller: Option<&Arc<KeyRecord>>,
        status: StatusCode,
        latency: Duration,
    ) -> Verdict {
        let ip = meta.peer.ip();
        let request = Logged {
            meta,
            caller: caller.cloned(),
            latency,
        };
        match self
            .0
            .judge(status.as_u16(), caller.map(|k| k.id), ip, request)
        {
            fold::Verdict::Folded => Verdict::Folded,
            fold::Verdict::Log { request, finished } => Verdict::Log {
                meta: request.meta,
                finished,
            },
        }
    }

    /// Summaries of seconds before `now`'s, and forgets those clients (the periodic sweep).
    pub(crate) fn take_finished(&self, now: DateTime<Utc>) -> Vec<Summary> {
        self.0.take_finished(now)
    }

    /// Every summary, finished or not (on shutdown).
    pub(crate) fn take_all(&self) -> Vec<Summary> {
        self.0.take_all()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;
    use align_audit::fold::MAX_CLIENTS;

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
        assert_eq!(summary.first.meta.request_id, "req-3");
        assert_eq!(summary.last_id, "req-9");
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
