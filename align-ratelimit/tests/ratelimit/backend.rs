//! The limiters under test: in memory always, in Redis when `ALIGN_TEST_REDIS_URL` is set
//! (and the crate is built with the `redis` feature); otherwise Redis tests print why they
//! are skipped and pass.

use std::sync::Arc;

use align_ratelimit::{
    AsyncConcurrencyLimiter, AsyncRateLimiter, ConcurrencyLimiter, KeyedLimiter, Rate,
    SlidingWindow,
};

/// The variable naming the Redis that tests may use (`redis://127.0.0.1:6379/`).
pub(crate) const REDIS_ENV: &str = "ALIGN_TEST_REDIS_URL";

/// Builds the limiters of one back-end.
pub(crate) trait Backend: Send + Sync {
    /// The default sliding window at `rate`.
    fn window(&self, rate: Rate) -> Arc<dyn AsyncRateLimiter<String>>;
    /// A concurrency limiter allowing `limit` in flight per key.
    fn concurrency(&self, limit: u64) -> Arc<dyn AsyncConcurrencyLimiter<String>>;
}

/// The in-memory limiters.
pub(crate) struct Memory;

impl Backend for Memory {
    fn window(&self, rate: Rate) -> Arc<dyn AsyncRateLimiter<String>> {
        Arc::new(KeyedLimiter::new(SlidingWindow::new(rate).unwrap()))
    }

    fn concurrency(&self, limit: u64) -> Arc<dyn AsyncConcurrencyLimiter<String>> {
        Arc::new(ConcurrencyLimiter::new(limit).unwrap())
    }
}

/// The Redis URL for tests, or `None` after printing why Redis tests are skipped.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    if !cfg!(feature = "redis") {
        println!("{test}: skipped: built without the `redis` feature");
        return None;
    }
    match std::env::var(REDIS_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!(
                "{test}: skipped: {REDIS_ENV} is not set (e.g. {REDIS_ENV}=redis://127.0.0.1:6379/)"
            );
            None
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) use in_redis::{InRedis, Redis, unique_prefix};

#[cfg(feature = "redis")]
mod in_redis {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use align_ratelimit::{
        AsyncConcurrencyLimiter, AsyncRateLimiter, Decision, Rate, RedisConcurrencyLimiter,
        RedisOptions, RedisSlidingWindow, RedisStore, Timestamp,
    };

    use super::{Backend, redis_url};
    use crate::support::Subject;

    /// A key prefix no other test, and no other test run, uses: parallel runs never meet.
    pub(crate) fn unique_prefix() -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("align-test:{}-{nanos:x}-{n}:", std::process::id())
    }

    /// The Redis limiters, on a store with a prefix of their own.
    pub(crate) struct Redis {
        pub(crate) store: RedisStore,
    }

    impl Redis {
        /// Connects (inside a tokio runtime), or `None` when Redis tests are skipped.
        pub(crate) fn from_env(test: &str) -> Option<Self> {
            let url = redis_url(test)?;
            let options = RedisOptions {
                prefix: unique_prefix(),
                timeout: Duration::from_secs(5),
            };
            Some(Self {
                store: RedisStore::open(&url, options).unwrap(),
            })
        }
    }

    impl Backend for Redis {
        fn window(&self, rate: Rate) -> Arc<dyn AsyncRateLimiter<String>> {
            Arc::new(RedisSlidingWindow::new(&self.store, rate).unwrap())
        }

        fn concurrency(&self, limit: u64) -> Arc<dyn AsyncConcurrencyLimiter<String>> {
            Arc::new(
                RedisConcurrencyLimiter::new(&self.store, limit, Duration::from_secs(30)).unwrap(),
            )
        }
    }

    /// One key of a Redis sliding window, driven from synchronous property tests.
    pub(crate) struct InRedis<'a> {
        pub(crate) runtime: &'a tokio::runtime::Runtime,
        pub(crate) limiter: RedisSlidingWindow,
        pub(crate) key: String,
    }

    impl Subject for InRedis<'_> {
        fn check(&mut self, cost: u64, at: u64) -> Decision {
            let now = Timestamp::from_nanos(at);
            self.runtime
                .block_on(self.limiter.check_at(&self.key, cost, now))
                .unwrap()
        }

        fn probe(&self, cost: u64, at: u64) -> Decision {
            let now = Timestamp::from_nanos(at);
            self.runtime
                .block_on(self.limiter.peek_at(&self.key, cost, now))
                .unwrap()
        }
    }
}
