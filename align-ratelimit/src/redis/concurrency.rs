//! [`RedisConcurrencyLimiter`]: requests in flight per key, counted in Redis with leases.

use std::fmt::Display;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{RedisStore, tagged};
use crate::concurrency::{AsyncConcurrencyLimiter, Slot};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::future::LimitFuture;

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("concurrency.lua")));

/// Limits how many requests per key may be in flight at once across every instance sharing a
/// Redis.
///
/// Each admitted request holds a lease (a member of the key's sorted set in Redis) until its
/// [`RedisPermit`] is dropped or [released](RedisPermit::release). A lease also expires on its
/// own after the lease time, so the slots of an instance that crashed come back; choose a lease
/// longer than any request may run (the server uses its request timeout plus 30 seconds).
///
/// ```no_run
/// use std::time::Duration;
/// use align_ratelimit::{RedisConcurrencyLimiter, RedisOptions, RedisStore};
///
/// # async fn run() -> Result<(), align_ratelimit::Error> {
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// let limiter = RedisConcurrencyLimiter::new(&store, 10, Duration::from_secs(60))?;
/// match limiter.try_acquire(&"ako_9311c954").await? {
///     Ok(permit) => {
///         // ... run the request, then:
///         permit.release().await?;
///     }
///     Err(denied) => { /* 429 concurrency_limit, Retry-After: denied.retry_after_secs() */ }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConcurrencyLimiter {
    store: RedisStore,
    limit: u64,
    lease: Duration,
    namespace: Arc<str>,
    leases: Arc<LeaseIds>,
}

/// Lease ids unique across instances: a random instance part and a counter.
struct LeaseIds {
    instance: u64,
    next: AtomicU64,
}

impl RedisConcurrencyLimiter {
    /// A limiter allowing `limit` requests in flight per key, each lease lasting at most
    /// `lease` (at least one millisecond).
    pub fn new(store: &RedisStore, limit: u64, lease: Duration) -> Result<Self> {
        if limit == 0 {
            return Err(Error::InvalidConfig(
                "a concurrency limit must allow at least 1 request",
            ));
        }
        if lease < Duration::from_millis(1) {
            return Err(Error::InvalidConfig(
                "a concurrency lease must last at least one millisecond",
            ));
        }
        // A randomly seeded hasher is std's source of a random number; the time and the
        // process id make a collision between instances vanishingly unlikely besides.
        let instance = std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()));
        Ok(Self {
            store: store.clone(),
            limit,
            lease,
            namespace: format!("{}cc:", store.prefix()).into(),
            leases: Arc::new(LeaseIds {
                instance,
                next: AtomicU64::new(0),
            }),
        })
    }

    /// The number of requests allowed in flight per key.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes a slot for `key`, or returns the denial (with `Retry-After: 1`) if all are in use;
    /// fails with [`Error::Unavailable`] if Redis does not answer.
    pub async fn try_acquire<K: Display + ?Sized>(
        &self,
        key: &K,
    ) -> Result<Result<RedisPermit, Decision>> {
        let redis_key = tagged(&self.namespace, &key);
        let n = self.leases.next.fetch_add(1, Ordering::Relaxed);
        let lease_id = format!("{:016x}-{n:x}", self.leases.instance);
        let (acquired, used): (u8, u64) = ACQUIRE
            .key(&redis_key)
            .arg(self.limit)
            .arg(lease_millis(self.lease))
            .arg(&lease_id)
            .invoke_async(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))?;
        if acquired != 1 {
            return Ok(Err(Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after: Duration::from_secs(1),
                retry_after: Some(Duration::from_secs(1)),
            }));
        }
        Ok(Ok(RedisPermit {
            store: self.store.clone(),
            redis_key,
            lease_id,
            released: false,
            decision: Decision {
                allowed: true,
                limit: self.limit,
                remaining: self.limit.saturating_sub(used + 1),
                reset_after: Duration::ZERO,
                retry_after: None,
            },
        }))
    }

    /// The number of `key`'s requests in flight now (leases not released and not expired).
    pub async fn in_flight<K: Display + ?Sized>(&self, key: &K) -> Result<u64> {
        let (_, used): (u8, u64) = ACQUIRE
            .key(tagged(&self.namespace, &key))
            .arg(self.limit)
            .arg(lease_millis(self.lease))
            .arg("")
            .invoke_async(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))?;
        Ok(used)
    }
}

fn lease_millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

impl<K> AsyncConcurrencyLimiter<K> for RedisConcurrencyLimiter
where
    K: Display + Hash + Eq + Sync,
{
    fn try_acquire<'a>(&'a self, key: &'a K) -> LimitFuture<'a, Result<Result<Slot<K>, Decision>>> {
        LimitFuture::boxed(async move {
            Ok(Self::try_acquire(self, key)
                .await?
                .map(|permit| Slot::from_guard(permit.decision(), permit)))
        })
    }
}

impl std::fmt::Debug for RedisConcurrencyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConcurrencyLimiter")
            .field("store", &self.store)
            .field("limit", &self.limit)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// One admitted in-flight request, holding a lease in Redis.
///
/// Dropping it releases the lease in the background (on the current tokio runtime);
/// [`release`](Self::release) does it and waits. If neither reaches Redis, the lease expires.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct RedisPermit {
    store: RedisStore,
    redis_key: String,
    lease_id: String,
    released: bool,
    decision: Decision,
}

impl RedisPermit {
    /// The decision that admitted this request (limit and remaining slots at that moment).
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// Returns the slot now and waits for Redis to confirm.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        release(&self.store, &self.redis_key, &self.lease_id).await
    }
}

async fn release(store: &RedisStore, key: &str, lease: &str) -> Result<()> {
    redis::cmd("ZREM")
        .arg(key)
        .arg(lease)
        .query_async::<()>(&mut store.connection())
        .await
        .map_err(|e| store.error(&e))
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Without a runtime (or if Redis is down) the lease runs out on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let key = std::mem::take(&mut self.redis_key);
            let lease = std::mem::take(&mut self.lease_id);
            runtime.spawn(async move {
                let _ = release(&store, &key, &lease).await;
            });
        }
    }
}

impl std::fmt::Debug for RedisPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPermit")
            .field("key", &self.redis_key)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}
