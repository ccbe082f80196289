//! Per-key concurrency limits with RAII permits.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::future::LimitFuture;
use crate::shards::Sharded;

/// Limits how many requests per key may be in flight at once.
///
/// [`try_acquire`](Self::try_acquire) hands out a [`Permit`]; dropping it (including while a
/// panic unwinds the holder) returns the slot. Keys with nothing in flight take no memory.
///
/// ```
/// use align_ratelimit::ConcurrencyLimiter;
///
/// let limiter = ConcurrencyLimiter::new(2)?;
/// let first = limiter.try_acquire(&"ako_9311c954").unwrap();
/// let _second = limiter.try_acquire(&"ako_9311c954").unwrap();
/// let third = limiter.try_acquire(&"ako_9311c954");
/// assert_eq!(third.unwrap_err().retry_after_secs(), Some(1));
/// drop(first);
/// assert!(limiter.try_acquire(&"ako_9311c954").is_ok());
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
pub struct ConcurrencyLimiter<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    limit: u64,
    in_flight: Sharded<K, u64>,
}

/// One admitted in-flight request; the slot is returned when the permit is dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct Permit<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
    key: K,
    hash: u64,
    decision: Decision,
}

impl<K> Clone for ConcurrencyLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone> ConcurrencyLimiter<K> {
    /// A limiter allowing `limit` requests in flight per key.
    pub fn new(limit: u64) -> Result<Self> {
        if limit == 0 {
            return Err(Error::InvalidConfig(
                "a concurrency limit must allow at least 1 request",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                limit,
                in_flight: Sharded::new(16),
            }),
        })
    }

    /// The number of requests allowed in flight per key.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Takes a slot for `key`, or returns the denial (with `Retry-After: 1`) if all are in use.
    ///
    /// A slot frees whenever one of the key's requests finishes, which the limiter cannot
    /// foresee, so a denial suggests retrying after the smallest header value, one second.
    pub fn try_acquire(&self, key: &K) -> Result<Permit<K>, Decision> {
        let limit = self.inner.limit;
        let hash = self.inner.in_flight.hash(key);
        let mut shard = self.inner.in_flight.lock(hash);
        let used = shard.get_mut(hash, key).map_or(0, |n| *n);
        if used >= limit {
            return Err(Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after: Duration::from_secs(1),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        match shard.get_mut(hash, key) {
            Some(n) => *n += 1,
            None => self
                .inner
                .in_flight
                .insert(&mut shard, hash, key.clone(), 1, |n| *n == 0),
        }
        drop(shard);
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            key: key.clone(),
            hash,
            decision: Decision {
                allowed: true,
                limit,
                remaining: limit - used - 1,
                reset_after: Duration::ZERO,
                retry_after: None,
            },
        })
    }

    /// The number of `key`'s requests in flight now.
    pub fn in_flight(&self, key: &K) -> u64 {
        let hash = self.inner.in_flight.hash(key);
        self.inner
            .in_flight
            .lock(hash)
            .get_mut(hash, key)
            .map_or(0, |n| *n)
    }
}

impl<K: Hash + Eq> Permit<K> {
    /// The decision that admitted this request (limit and remaining slots at that moment).
    pub fn decision(&self) -> Decision {
        self.decision
    }
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut shard = self.inner.in_flight.lock(self.hash);
        let now_zero = match shard.get_mut(self.hash, &self.key) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if now_zero {
            shard.remove(self.hash, &self.key);
        }
    }
}

/// [`ConcurrencyLimiter`]'s async sibling: the trait both the in-memory limiter and the shared
/// Redis one (`RedisConcurrencyLimiter`, feature `redis`) implement, so a service holds
/// `Arc<dyn AsyncConcurrencyLimiter<K>>` and chooses the back-end at start-up.
///
/// The outer `Result` fails when the limiter could not decide (a shared store that does not
/// answer: [`Error::Unavailable`]); the inner one is the decision, as in
/// [`ConcurrencyLimiter::try_acquire`]: a [`Slot`] held while the request runs, or the denial.
///
/// ```
/// use std::sync::Arc;
/// use align_ratelimit::{AsyncConcurrencyLimiter, ConcurrencyLimiter};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter: Arc<dyn AsyncConcurrencyLimiter<u64>> = Arc::new(ConcurrencyLimiter::new(1)?);
/// let slot = limiter.try_acquire(&7).await?.expect("a free slot");
/// assert!(limiter.try_acquire(&7).await?.is_err());
/// drop(slot);
/// assert!(limiter.try_acquire(&7).await?.is_ok());
/// # Ok::<(), align_ratelimit::Error>(())
/// # }).unwrap();
/// ```
pub trait AsyncConcurrencyLimiter<K: Hash + Eq>: Send + Sync {
    /// Takes a slot for `key`, or returns the denial (with `Retry-After: 1`) if all are in use.
    fn try_acquire<'a>(&'a self, key: &'a K) -> LimitFuture<'a, Result<Result<Slot<K>, Decision>>>;
}

impl<K> AsyncConcurrencyLimiter<K> for ConcurrencyLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn try_acquire<'a>(&'a self, key: &'a K) -> LimitFuture<'a, Result<Result<Slot<K>, Decision>>> {
        LimitFuture::ready(Ok(Self::try_acquire(self, key).map(Slot::from)))
    }
}

/// One admitted in-flight request of any [`AsyncConcurrencyLimiter`]: its slot is returned
/// when the `Slot` is dropped (a shared store's lease also expires on its own if the process
/// holding it dies).
#[must_use = "the slot is released as soon as it is dropped"]
pub struct Slot<K: Hash + Eq> {
    held: Held<K>,
}

enum Held<K: Hash + Eq> {
    Local(Permit<K>),
    Other {
        decision: Decision,
        _guard: Box<dyn Send + Sync>,
    },
}

impl<K: Hash + Eq> Slot<K> {
    /// A slot held by another back-end: `guard` returns it when dropped.
    ///
    /// This is how a back-end outside this crate plugs into [`AsyncConcurrencyLimiter`].
    pub fn from_guard(decision: Decision, guard: impl Send + Sync + 'static) -> Self {
        Self {
            held: Held::Other {
                decision,
                _guard: Box::new(guard),
            },
        }
    }

    /// The decision that admitted this request (limit and remaining slots at that moment).
    pub fn decision(&self) -> Decision {
        match &self.held {
            Held::Local(permit) => permit.decision(),
            Held::Other { decision, .. } => *decision,
        }
    }
}

impl<K: Hash + Eq> From<Permit<K>> for Slot<K> {
    fn from(permit: Permit<K>) -> Self {
        Self {
            held: Held::Local(permit),
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for Slot<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("decision", &self.decision())
            .finish_non_exhaustive()
    }
}

impl<K> std::fmt::Debug for ConcurrencyLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("limit", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + std::fmt::Debug> std::fmt::Debug for Permit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("key", &self.key).finish()
    }
}
