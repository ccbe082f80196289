//! [`RedisSlidingWindow`]: the default sliding window, its state in Redis.

use std::fmt::Display;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{RedisStore, tagged};
use crate::algorithm::Rate;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};
use crate::future::LimitFuture;
use crate::limiter::AsyncRateLimiter;

/// The script, loaded once per Redis (EVALSHA; EVAL and SCRIPT LOAD when Redis lacks it).
static WINDOW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("window.lua")));

/// Buckets per window, as on the in-memory window's fine ring: a request counts at most
/// W/600 (100 ms for a minute) longer than the window.
const BUCKETS: u64 = 600;
/// The longest window: times stay exact in the script's doubles (below 2^53 ns).
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// The script moves its time origin forward once relative times pass 2^52 ns (~52 days).
const REBASE_AFTER: u64 = 1 << 52;

/// The default sliding window with its state in Redis, shared by every instance of a service.
///
/// The same promise as [`SlidingWindow`](crate::SlidingWindow): **no interval of one window
/// ever holds more than the limit**, and the same [`Decision`]s (limit, remaining, reset,
/// retry-after, exact to the nanosecond). Each key keeps a list of buckets, each with its
/// units and the time of its latest admission; a bucket opens W/600 after the previous one
/// and its units count until that latest admission has left the window, so a request is
/// counted at most W/600 too long (100 ms at 600 per minute). A key at its limit holds up to
/// 601 buckets (about 12 KiB in Redis); idle keys expire as soon as nothing in them counts.
///
/// Every check is one atomic Lua script on the Redis server, reading the server's clock, so
/// instances with skewed clocks still share one window. A key's state is the hash
/// `<prefix>sw:<limit>:<window ns>:{<key>}` and the list of the same name plus `:b` (the key in
/// braces: a Redis Cluster hash tag keeps both in one slot); a key whose rate changes starts
/// afresh, as in memory.
///
/// ```no_run
/// use align_ratelimit::{Rate, RedisOptions, RedisSlidingWindow, RedisStore};
///
/// # async fn run() -> Result<(), align_ratelimit::Error> {
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// let limiter = RedisSlidingWindow::new(&store, Rate::per_minute(600))?;
/// let decision = limiter.check(&"ako_9311c954", 1).await?;
/// if !decision.allowed {
///     // 429 with Retry-After: decision.retry_after_secs()
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSlidingWindow {
    store: RedisStore,
    limit: u64,
    window: Duration,
    window_nanos: u64,
    width_nanos: u64,
    /// `{prefix}sw:{limit}:{window_ns}:`, computed once.
    namespace: Arc<str>,
    rebase_after: u64,
}

/// When the script takes its time from.
#[derive(Clone, Copy)]
enum Now {
    Server,
    Caller(Timestamp),
}

impl RedisSlidingWindow {
    /// A sliding window for `rate` (windows up to 30 days) on `store`.
    pub fn new(store: &RedisStore, rate: Rate) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        if rate.window() > MAX_WINDOW {
            return Err(Error::InvalidConfig(
                "the Redis sliding window is at most 30 days long",
            ));
        }
        let namespace = format!("{}sw:{limit}:{window_nanos}:", store.prefix());
        Ok(Self {
            store: store.clone(),
            limit,
            window: rate.window(),
            window_nanos,
            width_nanos: (window_nanos / BUCKETS).max(1),
            namespace: namespace.into(),
            rebase_after: REBASE_AFTER,
        })
    }

    /// The limit per window (`X-RateLimit-Limit`).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window the limit applies to.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// At most how much longer than the window a request may be counted (W/600).
    pub fn resolution(&self) -> Duration {
        Duration::from_nanos(self.width_nanos)
    }

    /// Decides on a request by `key` costing `cost` units now on the Redis server's clock,
    /// counting it if admitted. A `cost` of 0 reads the key's state without counting.
    pub async fn check<K: Display + ?Sized>(&self, key: &K, cost: u64) -> Result<Decision> {
        self.run(key, cost, Now::Server, false).await
    }

    /// Decides at `now` on the caller's clock (Unix time; every caller of a key should use the
    /// same clock). Tests replay traffic with it; services use [`check`](Self::check).
    pub async fn check_at<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Timestamp,
    ) -> Result<Decision> {
        self.run(key, cost, Now::Caller(now), false).await
    }

    /// The decision [`check_at`](Self::check_at) would make, without counting anything or
    /// changing the key's state: "would a batch costing `cost` fit at `now`?"
    pub async fn peek_at<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Timestamp,
    ) -> Result<Decision> {
        self.run(key, cost, Now::Caller(now), true).await
    }

    /// Forgets `key`, as if it had never made a request (e.g. after an operator's reset).
    pub async fn forget<K: Display + ?Sized>(&self, key: &K) -> Result<()> {
        let (state, buckets) = self.keys(key);
        redis::cmd("DEL")
            .arg(&state)
            .arg(&buckets)
            .query_async::<()>(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))
    }

    /// The key's two Redis keys: its state hash and its bucket list.
    fn keys<K: Display + ?Sized>(&self, key: &K) -> (String, String) {
        let state = tagged(&self.namespace, &key);
        let buckets = format!("{state}:b");
        (state, buckets)
    }

    async fn run<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Now,
        dry: bool,
    ) -> Result<Decision> {
        ensure_cost(cost, self.limit)?;
        let (state, buckets) = self.keys(key);
        let (secs, nanos) = match now {
            Now::Server => (String::new(), String::new()),
            Now::Caller(t) => {
                let t = t.as_nanos();
                (
                    (t / 1_000_000_000).to_string(),
                    (t % 1_000_000_000).to_string(),
                )
            }
        };
        let reply: (u8, i64, i64, i64) = WINDOW
            .key(state)
            .key(buckets)
            .arg(self.limit)
            .arg(self.window_nanos)
            .arg(self.width_nanos)
            .arg(cost)
            .arg(secs)
            .arg(nanos)
            .arg(if dry { "1" } else { "0" })
            .arg(self.rebase_after)
            .invoke_async(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))?;
        Ok(self.decision(reply))
    }

    fn decision(&self, (admitted, remaining, reset, retry): (u8, i64, i64, i64)) -> Decision {
        let nanos = |v: i64| Duration::from_nanos(u64::try_from(v).unwrap_or(0));
        let allowed = admitted == 1;
        Decision {
            allowed,
            limit: self.limit,
            remaining: u64::try_from(remaining).unwrap_or(0).min(self.limit),
            reset_after: nanos(reset),
            retry_after: (!allowed).then(|| {
                if retry > 0 {
                    nanos(retry)
                } else {
                    // Not reachable with a consistent state; the safe answer is a whole window.
                    self.window
                }
            }),
        }
    }

    /// Lowers the threshold at which the script moves its time origin, to test that path.
    #[cfg(test)]
    pub(crate) fn with_rebase_after(mut self, nanos: u64) -> Self {
        self.rebase_after = nanos;
        self
    }
}

impl<K: Display + Sync + ?Sized> AsyncRateLimiter<K> for RedisSlidingWindow {
    fn check<'a>(&'a self, key: &'a K, cost: u64) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::boxed(self.run(key, cost, Now::Server, false))
    }

    fn check_at<'a>(
        &'a self,
        key: &'a K,
        cost: u64,
        now: Timestamp,
    ) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::boxed(self.run(key, cost, Now::Caller(now), false))
    }
}

impl std::fmt::Debug for RedisSlidingWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSlidingWindow")
            .field("store", &self.store)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::redis::RedisOptions;

    /// Moving the time origin forward changes no decision: the same traffic on a window that
    /// rebases every few seconds and on one that never does gets the same answers.
    #[tokio::test]
    async fn moving_the_time_origin_changes_no_decision() {
        let Ok(url) = std::env::var("ALIGN_TEST_REDIS_URL") else {
            println!("skipped: ALIGN_TEST_REDIS_URL is not set");
            return;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let options = RedisOptions {
            prefix: format!("align-test:{}-{nanos:x}-rebase:", std::process::id()),
            ..RedisOptions::default()
        };
        let store = RedisStore::open(&url, options).unwrap();
        let rate = Rate::new(5, Duration::from_secs(1));
        let plain = RedisSlidingWindow::new(&store, rate).unwrap();
        let rebasing = RedisSlidingWindow::new(&store, rate)
            .unwrap()
            .with_rebase_after(3_000_000_000);
        let mut now = 1_700_000_000_123_456_789u64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..600 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            now += seed % 90_000_000;
            let cost = 1 + seed % 3;
            let at = Timestamp::from_nanos(now);
            let a = plain.check_at(&"plain", cost, at).await.unwrap();
            let b = rebasing.check_at(&"rebasing", cost, at).await.unwrap();
            assert_eq!(a, b, "at {now}");
        }
        let (state, _) = rebasing.keys(&"rebasing");
        let base: u64 = redis::cmd("HGET")
            .arg(state)
            .arg("base")
            .query_async(&mut store.connection())
            .await
            .unwrap();
        assert!(base > 1_700_000_010, "the origin moved: {base}");
    }
}
