//! Replies kept in the PostgreSQL database every instance shares (table
//! `idempotency_replies`), sealed at rest.
//!
//! A row is made in flight by the instance that runs the request (`INSERT … ON CONFLICT DO
//! NOTHING`: of two instances racing, one runs and the other answers `409`), then completed
//! with the sealed reply, or deleted (a server error, a reply over budget, a request that
//! ended without an answer). A row left in flight by an instance that died is taken over
//! after [`IN_FLIGHT_STALE`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use align_core::postgres::Pool;
use bytes::Bytes;
use http::StatusCode;
use zeroize::Zeroizing;

use super::memory::{ENTRY_OVERHEAD, TTL};
use super::{Budget, Seal, Stored};
use crate::ApiError;

/// The associated-data purpose replies are sealed under.
const PURPOSE: &[u8] = b"align-server idempotent reply v1";
/// A row still in flight after this long belongs to an instance that died (requests time out
/// long before).
const IN_FLIGHT_STALE: Duration = Duration::from_secs(300);

/// The shared store.
pub(super) struct Shared {
    pool: Pool,
    sealer: Arc<dyn Seal>,
    budget: Budget,
    /// Bytes held as of the last sweep.
    bytes: AtomicU64,
}

/// The right to run one request, in flight in the shared table.
pub(super) struct Ticket {
    pool: Pool,
    sealer: Arc<dyn Seal>,
    budget: Budget,
    api_key: String,
    idem_key: String,
    ticket: String,
    done: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn pg(e: tokio_postgres::Error) -> ApiError {
    let transient = align_core::postgres::is_transient(&e);
    tracing::error!(error = %align_core::postgres::describe(&e), "idempotency store failed");
    if transient {
        ApiError::unavailable()
    } else {
        ApiError::internal()
    }
}

fn pool_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "idempotency store: no database connection");
    ApiError::unavailable()
}

fn context(api_key: &str, idem_key: &str) -> String {
    format!("{api_key}\n{idem_key}")
}

impl Shared {
    pub(super) async fn open(
        pool: Pool,
        sealer: Arc<dyn Seal>,
        budget: Budget,
    ) -> Result<Self, crate::Error> {
        let mut client = pool
            .get()
            .await
            .map_err(|e| crate::Error::Store(e.to_string()))?;
        align_core::postgres::migrate(&mut client, "idempotency", super::migrations::POSTGRES)
            .await
            .map_err(|e| crate::Error::Store(align_core::postgres::describe(&e)))?;
        drop(client);
        let shared = Self {
            pool,
            sealer,
            budget,
            bytes: AtomicU64::new(0),
        };
        if let Err(e) = shared.sweep().await {
            tracing::warn!(code = e.code, "idempotency sweep failed");
        }
        Ok(shared)
    }

    pub(super) fn bytes(&self) -> usize {
        usize::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Deletes expired rows and, past the total budget, the oldest; records the bytes held.
    pub(super) async fn sweep(&self) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let now = now_ms();
        client
            .execute(
                "DELETE FROM idempotency_replies WHERE created_at < $1 \
                 OR (status IS NULL AND created_at < $2)",
                &[&(now - ms(TTL)), &(now - ms(IN_FLIGHT_STALE))],
            )
            .await
            .map_err(pg)?;
        let max = i64::try_from(self.budget.max_bytes).unwrap_or(i64::MAX);
        client
            .execute(
                "DELETE FROM idempotency_replies WHERE (api_key, idem_key) IN ( \
                   SELECT api_key, idem_key FROM ( \
                     SELECT api_key, idem_key, SUM(bytes) OVER \
                       (ORDER BY created_at DESC, api_key, idem_key) AS running \
                     FROM idempotency_replies) t \
                   WHERE running > $1)",
                &[&max],
            )
            .await
            .map_err(pg)?;
        let held: i64 = client
            .query_one(
                "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM idempotency_replies",
                &[],
            )
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        self.bytes
            .store(u64::try_from(held).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// Runs (`Ok`) or answers with the stored reply (`Err`).
    pub(super) async fn begin(
        &self,
        api_key: &str,
        idem_key: String,
        fingerprint: [u8; 32],
    ) -> Result<Result<Ticket, Stored>, ApiError> {
        let api_key = api_key.to_owned();
        let client = self.pool.get().await.map_err(pool_error)?;
        let now = now_ms();
        // This slot's own expired or abandoned row, so the insert below can take it.
        client
            .execute(
                "DELETE FROM idempotency_replies WHERE api_key = $1 AND idem_key = $2 \
                 AND (created_at < $3 OR (status IS NULL AND created_at < $4))",
                &[
                    &api_key,
                    &idem_key,
                    &(now - ms(TTL)),
                    &(now - ms(IN_FLIGHT_STALE)),
                ],
            )
            .await
            .map_err(pg)?;
        let ticket = uuid::Uuid::new_v4().to_string();
        let bytes = i64::try_from(ENTRY_OVERHEAD + idem_key.len()).unwrap_or(i64::MAX);
        let inserted = client
            .execute(
                "INSERT INTO idempotency_replies \
                 (api_key, idem_key, fingerprint, ticket, status, reply, bytes, created_at) \
                 VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &api_key,
                    &idem_key,
                    &fingerprint.as_slice(),
                    &ticket,
                    &bytes,
                    &now,
                ],
            )
            .await
            .map_err(pg)?;
        if inserted == 1 {
            return Ok(Ok(Ticket {
                pool: self.pool.clone(),
                sealer: Arc::clone(&self.sealer),
                budget: self.budget,
                api_key,
                idem_key,
                ticket,
                done: false,
            }));
        }
        let row = client
            .query_opt(
                "SELECT fingerprint, status, reply FROM idempotency_replies \
                 WHERE api_key = $1 AND idem_key = $2",
                &[&api_key, &idem_key],
            )
            .await
            .map_err(pg)?;
        // Gone between the insert and the read: its runner just gave it up; let the client
        // try again rather than run it twice.
        let Some(row) = row else {
            return Err(ApiError::idempotency_conflict());
        };
        let stored_fp: Vec<u8> = row.try_get(0).map_err(pg)?;
        if stored_fp != fingerprint {
            return Err(ApiError::idempotency_key_reused());
        }
        let status: Option<i32> = row.try_get(1).map_err(pg)?;
        let reply: Option<String> = row.try_get(2).map_err(pg)?;
        let (Some(status), Some(reply)) = (status, reply) else {
            return Err(ApiError::idempotency_conflict());
        };
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(ApiError::internal)?;
        let body = self
            .sealer
            .open(PURPOSE, &context(&api_key, &idem_key), &reply)
            .map_err(|e| {
                tracing::error!(error = %e, "a kept idempotent reply does not open");
                ApiError::internal()
            })?;
        Ok(Err(Stored {
            status,
            body: std::sync::Arc::new(Zeroizing::new(body.to_vec())),
        }))
    }
}

impl Ticket {
    pub(super) async fn complete(mut self, status: StatusCode, body: &Bytes) {
        self.done = true;
        if let Err(e) = self.store(status, body).await {
            tracing::warn!(
                code = e.code,
                "an idempotent reply was not kept; a retry runs again"
            );
            self.release();
        }
    }

    async fn store(&self, status: StatusCode, body: &Bytes) -> Result<(), ApiError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        if status.is_server_error()
            || body.len() > self.budget.max_reply_bytes
            || body.len() > self.budget.max_bytes_per_key
        {
            client
                .execute(
                    "DELETE FROM idempotency_replies \
                     WHERE api_key = $1 AND idem_key = $2 AND ticket = $3",
                    &[&self.api_key, &self.idem_key, &self.ticket],
                )
                .await
                .map_err(pg)?;
            return Ok(());
        }
        let sealed = self
            .sealer
            .seal(PURPOSE, &context(&self.api_key, &self.idem_key), body)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot seal an idempotent reply");
                ApiError::internal()
            })?;
        let bytes =
            i64::try_from(ENTRY_OVERHEAD + self.idem_key.len() + sealed.len()).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE idempotency_replies SET status = $4, reply = $5, bytes = $6, \
                 created_at = $7 WHERE api_key = $1 AND idem_key = $2 AND ticket = $3",
                &[
                    &self.api_key,
                    &self.idem_key,
                    &self.ticket,
                    &i32::from(status.as_u16()),
                    &sealed,
                    &bytes,
                    &now_ms(),
                ],
            )
            .await
            .map_err(pg)?;
        // This key's oldest replies beyond its share go (its newest, this one, stays).
        let per_key = i64::try_from(self.budget.max_bytes_per_key).unwrap_or(i64::MAX);
        client
            .execute(
                "DELETE FROM idempotency_replies WHERE api_key = $1 AND idem_key IN ( \
                   SELECT idem_key FROM ( \
                     SELECT idem_key, SUM(bytes) OVER (ORDER BY created_at DESC, idem_key) \
                       AS running \
                     FROM idempotency_replies WHERE api_key = $1 AND status IS NOT NULL) t \
                   WHERE running > $2)",
                &[&self.api_key, &per_key],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Frees the slot (in the background: called from `Drop` too).
    fn release(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the in-flight row expires after IN_FLIGHT_STALE
        };
        let pool = self.pool.clone();
        let (api_key, idem_key, ticket) = (
            self.api_key.clone(),
            self.idem_key.clone(),
            self.ticket.clone(),
        );
        runtime.spawn(async move {
            if let Ok(client) = pool.get().await {
                let _ = client
                    .execute(
                        "DELETE FROM idempotency_replies \
                         WHERE api_key = $1 AND idem_key = $2 AND ticket = $3 AND status IS NULL",
                        &[&api_key, &idem_key, &ticket],
                    )
                    .await;
            }
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}
