//! What the server writes to the audit log (every security-relevant change and every refusal
//! by the policy, durably, before answering) and the request log (every request, queued and
//! group-committed).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use align_audit::{Actor, Entry};
use align_keys::{Attachment, Environment, KeyEvent, KeyRecord, OrganizationId};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::Value;

use crate::state::AppState;

/// Who sent a request and how: the request log's personal and technical fields.
#[derive(Debug, Clone)]
pub(crate) struct RequestMeta {
    pub(crate) request_id: String,
    pub(crate) peer: SocketAddr,
    pub(crate) user_agent: Option<String>,
    pub(crate) method: String,
    /// The path only: query strings are never logged.
    pub(crate) path: String,
    pub(crate) started: DateTime<Utc>,
    /// The console user the request acts for, once known: the request log's actor when no
    /// key is, so a person's console requests are found by their export and erasure.
    pub(crate) user: std::sync::OnceLock<align_keys::UserId>,
}

/// The actor for a request made with `key`.
fn actor(key: &KeyRecord) -> Actor {
    Actor::ApiKey {
        id: key.id.to_string(),
        prefix: key.prefix.clone(),
    }
}

impl AppState {
    /// Durably records a security-relevant change made by `caller` (or a refusal). A failure
    /// to record is logged; the change itself has already happened.
    pub(crate) async fn audit_change(
        &self,
        meta: &RequestMeta,
        caller: &KeyRecord,
        action: &str,
        target: &str,
        status: StatusCode,
        metadata: Value,
    ) {
        self.audit_by(
            meta,
            caller.organization_id,
            Some(caller.environment),
            actor(caller),
            action,
            target,
            status,
            metadata,
        )
        .await;
    }

    /// [`AppState::audit_change`] for any actor (an API key or a console user).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit_by(
        &self,
        meta: &RequestMeta,
        organization: OrganizationId,
        environment: Option<Environment>,
        actor: Actor,
        action: &str,
        target: &str,
        status: StatusCode,
        metadata: Value,
    ) {
        let entry = audit_entry(
            meta,
            organization,
            environment,
            actor,
            action,
            target,
            status,
            metadata,
        );
        let result = match entry {
            Ok(e) => self.audit.append(e).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, action, "could not write an audit record");
        }
    }

    /// Moves audit records still staged (a key change committed, the process died before its
    /// record reached the chain; here or in another instance sharing the database) into the
    /// chain. A failure is logged; the records stay staged for the next call.
    pub(crate) async fn commit_staged_audit(&self) {
        match self.audit.commit_staged().await {
            Ok(0) => {}
            Ok(records) => tracing::info!(records, "moved staged audit records into the chain"),
            Err(e) => tracing::error!(error = %e, "could not move staged audit records"),
        }
    }

    /// Accounts for a finished request in the request log: its own entry (queued,
    /// group-committed, never dropped: waits when the writer is behind), or, for a flood of
    /// rejections from one client, a count in that client's summary entry (see
    /// [`crate::fold`]). Takes the request's metadata, so that its strings move into the
    /// entry instead of being copied (the handler's share is gone by now).
    pub(crate) async fn log_request(
        &self,
        meta: Arc<RequestMeta>,
        caller: Option<&Arc<KeyRecord>>,
        status: StatusCode,
        latency: Duration,
    ) {
        // Everything but the sink's own future is done here, synchronously: an `async` body
        // would keep the entry (and the verdict) as room in every request's future, which is
        // copied each time the future moves (docs/performance.md, "The request's future").
        let meta = Arc::try_unwrap(meta).unwrap_or_else(|shared| (*shared).clone());
        let (meta, finished) = match self.folds.judge(meta, caller, status, latency) {
            crate::fold::Verdict::Folded => return,
            crate::fold::Verdict::Log { meta, finished } => (meta, finished),
        };
        if let Some(summary) = finished {
            // Once a second per client at most: boxed, so it takes no room in the others.
            Box::pin(self.log_summary(*summary)).await;
        }
        let queued = self.queue_entry(meta, caller.map(|k| &**k), status.as_u16(), latency, None);
        if let Some(queued) = queued {
            Self::report_queued(queued.await);
        }
    }

    /// Queues the summary entry of a client's folded rejections.
    pub(crate) async fn log_summary(&self, s: crate::fold::Summary) {
        let metadata = s.metadata();
        self.metrics.folded(s.count);
        let first = s.first;
        let queued = self.queue_entry(
            first.meta,
            first.caller.as_deref(),
            s.status,
            first.latency,
            Some(metadata),
        );
        if let Some(queued) = queued {
            Self::report_queued(queued.await);
        }
    }

    /// Queues the summaries of seconds that are over (every second, and all on shutdown).
    pub(crate) async fn log_folded(&self, all: bool) {
        let summaries = if all {
            self.folds.take_all()
        } else {
            self.folds.take_finished(now())
        };
        for s in summaries {
            self.log_summary(s).await;
        }
    }

    /// Builds a request-log entry and hands it to the sink: the sink's future (already boxed
    /// by the trait) is what is left to await, `None` when the entry could not be built (an
    /// error logged here).
    fn queue_entry(
        &self,
        meta: RequestMeta,
        caller: Option<&KeyRecord>,
        status: u16,
        latency: Duration,
        metadata: Option<Value>,
    ) -> Option<Pin<Box<dyn Future<Output = align_audit::Result<()>> + Send + '_>>> {
        let mut entry = Entry::request(meta.method, meta.path)
            .time(meta.started)
            .request_id(meta.request_id)
            .status(status)
            .latency(latency)
            .ip(meta.peer.ip());
        if let Some(k) = caller {
            entry = entry
                .organization(k.organization_id.to_string())
                .environment(k.environment)
                .actor(actor(k));
        } else if let Some(user) = meta.user.get() {
            entry = entry.actor(Actor::User {
                id: user.to_string(),
            });
        }
        if let Some(ua) = meta.user_agent {
            entry = entry.user_agent(ua);
        }
        if let Some(m) = metadata {
            entry = entry.metadata(m);
        }
        match entry.build() {
            Ok(e) => Some(self.audit.submit(e)),
            Err(e) => {
                Self::report_queued(Err(e));
                None
            }
        }
    }

    /// Logs a request-log entry the sink refused.
    fn report_queued(result: align_audit::Result<()>) {
        if let Err(e) = result {
            tracing::error!(error = %e, "could not queue a request-log entry");
        }
    }
}

/// The audit entry of a change or refusal, built (and so redacted) by the entry builder.
#[allow(clippy::too_many_arguments)]
fn audit_entry(
    meta: &RequestMeta,
    organization: OrganizationId,
    environment: Option<Environment>,
    actor: Actor,
    action: &str,
    target: &str,
    status: StatusCode,
    metadata: Value,
) -> align_audit::Result<Entry> {
    let mut entry = Entry::audit(action)
        .organization(organization.to_string())
        .actor(actor)
        .target(target)
        .request_id(meta.request_id.as_str())
        .method(meta.method.as_str())
        .path(meta.path.as_str())
        .status(status.as_u16())
        .ip(meta.peer.ip())
        .metadata(metadata);
    if let Some(env) = environment {
        entry = entry.environment(env);
    }
    if let Some(ua) = &meta.user_agent {
        entry = entry.user_agent(ua.as_str());
    }
    // A record about a person names them as its subject, so their export finds it and their
    // erasure reaches it (DESIGN §9).
    if action.starts_with("user.") {
        entry = entry.subject(target);
    }
    entry.build()
}

/// What a key change's audit record says about the key as the change leaves it: the
/// environment of the object (for a user's record), the target and the metadata.
pub(crate) type Describe = dyn Fn(&KeyRecord) -> (Option<Environment>, String, Value) + Send + Sync;

/// The audit record of one key change, attached to the change
/// ([`align_keys::KeyManager::with_attachment`]) so that the key store's event hook
/// ([`crate::events::OutboxHook`]) stages it in the change's own transaction: the change and
/// its record commit together or not at all (finding 10). The record's content comes from the
/// key as written, so the hook builds it from the record it is handed.
pub(crate) struct AuditNote {
    meta: RequestMeta,
    organization: OrganizationId,
    /// The acting key's environment (a user has none; the key's is used then).
    environment: Option<Environment>,
    actor: Actor,
    action: &'static str,
    status: StatusCode,
    describe: Box<Describe>,
    /// Set by the hook once the entry is staged in the change's transaction.
    staged: AtomicBool,
}

impl std::fmt::Debug for AuditNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditNote")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl AuditNote {
    /// A note for `action` by `actor` in `meta`'s request, answered with `status`.
    pub(crate) fn new(
        meta: &RequestMeta,
        organization: OrganizationId,
        environment: Option<Environment>,
        actor: Actor,
        action: &'static str,
        status: StatusCode,
        describe: Box<Describe>,
    ) -> Arc<Self> {
        Arc::new(Self {
            meta: meta.clone(),
            organization,
            environment,
            actor,
            action,
            status,
            describe,
            staged: AtomicBool::new(false),
        })
    }

    /// The note a key change carries, if any.
    pub(crate) fn of(event: &KeyEvent) -> Option<&Self> {
        event.attachment.as_ref()?.downcast_ref::<Self>()
    }

    /// The attachment for [`align_keys::KeyManager::with_attachment`].
    pub(crate) fn attachment(self: &Arc<Self>) -> Attachment {
        Attachment::from_arc(Arc::clone(self))
    }

    /// The audit entry for the change that leaves `key` as it is.
    pub(crate) fn entry(&self, key: &KeyRecord) -> align_audit::Result<Entry> {
        let (env, target, metadata) = (self.describe)(key);
        audit_entry(
            &self.meta,
            self.organization,
            self.environment.or(env),
            self.actor.clone(),
            self.action,
            &target,
            self.status,
            metadata,
        )
    }

    /// Records that the entry is staged in the change's transaction (by the hook).
    pub(crate) fn mark_staged(&self) {
        self.staged.store(true, Ordering::SeqCst);
    }

    /// After the change returned: moves the staged record into the chain before the response
    /// goes out (a failure is logged; the record waits in `audit_pending` for the next move,
    /// at the latest at start-up). A change that reached no hook (an idempotent repeat that
    /// changed nothing, or a key store without the hook) is recorded as before, after the fact.
    pub(crate) async fn settle(&self, state: &AppState, key: &KeyRecord) {
        if self.staged.load(Ordering::SeqCst) {
            if let Err(e) = state.audit.commit_staged().await {
                tracing::error!(
                    error = %e,
                    action = self.action,
                    "could not move a staged audit record into the chain; it stays staged"
                );
            }
            return;
        }
        let (env, target, metadata) = (self.describe)(key);
        state
            .audit_by(
                &self.meta,
                self.organization,
                self.environment.or(env),
                self.actor.clone(),
                self.action,
                &target,
                self.status,
                metadata,
            )
            .await;
    }
}

/// `now`, for entries.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}
