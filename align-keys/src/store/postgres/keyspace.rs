//! [`KeyspaceStore`] on PostgreSQL: key spaces and their keys in `keys_keyspaces` and
//! `keys_keyspace_keys`; credits spent by one UPDATE, whose row lock makes concurrent spends
//! from any number of instances wait for each other and re-read the row, so none is lost or
//! doubled.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::super::codec::{meta_text, ms, opt_ms};
use super::super::keyspace_codec::{
    KEYSPACE_COLUMNS, KEYSPACE_KEY_COLUMNS, KEYSPACE_KEY_FIELDS, RawKeyspace, RawKeyspaceKey,
    count_from, credit_columns, limits_json, names_json, refill_sql, spend_params, spend_sql,
};
use super::{PgKeyStore, constraint};
use crate::domain::{KeyId, OrganizationId};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHash;
use crate::keyspace::{
    CreditSpend, Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyFilter, KeyspaceStore,
};
use crate::store::{Page, PageRequest};
use crate::token::Environment;

static SPEND: LazyLock<String> =
    LazyLock::new(|| spend_sql("$1", "$2::bigint", "$3::bigint", "$4::bigint"));
/// The refill of a refused spend and the count it leaves, in one round trip: the refill's own
/// count when it refilled, else the row's (`NULL` for a key without credits, no row for an
/// unknown key).
static REFILL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH refilled AS ({} RETURNING credits_remaining)
         SELECT COALESCE((SELECT credits_remaining FROM refilled), k.credits_remaining)
         FROM keys_keyspace_keys k WHERE k.id = $1",
        refill_sql("$1", "$2::bigint", "$3::bigint")
    )
});

fn keyspace_from(r: &Row) -> Result<(i64, Keyspace)> {
    RawKeyspace {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        organization_id: r.try_get(2)?,
        name: r.try_get(3)?,
        prefix: r.try_get(4)?,
        permissions: r.try_get(5)?,
        created_by: r.try_get(6)?,
        created_at: r.try_get(7)?,
    }
    .into_keyspace()
}

fn key_from(r: &Row) -> Result<(i64, KeyspaceKey)> {
    RawKeyspaceKey {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        keyspace_id: r.try_get(2)?,
        organization_id: r.try_get(3)?,
        name: r.try_get(4)?,
        prefix: r.try_get(5)?,
        environment: r.try_get(6)?,
        owner_id: r.try_get(7)?,
        meta: r.try_get(8)?,
        permissions: r.try_get(9)?,
        created_by: r.try_get(10)?,
        created_at: r.try_get(11)?,
        expires_at: r.try_get(12)?,
        revoked_at: r.try_get(13)?,
        suspended_at: r.try_get(14)?,
        rotated_from: r.try_get(15)?,
        credits_remaining: r.try_get(16)?,
        refill_amount: r.try_get(17)?,
        refill_interval: r.try_get(18)?,
        refilled_at: r.try_get(19)?,
        ratelimits: r.try_get(20)?,
    }
    .into_key()
}

#[async_trait]
impl KeyspaceStore for PgKeyStore {
    async fn create_keyspace(&self, k: &Keyspace) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO keys_keyspaces (id, organization_id, name, prefix, permissions,
                     created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &k.id.to_string(),
                    &k.organization_id.to_string(),
                    &k.name,
                    &k.prefix.as_str(),
                    &names_json(&k.permissions),
                    &k.created_by.to_string(),
                    &ms(k.created_at),
                ],
            )
            .await
            .map_err(|e| constraint(e, |_| Error::AlreadyExists(ObjectKind::Keyspace)))?;
        Ok(())
    }

    async fn get_keyspace(&self, id: KeyspaceId) -> Result<Option<Keyspace>> {
        self.first(
            &format!("SELECT {KEYSPACE_COLUMNS} FROM keys_keyspaces WHERE id = $1"),
            &id.to_string(),
            keyspace_from,
        )
        .await
    }

    async fn list_keyspaces(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<Keyspace>> {
        self.paged(
            &format!(
                "SELECT {KEYSPACE_COLUMNS} FROM keys_keyspaces
                 WHERE seq > $1 AND organization_id = $3 ORDER BY seq LIMIT $2"
            ),
            req,
            &[&organization.to_string()],
            keyspace_from,
        )
        .await
    }

    async fn update_keyspace(&self, k: &Keyspace) -> Result<()> {
        let n = self
            .execute(
                "UPDATE keys_keyspaces SET name = $2, permissions = $3 WHERE id = $1",
                &[&k.id.to_string(), &k.name, &names_json(&k.permissions)],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Keyspace));
        }
        Ok(())
    }

    async fn insert_keyspace_key(&self, k: &KeyspaceKey, hash: &KeyHash) -> Result<()> {
        let (remaining, amount, interval, refilled_at) = credit_columns(k.credits.as_ref())?;
        // Selected from the key space, so an unknown one inserts nothing; the casts type the
        // parameters, which a SELECT list leaves untyped.
        let n = self
            .execute(
                &format!(
                    "INSERT INTO keys_keyspace_keys (hash, {KEYSPACE_KEY_FIELDS})
                     SELECT $1::bytea, $2::text, id, $3::text, $4::text, $5::text,
                         $6::text, $7::text, $8::text, $9::text, $10::text, $11::bigint,
                         $12::bigint, $13::bigint, $14::bigint, $15::text, $16::bigint,
                         $17::bigint, $18::text, $19::bigint, $20::text
                     FROM keys_keyspaces WHERE id = $21"
                ),
                &[
                    &&hash.as_bytes()[..],
                    &k.id.to_string(),
                    &k.organization_id.to_string(),
                    &k.name,
                    &k.prefix,
                    &k.environment.as_str(),
                    &k.owner_id,
                    &meta_text(k.meta.as_ref()),
                    &names_json(&k.permissions),
                    &k.created_by.to_string(),
                    &ms(k.created_at),
                    &opt_ms(k.expires_at),
                    &opt_ms(k.revoked_at),
                    &opt_ms(k.suspended_at),
                    &k.rotated_from.map(|r| r.to_string()),
                    &remaining,
                    &amount,
                    &interval,
                    &refilled_at,
                    &limits_json(&k.ratelimits),
                    &k.keyspace_id.to_string(),
                ],
            )
            .await;
        let n = match n {
            Err(Error::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let name = e.as_db_error().and_then(|d| d.constraint());
                return Err(if name == Some("keys_keyspace_keys_prefix_unique") {
                    Error::PrefixTaken
                } else {
                    Error::AlreadyExists(ObjectKind::ApiKey)
                });
            }
            other => other?,
        };
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::Keyspace));
        }
        Ok(())
    }

    async fn get_keyspace_key(&self, id: KeyId) -> Result<Option<KeyspaceKey>> {
        self.first(
            &format!("SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys WHERE id = $1"),
            &id.to_string(),
            key_from,
        )
        .await
    }

    async fn find_keyspace_key(&self, hash: &KeyHash) -> Result<Option<KeyspaceKey>> {
        self.first(
            &format!("SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys WHERE hash = $1"),
            &&hash.as_bytes()[..],
            key_from,
        )
        .await
    }

    async fn list_keyspace_keys(
        &self,
        filter: &KeyspaceKeyFilter,
        req: &PageRequest,
    ) -> Result<Page<KeyspaceKey>> {
        // With an owner, a plain equality, so the (key space, owner, seq) index serves it.
        let owner = if filter.owner_id.is_some() {
            "owner_id = $4"
        } else {
            "$4::text IS NULL"
        };
        self.paged(
            &format!(
                "SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys
                 WHERE seq > $1 AND keyspace_id = $3 AND {owner}
                   AND ($5::text IS NULL OR environment = $5)
                   AND ($6::boolean OR revoked_at IS NULL)
                 ORDER BY seq LIMIT $2"
            ),
            req,
            &[
                &filter.keyspace_id.to_string(),
                &filter.owner_id,
                &filter.environment.map(Environment::as_str),
                &filter.include_revoked,
            ],
            key_from,
        )
        .await
    }

    async fn update_keyspace_key(&self, k: &KeyspaceKey) -> Result<()> {
        // The change-log trigger names the key (and NOTIFYs the other instances).
        let n = self
            .execute(
                "UPDATE keys_keyspace_keys SET name = $2, owner_id = $3, meta = $4,
                     permissions = $5, expires_at = $6, revoked_at = COALESCE(revoked_at, $7),
                     suspended_at = $8, ratelimits = $9
                 WHERE id = $1",
                &[
                    &k.id.to_string(),
                    &k.name,
                    &k.owner_id,
                    &meta_text(k.meta.as_ref()),
                    &names_json(&k.permissions),
                    &opt_ms(k.expires_at),
                    &opt_ms(k.revoked_at),
                    &opt_ms(k.suspended_at),
                    &limits_json(&k.ratelimits),
                ],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::ApiKey));
        }
        Ok(())
    }

    async fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<()> {
        let (remaining, amount, interval, refilled_at) = credit_columns(credits)?;
        // Writing the refill columns fires the change-log trigger.
        let n = self
            .execute(
                "UPDATE keys_keyspace_keys SET credits_remaining = $2, refill_amount = $3,
                     refill_interval = $4, refilled_at = $5
                 WHERE id = $1",
                &[
                    &id.to_string(),
                    &remaining,
                    &amount,
                    &interval,
                    &refilled_at,
                ],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(ObjectKind::ApiKey));
        }
        Ok(())
    }

    async fn spend_credits(&self, id: KeyId, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend> {
        let (cost, day, month) = spend_params(cost, now);
        let id = id.to_string();
        let client = self.pool.get().await?;
        let spend = client.prepare_cached(&SPEND).await?;
        if let Some(row) = client
            .query_opt(&spend, &[&id, &cost, &day, &month])
            .await?
        {
            return Ok(CreditSpend {
                spent: true,
                remaining: count_from(row.try_get(0)?)?,
            });
        }
        let refill = client.prepare_cached(&REFILL).await?;
        let row = client
            .query_opt(&refill, &[&id, &day, &month])
            .await?
            .ok_or(Error::NotFound(ObjectKind::ApiKey))?;
        Ok(match row.try_get::<_, Option<i64>>(0)? {
            None => CreditSpend {
                spent: true,
                remaining: u64::MAX,
            },
            Some(left) => CreditSpend {
                spent: false,
                remaining: count_from(left)?,
            },
        })
    }
}
