//! The receiver kit: verify, then de-duplicate on `webhook-id`.
//!
//! Senders deliver at least once, so a receiver sees some messages twice; the
//! [`Deduplicator`] remembers ids for a while (longer than the sender's retry window) so the
//! second copy is acknowledged without being processed again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::error::Result;
use crate::verify::{VerifiedWebhook, Verifier};

/// How long ids are remembered by default: 3 days, beyond the default retry schedule
/// (about 27.6 hours) with room for a manual recovery.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(3 * 24 * 3600);

/// Remembers which webhook ids were already seen.
#[async_trait]
pub trait Deduplicator: Send + Sync {
    /// Records `id` as seen at `now`; `true` if this is its first sighting within the TTL.
    async fn first_sighting(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Forgets `id`, so a redelivery is processed: call it when processing failed.
    async fn forget(&self, id: &str) -> Result<()>;
}

/// A [`Deduplicator`] in memory, with expiry. Lost on restart: use the SQLite one when that
/// matters.
#[derive(Debug)]
pub struct MemoryDeduplicator {
    ttl: chrono::Duration,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    until: HashMap<String, DateTime<Utc>>,
    inserts_since_sweep: usize,
}

impl Default for MemoryDeduplicator {
    fn default() -> Self {
        Self::new(DEFAULT_DEDUP_TTL)
    }
}

impl MemoryDeduplicator {
    /// Remembers ids for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            seen: Mutex::default(),
        }
    }

    /// How many ids are held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().until.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Deduplicator for MemoryDeduplicator {
    async fn first_sighting(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut seen = self.lock();
        if seen.until.get(id).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        let until = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        seen.until.insert(id.to_owned(), until);
        seen.inserts_since_sweep += 1;
        // Sweep expired ids now and then, so the map is bounded by the arrival rate × TTL.
        if seen.inserts_since_sweep >= 1024 && seen.inserts_since_sweep >= seen.until.len() / 2 {
            seen.until.retain(|_, until| *until > now);
            seen.inserts_since_sweep = 0;
        }
        Ok(true)
    }

    async fn forget(&self, id: &str) -> Result<()> {
        self.lock().until.remove(id);
        Ok(())
    }
}

/// What [`WebhookReceiver::receive`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Genuine and new: process it.
    New(VerifiedWebhook),
    /// Genuine, but already seen: acknowledge (2xx) and do nothing.
    Duplicate(VerifiedWebhook),
}

/// Verify-then-deduplicate, the two things every receiver must do.
///
/// ```
/// # tokio_test_block_on(async {
/// use align_webhooks::{MemoryDeduplicator, Receipt, SigningSecret, WebhookReceiver, WebhookVerifier};
/// let secret = SigningSecret::generate().unwrap();
/// let now = chrono::Utc::now().timestamp();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("webhook-id", "msg_1".parse().unwrap());
/// headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
/// headers.insert("webhook-signature", secret.sign("msg_1", now, b"{}").parse().unwrap());
/// let receiver = WebhookReceiver::new(WebhookVerifier::new(secret), MemoryDeduplicator::default());
/// assert!(matches!(receiver.receive(&headers, b"{}").await.unwrap(), Receipt::New(_)));
/// assert!(matches!(receiver.receive(&headers, b"{}").await.unwrap(), Receipt::Duplicate(_)));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct WebhookReceiver<V, D> {
    verifier: V,
    dedup: D,
}

impl<V: Verifier, D: Deduplicator> WebhookReceiver<V, D> {
    /// A receiver from its two halves.
    pub fn new(verifier: V, dedup: D) -> Self {
        Self { verifier, dedup }
    }

    /// Verifies the request, then records its id. Forged, stale or malformed requests are
    /// errors (answer 4xx); duplicates are [`Receipt::Duplicate`] (answer 2xx).
    pub async fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Result<Receipt> {
        let now = Utc::now();
        let verified = self.verifier.verify_at(headers, body, now.timestamp())?;
        if self.dedup.first_sighting(&verified.id, now).await? {
            Ok(Receipt::New(verified))
        } else {
            Ok(Receipt::Duplicate(verified))
        }
    }

    /// Forgets a message whose processing failed, so the sender's retry is processed.
    pub async fn processing_failed(&self, id: &str) -> Result<()> {
        self.dedup.forget(id).await
    }
}
