//! Key spaces (DESIGN §12): keys an organisation issues to **its own customers**, checked by
//! Align for services written in any language.
//!
//! - [`Keyspace`]: a token tag of the organisation's own (`acme_…`, see
//!   [`keyspace_token`](crate::keyspace_token)) and a permission vocabulary of its own
//!   (`invoices:read`, `admin`, …).
//! - [`KeyspaceKey`]: a key minted in one, with an owner, meta, permissions, expiry,
//!   [`Credits`] (remaining uses, refilled each UTC day or month) and [`NamedLimit`]s (several
//!   windows per key, of any length); revoked, rotated, suspended and resumed like an Align key.
//! - [`KeyspaceStore`]: where they live. Every key store of this crate is one; credits are
//!   spent in the store ([`KeyspaceStore::spend_credits`]), one atomic statement, so several
//!   instances over one PostgreSQL never spend one credit twice.
//! - [`Keyspaces`]: minting and changing them, and [`Keyspaces::verify`], the one call a
//!   gateway makes: found → active → permissions → named limits → credits, each step refused
//!   spending nothing at the later ones.
//!
//! Key-space keys never open Align's own API: their tag is never `ako`/`akt`, so Align's token
//! parser refuses them before any lookup.

mod service;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{KeyId, Meta, OrganizationId, UserId};
use crate::error::{Error, Result};
use crate::hash::KeyHash;
use crate::keyspace_token::KeyspaceTag;
use crate::store::{Page, PageRequest};
use crate::token::Environment;

pub use service::{
    KeyspaceKeyChanges, Keyspaces, LimitCheck, LimitState, LimitsOutcome, MintedKeyspaceKey,
    NamedLimiter, NewKeyspaceKey, VerifyCode, VerifyOutcome, VerifyRequest,
};

/// The most permissions a key space declares (and a key of it holds).
pub const MAX_KEYSPACE_PERMISSIONS: usize = 1000;
/// The most named limits one key carries.
pub const MAX_NAMED_LIMITS: usize = 16;
/// The longest name of a named limit, in bytes.
pub const MAX_LIMIT_NAME_LEN: usize = 64;
/// The longest window of a named limit: 366 days.
pub const MAX_LIMIT_SECONDS: u64 = 366 * 24 * 3600;
/// The most credits a key holds, the largest refill and the largest cost of one verification.
pub const MAX_CREDITS: u64 = 1_000_000_000_000;

macro_rules! keyspace_id {
    () => {
        /// Identifies a key space.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct KeyspaceId(pub uuid::Uuid);

        impl KeyspaceId {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4())
            }
        }

        impl Default for KeyspaceId {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for KeyspaceId {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for KeyspaceId {
            type Err = uuid::Error;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}
keyspace_id!();

/// A key space: an organisation's own token tag and permission vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keyspace {
    /// Its id.
    pub id: KeyspaceId,
    /// The organisation that owns it (and may verify its keys).
    pub organization_id: OrganizationId,
    /// Display name, 1..=200 characters.
    pub name: String,
    /// The tag its tokens start with (`acme` → `acme_9311c954_…`), unique in the organisation.
    pub prefix: KeyspaceTag,
    /// The permissions its keys may hold, each a [permission
    /// name](crate::permission_query) (`invoices:read`, `invoices:*`, `admin`).
    pub permissions: Vec<String>,
    /// Who created it ([`UserId::SERVICE`] for an embedder).
    pub created_by: UserId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl Keyspace {
    /// Whether a key of this space may hold `permission`: a declared name, or `r:*` when the
    /// space declares a permission of resource `r` (or `r:*` itself).
    pub fn declares(&self, permission: &str) -> bool {
        if self.permissions.iter().any(|p| p == permission) {
            return true;
        }
        match permission.strip_suffix(":*") {
            Some(resource) => self
                .permissions
                .iter()
                .any(|p| p.split_once(':').is_some_and(|(r, _)| r == resource)),
            None => false,
        }
    }
}

/// How often a key's credits are refilled: at each UTC midnight, or the first of each month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    /// Every day at 00:00 UTC.
    Day,
    /// The first day of every month at 00:00 UTC.
    Month,
}

impl RefillInterval {
    /// `day` or `month`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// Parses `day` or `month`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// The start of the interval `now` falls in: that day's or that month's first instant
    /// (UTC). Credits refilled before it are refilled again.
    pub fn start_of(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let (y, m, d) = match self {
            Self::Day => (now.year(), now.month(), now.day()),
            Self::Month => (now.year(), now.month(), 1),
        };
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .unwrap_or(now)
    }

    /// The instant the interval after the one `now` falls in starts.
    pub fn next_after(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let start = self.start_of(now);
        match self {
            Self::Day => start + chrono::Duration::days(1),
            Self::Month => start
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(start),
        }
    }
}

impl fmt::Display for RefillInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's refill: at each interval boundary its remaining credits are **set** to `amount`
/// (unused credits do not pile up), the way a monthly plan's allowance works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refill {
    /// What `remaining` becomes at each boundary, 1..=[`MAX_CREDITS`].
    pub amount: u64,
    /// How often.
    pub interval: RefillInterval,
}

/// A key's credits: remaining uses, optionally refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    /// Uses left (as of the read: the store's counter is what verification spends).
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
    /// The interval start of the last refill (or of minting): the next refill happens at the
    /// first verification in a later interval.
    pub refilled_at: Option<DateTime<Utc>>,
}

impl Credits {
    /// `remaining` credits refilled by `refill`, as minted at `now` (the first refill comes at
    /// the next boundary).
    pub fn new(remaining: u64, refill: Option<Refill>, now: DateTime<Utc>) -> Self {
        Self {
            remaining,
            refill,
            refilled_at: refill.map(|r| r.interval.start_of(now)),
        }
    }

    /// These credits as a verification at `now` sees them, refill applied: the remaining
    /// count, and the refill time to store when it changed.
    pub fn at(&self, now: DateTime<Utc>) -> (u64, Option<DateTime<Utc>>) {
        match self.refill {
            Some(r) => {
                let start = r.interval.start_of(now);
                if self.refilled_at.is_none_or(|at| at < start) {
                    (r.amount, Some(start))
                } else {
                    (self.remaining, self.refilled_at)
                }
            }
            None => (self.remaining, self.refilled_at),
        }
    }
}

/// One named rate limit of a key: at most `limit` cost in each window of `duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedLimit {
    /// Its name, unique on the key (`requests`, `tokens`), 1..=64 bytes.
    pub name: String,
    /// The most cost admitted per window, ≥ 1.
    pub limit: u64,
    /// The window's length in seconds, 1..=[`MAX_LIMIT_SECONDS`].
    pub duration_seconds: u64,
}

/// A key minted in a key space. Never the token: only its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceKey {
    /// Its id (an id of the same kind as Align keys', so the one change log names both).
    pub id: KeyId,
    /// The key space.
    pub keyspace_id: KeyspaceId,
    /// The key space's organisation.
    pub organization_id: OrganizationId,
    /// Human name.
    pub name: String,
    /// The public prefix `{tag}_{id8}`.
    pub prefix: String,
    /// Live or sandbox: a sandbox caller sees and verifies only sandbox keys.
    pub environment: Environment,
    /// The organisation's id for the customer holding it, at most 256 characters.
    pub owner_id: Option<String>,
    /// The organisation's data about the key, at most 4 KiB serialized.
    pub meta: Option<Meta>,
    /// What it may do, in its key space's vocabulary.
    pub permissions: Vec<String>,
    /// Who minted it ([`UserId::SERVICE`] for an embedder).
    pub created_by: UserId,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked (final).
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was suspended (undone by resume).
    pub suspended_at: Option<DateTime<Utc>>,
    /// The key it replaced in a rotation.
    pub rotated_from: Option<KeyId>,
    /// Its credits, if it is limited by them.
    pub credits: Option<Credits>,
    /// Its named limits.
    pub ratelimits: Vec<NamedLimit>,
}

/// Where a key space key stands at an instant, as [`KeyspaceKey::status`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyspaceKeyStatus {
    /// Usable.
    Active,
    /// Revoked: final.
    Revoked,
    /// Past its expiry: final.
    Expired,
    /// Suspended until resumed.
    Suspended,
}

impl KeyspaceKey {
    /// Its state at `now`: revoked before expired before suspended.
    pub fn status(&self, now: DateTime<Utc>) -> KeyspaceKeyStatus {
        if self.revoked_at.is_some() {
            KeyspaceKeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyspaceKeyStatus::Expired
        } else if self.suspended_at.is_some() {
            KeyspaceKeyStatus::Suspended
        } else {
            KeyspaceKeyStatus::Active
        }
    }
}

/// Which key space keys a list returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceKeyFilter {
    /// Keys of this key space.
    pub keyspace_id: KeyspaceId,
    /// Only keys of this owner.
    pub owner_id: Option<String>,
    /// Only keys of this environment.
    pub environment: Option<Environment>,
    /// Include revoked keys.
    pub include_revoked: bool,
}

/// What [`KeyspaceStore::spend_credits`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditSpend {
    /// Whether the cost was spent (there were enough).
    pub spent: bool,
    /// What remains after the call (refill included).
    pub remaining: u64,
}

/// Where key spaces and their keys live. Implemented by [`MemoryKeyStore`](crate::MemoryKeyStore)
/// and (features) `SqliteKeyStore` and `PgKeyStore`, whose change log
/// ([`KeyLookup::key_changes_since`](crate::KeyLookup::key_changes_since)) also names every
/// changed key space key, so other instances' caches follow revocations.
#[async_trait]
pub trait KeyspaceStore: Send + Sync + 'static {
    /// Adds a key space. [`Error::AlreadyExists`] when the organisation has one with the prefix.
    async fn create_keyspace(&self, keyspace: &Keyspace) -> Result<()>;
    /// A key space by id.
    async fn get_keyspace(&self, id: KeyspaceId) -> Result<Option<Keyspace>>;
    /// An organisation's key spaces, oldest first.
    async fn list_keyspaces(
        &self,
        organization: OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<Keyspace>>;
    /// Writes a key space's name and permissions (the prefix never changes).
    async fn update_keyspace(&self, keyspace: &Keyspace) -> Result<()>;

    /// Stores a new key under `hash`. [`Error::PrefixTaken`] when its prefix is used.
    async fn insert_keyspace_key(&self, key: &KeyspaceKey, hash: &KeyHash) -> Result<()>;
    /// A key by id, its credits as the store counts them now.
    async fn get_keyspace_key(&self, id: KeyId) -> Result<Option<KeyspaceKey>>;
    /// The key stored under `hash`.
    async fn find_keyspace_key(&self, hash: &KeyHash) -> Result<Option<KeyspaceKey>>;
    /// Keys matching `filter`, oldest first.
    async fn list_keyspace_keys(
        &self,
        filter: &KeyspaceKeyFilter,
        page: &PageRequest,
    ) -> Result<Page<KeyspaceKey>>;
    /// Writes a key's name, owner, meta, permissions, expiry, revocation, suspension and named
    /// limits, and records the change in the change log. Never its credits (see
    /// [`Self::set_credits`]); revocation is never undone.
    async fn update_keyspace_key(&self, key: &KeyspaceKey) -> Result<()>;
    /// Replaces a key's credits (`None`: unlimited), recording the change.
    async fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<()>;
    /// Spends `cost` of key `id`'s credits at `now` in one atomic step: refills first when a
    /// boundary passed since the last refill, then spends only if `cost` is left. A key without
    /// credits spends nothing and answers `spent` with `u64::MAX` remaining;
    /// [`Error::NotFound`] for an unknown key.
    async fn spend_credits(&self, id: KeyId, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend>;
}

/// Checks a permission name a key space declares or a key holds: `resource:action`,
/// `resource:*` or a single word, as in [permission queries](crate::permission_query).
pub fn check_permission_name(name: &str) -> Result<()> {
    crate::permission_query::PermissionQuery::parse(name)
        .ok()
        .and_then(|q| q.atoms().first().map(|a| a.as_str() == name))
        .filter(|single| *single)
        .map(|_| ())
        .ok_or(Error::InvalidInput {
            field: "permissions",
            reason: "a permission is `resource:action`, `resource:*` or one word, in lowercase \
                     letters, digits, `_`, `-` and `.`",
        })
}

/// Checks a key space's declared permissions: each a permission name, no repeats, at most
/// [`MAX_KEYSPACE_PERMISSIONS`].
pub fn check_vocabulary(names: &[String]) -> Result<()> {
    if names.len() > MAX_KEYSPACE_PERMISSIONS {
        return Err(Error::InvalidInput {
            field: "permissions",
            reason: "a key space declares at most 1000 permissions",
        });
    }
    let mut seen = std::collections::HashSet::new();
    for n in names {
        check_permission_name(n)?;
        if !seen.insert(n.as_str()) {
            return Err(Error::InvalidInput {
                field: "permissions",
                reason: "a permission is declared twice",
            });
        }
    }
    Ok(())
}

/// Checks a key's named limits: at most [`MAX_NAMED_LIMITS`], names 1..=64 bytes of letters,
/// digits, `_`, `-`, `.` and `:` and unique, limits ≥ 1, windows 1 s..=366 days.
pub fn check_named_limits(limits: &[NamedLimit]) -> Result<()> {
    let bad = |reason| Error::InvalidInput {
        field: "ratelimits",
        reason,
    };
    if limits.len() > MAX_NAMED_LIMITS {
        return Err(bad("a key has at most 16 named limits"));
    }
    for (i, l) in limits.iter().enumerate() {
        let name_ok = !l.name.is_empty()
            && l.name.len() <= MAX_LIMIT_NAME_LEN
            && l.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !name_ok {
            return Err(bad(
                "a limit's name is 1 to 64 letters, digits, `_`, `-`, `.` or `:`",
            ));
        }
        if limits[..i].iter().any(|o| o.name == l.name) {
            return Err(bad("two limits have the same name"));
        }
        if l.limit == 0 || l.limit > MAX_CREDITS {
            return Err(bad("a limit is between 1 and 1000000000000"));
        }
        if l.duration_seconds == 0 || l.duration_seconds > MAX_LIMIT_SECONDS {
            return Err(bad("durationSeconds is between 1 and 31622400 (366 days)"));
        }
    }
    Ok(())
}

/// Checks credits as given at mint or by a change: `remaining` and a refill's `amount` at most
/// [`MAX_CREDITS`], a refill's amount at least 1.
pub fn check_credits(credits: &Credits) -> Result<()> {
    let bad = |reason| Error::InvalidInput {
        field: "credits",
        reason,
    };
    if credits.remaining > MAX_CREDITS {
        return Err(bad("remaining is at most 1000000000000"));
    }
    if let Some(r) = credits.refill {
        if r.amount == 0 || r.amount > MAX_CREDITS {
            return Err(bad("a refill's amount is between 1 and 1000000000000"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn intervals_start_at_utc_midnight_and_the_first_of_the_month() {
        let now = at("2026-03-31T23:59:59.999Z");
        assert_eq!(
            RefillInterval::Day.start_of(now),
            at("2026-03-31T00:00:00Z")
        );
        assert_eq!(
            RefillInterval::Day.next_after(now),
            at("2026-04-01T00:00:00Z")
        );
        assert_eq!(
            RefillInterval::Month.start_of(now),
            at("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            RefillInterval::Month.next_after(now),
            at("2026-04-01T00:00:00Z")
        );
        let dec = at("2026-12-15T10:00:00Z");
        assert_eq!(
            RefillInterval::Month.next_after(dec),
            at("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn credits_refill_at_the_boundary_and_not_before() {
        let minted = at("2026-05-14T10:00:00Z");
        let refill = Refill {
            amount: 100,
            interval: RefillInterval::Day,
        };
        let mut c = Credits::new(3, Some(refill), minted);
        c.remaining = 0;
        assert_eq!(c.at(at("2026-05-14T23:59:59.999Z")).0, 0);
        let (left, refilled) = c.at(at("2026-05-15T00:00:00Z"));
        assert_eq!(left, 100);
        assert_eq!(refilled, Some(at("2026-05-15T00:00:00Z")));
    }

    #[test]
    fn a_space_declares_its_names_and_wildcards_over_its_resources() {
        let ks = Keyspace {
            id: KeyspaceId::new(),
            organization_id: OrganizationId::new(),
            name: "api".into(),
            prefix: KeyspaceTag::new("acme").unwrap_or_else(|_| unreachable!()),
            permissions: vec!["invoices:read".into(), "admin".into()],
            created_by: UserId::SERVICE,
            created_at: Utc::now(),
        };
        assert!(ks.declares("invoices:read"));
        assert!(ks.declares("invoices:*"));
        assert!(ks.declares("admin"));
        assert!(!ks.declares("invoices:write"));
        assert!(!ks.declares("refunds:*"));
        assert!(check_permission_name("invoices:read").is_ok());
        assert!(check_permission_name("admin").is_ok());
        assert!(check_permission_name("a AND b").is_err());
        assert!(check_permission_name("Invoices").is_err());
    }
}
