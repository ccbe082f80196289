//! The [`RateLimiter`] trait, what the rest of a service sees of a limiter, and its async
//! sibling [`AsyncRateLimiter`] for back-ends that answer over the network.

use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::Result;
use crate::future::LimitFuture;

/// Decides, per key, whether a request of a given cost is admitted now.
///
/// Object safe, so a service can hold an `Arc<dyn RateLimiter<String>>` and choose the
/// algorithm and back-end at start-up.
pub trait RateLimiter<K: ?Sized>: Send + Sync {
    /// The current time on the limiter's clock.
    fn now(&self) -> Timestamp;

    /// Decides on a request by `key` costing `cost` units at `now`, counting it if admitted.
    ///
    /// A `cost` of 0 reads the key's state without counting anything.
    fn check_at(&self, key: &K, cost: u64, now: Timestamp) -> Result<Decision>;

    /// Decides on a request by `key` costing `cost` units at the clock's current time.
    fn check(&self, key: &K, cost: u64) -> Result<Decision> {
        self.check_at(key, cost, self.now())
    }
}

/// [`RateLimiter`]'s async sibling: the trait both the in-memory [`KeyedLimiter`] and the
/// shared Redis limiter (`RedisSlidingWindow`, feature `redis`) implement, so a service holds
/// `Arc<dyn AsyncRateLimiter<K>>` and chooses the back-end at start-up.
///
/// An in-memory limiter answers with a ready [`LimitFuture`] (no allocation, no wait); a shared
/// one makes a round trip. Besides the [`Error`](crate::Error)s of the sync trait, a shared
/// limiter fails with [`Error::Unavailable`](crate::Error::Unavailable) when its store does not
/// answer: the service then decides whether to admit (fail open) or refuse (fail closed).
///
/// [`KeyedLimiter`] implements both traits; with both in scope, name the one you mean:
/// `AsyncRateLimiter::check(&limiter, &key, 1).await`.
///
/// ```
/// use std::sync::Arc;
/// use align_ratelimit::{AsyncRateLimiter, KeyedLimiter, Rate, SlidingWindow};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter: Arc<dyn AsyncRateLimiter<String>> =
///     Arc::new(KeyedLimiter::new(SlidingWindow::new(Rate::per_minute(600))?));
/// let key = "ako_9311c954".to_string();
/// let decision = limiter.check(&key, 1).await?;
/// assert_eq!((decision.allowed, decision.remaining), (true, 599));
/// # Ok::<(), align_ratelimit::Error>(())
/// # }).unwrap();
/// ```
///
/// [`KeyedLimiter`]: crate::KeyedLimiter
pub trait AsyncRateLimiter<K: ?Sized>: Send + Sync {
    /// Decides on a request by `key` costing `cost` units now, on the limiter's own clock (the
    /// Redis server's clock for the shared limiter), counting it if admitted.
    ///
    /// A `cost` of 0 reads the key's state without counting anything.
    fn check<'a>(&'a self, key: &'a K, cost: u64) -> LimitFuture<'a, Result<Decision>>;

    /// Decides on a request by `key` costing `cost` units at `now` on the caller's clock.
    ///
    /// Every caller of one key should use the same clock; tests use this to replay traffic.
    fn check_at<'a>(
        &'a self,
        key: &'a K,
        cost: u64,
        now: Timestamp,
    ) -> LimitFuture<'a, Result<Decision>>;
}
