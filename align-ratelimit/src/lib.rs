//! Rate limits, quotas and concurrency limits for per-key API traffic, with no knowledge of
//! HTTP or API keys.
//!
//! - [`RateLimiter`] is what a service calls: a [`Decision`] for (key, cost, now).
//! - [`KeyedLimiter`] is the in-memory implementation: one [`Algorithm`] state per key, in
//!   sharded maps that evict idle keys.
//! - Algorithms: [`SlidingWindow`] (the default: never more than the limit in any window, in 48
//!   bytes per key), [`SlidingLog`] (exact, the test oracle), [`SlidingCounter`], [`Gcra`],
//!   [`TokenBucket`], [`FixedWindow`] and calendar [`Quota`]s.
//! - [`ConcurrencyLimiter`] caps requests in flight with RAII [`Permit`]s.
//! - [`AsyncRateLimiter`] and [`AsyncConcurrencyLimiter`] are the async siblings that the
//!   in-memory limiters and the shared Redis ones (feature `redis`: `RedisSlidingWindow`,
//!   `RedisQuota`, `RedisConcurrencyLimiter`) all implement, so several instances of a service can share
//!   one limit.
//! - [`WindowSet`] checks a group's named limits (several fixed windows, e.g. per minute and
//!   per day) all or nothing and exactly: [`MemoryWindowSet`] in memory, `RedisWindowSet`
//!   (feature `redis`) shared by several instances.
//! - [`Decision::headers`] and [`Decision::ietf_headers`] give the response header values.
//! - Time comes from a [`Clock`]: [`SystemClock`] in production, [`TestClock`] in tests.
//!
//! ```
//! use align_ratelimit::{KeyedLimiter, Rate, RateLimiter, SlidingWindow, TestClock, Timestamp};
//! use std::time::Duration;
//!
//! let clock = TestClock::new(Timestamp::from_unix_secs(1_700_000_000));
//! let limiter = KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(600))?, &clock);
//! for _ in 0..600 {
//!     assert!(limiter.check(&"key", 1)?.allowed);
//! }
//! let denied = limiter.check(&"key", 1)?;
//! assert!(!denied.allowed);
//! clock.advance(Duration::from_secs(denied.retry_after_secs().unwrap_or(1)));
//! assert!(limiter.check(&"key", 1)?.allowed);
//! # Ok::<(), align_ratelimit::Error>(())
//! ```

mod algorithm;
mod clock;
mod concurrency;
mod decision;
mod error;
mod future;
mod headers;
mod keyed;
mod keylimits;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
#[cfg(feature = "redis")]
mod redis;
mod shards;
mod windows;

pub use algorithm::{
    Algorithm, FixedWindow, FixedWindowState, Gcra, GcraState, Period, Quota, QuotaState, Rate,
    SlidingCounter, SlidingCounterState, SlidingLog, SlidingLogState, SlidingWindow,
    SlidingWindowState, TokenBucket, TokenBucketState,
};
pub use clock::{Clock, SystemClock, TestClock, Timestamp};
pub use concurrency::{AsyncConcurrencyLimiter, ConcurrencyLimiter, Permit, Slot};
pub use decision::Decision;
pub use error::{Error, Result};
pub use future::LimitFuture;
pub use headers::{Headers, IetfPolicy};
pub use keyed::KeyedLimiter;
pub use keylimits::{
    Compose, ComposeQuota, KeyLimits, KeyLimitsBuilder, Local, LocalQuota, Sharing,
};
#[cfg(feature = "tower")]
pub use layer::{KeyLimitsLayer, KeyLimitsService, KeyOf, apply_headers};
pub use limiter::{AsyncRateLimiter, RateLimiter};
#[cfg(feature = "redis")]
pub use redis::{
    RedisConcurrencyLimiter, RedisOptions, RedisPermit, RedisQuota, RedisSlidingWindow, RedisStore,
    RedisWindowSet,
};
pub use windows::{MemoryWindowSet, WindowLimit, WindowOutcome, WindowSet, WindowsDecision};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
