//! The [`Algorithm`] trait and its implementations, one module per algorithm.
//!
//! | algorithm | state per key | accuracy for "L per window W" |
//! |---|---|---|
//! | [`SlidingWindow`] (default) | 48 bytes; 1.9 KiB while above a quarter of its limit | never more than L in any interval of length W; may deny slightly early |
//! | [`SlidingLog`] | 16 bytes per request in the window, up to 16·L | exact (the test oracle) |
//! | [`SlidingCounter`] | 16 bytes | two-counter estimate; can admit more than L in some interval |
//! | [`Gcra`] | 8 bytes | at most `burst + d/T` in any interval of length d (T = W/L) |
//! | [`TokenBucket`] | 16 bytes | same bound as GCRA, with the level stored explicitly |
//! | [`FixedWindow`] | 16 bytes | at most L per aligned window, up to 2·L across a boundary |
//! | [`Quota`] | 16 bytes | at most N per calendar day or month (UTC) |

mod fixed_window;
mod gcra;
mod quota;
mod sliding_counter;
mod sliding_log;
mod sliding_window;
mod token_bucket;

pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use quota::{Period, Quota, QuotaState};
pub use sliding_counter::{SlidingCounter, SlidingCounterState};
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use sliding_window::{SlidingWindow, SlidingWindowState};
pub use token_bucket::{TokenBucket, TokenBucketState};

use std::time::Duration;

use crate::clock::{Timestamp, duration_nanos};
use crate::decision::Decision;
use crate::error::{Error, Result};

/// How many units a key may spend per window, e.g. `Rate::per_minute(600)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    limit: u64,
    window: Duration,
}

impl Rate {
    /// `limit` units per `window`.
    #[must_use]
    pub const fn new(limit: u64, window: Duration) -> Self {
        Self { limit, window }
    }

    /// `limit` units per second.
    #[must_use]
    pub const fn per_second(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` units per minute (the seed's default is `Rate::per_minute(600)`).
    #[must_use]
    pub const fn per_minute(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` units per hour.
    #[must_use]
    pub const fn per_hour(limit: u64) -> Self {
        Self::new(limit, Duration::from_secs(3_600))
    }

    /// The number of units per window.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length.
    #[must_use]
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The limit and the window in nanoseconds, both checked to be non-zero.
    pub(crate) fn validated(&self) -> Result<(u64, u64)> {
        if self.limit == 0 {
            return Err(Error::InvalidConfig("the limit must be at least 1"));
        }
        let window = duration_nanos(self.window);
        if window == 0 {
            return Err(Error::InvalidConfig("the window must be longer than zero"));
        }
        Ok((self.limit, window))
    }
}

/// One rate-limiting algorithm: the rule, and the per-key state it keeps.
///
/// The keyed store ([`KeyedLimiter`](crate::KeyedLimiter)) owns one `State` per key and calls
/// [`check`](Self::check) under that key's lock, so an implementation needs no synchronisation.
/// Implement it to plug a custom rule into the store.
pub trait Algorithm: Send + Sync {
    /// What the algorithm remembers about one key.
    type State: Send;

    /// The limit reported to clients (`X-RateLimit-Limit`).
    fn limit(&self) -> u64;

    /// The window the limit applies to (the `w` of the IETF `RateLimit-Policy` field).
    fn window(&self) -> Duration;

    /// The state of a key never seen before.
    fn new_state(&self, now: Timestamp) -> Self::State;

    /// Decides on a request costing `cost` units at `now`, counting it if admitted.
    ///
    /// `now` may be earlier than a previous call's (clocks read on different threads); an
    /// implementation must then stay on the safe side, never admitting more.
    fn check(&self, state: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision>;

    /// Whether `state` at `now` is indistinguishable from [`new_state`](Self::new_state), so the
    /// store may forget the key.
    fn is_idle(&self, state: &Self::State, now: Timestamp) -> bool;
}

/// `cost` admitted or denied against `used` of `limit`, the shape shared by counting algorithms.
pub(crate) struct Outcome {
    pub(crate) limit: u64,
    pub(crate) used: u64,
    pub(crate) reset_after_nanos: u64,
    pub(crate) retry_after_nanos: Option<u64>,
}

impl Outcome {
    /// `cost` against a counter of `used` out of `limit` that empties in `ends_in`
    /// nanoseconds (a fixed window's or a quota period's end), counted if it fits.
    #[inline]
    pub(crate) fn count(used: &mut u64, limit: u64, cost: u64, ends_in: u64) -> Self {
        let allowed = *used + cost <= limit;
        if allowed {
            *used += cost;
        }
        Self {
            limit,
            used: *used,
            reset_after_nanos: if *used == 0 { 0 } else { ends_in },
            retry_after_nanos: (!allowed).then_some(ends_in),
        }
    }
}

impl From<Outcome> for Decision {
    fn from(o: Outcome) -> Self {
        Self {
            allowed: o.retry_after_nanos.is_none(),
            limit: o.limit,
            remaining: o.limit.saturating_sub(o.used),
            reset_after: Duration::from_nanos(o.reset_after_nanos),
            retry_after: o.retry_after_nanos.map(Duration::from_nanos),
        }
    }
}
