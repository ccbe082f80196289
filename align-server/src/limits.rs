//! Per-key rate, quota and concurrency limits as the server composes them: in memory (one
//! instance), or shared by every instance through Redis (`ratelimit.redis_url`) with a failure
//! policy (`ratelimit.redis_failure`). The back-end is chosen once, here, at start-up.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use align_keys::KeyId;
use align_ratelimit::{
    AsyncConcurrencyLimiter, AsyncRateLimiter, ConcurrencyLimiter, Decision, KeyedLimiter, Quota,
    Rate, SlidingWindow, Slot,
};

use crate::config::Config;
use crate::error::{ApiError, Error};

/// The in-memory limiter at one rate: the limiter itself, or the shared one's fallback.
type Local = Arc<KeyedLimiter<KeyId, SlidingWindow>>;
/// Makes the limiter in force at a local limiter's rate.
type Compose = Box<dyn Fn(Local) -> Arc<dyn AsyncRateLimiter<KeyId>> + Send + Sync>;
/// An in-memory calendar quota: the quota itself, or the shared one's fallback.
type LocalQuota = Arc<KeyedLimiter<KeyId, Quota>>;
/// Makes the quota in force from a local one.
type ComposeQuota = Box<dyn Fn(LocalQuota) -> Arc<dyn AsyncRateLimiter<KeyId>> + Send + Sync>;

/// How the limits are shared: the composers of windows and quotas, and the concurrency
/// limiter.
struct Composers {
    window: Compose,
    quota: ComposeQuota,
    concurrency: Arc<dyn AsyncConcurrencyLimiter<KeyId>>,
}

/// The rate limiters (default and per-key overrides) and the concurrency limiter.
pub(crate) struct Limits {
    /// The limiter at the server's default rate.
    default: Arc<dyn AsyncRateLimiter<KeyId>>,
    /// The in-memory limiter at the default rate (what `/metrics` counts).
    local: Local,
    /// Limiters for keys with their own rate, one per distinct rate.
    overrides: RwLock<HashMap<u32, Arc<dyn AsyncRateLimiter<KeyId>>>>,
    /// The in-memory limiters of the overrides (the limiters themselves, or the shared ones'
    /// fallbacks), for the idle sweep.
    override_locals: RwLock<Vec<Local>>,
    compose: Compose,
    concurrency: Arc<dyn AsyncConcurrencyLimiter<KeyId>>,
    default_rate: u32,
    /// Calendar quotas (`ratelimit.quota_per_day`, `quota_per_month`), in memory or shared.
    quotas: Vec<Arc<dyn AsyncRateLimiter<KeyId>>>,
    /// Their in-memory limiters (the quotas themselves, or the shared ones' fallbacks).
    quota_locals: Vec<LocalQuota>,
}

impl Limits {
    /// The limits `config` asks for (must run inside the tokio runtime when Redis is set).
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        let setting = |key: &str, e: align_ratelimit::Error| Error::Setting {
            key: key.into(),
            reason: e.to_string(),
        };
        let local = Arc::new(KeyedLimiter::new(
            SlidingWindow::new(per_minute(config.rate_limit_per_minute))
                .map_err(|e| setting("ratelimit.per_minute", e))?,
        ));
        let concurrency = ConcurrencyLimiter::new(config.max_concurrent_per_key)
            .map_err(|e| setting("limits.max_concurrent_per_key", e))?;
        let composers = match &config.redis.url {
            None => Composers {
                window: Box::new(|local: Local| local as Arc<dyn AsyncRateLimiter<KeyId>>),
                quota: Box::new(|local: LocalQuota| local as Arc<dyn AsyncRateLimiter<KeyId>>),
                concurrency: Arc::new(concurrency),
            },
            Some(url) => shared::compose(config, url, concurrency)?,
        };
        let mut quota_locals = Vec::new();
        if let Some(n) = config.quota_per_day {
            let q = Quota::per_day(n).map_err(|e| setting("ratelimit.quota_per_day", e))?;
            quota_locals.push(Arc::new(KeyedLimiter::new(q)));
        }
        if let Some(n) = config.quota_per_month {
            let q = Quota::per_month(n).map_err(|e| setting("ratelimit.quota_per_month", e))?;
            quota_locals.push(Arc::new(KeyedLimiter::new(q)));
        }
        Ok(Self {
            default: (composers.window)(Arc::clone(&local)),
            local,
            overrides: RwLock::default(),
            override_locals: RwLock::default(),
            quotas: quota_locals
                .iter()
                .map(|q| (composers.quota)(Arc::clone(q)))
                .collect(),
            quota_locals,
            compose: composers.window,
            concurrency: composers.concurrency,
            default_rate: config.rate_limit_per_minute,
        })
    }

    /// Counts one request of `key` against every calendar quota; the first denial, if any.
    pub(crate) async fn check_quotas(&self, key: KeyId) -> Result<Option<Decision>, ApiError> {
        for quota in &self.quotas {
            let d = quota.check(&key, 1).await.map_err(refusal)?;
            if !d.allowed {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Counts one request of `key` against `rate` per minute (its own, or the default).
    ///
    /// A key whose override changes starts afresh under the new rate.
    pub(crate) async fn check(&self, key: KeyId, rate: Option<u32>) -> Result<Decision, ApiError> {
        let result = match rate {
            Some(n) if n != self.default_rate => self.limiter_at(n).check(&key, 1).await,
            _ => self.default.check(&key, 1).await,
        };
        result.map_err(refusal)
    }

    /// Takes one of `key`'s in-flight slots, held until the returned slot is dropped, or the
    /// denial when all are in use.
    pub(crate) async fn acquire(
        &self,
        key: KeyId,
    ) -> Result<Result<Slot<KeyId>, Decision>, ApiError> {
        self.concurrency.try_acquire(&key).await.map_err(refusal)
    }

    /// Makes first contact with a shared store (a zero-cost check that counts nothing), so an
    /// outage at start-up is logged at once rather than at the first request.
    pub(crate) async fn announce(&self) {
        let _ = self.default.check(&KeyId(uuid::Uuid::nil()), 0).await;
    }

    /// Keys with rate-limit state in this process's memory.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.local.len()
    }

    /// Forgets idle in-memory rate-limit state (default rate and every override); returns how
    /// many keys were dropped. Each shard is locked in turn, briefly.
    pub(crate) fn evict_idle(&self) -> usize {
        let overrides: Vec<Local> = self
            .override_locals
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.local.evict_idle()
            + overrides.iter().map(|l| l.evict_idle()).sum::<usize>()
            + self
                .quota_locals
                .iter()
                .map(|q| q.evict_idle())
                .sum::<usize>()
    }

    fn limiter_at(&self, n: u32) -> Arc<dyn AsyncRateLimiter<KeyId>> {
        if let Some(l) = self
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&n)
        {
            return Arc::clone(l);
        }
        let mut map = self
            .overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(n).or_insert_with(|| {
            // Overrides come from PATCH, which refuses 0; the sliding window takes every u32.
            let rate = per_minute(n.max(1));
            let local = SlidingWindow::new(rate).map_or_else(
                |_| Arc::clone(&self.local),
                |w| {
                    let local = Arc::new(KeyedLimiter::new(w));
                    self.override_locals
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Arc::clone(&local));
                    local
                },
            );
            (self.compose)(local)
        }))
    }
}

fn per_minute(n: u32) -> Rate {
    Rate::per_minute(u64::from(n))
}

/// A limiter that could not decide: the shared store is down and the policy is to fail
/// closed (`503 unavailable`), or something that should not happen (`500`).
fn refusal(e: align_ratelimit::Error) -> ApiError {
    match e {
        align_ratelimit::Error::Unavailable { .. } => ApiError::unavailable(),
        other => {
            tracing::error!(error = %other, "rate limiter failure");
            ApiError::internal()
        }
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("default_rate", &self.default_rate)
            .finish_non_exhaustive()
    }
}

#[cfg(not(feature = "redis"))]
mod shared {
    use super::*;
    use crate::config::RedisUrl;

    pub(super) fn compose(
        _: &Config,
        _: &RedisUrl,
        _: ConcurrencyLimiter<KeyId>,
    ) -> Result<Composers, Error> {
        Err(Error::Setting {
            key: "ratelimit.redis_url".into(),
            reason: "this build of the server has no Redis support (cargo feature `redis`)".into(),
        })
    }
}

#[cfg(feature = "redis")]
mod shared;
