//! [`KeyedLimiter`]: one algorithm's state per key, in memory, safe to share across threads.

use std::hash::Hash;

use crate::algorithm::Algorithm;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::decision::Decision;
use crate::error::Result;
use crate::future::LimitFuture;
use crate::limiter::{AsyncRateLimiter, RateLimiter};
use crate::shards::Sharded;

/// Shards per store: enough that a few cores rarely meet on one lock.
const DEFAULT_SHARDS: usize = 64;

/// An in-memory [`RateLimiter`] keeping one [`Algorithm`] state per key.
///
/// Keys are spread over 64 mutex-guarded shards, so checks for different keys from many threads
/// or tokio tasks rarely contend, and no lock is held across an `.await` (checks are
/// synchronous and take well under a microsecond). Idle keys (whose state equals a fresh one)
/// are swept out when a shard doubles in size, so memory stays proportional to the keys active
/// within one window however many keys pass through; [`evict_idle`](Self::evict_idle) sweeps
/// on demand.
///
/// ```
/// use align_ratelimit::{KeyedLimiter, Rate, RateLimiter, SlidingWindow};
///
/// let limiter = KeyedLimiter::new(SlidingWindow::new(Rate::per_minute(600))?);
/// let decision = limiter.check(&"ako_9311c954", 1)?;
/// assert!(decision.allowed);
/// assert_eq!(decision.remaining, 599);
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
pub struct KeyedLimiter<K, A: Algorithm, C = SystemClock> {
    algorithm: A,
    clock: C,
    map: Sharded<K, A::State>,
}

impl<K: Hash + Eq + Clone, A: Algorithm> KeyedLimiter<K, A> {
    /// A limiter applying `algorithm` to each key, on the system clock.
    pub fn new(algorithm: A) -> Self {
        Self::with_clock(algorithm, SystemClock::new())
    }
}

impl<K: Hash + Eq + Clone, A: Algorithm, C: Clock> KeyedLimiter<K, A, C> {
    /// A limiter applying `algorithm` to each key, reading time from `clock`.
    pub fn with_clock(algorithm: A, clock: C) -> Self {
        Self {
            algorithm,
            clock,
            map: Sharded::new(DEFAULT_SHARDS),
        }
    }

    /// The algorithm applied to every key.
    pub fn algorithm(&self) -> &A {
        &self.algorithm
    }

    /// The number of keys currently held, idle ones not yet swept included.
    pub fn len(&self) -> usize {
        let mut len = 0;
        self.map.for_each_shard(|shard| len += shard.len());
        len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key that is idle now, returning how many were removed.
    pub fn evict_idle(&self) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        self.map.for_each_shard(|shard| {
            removed += self
                .map
                .sweep(shard, |state| self.algorithm.is_idle(state, now));
        });
        removed
    }

    /// Forgets `key`, as if it had never made a request (e.g. after an operator's reset).
    pub fn forget(&self, key: &K) {
        let hash = self.map.hash(key);
        self.map.lock(hash).remove(hash, key);
    }
}

impl<K, A, C> RateLimiter<K> for KeyedLimiter<K, A, C>
where
    K: Hash + Eq + Clone + Send + Sync,
    A: Algorithm,
    C: Clock,
{
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn check_at(&self, key: &K, cost: u64, now: Timestamp) -> Result<Decision> {
        let hash = self.map.hash(key);
        let mut shard = self.map.lock(hash);
        if let Some(state) = shard.get_mut(hash, key) {
            return self.algorithm.check(state, cost, now);
        }
        let mut state = self.algorithm.new_state(now);
        let decision = self.algorithm.check(&mut state, cost, now)?;
        if !self.algorithm.is_idle(&state, now) {
            self.map.insert(&mut shard, hash, key.clone(), state, |s| {
                self.algorithm.is_idle(s, now)
            });
        }
        Ok(decision)
    }
}

impl<K, A: Algorithm + std::fmt::Debug, C> std::fmt::Debug for KeyedLimiter<K, A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl<K, A, C> AsyncRateLimiter<K> for KeyedLimiter<K, A, C>
where
    K: Hash + Eq + Clone + Send + Sync,
    A: Algorithm,
    C: Clock,
{
    fn check<'a>(&'a self, key: &'a K, cost: u64) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::ready(RateLimiter::check(self, key, cost))
    }

    fn check_at<'a>(
        &'a self,
        key: &'a K,
        cost: u64,
        now: Timestamp,
    ) -> LimitFuture<'a, Result<Decision>> {
        LimitFuture::ready(RateLimiter::check_at(self, key, cost, now))
    }
}
