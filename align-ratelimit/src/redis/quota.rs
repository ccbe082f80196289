//! [`RedisQuota`]: calendar quotas (per UTC day or month), their counts in Redis.

use std::fmt::Display;
use std::sync::{Arc, LazyLock};

use redis::Script;

use super::{RedisStore, tagged};
use crate::algorithm::{Algorithm, Outcome, Period, Quota};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};
use crate::future::LimitFuture;
use crate::limiter::AsyncRateLimiter;

/// The script, loaded once per Redis (EVALSHA; EVAL and SCRIPT LOAD when Redis lacks it).
static QUOTA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("quota.lua")));

/// The largest quota: counts stay exact in the script's doubles.
const MAX_LIMIT: u64 = 1 << 53;

/// A calendar [`Quota`] with its counts in Redis, shared by every instance of a service.
///
/// The same decisions as the in-memory [`Quota`] (limit, remaining, reset at the end of the
/// UTC day or month, retry-after), made by one atomic Lua script on the Redis server that
/// reads the server's clock, so instances with skewed clocks still agree on when a period
/// ends. A key's count is the hash `<prefix>q:<d|m>:<limit>:{<key>}` (the period it counts and
/// the units used), which expires an hour after that period ends.
///
/// ```no_run
/// use align_ratelimit::{Quota, RedisOptions, RedisQuota, RedisStore};
///
/// # async fn run() -> Result<(), align_ratelimit::Error> {
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// let daily = RedisQuota::new(&store, Quota::per_day(10_000)?)?;
/// if !daily.check(&"key_1", 1).await?.allowed {
///     // 429 quota_exceeded with Retry-After: the time until midnight UTC
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisQuota {
    store: RedisStore,
    quota: Quota,
    /// `{prefix}q:{d|m}:{limit}:`, computed once.
    namespace: Arc<str>,
}

impl RedisQuota {
    /// `quota` (at most 2^53 units per period) on `store`.
    pub fn new(store: &RedisStore, quota: Quota) -> Result<Self> {
        if quota.limit() > MAX_LIMIT {
            return Err(Error::InvalidConfig(
                "a Redis quota allows at most 2^53 units per period",
            ));
        }
        let namespace = format!(
            "{}q:{}:{}:",
            store.prefix(),
            period_code(quota.period()),
            quota.limit()
        );
        Ok(Self {
            store: store.clone(),
            quota,
            namespace: namespace.into(),
        })
    }

    /// The units allowed per period.
    pub fn limit(&self) -> u64 {
        self.quota.limit()
    }

    /// The calendar period the quota refills on.
    pub fn period(&self) -> Period {
        self.quota.period()
    }

    /// Decides on a request by `key` costing `cost` units now on the Redis server's clock,
    /// counting it if admitted. A `cost` of 0 reads the key's count without changing it.
    pub async fn check<K: Display + ?Sized>(&self, key: &K, cost: u64) -> Result<Decision> {
        self.run(key, cost, None, false).await
    }

    /// Decides at `now` on the caller's clock (Unix time; every caller of a key should use the
    /// same clock). Tests replay traffic with it; services use [`check`](Self::check).
    pub async fn check_at<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Timestamp,
    ) -> Result<Decision> {
        self.run(key, cost, Some(now), false).await
    }

    /// The decision [`check_at`](Self::check_at) would make, without counting anything.
    pub async fn peek_at<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Timestamp,
    ) -> Result<Decision> {
        self.run(key, cost, Some(now), true).await
    }

    /// Forgets `key`'s count, as if it had made no request this period.
    pub async fn forget<K: Display + ?Sized>(&self, key: &K) -> Result<()> {
        redis::cmd("DEL")
            .arg(tagged(&self.namespace, &key))
            .query_async::<()>(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))
    }

    async fn run<K: Display + ?Sized>(
        &self,
        key: &K,
        cost: u64,
        now: Option<Timestamp>,
        dry: bool,
    ) -> Result<Decision> {
        ensure_cost(cost, self.quota.limit())?;
        let (secs, nanos) = match now {
            None => (String::new(), String::new()),
            Some(t) => {
                let t = t.as_nanos();
                (
                    (t / 1_000_000_000).to_string(),
                    (t % 1_000_000_000).to_string(),
                )
            }
        };
        let (admitted, used, reset, retry): (u8, i64, i64, i64) = QUOTA
            .key(tagged(&self.namespace, &key))
            .arg(self.quota.limit())
            .arg(period_code(self.quota.period()))
            .arg(cost)
            .arg(secs)
            .arg(nanos)
            .arg(if dry { "1" } else { "0" })
            .invoke_async(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))?;
        let nanos = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Outcome {
            limit: self.quota.limit(),
            used: nanos(used),
            reset_after_nanos: nanos(reset),
            retry_after_nanos: (admitted != 1).then(|| nanos(retry)),
        }
        .into())
    }
}

fn period_code(period: Period) -> &'static str {
    match period {
        Period::Day => "d",
        Period::Month => "m",
    }
}

impl<K: Display + Sync + ?Sized> AsyncRateLimiter<K> for RedisQuota {
    fn check<'a>(&'a self, key: &'a K, cost: u64) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::boxed(self.run(key, cost, None, false))
    }

    fn check_at<'a>(
        &'a self,
        key: &'a K,
        cost: u64,
        now: Timestamp,
    ) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::boxed(self.run(key, cost, Some(now), false))
    }
}

impl std::fmt::Debug for RedisQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuota")
            .field("store", &self.store)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}
