//! What every request shares: the key manager, the limiter, settings, and a short-lived cache
//! of users' roles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use align_audit::AuditSink;
use align_keys::store::KeyStore;
use align_keys::{KeyId, KeyManager, KeyRecord, Role, UserId};
use align_ratelimit::{
    ConcurrencyLimiter, Decision, KeyedLimiter, Quota, Rate, RateLimiter, SlidingWindow,
};
use align_webhooks::{Resolver, SystemResolver, UrlPolicy, WebhookStore};

use crate::config::Config;
use crate::error::{ApiError, Error};
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;

/// How long a looked-up role is trusted. Role changes made through this server apply at once;
/// changes made by another process (the CLI) within this delay.
const ROLE_TTL: Duration = Duration::from_secs(1);

/// Shared server state.
pub(crate) struct AppState {
    /// Settings in force.
    pub(crate) config: Config,
    /// Keys: minting, verification, revocation.
    pub(crate) keys: KeyManager,
    /// Per-key sliding-window limiter at the server's default rate.
    pub(crate) limiter: KeyedLimiter<KeyId, SlidingWindow>,
    /// Requests in flight per key.
    pub(crate) concurrency: ConcurrencyLimiter<KeyId>,
    /// Optional calendar quotas (per day, per month).
    pub(crate) quotas: Vec<KeyedLimiter<KeyId, Quota>>,
    /// Limiters for keys with their own rate, one per distinct rate.
    overrides: RwLock<HashMap<u32, Arc<KeyedLimiter<KeyId, SlidingWindow>>>>,
    roles: Mutex<HashMap<UserId, (Role, Instant)>>,
    /// Audit and request logs.
    pub(crate) audit: Arc<dyn AuditSink>,
    /// Counters for `/metrics`.
    pub(crate) metrics: Metrics,
    /// Responses kept for `Idempotency-Key` replays (memory only).
    pub(crate) idempotency: Idempotency,
    /// Webhook endpoints and the outbox (also the event log behind `GET /events`).
    pub(crate) webhooks: Arc<dyn WebhookStore>,
    /// The endpoint URL rules (`webhooks.allow_private_targets`).
    pub(crate) url_policy: UrlPolicy,
    /// Resolves endpoint host names for the URL check at registration.
    pub(crate) resolver: Arc<dyn Resolver>,
    /// When each key last caused a `rate_limit.exceeded` event.
    pub(crate) notices: crate::events::RateLimitNotices,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state over an opened key store.
    pub(crate) fn new(
        config: Config,
        keys: KeyManager,
        audit: Arc<dyn AuditSink>,
        webhooks: Arc<dyn WebhookStore>,
    ) -> Result<Self, Error> {
        let rate = Rate::per_minute(u64::from(config.rate_limit_per_minute));
        let algorithm = SlidingWindow::new(rate).map_err(|e| Error::Setting {
            key: "ratelimit.per_minute".into(),
            reason: e.to_string(),
        })?;
        let setting = |key: &str, e: align_ratelimit::Error| Error::Setting {
            key: key.into(),
            reason: e.to_string(),
        };
        let concurrency = ConcurrencyLimiter::new(config.max_concurrent_per_key)
            .map_err(|e| setting("limits.max_concurrent_per_key", e))?;
        let mut quotas = Vec::new();
        if let Some(n) = config.quota_per_day {
            let q = Quota::per_day(n).map_err(|e| setting("ratelimit.quota_per_day", e))?;
            quotas.push(KeyedLimiter::new(q));
        }
        if let Some(n) = config.quota_per_month {
            let q = Quota::per_month(n).map_err(|e| setting("ratelimit.quota_per_month", e))?;
            quotas.push(KeyedLimiter::new(q));
        }
        let url_policy =
            UrlPolicy::new().allow_private_targets(config.webhooks.allow_private_targets);
        Ok(Self {
            audit,
            webhooks,
            url_policy,
            resolver: Arc::new(SystemResolver),
            notices: crate::events::RateLimitNotices::default(),
            concurrency,
            quotas,
            config,
            keys,
            limiter: KeyedLimiter::new(algorithm),
            overrides: RwLock::default(),
            roles: Mutex::default(),
            idempotency: Idempotency::default(),
            metrics: Metrics::default(),
        })
    }

    /// The key store.
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        self.keys.store()
    }

    /// Counts one request of `key` against its rate (its own, or the server default).
    ///
    /// A key whose override changes starts afresh under the new rate.
    pub(crate) fn check_rate(&self, key: &KeyRecord) -> Result<Decision, ApiError> {
        let result = match key.rate_limit_per_minute {
            None => self.limiter.check(&key.id, 1),
            Some(n) if n == self.config.rate_limit_per_minute => self.limiter.check(&key.id, 1),
            Some(n) => self.override_limiter(n)?.check(&key.id, 1),
        };
        result.map_err(|_| ApiError::internal())
    }

    fn override_limiter(
        &self,
        n: u32,
    ) -> Result<Arc<KeyedLimiter<KeyId, SlidingWindow>>, ApiError> {
        if let Some(l) = self
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&n)
        {
            return Ok(Arc::clone(l));
        }
        let algorithm =
            SlidingWindow::new(Rate::per_minute(u64::from(n))).map_err(|_| ApiError::internal())?;
        let mut map = self
            .overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::clone(
            map.entry(n)
                .or_insert_with(|| Arc::new(KeyedLimiter::new(algorithm))),
        ))
    }

    /// The current role of `user`; a user who no longer exists counts as a viewer.
    pub(crate) async fn role_of(&self, user: UserId) -> Result<Role, ApiError> {
        let now = Instant::now();
        {
            let roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((role, at)) = roles.get(&user) {
                if now.duration_since(*at) < ROLE_TTL {
                    return Ok(*role);
                }
            }
        }
        let role = self
            .store()
            .get_user(user)
            .await?
            .map_or(Role::Viewer, |u| u.role);
        let mut roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
        if roles.len() > 100_000 {
            roles.clear();
        }
        roles.insert(user, (role, now));
        Ok(role)
    }

    /// `GET /healthz`: `200 {"status":"ok"}` when the key store answers, the audit writer
    /// commits and the outbox answers (each within 2 s); otherwise `503` with
    /// `{"status":"unhealthy","failing":[…]}` naming the parts (`keys`, `audit`, `outbox`).
    pub(crate) async fn health(&self) -> crate::http::Response {
        const LIMIT: Duration = Duration::from_secs(2);
        let first = align_keys::PageRequest {
            limit: 1,
            cursor: None,
        };
        let keys = tokio::time::timeout(LIMIT, self.store().list_organizations(&first));
        let audit = tokio::time::timeout(LIMIT, self.audit.flush());
        let outbox = tokio::time::timeout(LIMIT, self.webhooks.outbox_stats());
        let (keys, audit, outbox) = tokio::join!(keys, audit, outbox);
        let mut failing = Vec::new();
        if !matches!(keys, Ok(Ok(_))) {
            failing.push("keys");
        }
        if !matches!(audit, Ok(Ok(()))) {
            failing.push("audit");
        }
        if !matches!(outbox, Ok(Ok(_))) {
            failing.push("outbox");
        }
        if failing.is_empty() {
            crate::http::json(http::StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        } else {
            tracing::error!(failing = ?failing, "health check failed");
            crate::http::json(
                http::StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "status": "unhealthy", "failing": failing }),
            )
        }
    }
}
