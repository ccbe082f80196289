//! The durable outbox: the [`WebhookStore`] trait and its back-ends.

#[cfg(feature = "sqlite")]
mod dedup_sqlite;
mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
mod rules;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sealed;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod worker;

use std::time::Duration;

use align_core::Environment;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[cfg(feature = "sqlite")]
pub use dedup_sqlite::SqliteDeduplicator;
pub use memory::MemoryWebhookStore;
#[cfg(feature = "postgres")]
pub use postgres::PgWebhookStore;

#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteWebhookStore, enqueue_in_transaction};

use crate::error::Result;
use crate::model::{
    Attempt, Delivery, DeliveryId, DueDelivery, Endpoint, EndpointId, Enqueued, Message, MessageId,
    NewMessage, Next,
};

/// Storage for endpoints, messages, deliveries and attempts.
///
/// Implementations must make [`WebhookStore::enqueue`] idempotent by event id and
/// [`WebhookStore::claim_due`] exclusive: a claimed delivery is not handed out again until its
/// lease ends, so a crashed dispatcher's work is picked up after the lease and never lost.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores a new endpoint.
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()>;

    /// Replaces a stored endpoint's settings (url, filter, enabled, secrets, limits).
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()>;

    /// One endpoint.
    async fn endpoint(&self, id: EndpointId) -> Result<Endpoint>;

    /// Every endpoint, oldest first.
    async fn endpoints(&self) -> Result<Vec<Endpoint>>;

    /// The endpoints of one organisation (all its projects and environments), oldest first.
    /// Back-ends read them through an index on the owner: one organisation's endpoints do
    /// not slow another's lookups. This default filters [`WebhookStore::endpoints`].
    async fn organization_endpoints(&self, organization: &str) -> Result<Vec<Endpoint>> {
        let mut all = self.endpoints().await?;
        all.retain(|ep| ep.owner.organization == organization);
        Ok(all)
    }

    /// How many endpoints one organisation has (what its cap is checked against). Back-ends
    /// count through the index on the owner without reading the endpoints. This default
    /// counts [`WebhookStore::organization_endpoints`].
    async fn organization_endpoint_count(&self, organization: &str) -> Result<u64> {
        Ok(self.organization_endpoints(organization).await?.len() as u64)
    }

    /// Stores the message and creates a pending delivery, due `now`, for every enabled
    /// endpoint of the message's owner organisation whose environment and filter match
    /// (other organisations' endpoints are not read). A second call with the same event id
    /// returns the stored message and creates nothing.
    async fn enqueue(&self, message: NewMessage, now: DateTime<Utc>) -> Result<Enqueued>;

    /// One message.
    async fn message(&self, id: &MessageId) -> Result<Message>;

    /// One delivery.
    async fn delivery(&self, id: DeliveryId) -> Result<Delivery>;

    /// An endpoint's deliveries, newest first, at most `limit`.
    async fn deliveries(&self, endpoint: EndpointId, limit: usize) -> Result<Vec<Delivery>>;

    /// A delivery's attempts, oldest first.
    async fn attempts(&self, delivery: DeliveryId) -> Result<Vec<Attempt>> {
        self.latest_attempts(delivery, usize::MAX).await
    }

    /// A delivery's latest `limit` attempts, oldest first: what a view of a delivery that
    /// was retried hundreds of times shows without reading them all.
    async fn latest_attempts(&self, delivery: DeliveryId, limit: usize) -> Result<Vec<Attempt>>;

    /// A page of a delivery's attempts, newest first: those before position `before`
    /// (`None`: from the newest), at most `limit` (clamped to 1..=1000), and the position to
    /// continue from (`None` on the last page). Back-ends read one page with a LIMIT through
    /// an index on the delivery, never every attempt: a delivery retried hundreds of times
    /// pages in small answers (issue 21).
    async fn attempt_page(
        &self,
        delivery: DeliveryId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Attempt>, Option<u64>)>;

    /// Up to `limit` pending deliveries due at `now` to enabled endpoints, oldest due first;
    /// each is leased: not due again before `now + lease`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>> {
        self.claim_due_skipping(now, limit, lease, &ClaimSkip::default())
            .await
    }

    /// As [`WebhookStore::claim_due`], leaving out deliveries to the endpoints and
    /// organisations in `skip`: the dispatcher skips those holding their share of its slots,
    /// so their backlog is neither claimed nor handed back.
    async fn claim_due_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        skip: &ClaimSkip,
    ) -> Result<Vec<DueDelivery>>;

    /// Records an attempt and moves the delivery on. Also keeps the endpoint's
    /// `failing_since` (cleared by a success, set by the first failure of a run) and returns
    /// the endpoint's value after the update.
    async fn record_attempt(
        &self,
        delivery: DeliveryId,
        attempt: Attempt,
        next: Next,
    ) -> Result<Option<DateTime<Utc>>>;

    /// Records several attempts, each as [`WebhookStore::record_attempt`] would: one failing
    /// does not undo the others. Returns one result per attempt, in order. Back-ends may
    /// commit them together (SQLite does, in one transaction); this default records them one
    /// after the other.
    async fn record_attempts(
        &self,
        attempts: Vec<(DeliveryId, Attempt, Next)>,
    ) -> Vec<Result<Option<DateTime<Utc>>>> {
        let mut out = Vec::with_capacity(attempts.len());
        for (delivery, attempt, next) in attempts {
            out.push(self.record_attempt(delivery, attempt, next).await);
        }
        out
    }

    /// Makes a pending delivery due at `at` without counting an attempt (throughput cap).
    async fn postpone(&self, delivery: DeliveryId, at: DateTime<Utc>) -> Result<()>;

    /// Manual retry: makes the delivery pending and due at `now`, whatever its status.
    async fn retry(&self, delivery: DeliveryId, now: DateTime<Utc>) -> Result<()>;

    /// Recovery: makes every failed delivery to `endpoint` created at or after `since`
    /// pending and due at `now`. Returns how many.
    async fn recover_failed_since(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// Deletes an endpoint with its deliveries and their attempts. Messages stay (they are the
    /// event log).
    async fn delete_endpoint(&self, id: EndpointId) -> Result<()>;

    /// A page of an endpoint's deliveries, newest first: those before position `before`
    /// (`None`: from the newest), at most `limit`, and the position to continue from.
    async fn delivery_page(
        &self,
        endpoint: EndpointId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<u64>)>;

    /// A page of stored messages (the event log), oldest first, as [`MessageQuery`] selects.
    async fn messages(&self, query: &MessageQuery) -> Result<MessagePage>;

    /// Counts of deliveries by status, for metrics.
    async fn outbox_stats(&self) -> Result<OutboxStats>;

    /// Re-seals every endpoint's stored keys under the current key of the store's
    /// [`Sealer`](crate::Sealer), in one transaction, and returns how many endpoints it
    /// re-sealed: the second step of a rotation ([`Sealer::rotate`](crate::Sealer::rotate)),
    /// after which the previous keys are no longer needed. Stores that keep no sealed values
    /// (the memory store) have nothing to do.
    async fn reseal_secrets(&self) -> Result<u64> {
        Ok(0)
    }

    /// Retention: deletes the deliveries created before `deliveries_before` that are no
    /// longer pending, with their attempts (receivers' responses); then the messages (the
    /// event log) created before `messages_before`, with every delivery and attempt left of
    /// them. Returns what it removed.
    async fn purge(
        &self,
        deliveries_before: DateTime<Utc>,
        messages_before: DateTime<Utc>,
    ) -> Result<Purged>;

    /// Erasure: in the messages of `organization` (their payloads) and the attempts of their
    /// deliveries (response bodies and errors), replaces each of `values` (a person's e-mail,
    /// name, …) with [`ERASED`]. A value holding `@` (an e-mail: distinctive) is replaced
    /// wherever it occurs; any other value only where it is a whole JSON string (`"Dana"`), so
    /// a short name never cuts into field names or other words. Values shorter than 3
    /// characters are skipped. Returns how many rows changed (a row once per value found).
    async fn erase_values(&self, organization: &str, values: &[String]) -> Result<u64>;

    /// Disables an endpoint, recording why.
    async fn disable_endpoint(&self, endpoint: EndpointId, reason: &str) -> Result<()> {
        let mut ep = self.endpoint(endpoint).await?;
        ep.enabled = false;
        ep.disabled_reason = Some(reason.to_owned());
        self.update_endpoint(&ep).await
    }
}

/// What [`WebhookStore::claim_due_skipping`] leaves out.
///
/// ```
/// use align_webhooks::ClaimSkip;
/// let skip = ClaimSkip {
///     organizations: vec!["org_busy".to_owned()],
///     ..ClaimSkip::default()
/// };
/// assert!(!skip.is_empty());
/// assert!(ClaimSkip::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimSkip {
    /// Every endpoint of these organisations.
    pub organizations: Vec<String>,
    /// These endpoints.
    pub endpoints: Vec<EndpointId>,
}

impl ClaimSkip {
    /// Whether nothing is left out.
    pub fn is_empty(&self) -> bool {
        self.organizations.is_empty() && self.endpoints.is_empty()
    }

    /// Whether deliveries to `endpoint` are left out.
    pub fn leaves_out(&self, endpoint: &Endpoint) -> bool {
        self.endpoints.contains(&endpoint.id)
            || self.organizations.contains(&endpoint.owner.organization)
    }
}

/// What stands where [`WebhookStore::erase_values`] erased a value.
pub const ERASED: &str = "[erased]";

/// What one [`WebhookStore::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages (events) removed.
    pub messages: u64,
    /// Deliveries removed.
    pub deliveries: u64,
    /// Attempts removed.
    pub attempts: u64,
}

/// What [`WebhookStore::erase_values`] looks for and what it writes instead: an e-mail as
/// written and as it appears inside a JSON string; any other value as a whole JSON string.
pub(crate) fn erasable(values: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in values.iter().filter(|v| v.chars().count() >= 3) {
        let quoted = serde_json::to_string(v).unwrap_or_default();
        if v.contains('@') {
            out.push((v.clone(), ERASED.to_owned()));
            if let Some(inner) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                if inner != v {
                    out.push((inner.to_owned(), ERASED.to_owned()));
                }
            }
        } else if !quoted.is_empty() {
            out.push((quoted, format!("\"{ERASED}\"")));
        }
    }
    out
}

/// Which messages [`WebhookStore::messages`] returns.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    /// Only this organisation's messages.
    pub organization: String,
    /// `Some`: only this project's messages.
    pub project: Option<String>,
    /// Only messages of this environment.
    pub environment: Environment,
    /// Only this event type; an entry ending in `.*` selects a family (`api_key.*`).
    pub event_type: Option<String>,
    /// Only messages stored at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only messages stored before this time.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this position (from [`MessagePage::next`]); 0 starts at the oldest.
    pub after: u64,
    /// At most this many (clamped to 1..=1000).
    pub limit: usize,
}

impl MessageQuery {
    /// Every message of `organization` in `environment`, first page of 100.
    pub fn new(organization: impl Into<String>, environment: Environment) -> Self {
        Self {
            organization: organization.into(),
            project: None,
            environment,
            event_type: None,
            since: None,
            until: None,
            after: 0,
            limit: 100,
        }
    }

    pub(crate) fn clamped_limit(&self) -> usize {
        self.limit.clamp(1, 1000)
    }

    /// Whether a message of `event_type` passes the type filter.
    pub(crate) fn type_matches(&self, event_type: &str) -> bool {
        match &self.event_type {
            None => true,
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => event_type.starts_with(prefix),
                None => t == event_type,
            },
        }
    }
}

/// One page of [`WebhookStore::messages`].
#[derive(Debug, Clone, Default)]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Where the next page starts, when there may be more.
    pub next: Option<u64>,
}

/// Deliveries by status (see [`WebhookStore::outbox_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Deliveries waiting for an attempt (the queue depth).
    pub pending: u64,
    /// Deliveries that got a 2xx.
    pub succeeded: u64,
    /// Deliveries that gave up.
    pub failed: u64,
}
