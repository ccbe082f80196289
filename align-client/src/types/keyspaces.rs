//! Key spaces and verification (DESIGN §12): the bodies of the `keyspaces` operations.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{Environment, PageParams, Secret, Timestamp};

/// A key space: a token prefix and a permission vocabulary of the organisation's own, for the
/// keys it issues to its own customers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keyspace {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The tag its tokens start with (`acme` → `acme_9311c954_…`).
    pub prefix: String,
    /// The permissions its keys may hold.
    pub permissions: Vec<String>,
    /// Its organisation.
    pub organization_id: Uuid,
    /// Who created it.
    pub created_by_user_id: Uuid,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The body of `createKeyspace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateKeyspace {
    /// Its name.
    pub name: String,
    /// Its token prefix: 2 to 8 lowercase letters, not `ako` or `akt`; never changes.
    pub prefix: String,
    /// The permissions its keys may hold (`invoices:read`, `admin`, …).
    pub permissions: Vec<String>,
}

/// The body of `updateKeyspace`; a field left `None` is not changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateKeyspace {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new vocabulary, replacing the old (keys keep what they hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// How often a key's credits are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    /// At each UTC midnight.
    Day,
    /// On the first of each month (UTC).
    Month,
}

/// A refill: at each interval boundary the remaining credits are set to `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// What `remaining` becomes.
    pub amount: u64,
    /// How often.
    pub interval: RefillInterval,
}

/// A key's credits: verifications left, optionally refilled. Sent at mint and by
/// `updateKeyspaceKey`, and answered with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credits {
    /// Verifications left (each VALID one spends its cost, default 1).
    pub remaining: u64,
    /// The refill, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

/// A named rate limit of a key: at most `limit` cost in each window of `duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedLimit {
    /// Its name, unique on the key (`requests`, `tokens`).
    pub name: String,
    /// The most cost per window.
    pub limit: u64,
    /// The window's length in seconds.
    pub duration_seconds: u64,
}

/// A key minted in a key space, as the API shows it (never its token).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceKey {
    /// Its id.
    pub id: Uuid,
    /// Its key space.
    pub keyspace_id: Uuid,
    /// Its organisation.
    pub organization_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its prefix (`acme_9311c954`).
    pub key_prefix: String,
    /// Live or sandbox.
    pub environment: Environment,
    /// Your id for the customer holding it.
    pub owner_id: Option<String>,
    /// Your data about it.
    pub meta: Option<Value>,
    /// Its permissions, in its key space's vocabulary.
    pub permissions: Vec<String>,
    /// Who minted it.
    pub created_by_user_id: Uuid,
    /// When it was minted.
    pub created_at: Timestamp,
    /// When it stops verifying.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it was suspended (while it is).
    pub suspended_at: Option<Timestamp>,
    /// The key it was rotated from.
    pub rotated_from_key_id: Option<Uuid>,
    /// Its credits (`None`: not limited by credits).
    pub credits: Option<Credits>,
    /// Its named limits.
    pub ratelimits: Vec<NamedLimit>,
}

/// A key space key just minted: the key and its token, shown once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MintedKeyspaceKey {
    /// The key.
    #[serde(flatten)]
    pub resource: KeyspaceKey,
    /// The token (`acme_…`): hand it to your customer now, it is never shown again.
    pub key: Secret,
}

/// The answer of `rotateKeyspaceKey`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeyspaceKeyRotation {
    /// The successor's token (as in `successor.key`), shown once.
    pub key: Secret,
    /// The successor.
    pub successor: MintedKeyspaceKey,
    /// The old key, its expiry now the end of the grace period.
    pub previous: KeyspaceKey,
}

/// The body of `createKeyspaceKey`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyspaceKey {
    /// Its name.
    pub name: String,
    /// Your id for the customer holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Your data about it (a JSON object of 4096 bytes at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Its permissions, each one its key space declares (default none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// When it stops verifying (`None`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Its credits (`None`: not limited by credits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Credits>,
    /// Its named limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<NamedLimit>,
    /// Live or sandbox (the caller's by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

impl CreateKeyspaceKey {
    /// A key named `name`, everything else the server's default.
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The body of `updateKeyspaceKey`. A field left `None` is not changed; `Some(None)` clears
/// it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKeyspaceKey {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new owner (`Some(None)` removes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Option<String>>,
    /// New data (`Some(None)` removes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Option<Value>>,
    /// New permissions, each one the key space declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// A new expiry (`Some(None)`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<Timestamp>>,
    /// New credits, replacing the count (`Some(None)`: not limited by credits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Option<Credits>>,
    /// New named limits, replacing the old.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<NamedLimit>>,
}

/// The filters of `listKeyspaceKeys`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyspaceKeyQuery {
    /// Only this owner's keys.
    pub owner_id: Option<String>,
    /// Only this environment's keys.
    pub environment: Option<Environment>,
    /// Revoked keys too.
    pub include_revoked: bool,
    /// Page size and cursor.
    pub page: PageParams,
}

/// What one verification spends of a key's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CreditCost {
    /// The cost of a VALID verification (server default 1).
    pub cost: u64,
}

/// What one verification spends of a named limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitCost {
    /// The limit's name (a name the key lacks is ignored).
    pub name: String,
    /// The cost (server default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

/// The body of `verifyKey`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyKey {
    /// The key your customer presented, as presented.
    pub key: Secret,
    /// What the key must be allowed to do, e.g. `invoices:read AND (invoices:write OR admin)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// What a VALID verification spends of the key's credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditCost>,
    /// Costs of named limits by name (default 1 for every limit of the key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<LimitCost>,
}

impl VerifyKey {
    /// Verifies `key` asking nothing more than that it is found and usable.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: Secret::new(key),
            permissions: None,
            credits: None,
            ratelimits: Vec::new(),
        }
    }

    /// The same, asking the permission query `query`.
    #[must_use]
    pub fn permissions(self, query: impl Into<String>) -> Self {
        Self {
            permissions: Some(query.into()),
            ..self
        }
    }

    /// The same, spending `cost` credits when the key has credits.
    #[must_use]
    pub fn cost(self, cost: u64) -> Self {
        Self {
            credits: Some(CreditCost { cost }),
            ..self
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    /// Found and allowed; what was asked was spent.
    Valid,
    /// Unknown, malformed, mistyped, another organisation's, or live for a sandbox caller.
    NotFound,
    /// Revoked.
    Revoked,
    /// Past its expiry (a rotated-out key past its grace period too).
    Expired,
    /// Suspended.
    Suspended,
    /// A named limit is spent.
    RateLimited,
    /// Not enough credits left.
    UsageExceeded,
    /// The permission query does not hold.
    InsufficientPermissions,
    /// A code this version of the client does not know.
    #[serde(other)]
    Other,
}

/// Credits left after a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CreditsLeft {
    /// What remains.
    pub remaining: u64,
}

/// Where one named limit stands after a verification.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LimitState {
    /// The limit's name.
    pub name: String,
    /// Its limit per window.
    pub limit: u64,
    /// What is left in the current window.
    pub remaining: u64,
    /// Whole seconds until the current window ends.
    pub reset: u64,
}

/// The answer of `verifyKey`. The key's fields are `None` for [`VerifyCode::NotFound`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether `code` is VALID.
    pub valid: bool,
    /// What was found.
    pub code: VerifyCode,
    /// The key's id.
    pub key_id: Option<Uuid>,
    /// Its key space.
    pub keyspace_id: Option<Uuid>,
    /// Your id for its owner.
    pub owner_id: Option<String>,
    /// Your data about it.
    pub meta: Option<Value>,
    /// Its permissions.
    pub permissions: Option<Vec<String>>,
    /// When it stops verifying.
    pub expires_at: Option<Timestamp>,
    /// Its environment.
    pub environment: Option<Environment>,
    /// The credits left, for a key with credits.
    pub credits: Option<CreditsLeft>,
    /// Its named limits as they stand.
    pub ratelimits: Vec<LimitState>,
}
