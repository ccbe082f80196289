//! What every request shares: the key manager, the limiter, settings, and a short-lived cache
//! of users' roles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_audit::AuditSink;
use align_http::ReplyStore;
use align_keys::store::KeyStore;
use align_keys::{KeyId, KeyManager, KeyVerifier, Role, UserId};
use align_ratelimit::KeyLimits;
use align_webhooks::{Resolver, SystemResolver, UrlPolicy, WebhookStore};

use crate::config::Config;
use crate::error::Error;
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
    /// Per-key sliding-window rates, calendar quotas and requests in flight (in memory, or
    /// shared in Redis).
    pub(crate) limits: Arc<KeyLimits<KeyId>>,
    /// The pipeline's layers (see [`crate::app`]).
    pub(crate) layers: crate::app::Layers,
    /// Audit and request logs.
    pub(crate) audit: Arc<dyn AuditSink>,
    /// Counters for `/metrics`.
    pub(crate) metrics: Metrics,
    /// Responses kept for `Idempotency-Key` replays (this instance's memory, or the shared
    /// PostgreSQL database).
    pub(crate) idempotency: Arc<ReplyStore>,
    /// Webhook endpoints and the outbox (also the event log behind `GET /events`).
    pub(crate) webhooks: Arc<dyn WebhookStore>,
    /// The endpoint URL rules (`webhooks.allow_private_targets`, `webhooks.allow_http_targets`).
    pub(crate) url_policy: UrlPolicy,
    /// Resolves endpoint host names for the URL check at registration.
    pub(crate) resolver: Arc<dyn Resolver>,
    /// When each key last caused a `rate_limit.exceeded` event.
    pub(crate) notices: crate::events::RateLimitNotices,
    /// The developer console (`None` when `console.enabled` is off).
    pub(crate) console: Option<crate::console::Console>,
    /// Per-client counts of rejected requests, for folding floods in the request log.
    pub(crate) folds: crate::fold::Folds,
    /// Open connections: the cap and the idle timeout.
    pub(crate) connections: crate::connections::Connections,
    /// The logs' disk budget: what the last check measured.
    pub(crate) disk: crate::disk::Disk,
    /// Leak reports (the key store's database; in memory until [`AppState::with_leaks`]).
    pub(crate) leaks: Arc<dyn align_keys::LeakStore>,
    /// Security notices by e-mail (`notifications.*`).
    pub(crate) notifier: crate::notify::Notifier,
    /// Leak reports are handled one at a time in this process, so that two copies of one
    /// report never both act (reports are rare; see `crate::leaks`).
    pub(crate) leak_lock: tokio::sync::Mutex<()>,
    /// Key spaces and their keys (the key store's database; in memory until
    /// [`AppState::with_keyspaces`]), with the named limits' windows.
    pub(crate) keyspaces: Arc<align_keys::Keyspaces>,
    /// The named limits' windows (kept to sweep the in-memory ones).
    pub(crate) named_limits: Arc<crate::limits::named::NamedLimits>,
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
        idempotency: ReplyStore,
    ) -> Result<Self, Error> {
        let limits = Arc::new(crate::limits::build(&config)?);
        let roles = Arc::new(Roles {
            store: Arc::clone(keys.store()),
            verifier: Arc::clone(keys.verifier()),
            cache: Mutex::default(),
        });
        let idempotency = Arc::new(idempotency);
        let layers =
            crate::app::Layers::new(&config, keys.verifier(), roles, &limits, &idempotency);
        let url_policy = UrlPolicy::new()
            .allow_private_targets(config.webhooks.allow_private_targets)
            .allow_http_targets(config.webhooks.allow_http_targets);
        let console = crate::console::Console::new(&config)?;
        crate::leaks::github::check_keys_file(&config)?;
        let named_limits = Arc::new(crate::limits::named::NamedLimits::build(&config)?);
        let keyspaces = Arc::new(align_keys::Keyspaces::new(
            Arc::new(align_keys::MemoryKeyStore::new()),
            Arc::clone(keys.verifier().hasher()),
            Arc::clone(&named_limits) as Arc<dyn align_keys::NamedLimiter>,
        ));
        Ok(Self {
            keyspaces,
            named_limits,
            notifier: crate::notify::Notifier::new(&config.notifications)?,
            leak_lock: tokio::sync::Mutex::new(()),
            leaks: Arc::new(align_keys::MemoryKeyStore::new()),
            connections: crate::connections::Connections::new(&config),
            disk: crate::disk::Disk::default(),
            folds: crate::fold::Folds::new(config.fold_rejections_after),
            console,
            audit,
            webhooks,
            url_policy,
            resolver: Arc::new(SystemResolver),
            notices: crate::events::RateLimitNotices::default(),
            limits,
            config,
            keys,
            layers,
            idempotency,
            metrics: Metrics::default(),
        })
    }

    /// The same state keeping key spaces in `store` (the key store's database), its cache
    /// following the change log the key verifier's watcher reads.
    pub(crate) fn with_keyspaces(mut self, store: Arc<dyn align_keys::KeyspaceStore>) -> Self {
        let keyspaces = Arc::new(align_keys::Keyspaces::new(
            store,
            Arc::clone(self.keys.verifier().hasher()),
            Arc::clone(&self.named_limits) as Arc<dyn align_keys::NamedLimiter>,
        ));
        let listener = Arc::downgrade(&keyspaces);
        self.keys
            .verifier()
            .add_change_listener(Arc::new(move |change| {
                if let Some(ks) = listener.upgrade() {
                    match change {
                        Some(id) => ks.invalidate(id),
                        None => ks.clear(),
                    }
                }
            }));
        self.keyspaces = keyspaces;
        self
    }

    /// The same state keeping leak reports in `leaks` (the key store's database).
    pub(crate) fn with_leaks(mut self, leaks: Arc<dyn align_keys::LeakStore>) -> Self {
        self.leaks = leaks;
        self
    }

    /// The key store.
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        self.keys.store()
    }

    /// Forgets idle rate-limit state (every in-memory limiter) and cached keys unused for
    /// [`crate::config::KEY_CACHE_IDLE`]; called every [`crate::config::SWEEP_INTERVAL`].
    /// Each limiter shard and cache shard is locked in turn, briefly, never across an await.
    pub(crate) fn evict_idle(&self) -> usize {
        let mut removed = self.limits.evict_idle();
        removed += self.named_limits.evict_idle();
        removed += self
            .keys
            .verifier()
            .evict_idle(chrono::Utc::now(), crate::config::KEY_CACHE_IDLE);
        removed += self
            .console
            .as_ref()
            .map_or(0, crate::console::Console::evict_idle);
        removed
    }

    /// `GET /healthz`: `200 {"status":"ok"}` when the key store answers, the audit writer
    /// commits and the outbox answers (each within 2 s), `200 {"status":"degraded",
    /// "warnings":["low_disk"]}` when they do but the disk is low (see [`crate::disk`]);
    /// otherwise `503` with
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
        if failing.is_empty() && self.disk.is_low() {
            // Still serving: a load balancer keeps it, an operator's alert fires.
            crate::http::json(
                http::StatusCode::OK,
                &serde_json::json!({ "status": "degraded", "warnings": ["low_disk"] }),
            )
        } else if failing.is_empty() {
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

/// Key creators' current roles for the key layer. A user who no longer exists counts as a
/// viewer. Cached for at most [`ROLE_TTL`], and only while no key changed: a role change is
/// logged as a change of each of the user's keys, so the key change watcher (and a change
/// through this process) ends the cached role at once, as it does a revocation.
pub(crate) struct Roles {
    store: Arc<dyn KeyStore>,
    verifier: Arc<KeyVerifier>,
    /// Each creator's role, when it was read, and the verifier's change count then.
    cache: Mutex<HashMap<UserId, (Role, Instant, u64)>>,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Roles")
    }
}

#[async_trait::async_trait]
impl align_keys::layer::CreatorRoles for Roles {
    async fn role_of(&self, user: UserId) -> Result<Role, align_keys::Error> {
        let now = Instant::now();
        let changes = self.verifier.changes();
        {
            let roles = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((role, at, seen)) = roles.get(&user) {
                if now.duration_since(*at) < ROLE_TTL && *seen == changes {
                    return Ok(*role);
                }
            }
        }
        let role = self
            .store
            .get_user(user)
            .await?
            .map_or(Role::Viewer, |u| u.role);
        let mut roles = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if roles.len() > 100_000 {
            roles.clear();
        }
        // The change count from before the read: a change during it makes the next request
        // read again.
        roles.insert(user, (role, now, changes));
        Ok(role)
    }
}
