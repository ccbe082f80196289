//! [`KeyspaceStore`] on SQLite: key spaces and their keys in `keys_keyspaces` and
//! `keys_keyspace_keys`; credits spent in one IMMEDIATE transaction, so several processes on
//! one file never spend one credit twice.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};

use super::super::codec::{meta_text, ms, opt_ms};
use super::super::keyspace_codec::{
    KEYSPACE_COLUMNS, KEYSPACE_KEY_COLUMNS, KEYSPACE_KEY_FIELDS, RawKeyspace, RawKeyspaceKey,
    count_from, credit_columns, limits_json, names_json, refill_sql, spend_params, spend_sql,
};
use super::{SqliteKeyStore, constraint, first, paged};
use crate::domain::{KeyId, OrganizationId};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHash;
use crate::keyspace::{
    CreditSpend, Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyFilter, KeyspaceStore,
};
use crate::store::{Page, PageRequest};
use crate::token::Environment;

static SPEND: LazyLock<String> = LazyLock::new(|| spend_sql("?1", "?2", "?3", "?4"));
static REFILL: LazyLock<String> = LazyLock::new(|| refill_sql("?1", "?2", "?3"));

fn keyspace_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, Keyspace)>> {
    let raw = RawKeyspace {
        seq: r.get(0)?,
        id: r.get(1)?,
        organization_id: r.get(2)?,
        name: r.get(3)?,
        prefix: r.get(4)?,
        permissions: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
    };
    Ok(raw.into_keyspace())
}

fn key_from(r: &Row<'_>) -> rusqlite::Result<Result<(i64, KeyspaceKey)>> {
    let raw = RawKeyspaceKey {
        seq: r.get(0)?,
        id: r.get(1)?,
        keyspace_id: r.get(2)?,
        organization_id: r.get(3)?,
        name: r.get(4)?,
        prefix: r.get(5)?,
        environment: r.get(6)?,
        owner_id: r.get(7)?,
        meta: r.get(8)?,
        permissions: r.get(9)?,
        created_by: r.get(10)?,
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        revoked_at: r.get(13)?,
        suspended_at: r.get(14)?,
        rotated_from: r.get(15)?,
        credits_remaining: r.get(16)?,
        refill_amount: r.get(17)?,
        refill_interval: r.get(18)?,
        refilled_at: r.get(19)?,
        ratelimits: r.get(20)?,
    };
    Ok(raw.into_key())
}

/// Maps a failed key insert: the prefix taken, or the id or hash already stored.
fn insert_clash(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            if e.to_string().contains("keys_keyspace_keys.prefix") {
                Error::PrefixTaken
            } else {
                Error::AlreadyExists(ObjectKind::ApiKey)
            }
        }
        _ => Error::Sqlite(e),
    }
}

fn spend_on(c: &mut Connection, id: &str, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend> {
    let (cost, day, month) = spend_params(cost, now);
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let spent: Option<i64> = tx
        .prepare_cached(&SPEND)?
        .query_row(params![id, cost, day, month], |r| r.get(0))
        .optional()?;
    let outcome = match spent {
        Some(left) => CreditSpend {
            spent: true,
            remaining: count_from(left)?,
        },
        None => {
            tx.prepare_cached(&REFILL)?
                .execute(params![id, day, month])?;
            let row: Option<Option<i64>> = tx
                .prepare_cached("SELECT credits_remaining FROM keys_keyspace_keys WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            match row {
                None => return Err(Error::NotFound(ObjectKind::ApiKey)),
                Some(None) => CreditSpend {
                    spent: true,
                    remaining: u64::MAX,
                },
                Some(Some(left)) => CreditSpend {
                    spent: false,
                    remaining: count_from(left)?,
                },
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

#[async_trait]
impl KeyspaceStore for SqliteKeyStore {
    async fn create_keyspace(&self, k: &Keyspace) -> Result<()> {
        let k = k.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO keys_keyspaces (id, organization_id, name, prefix, permissions,
                     created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    k.id.to_string(),
                    k.organization_id.to_string(),
                    k.name,
                    k.prefix.as_str(),
                    names_json(&k.permissions),
                    k.created_by.to_string(),
                    ms(k.created_at),
                ],
            )
            .map_err(|e| constraint(e, Error::AlreadyExists(ObjectKind::Keyspace)))?;
            Ok(())
        })
        .await
    }

    async fn get_keyspace(&self, id: KeyspaceId) -> Result<Option<Keyspace>> {
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {KEYSPACE_COLUMNS} FROM keys_keyspaces WHERE id = ?1"),
                &id.to_string(),
                keyspace_from,
            )
        })
        .await
    }

    async fn list_keyspaces(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<Keyspace>> {
        let req = req.clone();
        self.run(move |c| {
            paged(
                c,
                &format!(
                    "SELECT {KEYSPACE_COLUMNS} FROM keys_keyspaces
                     WHERE seq > ?1 AND organization_id = ?3 ORDER BY seq LIMIT ?2"
                ),
                &req,
                &[&organization.to_string()],
                keyspace_from,
            )
        })
        .await
    }

    async fn update_keyspace(&self, k: &Keyspace) -> Result<()> {
        let k = k.clone();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE keys_keyspaces SET name = ?2, permissions = ?3 WHERE id = ?1",
                params![k.id.to_string(), k.name, names_json(&k.permissions)],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::Keyspace));
            }
            Ok(())
        })
        .await
    }

    async fn insert_keyspace_key(&self, k: &KeyspaceKey, hash: &KeyHash) -> Result<()> {
        let k = k.clone();
        let hash = *hash;
        let (remaining, amount, interval, refilled_at) = credit_columns(k.credits.as_ref())?;
        self.run(move |c| {
            // Selected from the key space, so an unknown one inserts nothing.
            let n = c
                .execute(
                    &format!(
                        "INSERT INTO keys_keyspace_keys (hash, {KEYSPACE_KEY_FIELDS})
                         SELECT ?1, ?2, id, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                             ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20
                         FROM keys_keyspaces WHERE id = ?21"
                    ),
                    params![
                        &hash.as_bytes()[..],
                        k.id.to_string(),
                        k.organization_id.to_string(),
                        k.name,
                        k.prefix,
                        k.environment.as_str(),
                        k.owner_id,
                        meta_text(k.meta.as_ref()),
                        names_json(&k.permissions),
                        k.created_by.to_string(),
                        ms(k.created_at),
                        opt_ms(k.expires_at),
                        opt_ms(k.revoked_at),
                        opt_ms(k.suspended_at),
                        k.rotated_from.map(|r| r.to_string()),
                        remaining,
                        amount,
                        interval,
                        refilled_at,
                        limits_json(&k.ratelimits),
                        k.keyspace_id.to_string(),
                    ],
                )
                .map_err(insert_clash)?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::Keyspace));
            }
            Ok(())
        })
        .await
    }

    async fn get_keyspace_key(&self, id: KeyId) -> Result<Option<KeyspaceKey>> {
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys WHERE id = ?1"),
                &id.to_string(),
                key_from,
            )
        })
        .await
    }

    async fn find_keyspace_key(&self, hash: &KeyHash) -> Result<Option<KeyspaceKey>> {
        let hash = *hash;
        self.run(move |c| {
            first(
                c,
                &format!("SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys WHERE hash = ?1"),
                &&hash.as_bytes()[..],
                key_from,
            )
        })
        .await
    }

    async fn list_keyspace_keys(
        &self,
        filter: &KeyspaceKeyFilter,
        req: &PageRequest,
    ) -> Result<Page<KeyspaceKey>> {
        let f = filter.clone();
        let req = req.clone();
        self.run(move |c| {
            // With an owner, a plain equality, so the (key space, owner, seq) index serves it.
            let owner = if f.owner_id.is_some() {
                "owner_id = ?4"
            } else {
                "?4 IS NULL"
            };
            paged(
                c,
                &format!(
                    "SELECT {KEYSPACE_KEY_COLUMNS} FROM keys_keyspace_keys
                     WHERE seq > ?1 AND keyspace_id = ?3 AND {owner}
                       AND (?5 IS NULL OR environment = ?5)
                       AND (?6 OR revoked_at IS NULL)
                     ORDER BY seq LIMIT ?2"
                ),
                &req,
                &[
                    &f.keyspace_id.to_string(),
                    &f.owner_id,
                    &f.environment.map(Environment::as_str),
                    &f.include_revoked,
                ],
                key_from,
            )
        })
        .await
    }

    async fn update_keyspace_key(&self, k: &KeyspaceKey) -> Result<()> {
        let k = k.clone();
        self.run(move |c| {
            // The change-log trigger names the key.
            let n = c.execute(
                "UPDATE keys_keyspace_keys SET name = ?2, owner_id = ?3, meta = ?4,
                     permissions = ?5, expires_at = ?6, revoked_at = COALESCE(revoked_at, ?7),
                     suspended_at = ?8, ratelimits = ?9
                 WHERE id = ?1",
                params![
                    k.id.to_string(),
                    k.name,
                    k.owner_id,
                    meta_text(k.meta.as_ref()),
                    names_json(&k.permissions),
                    opt_ms(k.expires_at),
                    opt_ms(k.revoked_at),
                    opt_ms(k.suspended_at),
                    limits_json(&k.ratelimits),
                ],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::ApiKey));
            }
            Ok(())
        })
        .await
    }

    async fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<()> {
        let (remaining, amount, interval, refilled_at) = credit_columns(credits)?;
        self.run(move |c| {
            // Writing the refill columns fires the change-log trigger.
            let n = c.execute(
                "UPDATE keys_keyspace_keys SET credits_remaining = ?2, refill_amount = ?3,
                     refill_interval = ?4, refilled_at = ?5
                 WHERE id = ?1",
                params![id.to_string(), remaining, amount, interval, refilled_at],
            )?;
            if n == 0 {
                return Err(Error::NotFound(ObjectKind::ApiKey));
            }
            Ok(())
        })
        .await
    }

    async fn spend_credits(&self, id: KeyId, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend> {
        self.run(move |c| spend_on(c, &id.to_string(), cost, now))
            .await
    }
}
