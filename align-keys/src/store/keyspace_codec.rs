//! What the SQL stores share for key spaces (DESIGN §12): their rows before decoding, their
//! columns as stored (permissions and named limits as JSON text, credits as four nullable
//! columns), and the credit-spending statements, written once for both dialects.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::codec::{meta_from, ms, opt_time, time, uuid};
use crate::domain::{KeyId, OrganizationId, UserId};
use crate::error::{Error, Result};
use crate::keyspace::{
    Credits, Keyspace, KeyspaceId, KeyspaceKey, NamedLimit, Refill, RefillInterval,
};
use crate::keyspace_token::KeyspaceTag;
use crate::token::Environment;

/// The key space columns a [`RawKeyspace`] is read from, in order.
pub(super) const KEYSPACE_COLUMNS: &str =
    "seq, id, organization_id, name, prefix, permissions, created_by, created_at";

/// The key space key columns but `seq`, in the order a [`RawKeyspaceKey`] reads them.
macro_rules! key_fields {
    () => {
        "id, keyspace_id, organization_id, name, prefix, environment, owner_id, meta, \
         permissions, created_by, created_at, expires_at, revoked_at, suspended_at, \
         rotated_from, credits_remaining, refill_amount, refill_interval, refilled_at, \
         ratelimits"
    };
}

/// The key space key columns a [`RawKeyspaceKey`] is read from, in order (the token hash is
/// written, never read).
pub(super) const KEYSPACE_KEY_COLUMNS: &str = concat!("seq, ", key_fields!());

/// The columns an insert writes after the hash: [`KEYSPACE_KEY_COLUMNS`] but `seq`.
pub(super) const KEYSPACE_KEY_FIELDS: &str = key_fields!();

/// A list of permission names as stored: a JSON array of strings.
pub(super) fn names_json(names: &[String]) -> String {
    Value::from(names.to_vec()).to_string()
}

fn names_from(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt("permissions"))
}

/// A key's named limits as stored: a JSON array of `{name, limit, durationSeconds}`.
pub(super) fn limits_json(limits: &[NamedLimit]) -> String {
    Value::Array(
        limits
            .iter()
            .map(|l| json!({"name": l.name, "limit": l.limit, "durationSeconds": l.duration_seconds}))
            .collect(),
    )
    .to_string()
}

fn limits_from(text: &str) -> Result<Vec<NamedLimit>> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt("ratelimits"))
}

/// A count of credits as stored (`i64`); counts past it are refused, never wrapped.
pub(super) fn count(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::InvalidInput {
        field: "credits",
        reason: "remaining is at most 1000000000000",
    })
}

/// A stored count of credits.
pub(super) fn count_from(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Corrupt("credits"))
}

/// A key's credits as its four columns: remaining, refill amount, refill interval, refill
/// time (all `NULL` for a key without credits).
pub(super) type CreditColumns = (Option<i64>, Option<i64>, Option<&'static str>, Option<i64>);

/// `credits` as its [`CreditColumns`].
pub(super) fn credit_columns(credits: Option<&Credits>) -> Result<CreditColumns> {
    let Some(c) = credits else {
        return Ok((None, None, None, None));
    };
    Ok((
        Some(count(c.remaining)?),
        c.refill.map(|r| count(r.amount)).transpose()?,
        c.refill.map(|r| r.interval.as_str()),
        c.refilled_at.map(ms),
    ))
}

fn credits_from(
    remaining: Option<i64>,
    amount: Option<i64>,
    interval: Option<&str>,
    refilled_at: Option<i64>,
) -> Result<Option<Credits>> {
    let Some(remaining) = remaining else {
        return Ok(None);
    };
    let refill = match (amount, interval) {
        (None, None) => None,
        (Some(amount), Some(interval)) => Some(Refill {
            amount: count_from(amount)?,
            interval: RefillInterval::from_name(interval)
                .ok_or(Error::Corrupt("refill interval"))?,
        }),
        _ => return Err(Error::Corrupt("refill")),
    };
    Ok(Some(Credits {
        remaining: count_from(remaining)?,
        refill,
        refilled_at: opt_time(refilled_at)?,
    }))
}

/// A key space row as stored, before its columns are checked.
pub(super) struct RawKeyspace {
    pub(super) seq: i64,
    pub(super) id: String,
    pub(super) organization_id: String,
    pub(super) name: String,
    pub(super) prefix: String,
    pub(super) permissions: String,
    pub(super) created_by: String,
    pub(super) created_at: i64,
}

impl RawKeyspace {
    /// Decodes the row; a malformed column is [`Error::Corrupt`].
    pub(super) fn into_keyspace(self) -> Result<(i64, Keyspace)> {
        Ok((
            self.seq,
            Keyspace {
                id: KeyspaceId(uuid(&self.id)?),
                organization_id: OrganizationId(uuid(&self.organization_id)?),
                name: self.name,
                prefix: KeyspaceTag::new(&self.prefix)
                    .map_err(|_| Error::Corrupt("keyspace prefix"))?,
                permissions: names_from(&self.permissions)?,
                created_by: UserId(uuid(&self.created_by)?),
                created_at: time(self.created_at)?,
            },
        ))
    }
}

/// A key space key row as stored, before its columns are checked.
pub(super) struct RawKeyspaceKey {
    pub(super) seq: i64,
    pub(super) id: String,
    pub(super) keyspace_id: String,
    pub(super) organization_id: String,
    pub(super) name: String,
    pub(super) prefix: String,
    pub(super) environment: String,
    pub(super) owner_id: Option<String>,
    pub(super) meta: Option<String>,
    pub(super) permissions: String,
    pub(super) created_by: String,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
    pub(super) suspended_at: Option<i64>,
    pub(super) rotated_from: Option<String>,
    pub(super) credits_remaining: Option<i64>,
    pub(super) refill_amount: Option<i64>,
    pub(super) refill_interval: Option<String>,
    pub(super) refilled_at: Option<i64>,
    pub(super) ratelimits: String,
}

impl RawKeyspaceKey {
    /// Decodes the row; a malformed column is [`Error::Corrupt`].
    pub(super) fn into_key(self) -> Result<(i64, KeyspaceKey)> {
        Ok((
            self.seq,
            KeyspaceKey {
                id: KeyId(uuid(&self.id)?),
                keyspace_id: KeyspaceId(uuid(&self.keyspace_id)?),
                organization_id: OrganizationId(uuid(&self.organization_id)?),
                name: self.name,
                prefix: self.prefix,
                environment: Environment::from_name(&self.environment)
                    .ok_or(Error::Corrupt("environment"))?,
                owner_id: self.owner_id,
                meta: meta_from(self.meta.as_deref())?,
                permissions: names_from(&self.permissions)?,
                created_by: UserId(uuid(&self.created_by)?),
                created_at: time(self.created_at)?,
                expires_at: opt_time(self.expires_at)?,
                revoked_at: opt_time(self.revoked_at)?,
                suspended_at: opt_time(self.suspended_at)?,
                rotated_from: self
                    .rotated_from
                    .as_deref()
                    .map(uuid)
                    .transpose()?
                    .map(KeyId),
                credits: credits_from(
                    self.credits_remaining,
                    self.refill_amount,
                    self.refill_interval.as_deref(),
                    self.refilled_at,
                )?,
                ratelimits: limits_from(&self.ratelimits)?,
            },
        ))
    }
}

/// The parameters of the credit statements: the key's id, the cost, and the starts (Unix
/// milliseconds) of the UTC day and of the UTC month `now` falls in.
pub(super) fn spend_params(cost: u64, now: DateTime<Utc>) -> (i64, i64, i64) {
    // A cost past what a key can hold is refused the same as its exact value would be.
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    (
        cost,
        ms(RefillInterval::Day.start_of(now)),
        ms(RefillInterval::Month.start_of(now)),
    )
}

/// The start of the refill interval a key's `refill_interval` names, given the dialect's
/// placeholders for the day start and the month start.
fn interval_start(day: &str, month: &str) -> String {
    format!("(CASE refill_interval WHEN 'day' THEN {day} ELSE {month} END)")
}

/// Whether a refill is due: the key is refilled and was last refilled before `start`.
fn refill_due(start: &str) -> String {
    format!("(refill_interval IS NOT NULL AND (refilled_at IS NULL OR refilled_at < {start}))")
}

/// The statement that refills key `id` when due and spends `cost` if enough is then left, in
/// one step, given the dialect's placeholders (bound as [`spend_params`] computes them).
/// Returns the credits left; no row when nothing was spent or the key has no credits. Every
/// column read on the right of a SET is the row as it was, so `due` means the same in each.
pub(super) fn spend_sql(id: &str, cost: &str, day: &str, month: &str) -> String {
    let start = interval_start(day, month);
    let due = refill_due(&start);
    let left = format!("(CASE WHEN {due} THEN refill_amount ELSE credits_remaining END)");
    format!(
        "UPDATE keys_keyspace_keys
         SET credits_remaining = {left} - {cost},
             refilled_at = CASE WHEN {due} THEN {start} ELSE refilled_at END
         WHERE id = {id} AND credits_remaining IS NOT NULL AND {left} >= {cost}
         RETURNING credits_remaining"
    )
}

/// The statement that only refills key `id` when due (idempotent), for a spend that was
/// refused: the refill still happens, as it does in memory.
pub(super) fn refill_sql(id: &str, day: &str, month: &str) -> String {
    let start = interval_start(day, month);
    let due = refill_due(&start);
    format!(
        "UPDATE keys_keyspace_keys SET credits_remaining = refill_amount, refilled_at = {start}
         WHERE id = {id} AND credits_remaining IS NOT NULL AND {due}"
    )
}
