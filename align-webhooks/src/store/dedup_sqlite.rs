//! A [`Deduplicator`] on SQLite (table `webhooks_seen`), for receivers that must not process a
//! message twice across restarts.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::sqlite::SqliteWebhookStore;
use crate::error::Result;
use crate::receiver::{DEFAULT_DEDUP_TTL, Deduplicator};

/// Remembers webhook ids in SQLite, expiring them after a TTL.
#[derive(Debug, Clone)]
pub struct SqliteDeduplicator {
    db: SqliteWebhookStore,
    ttl: chrono::Duration,
}

impl SqliteDeduplicator {
    /// Opens (creating it `0600` if needed) the database at `path`, migrating the `webhooks_`
    /// tables. It reads no endpoint, so it needs no [`Sealer`](crate::Sealer).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::with_store(
            SqliteWebhookStore::open_unsealed(path.as_ref()).await?,
        ))
    }

    /// A private in-memory database (tests).
    pub async fn open_in_memory() -> Result<Self> {
        Ok(Self::with_store(
            SqliteWebhookStore::open_in_memory().await?,
        ))
    }

    /// Shares an open store's connection.
    pub fn with_store(db: SqliteWebhookStore) -> Self {
        Self {
            db,
            ttl: chrono::Duration::from_std(DEFAULT_DEDUP_TTL).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Remembers ids for `ttl` instead of [`DEFAULT_DEDUP_TTL`].
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self
    }
}

#[async_trait]
impl Deduplicator for SqliteDeduplicator {
    async fn first_sighting(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let id = id.to_owned();
        let now_ms = now.timestamp_millis();
        let until = now
            .checked_add_signed(self.ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
            .timestamp_millis();
        self.db
            .run(move |c| {
                // A new id, or one whose memory has expired, is a first sighting.
                let changed = c.execute(
                    "INSERT INTO webhooks_seen (id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT(id) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE webhooks_seen.expires_at <= ?3",
                    params![id, until, now_ms],
                )?;
                c.execute(
                    "DELETE FROM webhooks_seen WHERE id IN
                     (SELECT id FROM webhooks_seen WHERE expires_at <= ?1 LIMIT 64)",
                    [now_ms],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    async fn forget(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.db
            .run(move |c| {
                c.execute("DELETE FROM webhooks_seen WHERE id = ?1", [id])?;
                Ok(())
            })
            .await
    }
}
