//! A [`WebhookStore`] in memory: for tests and for embedders who accept losing the outbox on
//! restart.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rules::{failing_since_after_attempt, failing_since_after_update, next_state};
use super::{ClaimSkip, MessagePage, MessageQuery, OutboxStats, Purged, WebhookStore, erasable};
use crate::error::{Error, ObjectKind, Result};
use crate::model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, DueDelivery, Endpoint, EndpointId, Enqueued,
    Message, MessageId, NewMessage, Next, Owner, millis,
};

#[derive(Default)]
struct State {
    endpoints: Vec<Endpoint>,
    messages: HashMap<MessageId, Message>,
    by_event: HashMap<String, MessageId>,
    /// Messages in the order they were stored, with their owners (the event log).
    log: Vec<(MessageId, Owner)>,
    deliveries: Vec<Delivery>,
    attempts: HashMap<DeliveryId, Vec<Attempt>>,
}

impl State {
    fn endpoint_mut(&mut self, id: EndpointId) -> Result<&mut Endpoint> {
        self.endpoints
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or(Error::NotFound(ObjectKind::Endpoint))
    }

    fn delivery_mut(&mut self, id: DeliveryId) -> Result<&mut Delivery> {
        self.deliveries
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or(Error::NotFound(ObjectKind::Delivery))
    }
}

/// A [`WebhookStore`] held in memory.
#[derive(Default)]
pub struct MemoryWebhookStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryWebhookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryWebhookStore")
    }
}

impl MemoryWebhookStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        self.with(|s| {
            s.endpoints.push(endpoint.clone());
            Ok(())
        })
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        self.with(|s| {
            let stored = s.endpoint_mut(endpoint.id)?;
            let failing_since =
                failing_since_after_update(stored.enabled, endpoint.enabled, stored.failing_since);
            *stored = endpoint.clone();
            stored.failing_since = failing_since;
            Ok(())
        })
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Endpoint> {
        self.with(|s| s.endpoint_mut(id).map(|e| e.clone()))
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        self.with(|s| Ok(s.endpoints.clone()))
    }

    async fn enqueue(&self, new: NewMessage, now: DateTime<Utc>) -> Result<Enqueued> {
        let now = millis(now);
        self.with(|s| {
            if let Some(id) = s.by_event.get(&new.event_id) {
                let message = s
                    .messages
                    .get(id)
                    .cloned()
                    .ok_or(Error::Corrupt("event index"))?;
                return Ok(Enqueued::repeat(message));
            }
            let message = new.stored(now);
            let mut deliveries = Vec::new();
            for ep in s
                .endpoints
                .iter()
                .filter(|e| e.owner.organization == new.owner.organization && e.wants(&new))
            {
                let d = Delivery {
                    id: DeliveryId::new(),
                    message_id: message.id.clone(),
                    endpoint_id: ep.id,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at: Some(now),
                    created_at: now,
                };
                deliveries.push(d.id);
                s.deliveries.push(d);
            }
            s.log.push((message.id.clone(), new.owner.clone()));
            s.by_event.insert(new.event_id, message.id.clone());
            s.messages.insert(message.id.clone(), message.clone());
            Ok(Enqueued {
                message,
                deliveries,
                created: true,
            })
        })
    }

    async fn message(&self, id: &MessageId) -> Result<Message> {
        self.with(|s| {
            s.messages
                .get(id)
                .cloned()
                .ok_or(Error::NotFound(ObjectKind::Message))
        })
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Delivery> {
        self.with(|s| s.delivery_mut(id).map(|d| d.clone()))
    }

    async fn deliveries(&self, endpoint: EndpointId, limit: usize) -> Result<Vec<Delivery>> {
        self.with(|s| {
            Ok(s.deliveries
                .iter()
                .rev()
                .filter(|d| d.endpoint_id == endpoint)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn latest_attempts(&self, delivery: DeliveryId, limit: usize) -> Result<Vec<Attempt>> {
        self.with(|s| {
            let all = s.attempts.get(&delivery).map_or(&[][..], Vec::as_slice);
            Ok(all[all.len().saturating_sub(limit)..].to_vec())
        })
    }

    async fn attempt_page(
        &self,
        delivery: DeliveryId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Attempt>, Option<u64>)> {
        let limit = limit.clamp(1, 1000);
        self.with(|s| {
            // Positions are 1-based indexes into the delivery's attempts, oldest first.
            let all = s.attempts.get(&delivery).map_or(&[][..], Vec::as_slice);
            let end = before.map_or(all.len(), |b| {
                usize::try_from(b.saturating_sub(1))
                    .unwrap_or(usize::MAX)
                    .min(all.len())
            });
            let start = end.saturating_sub(limit);
            let page = all[start..end].iter().rev().cloned().collect();
            let next = (start > 0).then_some(start as u64 + 1);
            Ok((page, next))
        })
    }

    async fn claim_due_skipping(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        skip: &ClaimSkip,
    ) -> Result<Vec<DueDelivery>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        self.with(|s| {
            let mut due: Vec<usize> = (0..s.deliveries.len())
                .filter(|&i| {
                    let d = &s.deliveries[i];
                    d.status == DeliveryStatus::Pending
                        && d.next_attempt_at.is_some_and(|t| t <= now)
                        && s.endpoints
                            .iter()
                            .any(|e| e.id == d.endpoint_id && e.enabled && !skip.leaves_out(e))
                })
                .collect();
            due.sort_by_key(|&i| s.deliveries[i].next_attempt_at);
            due.truncate(limit);
            let mut out = Vec::with_capacity(due.len());
            for i in due {
                let d = &mut s.deliveries[i];
                d.next_attempt_at = Some(until);
                let delivery = d.clone();
                let message = s
                    .messages
                    .get(&delivery.message_id)
                    .cloned()
                    .ok_or(Error::Corrupt("delivery without message"))?;
                let endpoint = s
                    .endpoints
                    .iter()
                    .find(|e| e.id == delivery.endpoint_id)
                    .cloned()
                    .ok_or(Error::Corrupt("delivery without endpoint"))?;
                out.push(DueDelivery {
                    delivery,
                    message,
                    endpoint,
                });
            }
            Ok(out)
        })
    }

    async fn record_attempt(
        &self,
        delivery: DeliveryId,
        attempt: Attempt,
        next: Next,
    ) -> Result<Option<DateTime<Utc>>> {
        self.with(|s| {
            let at = attempt.at;
            let d = s.delivery_mut(delivery)?;
            d.attempts = d.attempts.saturating_add(1);
            let (status, due) = next_state(next);
            d.status = status;
            d.next_attempt_at = due;
            let endpoint_id = d.endpoint_id;
            s.attempts.entry(delivery).or_default().push(attempt);
            let ep = s.endpoint_mut(endpoint_id)?;
            ep.failing_since = failing_since_after_attempt(ep.failing_since, next, at);
            Ok(ep.failing_since)
        })
    }

    async fn postpone(&self, delivery: DeliveryId, at: DateTime<Utc>) -> Result<()> {
        self.with(|s| {
            let d = s.delivery_mut(delivery)?;
            if d.status == DeliveryStatus::Pending {
                d.next_attempt_at = Some(at);
            }
            Ok(())
        })
    }

    async fn retry(&self, delivery: DeliveryId, now: DateTime<Utc>) -> Result<()> {
        self.with(|s| {
            let d = s.delivery_mut(delivery)?;
            d.status = DeliveryStatus::Pending;
            d.next_attempt_at = Some(now);
            Ok(())
        })
    }

    async fn recover_failed_since(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let since = millis(since);
        self.with(|s| {
            let mut n = 0;
            for d in s.deliveries.iter_mut().filter(|d| {
                d.endpoint_id == endpoint
                    && d.status == DeliveryStatus::Failed
                    && d.created_at >= since
            }) {
                d.status = DeliveryStatus::Pending;
                d.next_attempt_at = Some(now);
                n += 1;
            }
            Ok(n)
        })
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<()> {
        self.with(|s| {
            let before = s.endpoints.len();
            s.endpoints.retain(|e| e.id != id);
            if s.endpoints.len() == before {
                return Err(Error::NotFound(ObjectKind::Endpoint));
            }
            let gone: Vec<DeliveryId> = s
                .deliveries
                .iter()
                .filter(|d| d.endpoint_id == id)
                .map(|d| d.id)
                .collect();
            for d in &gone {
                s.attempts.remove(d);
            }
            s.deliveries.retain(|d| d.endpoint_id != id);
            Ok(())
        })
    }

    async fn delivery_page(
        &self,
        endpoint: EndpointId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<u64>)> {
        let limit = limit.max(1);
        self.with(|s| {
            let end = before.map_or(s.deliveries.len(), |b| {
                usize::try_from(b.saturating_sub(1))
                    .unwrap_or(usize::MAX)
                    .min(s.deliveries.len())
            });
            let mut page = Vec::new();
            let mut last = None;
            for (i, d) in s.deliveries[..end].iter().enumerate().rev() {
                if d.endpoint_id != endpoint {
                    continue;
                }
                if page.len() == limit {
                    return Ok((page, last));
                }
                page.push(d.clone());
                last = Some(i as u64 + 1);
            }
            Ok((page, None))
        })
    }

    async fn messages(&self, query: &MessageQuery) -> Result<MessagePage> {
        let limit = query.clamped_limit();
        self.with(|s| {
            let start = usize::try_from(query.after).unwrap_or(usize::MAX);
            let mut page = MessagePage::default();
            for (i, (id, owner)) in s.log.iter().enumerate().skip(start) {
                let Some(m) = s.messages.get(id) else {
                    continue;
                };
                let visible = owner.organization == query.organization
                    && (query.project.is_none() || owner.project == query.project)
                    && m.environment == query.environment
                    && query.type_matches(&m.event_type)
                    && query.since.is_none_or(|t| m.created_at >= t)
                    && query.until.is_none_or(|t| m.created_at < t);
                if !visible {
                    continue;
                }
                if page.messages.len() == limit {
                    return Ok(page);
                }
                page.messages.push(m.clone());
                page.next = Some(i as u64 + 1);
            }
            page.next = None;
            Ok(page)
        })
    }

    async fn purge(
        &self,
        deliveries_before: DateTime<Utc>,
        messages_before: DateTime<Utc>,
    ) -> Result<Purged> {
        self.with(|s| {
            let mut out = Purged::default();
            let old_messages: std::collections::HashSet<MessageId> = s
                .messages
                .values()
                .filter(|m| m.created_at < messages_before)
                .map(|m| m.id.clone())
                .collect();
            let mut gone = Vec::new();
            s.deliveries.retain(|d| {
                let expired = (d.status != DeliveryStatus::Pending
                    && d.created_at < deliveries_before)
                    || old_messages.contains(&d.message_id);
                if expired {
                    gone.push(d.id);
                }
                !expired
            });
            out.deliveries = gone.len() as u64;
            for id in gone {
                out.attempts += s.attempts.remove(&id).map_or(0, |a| a.len() as u64);
            }
            for id in &old_messages {
                if let Some(m) = s.messages.remove(id) {
                    s.by_event.remove(&m.event_id);
                }
            }
            s.log.retain(|(id, _)| !old_messages.contains(id));
            out.messages = old_messages.len() as u64;
            Ok(out)
        })
    }

    async fn erase_values(&self, organization: &str, values: &[String]) -> Result<u64> {
        let values = erasable(values);
        // Counted as the SQL stores count: one row changed per value found in it.
        let erase = |text: &mut String, (v, with): &(String, String)| {
            let found = text.contains(v.as_str());
            if found {
                *text = text.replace(v.as_str(), with);
            }
            found
        };
        self.with(|s| {
            let theirs: std::collections::HashSet<MessageId> = s
                .log
                .iter()
                .filter(|(_, owner)| owner.organization == organization)
                .map(|(id, _)| id.clone())
                .collect();
            let deliveries: std::collections::HashSet<DeliveryId> = s
                .deliveries
                .iter()
                .filter(|d| theirs.contains(&d.message_id))
                .map(|d| d.id)
                .collect();
            let mut n = 0;
            for v in &values {
                for m in s.messages.values_mut().filter(|m| theirs.contains(&m.id)) {
                    n += u64::from(erase(&mut m.payload, v));
                }
                for (_, attempts) in s
                    .attempts
                    .iter_mut()
                    .filter(|(d, _)| deliveries.contains(d))
                {
                    for a in attempts {
                        let body = a.response_body.as_mut().is_some_and(|b| erase(b, v));
                        let error = a.error.as_mut().is_some_and(|e| erase(e, v));
                        n += u64::from(body || error);
                    }
                }
            }
            Ok(n)
        })
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.with(|s| {
            let mut stats = OutboxStats::default();
            for d in &s.deliveries {
                match d.status {
                    DeliveryStatus::Pending => stats.pending += 1,
                    DeliveryStatus::Succeeded => stats.succeeded += 1,
                    DeliveryStatus::Failed => stats.failed += 1,
                }
            }
            Ok(stats)
        })
    }
}
