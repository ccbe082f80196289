//! The limits shared through Redis (sliding windows, calendar quotas, concurrency), and what
//! happens while Redis does not answer: fail open (this instance's in-memory limiters decide)
//! or fail closed (`503 unavailable`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_keys::KeyId;
use align_ratelimit::{
    Algorithm, AsyncConcurrencyLimiter, AsyncRateLimiter, ConcurrencyLimiter, Decision,
    KeyedLimiter, LimitFuture, Rate, RateLimiter, RedisConcurrencyLimiter, RedisOptions,
    RedisQuota, RedisSlidingWindow, RedisStore, Slot, Timestamp,
};

use align_ratelimit::{Local, LocalQuota, Sharing};

use crate::config::{Config, RedisFailure, RedisUrl};
use crate::error::Error;

/// During an outage, one request per interval asks Redis again; the others skip it.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Concurrency leases outlive the request timeout by this much before they expire on their own.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The limiters over Redis, each with its in-memory fallback: opens the store now (a bad URL
/// is a start-up error) and returns how to compose them around the in-memory limiters.
pub(super) fn compose(
    config: &Config,
    url: &RedisUrl,
) -> Result<impl FnOnce(ConcurrencyLimiter<KeyId>) -> Sharing<KeyId> + 'static, Error> {
    let setting = |e: align_ratelimit::Error| Error::Setting {
        key: "ratelimit.redis_url".into(),
        reason: e.to_string(),
    };
    let options = RedisOptions {
        prefix: config.redis.prefix.clone(),
        ..RedisOptions::default()
    };
    let store = RedisStore::open(url.expose(), options).map_err(setting)?;
    let health = Arc::new(Health::new(store.target(), config.redis.failure));
    let lease = config.request_timeout + LEASE_MARGIN;
    let concurrency = RedisConcurrencyLimiter::new(&store, config.max_concurrent_per_key, lease)
        .map_err(setting)?;
    tracing::info!(
        store = store.target(),
        failure = ?config.redis.failure,
        "rate and concurrency limits are shared through Redis"
    );
    let (window_store, window_health) = (store.clone(), Arc::clone(&health));
    let window = move |local: Local<KeyId>| -> Arc<dyn AsyncRateLimiter<KeyId>> {
        let rate = Rate::per_minute(local.algorithm().limit());
        match RedisSlidingWindow::new(&window_store, rate) {
            Ok(redis) => Arc::new(Shared {
                redis,
                local,
                health: Arc::clone(&window_health),
            }),
            // Every per-minute rate the local window accepts fits Redis too.
            Err(_) => local,
        }
    };
    let (quota_store, quota_health) = (store, Arc::clone(&health));
    let quota = move |local: LocalQuota<KeyId>| -> Arc<dyn AsyncRateLimiter<KeyId>> {
        match RedisQuota::new(&quota_store, *local.algorithm()) {
            Ok(redis) => Arc::new(Shared {
                redis,
                local,
                health: Arc::clone(&quota_health),
            }),
            // Only quotas above 2^53 a period stay per instance.
            Err(_) => local,
        }
    };
    Ok(move |local_concurrency| Sharing {
        window: Box::new(window),
        quota: Box::new(quota),
        concurrency: Arc::new(Concurrency {
            redis: concurrency,
            local: local_concurrency,
            health,
        }),
    })
}

/// Whether Redis answers, the policy while it does not, and one warning per outage.
struct Health {
    store: String,
    policy: RedisFailure,
    /// Fast path: true only during an outage.
    down: AtomicBool,
    outage: Mutex<Outage>,
}

struct Outage {
    since: Option<Instant>,
    next_probe: Instant,
}

impl Health {
    fn new(store: &str, policy: RedisFailure) -> Self {
        Self {
            store: store.to_owned(),
            policy,
            down: AtomicBool::new(false),
            outage: Mutex::new(Outage {
                since: None,
                next_probe: Instant::now(),
            }),
        }
    }

    /// Whether to ask Redis: always while it answers; during an outage, one request per
    /// [`PROBE_EVERY`], so the others neither wait for a timeout nor pile onto a sick server.
    fn should_ask(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return true;
        }
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now < outage.next_probe {
            return false;
        }
        outage.next_probe = now + PROBE_EVERY;
        true
    }

    fn answered(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = outage.since.take() {
            self.down.store(false, Ordering::Relaxed);
            tracing::info!(
                store = %self.store,
                outage_secs = since.elapsed().as_secs(),
                "Redis answers again: rate limits are shared again"
            );
        }
    }

    fn failed(&self, error: &align_ratelimit::Error) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        outage.next_probe = now + PROBE_EVERY;
        if outage.since.is_none() {
            outage.since = Some(now);
            self.down.store(true, Ordering::Relaxed);
            match self.policy {
                RedisFailure::Open => tracing::warn!(
                    store = %self.store,
                    %error,
                    "Redis does not answer: failing open, each instance limits keys on its own until it does"
                ),
                RedisFailure::Closed => tracing::warn!(
                    store = %self.store,
                    %error,
                    "Redis does not answer: failing closed, key-authenticated requests get 503 until it does"
                ),
            }
        }
    }

    /// What a request gets without Redis: the local decision (open) or an error (closed).
    fn without_redis<T>(
        &self,
        local: impl FnOnce() -> align_ratelimit::Result<T>,
    ) -> align_ratelimit::Result<T> {
        match self.policy {
            RedisFailure::Open => local(),
            RedisFailure::Closed => Err(align_ratelimit::Error::Unavailable {
                store: self.store.clone(),
                reason: "not answering; the server fails closed".into(),
            }),
        }
    }
}

/// A limit decided in Redis (a sliding window or a calendar quota), with this instance's
/// in-memory limiter of the same algorithm for when Redis does not answer.
struct Shared<R, A: Algorithm> {
    redis: R,
    local: Arc<KeyedLimiter<KeyId, A>>,
    health: Arc<Health>,
}

impl<R, A> Shared<R, A>
where
    R: AsyncRateLimiter<KeyId>,
    A: Algorithm,
{
    async fn decide(
        &self,
        key: &KeyId,
        cost: u64,
        now: Option<Timestamp>,
    ) -> align_ratelimit::Result<Decision> {
        if self.health.should_ask() {
            let asked = match now {
                None => self.redis.check(key, cost).await,
                Some(t) => self.redis.check_at(key, cost, t).await,
            };
            match asked {
                Ok(d) => {
                    self.health.answered();
                    return Ok(d);
                }
                Err(e @ align_ratelimit::Error::Unavailable { .. }) => self.health.failed(&e),
                Err(e) => return Err(e),
            }
        }
        self.health.without_redis(|| match now {
            None => RateLimiter::check(&*self.local, key, cost),
            Some(t) => RateLimiter::check_at(&*self.local, key, cost, t),
        })
    }
}

impl<R, A> AsyncRateLimiter<KeyId> for Shared<R, A>
where
    R: AsyncRateLimiter<KeyId>,
    A: Algorithm,
{
    fn check<'a>(
        &'a self,
        key: &'a KeyId,
        cost: u64,
    ) -> LimitFuture<'a, align_ratelimit::Result<Decision>> {
        LimitFuture::boxed(self.decide(key, cost, None))
    }

    fn check_at<'a>(
        &'a self,
        key: &'a KeyId,
        cost: u64,
        now: Timestamp,
    ) -> LimitFuture<'a, align_ratelimit::Result<Decision>> {
        LimitFuture::boxed(self.decide(key, cost, Some(now)))
    }
}

/// Leases in Redis, with this instance's limiter for when Redis does not answer.
struct Concurrency {
    redis: RedisConcurrencyLimiter,
    local: ConcurrencyLimiter<KeyId>,
    health: Arc<Health>,
}

type Acquired = align_ratelimit::Result<Result<Slot<KeyId>, Decision>>;

impl AsyncConcurrencyLimiter<KeyId> for Concurrency {
    fn try_acquire<'a>(&'a self, key: &'a KeyId) -> LimitFuture<'a, Acquired> {
        LimitFuture::boxed(async move {
            if self.health.should_ask() {
                match self.redis.try_acquire(key).await {
                    Ok(outcome) => {
                        self.health.answered();
                        return Ok(outcome.map(|p| Slot::from_guard(p.decision(), p)));
                    }
                    Err(e @ align_ratelimit::Error::Unavailable { .. }) => self.health.failed(&e),
                    Err(e) => return Err(e),
                }
            }
            self.health
                .without_redis(|| Ok(self.local.try_acquire(key).map(Slot::from)))
        })
    }
}
