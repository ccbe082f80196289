//! Retention that runs itself (DESIGN §9): every store drops what is older than its
//! `retention.*` setting, inside `align serve` every hour (jittered) and on demand with
//! `align retention run [--as-of TIME]`. Nothing is kept forever by default.
//!
//! With PostgreSQL shared by several instances, a run holds a session advisory lock, so one
//! instance runs it at a time and the others skip that turn.

use std::sync::Arc;

use align_audit::{AuditSink, PrivacyPolicy, Stream};
use align_keys::store::KeyStore;
use align_webhooks::WebhookStore;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::config::{Database, RetentionSettings};
use crate::error::Error;

/// The advisory lock's key: `align.retention`, as one 64-bit number.
const LOCK_KEY: i64 = 0x616c_6967_6e2e_7265;

/// What one retention run removed (and anonymised), per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// The time the ages were measured from.
    pub as_of: Option<DateTime<Utc>>,
    /// Request-log records removed.
    pub request_log: u64,
    /// Audit records removed (whole prefixes of the chain; a signed checkpoint stands in).
    pub audit_log: u64,
    /// Request-log records whose IP was coarsened and user agent dropped.
    pub request_log_anonymised: u64,
    /// Audit records whose IP was coarsened and user agent dropped.
    pub audit_log_anonymised: u64,
    /// Finished webhook deliveries removed.
    pub webhook_deliveries: u64,
    /// Webhook attempts (with receivers' responses) removed.
    pub webhook_attempts: u64,
    /// Events (webhook messages, `GET /events`) removed.
    pub events: u64,
    /// Expired console sessions removed.
    pub sessions: u64,
}

impl RetentionReport {
    /// Per store, what was removed: `(store, count)` in a fixed order, for output and
    /// metrics.
    pub fn removed(&self) -> [(&'static str, u64); 6] {
        [
            ("request_log", self.request_log),
            ("audit_log", self.audit_log),
            ("webhook_deliveries", self.webhook_deliveries),
            ("webhook_attempts", self.webhook_attempts),
            ("events", self.events),
            ("sessions", self.sessions),
        ]
    }

    /// The report as JSON (`align retention run --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "asOf": self.as_of.map(crate::http::timestamp),
            "removed": {
                "requestLog": self.request_log,
                "auditLog": self.audit_log,
                "webhookDeliveries": self.webhook_deliveries,
                "webhookAttempts": self.webhook_attempts,
                "events": self.events,
                "sessions": self.sessions,
            },
            "anonymised": {
                "requestLog": self.request_log_anonymised,
                "auditLog": self.audit_log_anonymised,
            },
        })
    }
}

/// The steps of a run, in order, for progress bars.
pub const STEPS: [&str; 3] = ["sessions", "webhooks and events", "audit and request logs"];

/// Runs retention over the three stores as of `as_of`: expired sessions, finished webhook
/// deliveries and attempts older than `retention.webhook_days`, events older than
/// `retention.events_days`, request-log and audit records older than their retention
/// (and anonymised past their anonymisation age). `step` is called before each of
/// [`STEPS`]. The audit chain still verifies afterwards: records go as whole prefixes of
/// the chain, with a signed checkpoint in their place.
pub async fn run(
    keys: &dyn KeyStore,
    audit: &dyn AuditSink,
    webhooks: &dyn WebhookStore,
    settings: &RetentionSettings,
    as_of: DateTime<Utc>,
    step: &mut (dyn FnMut(usize, &str) + Send),
) -> Result<RetentionReport, Error> {
    let days = |d: u32| TimeDelta::days(i64::from(d));
    let mut report = RetentionReport {
        as_of: Some(as_of),
        ..RetentionReport::default()
    };
    step(0, STEPS[0]);
    report.sessions = keys.delete_expired_sessions(as_of).await?;
    step(1, STEPS[1]);
    let purged = webhooks
        .purge(
            as_of - days(settings.webhook_days),
            as_of - days(settings.events_days),
        )
        .await?;
    report.webhook_deliveries = purged.deliveries;
    report.webhook_attempts = purged.attempts;
    report.events = purged.messages;
    step(2, STEPS[2]);
    audit.commit_staged().await?;
    audit.flush().await?;
    let defaults = PrivacyPolicy::default();
    let policy = PrivacyPolicy {
        request_retention: days(settings.request_log_days),
        audit_retention: days(settings.audit_log_days),
        // Anonymised at the policy's age, and never later than removal.
        request_anonymise_after: defaults
            .request_anonymise_after
            .min(days(settings.request_log_days)),
        audit_anonymise_after: defaults
            .audit_anonymise_after
            .min(days(settings.audit_log_days)),
    };
    for stream in [Stream::Request, Stream::Audit] {
        // Without the checkpoint key (`DIR/audit-checkpoint-key`) nothing can be removed
        // from a chain; anonymisation still runs.
        let purged = match audit.purge(stream, as_of - policy.retention(stream)).await {
            Err(align_audit::Error::CheckpointKeyMissing) => {
                tracing::warn!(
                    ?stream,
                    "retention: no audit checkpoint key in the data directory; the log is not purged"
                );
                0
            }
            other => other?,
        };
        let anonymised = audit
            .anonymise(stream, as_of - policy.anonymise_after(stream))
            .await?;
        match stream {
            Stream::Request => {
                report.request_log = purged;
                report.request_log_anonymised = anonymised;
            }
            Stream::Audit => {
                report.audit_log = purged;
                report.audit_log_anonymised = anonymised;
            }
        }
    }
    Ok(report)
}

/// Keeps two runs from overlapping across instances that share PostgreSQL (a session
/// advisory lock, held on one connection for the run and released with it even if the
/// process dies). With SQLite there is one writer at a time anyway.
#[derive(Clone)]
pub struct RunLock {
    pool: Option<align_keys::postgres::Pool>,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLock")
            .field("postgres", &self.pool.is_some())
            .finish()
    }
}

impl RunLock {
    /// The lock for `database` (a pool of its own for PostgreSQL; it connects when used).
    /// [`Deployment::retention_lock`](crate::Deployment::retention_lock) gives the same lock
    /// for an open deployment.
    pub fn for_database(database: &Database) -> Result<Self, Error> {
        crate::deployment::lock_pool(database).map(Self::new)
    }

    /// The lock over `pool` (`None`: SQLite, nothing to hold).
    pub(crate) fn new(pool: Option<align_keys::postgres::Pool>) -> Self {
        Self { pool }
    }

    /// Runs `work` holding the lock; `Ok(None)` when another instance holds it (the run is
    /// skipped).
    pub async fn run<T, F>(&self, work: F) -> Result<Option<T>, Error>
    where
        F: std::future::Future<Output = Result<T, Error>>,
    {
        let Some(pool) = &self.pool else {
            return work.await.map(Some);
        };
        let client = pool.get().await.map_err(align_keys::Error::from)?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(align_keys::Error::Postgres)?;
        if !got {
            return Ok(None);
        }
        let out = work.await;
        if let Err(e) = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
        {
            // Never hand a connection that may still hold the lock back to the pool.
            tracing::warn!(error = %align_keys::postgres::describe(&e), "retention: unlock failed; closing the connection");
            drop(deadpool_postgres::Object::take(client));
        }
        out.map(Some)
    }
}

/// The server's retention loop: every `retention.interval` plus up to a tenth at random,
/// one run (when this instance gets the lock), its counts added to `/metrics`.
pub(crate) async fn scheduled(
    state: Arc<crate::state::AppState>,
    lock: RunLock,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut stop = std::pin::pin!(stop);
    let settings = state.config.retention;
    loop {
        let jitter = {
            let mut b = [0u8; 4];
            // No randomness: no jitter this time (the interval itself still holds).
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
            settings
                .interval
                .mul_f64(f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) / 10.0)
        };
        tokio::select! {
            () = tokio::time::sleep(settings.interval + jitter) => {}
            _ = &mut stop => return,
        }
        let keys = Arc::clone(state.store());
        let mut quiet = |_: usize, _: &str| {};
        let work = run(
            keys.as_ref(),
            state.audit.as_ref(),
            state.webhooks.as_ref(),
            &settings,
            Utc::now(),
            &mut quiet,
        );
        match lock.run(work).await {
            Ok(Some(report)) => {
                state.metrics.retention_removed(&report);
                tracing::info!(
                    request_log = report.request_log,
                    audit_log = report.audit_log,
                    webhook_deliveries = report.webhook_deliveries,
                    webhook_attempts = report.webhook_attempts,
                    events = report.events,
                    sessions = report.sessions,
                    "retention run finished"
                );
            }
            Ok(None) => tracing::debug!("retention: another instance is running it"),
            Err(e) => tracing::error!(error = %e, "retention run failed"),
        }
    }
}
