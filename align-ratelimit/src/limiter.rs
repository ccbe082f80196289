//! The [`RateLimiter`] trait: what the rest of a service sees of a limiter.

use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::Result;

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
