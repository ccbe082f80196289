//! [`KeyLimits`]: everything a request by one key is held to: its rate per minute (the key's
//! own, or the default), calendar quotas, and requests in flight; in memory, or shared by
//! several instances through a store (Redis) chosen once, when it is built.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use crate::{
    AsyncConcurrencyLimiter, AsyncRateLimiter, ConcurrencyLimiter, Decision, KeyedLimiter, Quota,
    Rate, Result, SlidingWindow, Slot,
};

/// The in-memory limiter at one rate: the limiter itself, or a shared one's fallback.
pub type Local<K> = Arc<KeyedLimiter<K, SlidingWindow>>;
/// Makes the limiter in force from an in-memory one at the same rate (for example a Redis
/// window that falls back to it).
pub type Compose<K> = Box<dyn Fn(Local<K>) -> Arc<dyn AsyncRateLimiter<K>> + Send + Sync>;
/// An in-memory calendar quota: the quota itself, or a shared one's fallback.
pub type LocalQuota<K> = Arc<KeyedLimiter<K, Quota>>;
/// Makes the quota in force from an in-memory one.
pub type ComposeQuota<K> = Box<dyn Fn(LocalQuota<K>) -> Arc<dyn AsyncRateLimiter<K>> + Send + Sync>;

/// How limits are shared between instances: the composers of windows and quotas, and the
/// concurrency limiter. [`KeyLimitsBuilder::shared`] takes one.
pub struct Sharing<K: Hash + Eq> {
    /// Makes each rate's limiter from its in-memory one.
    pub window: Compose<K>,
    /// Makes each quota from its in-memory one.
    pub quota: ComposeQuota<K>,
    /// Counts requests in flight.
    pub concurrency: Arc<dyn AsyncConcurrencyLimiter<K>>,
}

/// Per-key rate (default and each key's own), calendar quotas and concurrency.
///
/// ```
/// use align_ratelimit::KeyLimits;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let limits: KeyLimits<u64> = KeyLimits::builder(600).max_concurrent(32).build().unwrap();
/// // Key 7 has its own limit of 5 a minute: the sixth request is refused.
/// for _ in 0..5 {
///     assert!(limits.check(&7, Some(5)).await.unwrap().allowed);
/// }
/// assert!(!limits.check(&7, Some(5)).await.unwrap().allowed);
/// # });
/// ```
pub struct KeyLimits<K: Hash + Eq> {
    /// The limiter at the default rate.
    default: Arc<dyn AsyncRateLimiter<K>>,
    /// The in-memory limiter at the default rate.
    local: Local<K>,
    /// Limiters for keys with their own rate, one per distinct rate.
    overrides: RwLock<HashMap<u32, Arc<dyn AsyncRateLimiter<K>>>>,
    /// The in-memory limiters of the overrides, for the idle sweep.
    override_locals: RwLock<Vec<Local<K>>>,
    compose: Compose<K>,
    concurrency: Arc<dyn AsyncConcurrencyLimiter<K>>,
    default_rate: u32,
    /// Calendar quotas, in memory or shared.
    quotas: Vec<Arc<dyn AsyncRateLimiter<K>>>,
    /// Their in-memory limiters.
    quota_locals: Vec<LocalQuota<K>>,
}

impl<K: Hash + Eq> std::fmt::Debug for KeyLimits<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimits")
            .field("default_rate", &self.default_rate)
            .field("quotas", &self.quotas.len())
            .finish_non_exhaustive()
    }
}

/// Makes the [`Sharing`] from the in-memory concurrency limiter.
type Share<K> = Box<dyn FnOnce(ConcurrencyLimiter<K>) -> Sharing<K>>;

/// Builds [`KeyLimits`].
pub struct KeyLimitsBuilder<K: Hash + Eq> {
    per_minute: u32,
    max_concurrent: u64,
    per_day: Option<u64>,
    per_month: Option<u64>,
    sharing: Option<Share<K>>,
}

impl<K: Hash + Eq> std::fmt::Debug for KeyLimitsBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimitsBuilder")
            .field("per_minute", &self.per_minute)
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl<K> KeyLimitsBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// At most `n` requests of one key in flight (default 32).
    pub fn max_concurrent(mut self, n: u64) -> Self {
        self.max_concurrent = n;
        self
    }
    /// At most `n` requests of one key per UTC day.
    pub fn quota_per_day(mut self, n: Option<u64>) -> Self {
        self.per_day = n;
        self
    }
    /// At most `n` requests of one key per UTC calendar month.
    pub fn quota_per_month(mut self, n: Option<u64>) -> Self {
        self.per_month = n;
        self
    }
    /// Shares the limits between instances: `f` gets the in-memory concurrency limiter (for a
    /// fallback) and returns the composers.
    pub fn shared(mut self, f: impl FnOnce(ConcurrencyLimiter<K>) -> Sharing<K> + 'static) -> Self {
        self.sharing = Some(Box::new(f));
        self
    }

    /// The limits; refuses a rate, quota or concurrency of zero.
    pub fn build(self) -> Result<KeyLimits<K>> {
        let local = Arc::new(KeyedLimiter::new(SlidingWindow::new(per_minute(
            self.per_minute,
        ))?));
        let concurrency = ConcurrencyLimiter::new(self.max_concurrent)?;
        let sharing = match self.sharing {
            None => Sharing {
                window: Box::new(|local: Local<K>| local as Arc<dyn AsyncRateLimiter<K>>),
                quota: Box::new(|local: LocalQuota<K>| local as Arc<dyn AsyncRateLimiter<K>>),
                concurrency: Arc::new(concurrency),
            },
            Some(f) => f(concurrency),
        };
        let mut quota_locals = Vec::new();
        if let Some(n) = self.per_day {
            quota_locals.push(Arc::new(KeyedLimiter::new(Quota::per_day(n)?)));
        }
        if let Some(n) = self.per_month {
            quota_locals.push(Arc::new(KeyedLimiter::new(Quota::per_month(n)?)));
        }
        Ok(KeyLimits {
            default: (sharing.window)(Arc::clone(&local)),
            local,
            overrides: RwLock::default(),
            override_locals: RwLock::default(),
            quotas: quota_locals
                .iter()
                .map(|q| (sharing.quota)(Arc::clone(q)))
                .collect(),
            quota_locals,
            compose: sharing.window,
            concurrency: sharing.concurrency,
            default_rate: self.per_minute,
        })
    }
}

impl<K> KeyLimits<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Limits at `per_minute` by default, 32 in flight, no quotas, in memory.
    pub fn builder(per_minute: u32) -> KeyLimitsBuilder<K> {
        KeyLimitsBuilder {
            per_minute,
            max_concurrent: 32,
            per_day: None,
            per_month: None,
            sharing: None,
        }
    }

    /// The default rate per minute.
    pub fn default_rate(&self) -> u32 {
        self.default_rate
    }

    /// Counts one request of `key` against every calendar quota; the first denial, if any.
    pub async fn check_quotas(&self, key: &K) -> Result<Option<Decision>> {
        for quota in &self.quotas {
            let d = quota.check(key, 1).await?;
            if !d.allowed {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Counts one request of `key` against `rate` per minute (its own, or the default).
    ///
    /// A key whose own rate changes starts afresh under the new rate.
    pub async fn check(&self, key: &K, rate: Option<u32>) -> Result<Decision> {
        match rate {
            Some(n) if n != self.default_rate => self.limiter_at(n).check(key, 1).await,
            _ => self.default.check(key, 1).await,
        }
    }

    /// Takes one of `key`'s in-flight slots, held until the returned slot is dropped, or the
    /// denial when all are in use.
    pub async fn acquire(&self, key: &K) -> Result<std::result::Result<Slot<K>, Decision>> {
        self.concurrency.try_acquire(key).await
    }

    /// Makes first contact with a shared store (a zero-cost check that counts nothing), so an
    /// outage at start-up is reported at once rather than at the first request.
    pub async fn announce(&self, any_key: &K) {
        let _ = self.default.check(any_key, 0).await;
    }

    /// Keys with rate-limit state at the default rate in this process's memory.
    pub fn tracked_keys(&self) -> usize {
        self.local.len()
    }

    /// Forgets idle in-memory state (default rate, every own rate, quotas); returns how many
    /// keys were dropped. Each shard is locked in turn, briefly.
    pub fn evict_idle(&self) -> usize {
        let overrides: Vec<Local<K>> = self
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

    fn limiter_at(&self, n: u32) -> Arc<dyn AsyncRateLimiter<K>> {
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
            // A rate of 0 is refused where rates are set; the sliding window takes every u32.
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
