//! Events: what the server tells webhook endpoints and `GET /events` pollers.
//!
//! Key changes (`api_key.*`) are written to the outbox by [`OutboxHook`] inside the SQLite or
//! PostgreSQL transaction of the change itself, so a change never commits without its event nor the
//! other way round; the change's audit record is staged in the same transaction. Events that
//! are not a stored change (`rate_limit.exceeded`, `webhook.test`, `audit.checkpoint`) are
//! enqueued on their own; `webhook_endpoint.disabled` comes from the dispatcher.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_audit::Anchor;
use align_keys::store::PageRequest;
use align_keys::{Environment, KeyEvent, KeyId, KeyRecord, PgEventHook, SqliteEventHook};
use align_ratelimit::Decision;
use align_webhooks::{NewMessage, Owner};
use chrono::Utc;
use serde_json::json;

use crate::audit::AuditNote;
use crate::state::AppState;

/// The event sent when a key is refused for its rate limit (at most once per key per window).
pub(crate) const RATE_LIMIT_EXCEEDED: &str = "rate_limit.exceeded";
/// The event `POST /webhook-endpoints/{id}/test` sends.
pub(crate) const WEBHOOK_TEST: &str = "webhook.test";
/// The event that carries each anchor of the audit or request log off the machine.
pub(crate) const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

/// Every event type the server emits, for docs and validation of endpoint filters.
pub(crate) const EVENT_TYPES: &[&str] = &[
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "api_key.suspended",
    "api_key.resumed",
    "api_key.updated",
    crate::leaks::KEY_LEAKED,
    RATE_LIMIT_EXCEEDED,
    align_webhooks::ENDPOINT_DISABLED_EVENT,
    WEBHOOK_TEST,
    AUDIT_CHECKPOINT,
];

/// A fresh event id.
pub(crate) fn event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// Whose events a key's changes are: its organisation and, for a project key, its project.
pub(crate) fn owner_of(key: &KeyRecord) -> Owner {
    Owner {
        organization: key.organization_id.to_string(),
        project: key.scope.project_id().map(|p| p.to_string()),
    }
}

/// The message for a change to `key`: the key resource (never the token) as `data`.
pub(crate) fn key_message(key: &KeyRecord, event: &KeyEvent) -> NewMessage {
    let mut m = NewMessage::new(
        event_id(),
        event.kind.event_type(),
        key.environment,
        crate::routes::key_view(key),
    )
    .owned_by(owner_of(key));
    m.timestamp = event.at;
    m
}

/// Writes key events to the webhook outbox, and the change's audit record (when the change
/// carries the server's audit note) to the audit sink's staging table, in
/// the key change's own transaction.
///
/// Any process that changes keys in the server's database (the `align` operator commands
/// too) opens its key store with this hook, so every change emits the server's event.
#[derive(Debug, Default)]
pub struct OutboxHook;

impl SqliteEventHook for OutboxHook {
    fn on_key_event(
        &self,
        tx: &rusqlite::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        align_webhooks::enqueue_in_transaction(tx, &key_message(key, &event), event.at)?;
        if let Some(note) = AuditNote::of(&event) {
            align_audit::stage_in_transaction(tx, &note.entry(key)?)?;
            note.mark_staged();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl PgEventHook for OutboxHook {
    async fn on_key_event(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        align_webhooks::PgWebhookStore::enqueue_in_transaction(
            tx,
            &key_message(key, &event),
            event.at,
        )
        .await?;
        if let Some(note) = AuditNote::of(&event) {
            align_audit::PgSink::stage_in_transaction(tx, &note.entry(key)?).await?;
            note.mark_staged();
        }
        Ok(())
    }
}

/// Remembers when each key last caused a `rate_limit.exceeded` event.
#[derive(Debug, Default)]
pub(crate) struct RateLimitNotices {
    last: Mutex<HashMap<KeyId, Instant>>,
}

/// Keys remembered at most (those older than the window are dropped when it fills).
const MAX_TRACKED: usize = 100_000;

impl RateLimitNotices {
    /// Whether `key` may have another notice now: none in the last `window`.
    fn claim(&self, key: KeyId, window: Duration) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < window)
        {
            return false;
        }
        if last.len() >= MAX_TRACKED {
            last.retain(|_, at| now.duration_since(*at) < window);
            // Still full of keys notified within the window: no notice for a new key until
            // some age out (the map stays bounded; the 429s go out regardless).
            if last.len() >= MAX_TRACKED {
                return false;
            }
        }
        last.insert(key, now);
        true
    }
}

impl AppState {
    /// Emits `rate_limit.exceeded` for `key`, at most once per key per rate-limit window:
    /// whether this refusal is the one to report is decided at once, and only then is there a
    /// future to await (it enqueues the event). A failure to enqueue is logged; the 429 goes
    /// out regardless.
    pub(crate) fn rate_limit_exceeded(
        &self,
        key: &KeyRecord,
        decision: &Decision,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>> {
        const WINDOW: Duration = Duration::from_secs(60);
        // Decided at once: most refusals of a flood are not the first of their minute.
        if !self.notices.claim(key.id, WINDOW) {
            return None;
        }
        let data = json!({
            "apiKeyId": key.id,
            "keyPrefix": key.prefix,
            "keyName": key.name,
            "limit": decision.limit,
            "windowSeconds": WINDOW.as_secs(),
            "retryAfterSeconds": decision.retry_after_secs().unwrap_or(1),
        });
        let message = NewMessage::new(event_id(), RATE_LIMIT_EXCEEDED, key.environment, data)
            .owned_by(owner_of(key));
        let prefix = key.prefix.clone();
        Some(Box::pin(async move {
            if let Err(e) = self.webhooks.enqueue(message, Utc::now()).await {
                tracing::warn!(error = %e, key = %prefix, "could not enqueue rate_limit.exceeded");
            }
        }))
    }
}

impl AppState {
    /// Emits `audit.checkpoint` with `anchor` as its `data` (stream, sequence, hash,
    /// createdAt, keyId, signature: nothing secret) to every organisation, in the live
    /// environment: the chain is the deployment's, so each organisation's endpoints and
    /// `GET /events` pollers may keep a copy. A failure to enqueue is logged; the anchor is
    /// in the anchor file regardless.
    pub(crate) async fn audit_checkpoint(&self, anchor: &Anchor) {
        let data = match serde_json::to_value(anchor) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not encode the audit.checkpoint event");
                return;
            }
        };
        let mut page = PageRequest {
            limit: 200,
            cursor: None,
        };
        loop {
            let orgs = match self.store().list_organizations(&page).await {
                Ok(orgs) => orgs,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list organisations for audit.checkpoint");
                    return;
                }
            };
            for org in &orgs.data {
                let mut message = NewMessage::new(
                    event_id(),
                    AUDIT_CHECKPOINT,
                    Environment::Live,
                    data.clone(),
                )
                .owned_by(Owner::organization(org.id.to_string()));
                message.timestamp = anchor.created_at();
                if let Err(e) = self.webhooks.enqueue(message, Utc::now()).await {
                    tracing::warn!(error = %e, "could not enqueue audit.checkpoint");
                }
            }
            match orgs.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: every map a client can grow is bounded. A flood of distinct keys all
    /// rate-limited within one window does not grow the notices past their bound.
    #[test]
    fn issue_21_rate_limit_notices_stay_bounded() {
        let notices = RateLimitNotices::default();
        let window = Duration::from_secs(60);
        for _ in 0..MAX_TRACKED + 10 {
            notices.claim(KeyId::new(), window);
        }
        let len = notices
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert_eq!(len, MAX_TRACKED);
        // A key already noticed is still deduplicated.
        assert!(!notices.claim(KeyId::new(), window));
    }
}
