//! [`Keyspaces`]: minting and changing key space keys, and verifying them with a cache.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyStatus, KeyspaceStore, NamedLimit,
    check_credits, check_named_limits, check_permission_name, check_vocabulary,
};
use crate::domain::{KeyId, Meta, OrganizationId, UserId};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::{KeyHash, KeyHasher};
use crate::keyspace_token::{
    KeyspaceTag, MAX_TAG_LEN, MIN_TAG_LEN, generate_keyspace_token, parse_keyspace_token, token_len,
};
use crate::manager::{validate_meta, validate_name, validate_owner};
use crate::permission_query::PermissionQuery;
use crate::token::Environment;
use align_core::Secret;

/// Token hashes are uniform already: the tables use their first eight bytes as they are.
type ByHash = BuildHasherDefault<crate::verifier::PassThrough>;

/// The most permission queries [`Keyspaces::query`] keeps parsed; past it the cache starts
/// over.
const QUERY_CACHE_CAPACITY: usize = 1024;

/// How many fresh tokens to try when a generated prefix is already taken.
const PREFIX_ATTEMPTS: usize = 8;
/// The most cached keys; past it the cache starts over (the store answers the misses).
const CACHE_CAPACITY: usize = 1_000_000;
/// The most remembered unknown tokens (well-formed, valid checksum, no key); past it the set
/// starts over.
const UNKNOWN_CAPACITY: usize = 100_000;

/// What a verification answered (DESIGN §12), as `code` in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    /// Every check passed; the costs were spent.
    Valid,
    /// Malformed, mistyped, unknown, or not the caller's to see.
    NotFound,
    /// Revoked (final).
    Revoked,
    /// Past its expiry (final).
    Expired,
    /// Suspended until resumed.
    Suspended,
    /// A named limit has too little left in its window.
    RateLimited,
    /// Too few credits left.
    UsageExceeded,
    /// The key's permissions do not satisfy the query.
    InsufficientPermissions,
}

impl VerifyCode {
    /// Every code, in the order the checks run.
    pub const ALL: [Self; 8] = [
        Self::Valid,
        Self::NotFound,
        Self::Revoked,
        Self::Expired,
        Self::Suspended,
        Self::InsufficientPermissions,
        Self::RateLimited,
        Self::UsageExceeded,
    ];

    /// The code as the API writes it (`VALID`, `NOT_FOUND`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::Suspended => "SUSPENDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
        }
    }
}

/// One named limit to spend on, and how much.
#[derive(Debug, Clone, Copy)]
pub struct LimitCheck<'a> {
    /// The limit, as the key carries it.
    pub limit: &'a NamedLimit,
    /// What this verification spends (0: look only).
    pub cost: u64,
}

/// Where one named limit stands after a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitState {
    /// The limit's name.
    pub name: String,
    /// Its limit per window.
    pub limit: u64,
    /// What is left in the current window.
    pub remaining: u64,
    /// Whole seconds until the current window ends (when `remaining` is back at `limit`).
    pub reset: u64,
}

/// What a [`NamedLimiter`] decided for all of a key's limits at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsOutcome {
    /// Whether every limit admitted its cost; when not, none was spent.
    pub allowed: bool,
    /// Each limit, in the order asked.
    pub states: Vec<LimitState>,
}

/// Counts named limits: in memory for one instance, in a shared store (Redis) for several.
/// `check` is all or nothing: every limit's cost is spent, or none.
#[async_trait]
pub trait NamedLimiter: Send + Sync + 'static {
    /// Spends `checks` on key `key`'s windows, all or none.
    async fn check(&self, key: KeyId, checks: &[LimitCheck<'_>]) -> Result<LimitsOutcome>;
}

/// What [`Keyspaces::verify`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The presented token.
    pub token: &'a str,
    /// The caller's organisation: another organisation's keys are `NOT_FOUND`.
    pub organization_id: OrganizationId,
    /// `Some(Sandbox)` for a sandbox caller, which sees only sandbox keys.
    pub environment: Option<Environment>,
    /// What the key must be allowed to do.
    pub permissions: Option<&'a PermissionQuery>,
    /// Credits to spend (default 1) when the key has credits.
    pub credit_cost: Option<u64>,
    /// Costs for named limits by name (default 1 for every limit of the key not named here).
    pub limit_costs: &'a [(&'a str, u64)],
    /// The instant of the verification.
    pub now: DateTime<Utc>,
}

/// What [`Keyspaces::verify`] found.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// The answer.
    pub code: VerifyCode,
    /// The key, unless `NOT_FOUND`.
    pub key: Option<Arc<KeyspaceKey>>,
    /// The credits left, for a key with credits.
    pub credits_remaining: Option<u64>,
    /// The key's named limits as they stand.
    pub ratelimits: Vec<LimitState>,
}

impl VerifyOutcome {
    fn bare(code: VerifyCode, key: Option<Arc<KeyspaceKey>>) -> Self {
        Self {
            code,
            key,
            credits_remaining: None,
            ratelimits: Vec::new(),
        }
    }

    /// Whether the key verified.
    pub fn valid(&self) -> bool {
        self.code == VerifyCode::Valid
    }
}

/// What to mint in a key space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyspaceKey {
    /// Human name.
    pub name: String,
    /// Live or sandbox.
    pub environment: Environment,
    /// The organisation's customer id.
    pub owner_id: Option<String>,
    /// The organisation's data.
    pub meta: Option<Meta>,
    /// Permissions, each declared by the key space.
    pub permissions: Vec<String>,
    /// Expiry, in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Credits, if limited by them.
    pub credits: Option<Credits>,
    /// Named limits.
    pub ratelimits: Vec<NamedLimit>,
    /// On whose authority.
    pub created_by: UserId,
}

/// A freshly minted key space key: the token is shown once.
#[derive(Debug)]
pub struct MintedKeyspaceKey {
    /// The stored key.
    pub key: KeyspaceKey,
    /// The token (never stored).
    pub token: Secret,
}

/// Changes to a key space key; `None` leaves a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyspaceKeyChanges {
    /// New name.
    pub name: Option<String>,
    /// New owner.
    pub owner_id: Option<Option<String>>,
    /// New meta.
    pub meta: Option<Option<Meta>>,
    /// New permissions (each declared by the key space).
    pub permissions: Option<Vec<String>>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New credits (`Some(None)`: unlimited).
    pub credits: Option<Option<Credits>>,
    /// New named limits.
    pub ratelimits: Option<Vec<NamedLimit>>,
}

impl KeyspaceKeyChanges {
    /// The API names of the fields this change sets, for an audit record.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("ownerId", self.owner_id.is_some()),
            ("meta", self.meta.is_some()),
            ("permissions", self.permissions.is_some()),
            ("expiresAt", self.expires_at.is_some()),
            ("credits", self.credits.is_some()),
            ("ratelimits", self.ratelimits.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}

/// Key spaces and their keys: minting, changes and verification, with an in-process cache of
/// keys by token hash that every change made here reaches at once and that
/// [`Keyspaces::invalidate`] (the store's change log, for changes other processes make) keeps
/// in step.
///
/// Who may do what is the caller's to judge (the reference server asks its one policy for
/// `keyspaces:write`, `keyspaces:read` and `keys:verify`).
pub struct Keyspaces {
    store: Arc<dyn KeyspaceStore>,
    hasher: Arc<dyn KeyHasher>,
    limiter: Arc<dyn NamedLimiter>,
    cache: RwLock<HashMap<KeyHash, Arc<KeyspaceKey>, ByHash>>,
    ids: Mutex<HashMap<KeyId, KeyHash>>,
    /// Hashes of well-formed tokens no key has. A token is random and minted once, so one that
    /// was unknown when presented stays unknown: remembering it keeps a flood of made-up tokens
    /// with valid checksums off the store.
    unknown: Mutex<HashSet<KeyHash, ByHash>>,
    /// Permission queries as parsed, by their text: a gateway asks the same few.
    queries: Mutex<HashMap<Box<str>, Arc<PermissionQuery>>>,
}

impl std::fmt::Debug for Keyspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspaces")
            .field("cached", &self.cached_keys())
            .finish_non_exhaustive()
    }
}

impl Keyspaces {
    /// Key spaces over `store`, hashing tokens with `hasher` and counting named limits with
    /// `limiter`.
    pub fn new(
        store: Arc<dyn KeyspaceStore>,
        hasher: Arc<dyn KeyHasher>,
        limiter: Arc<dyn NamedLimiter>,
    ) -> Self {
        Self {
            store,
            hasher,
            limiter,
            cache: RwLock::default(),
            ids: Mutex::default(),
            unknown: Mutex::default(),
            queries: Mutex::default(),
        }
    }

    /// `text` parsed as a [`PermissionQuery`], from a small cache of the queries asked
    /// before (a gateway asks the same few on every request); a bad query is the parser's
    /// error, never cached.
    pub fn query(&self, text: &str) -> Result<Arc<PermissionQuery>> {
        if let Some(q) = self
            .queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(text)
        {
            return Ok(Arc::clone(q));
        }
        let parsed = Arc::new(PermissionQuery::parse(text)?);
        let mut queries = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        if queries.len() >= QUERY_CACHE_CAPACITY {
            queries.clear();
        }
        queries.insert(text.into(), Arc::clone(&parsed));
        Ok(parsed)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyspaceStore> {
        &self.store
    }

    /// How many keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Drops key `id` from the cache (a change another process made).
    pub fn invalidate(&self, id: KeyId) {
        let hash = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(hash) = hash {
            self.cache
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&hash);
        }
    }

    /// Empties the cache.
    pub fn clear(&self) {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Creates a key space named `name` with token tag `prefix` and the permission vocabulary
    /// `permissions`, owned by `organization`.
    pub async fn create_keyspace(
        &self,
        organization: OrganizationId,
        name: &str,
        prefix: &str,
        permissions: Vec<String>,
        created_by: UserId,
        now: DateTime<Utc>,
    ) -> Result<Keyspace> {
        validate_name(name)?;
        let prefix = KeyspaceTag::new(prefix)?;
        check_vocabulary(&permissions)?;
        let keyspace = Keyspace {
            id: KeyspaceId::new(),
            organization_id: organization,
            name: name.to_owned(),
            prefix,
            permissions,
            created_by,
            created_at: now,
        };
        self.store.create_keyspace(&keyspace).await?;
        Ok(keyspace)
    }

    /// Renames a key space or replaces its vocabulary. Keys keep the permissions they hold;
    /// new grants are checked against the new vocabulary.
    pub async fn update_keyspace(
        &self,
        mut keyspace: Keyspace,
        name: Option<String>,
        permissions: Option<Vec<String>>,
    ) -> Result<Keyspace> {
        if let Some(name) = name {
            validate_name(&name)?;
            keyspace.name = name;
        }
        if let Some(permissions) = permissions {
            check_vocabulary(&permissions)?;
            keyspace.permissions = permissions;
        }
        self.store.update_keyspace(&keyspace).await?;
        Ok(keyspace)
    }

    /// Mints a key in `keyspace`.
    pub async fn mint(
        &self,
        keyspace: &Keyspace,
        new: NewKeyspaceKey,
        now: DateTime<Utc>,
    ) -> Result<MintedKeyspaceKey> {
        validate_name(&new.name)?;
        validate_owner(new.owner_id.as_deref())?;
        validate_meta(new.meta.as_ref())?;
        check_grants(keyspace, &new.permissions)?;
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::InvalidInput {
                field: "expiresAt",
                reason: "must be in the future",
            });
        }
        if let Some(c) = &new.credits {
            check_credits(c)?;
        }
        check_named_limits(&new.ratelimits)?;
        self.mint_inner(keyspace, new, None, now).await
    }

    async fn mint_inner(
        &self,
        keyspace: &Keyspace,
        new: NewKeyspaceKey,
        rotated_from: Option<KeyId>,
        now: DateTime<Utc>,
    ) -> Result<MintedKeyspaceKey> {
        let mut key = KeyspaceKey {
            id: KeyId::new(),
            keyspace_id: keyspace.id,
            organization_id: keyspace.organization_id,
            name: new.name,
            prefix: String::new(),
            environment: new.environment,
            owner_id: new.owner_id,
            meta: new.meta,
            permissions: new.permissions,
            created_by: new.created_by,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            suspended_at: None,
            rotated_from,
            credits: new.credits,
            ratelimits: new.ratelimits,
        };
        for _ in 0..PREFIX_ATTEMPTS {
            let minted = generate_keyspace_token(&keyspace.prefix)?;
            key.prefix = minted.prefix;
            let hash = self.hasher.hash(minted.token.expose());
            match self.store.insert_keyspace_key(&key, &hash).await {
                Ok(()) => {
                    return Ok(MintedKeyspaceKey {
                        key,
                        token: minted.token,
                    });
                }
                Err(Error::PrefixTaken) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::PrefixTaken)
    }

    /// A key by id, with its credits as the store counts them.
    pub async fn get(&self, id: KeyId) -> Result<Option<KeyspaceKey>> {
        self.store.get_keyspace_key(id).await
    }

    /// The key, unless it is revoked or expired (those are final: [`Error::KeyNotActive`]).
    async fn load_changeable(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyspaceKey> {
        let key = self
            .store
            .get_keyspace_key(id)
            .await?
            .ok_or(Error::NotFound(ObjectKind::ApiKey))?;
        match key.status(now) {
            KeyspaceKeyStatus::Revoked | KeyspaceKeyStatus::Expired => Err(Error::KeyNotActive),
            _ => Ok(key),
        }
    }

    async fn save(&self, key: KeyspaceKey) -> Result<KeyspaceKey> {
        self.store.update_keyspace_key(&key).await?;
        self.invalidate(key.id);
        Ok(key)
    }

    /// Applies `changes` to key `id` of `keyspace`.
    pub async fn change(
        &self,
        keyspace: &Keyspace,
        id: KeyId,
        changes: KeyspaceKeyChanges,
        now: DateTime<Utc>,
    ) -> Result<KeyspaceKey> {
        let mut key = self.load_changeable(id, now).await?;
        if let Some(name) = changes.name {
            validate_name(&name)?;
            key.name = name;
        }
        if let Some(owner) = changes.owner_id {
            validate_owner(owner.as_deref())?;
            key.owner_id = owner;
        }
        if let Some(meta) = changes.meta {
            validate_meta(meta.as_ref())?;
            key.meta = meta;
        }
        if let Some(permissions) = changes.permissions {
            check_grants(keyspace, &permissions)?;
            key.permissions = permissions;
        }
        if let Some(expires) = changes.expires_at {
            if expires.is_some_and(|e| e <= now) {
                return Err(Error::InvalidInput {
                    field: "expiresAt",
                    reason: "must be in the future",
                });
            }
            key.expires_at = expires;
        }
        if let Some(limits) = changes.ratelimits {
            check_named_limits(&limits)?;
            key.ratelimits = limits;
        }
        if let Some(credits) = changes.credits {
            if let Some(c) = &credits {
                check_credits(c)?;
            }
            let credits = credits.map(|c| Credits::new(c.remaining, c.refill, now));
            self.store.set_credits(id, credits.as_ref()).await?;
            key.credits = credits;
        }
        self.save(key).await
    }

    /// Revokes key `id` (final; revoking a revoked key changes nothing).
    pub async fn revoke(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyspaceKey> {
        let mut key = self
            .store
            .get_keyspace_key(id)
            .await?
            .ok_or(Error::NotFound(ObjectKind::ApiKey))?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(now);
            key = self.save(key).await?;
        }
        Ok(key)
    }

    /// Suspends key `id` until resumed.
    pub async fn suspend(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyspaceKey> {
        let mut key = self.load_changeable(id, now).await?;
        if key.suspended_at.is_none() {
            key.suspended_at = Some(now);
            key = self.save(key).await?;
        }
        Ok(key)
    }

    /// Lifts key `id`'s suspension (a revoked or expired key stays final).
    pub async fn resume(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyspaceKey> {
        let mut key = self.load_changeable(id, now).await?;
        if key.suspended_at.is_some() {
            key.suspended_at = None;
            key = self.save(key).await?;
        }
        Ok(key)
    }

    /// Mints a successor of key `id` with its name, environment, owner, meta, permissions,
    /// expiry, named limits and credits (the credits left now, and the refill), and lets the
    /// old key work `grace` longer. Returns the successor and the old key.
    pub async fn rotate(
        &self,
        keyspace: &Keyspace,
        id: KeyId,
        grace: Duration,
        created_by: UserId,
        now: DateTime<Utc>,
    ) -> Result<(MintedKeyspaceKey, KeyspaceKey)> {
        let old = self.load_changeable(id, now).await?;
        let grace_end = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|g| now.checked_add_signed(g))
            .ok_or(Error::InvalidInput {
                field: "graceSeconds",
                reason: "too large",
            })?;
        let credits = match old.credits {
            Some(_) => {
                let now_left = self.store.spend_credits(old.id, 0, now).await?;
                old.credits
                    .map(|c| Credits::new(now_left.remaining, c.refill, now))
            }
            None => None,
        };
        let new = NewKeyspaceKey {
            name: old.name.clone(),
            environment: old.environment,
            owner_id: old.owner_id.clone(),
            meta: old.meta.clone(),
            permissions: old.permissions.clone(),
            expires_at: old.expires_at,
            credits,
            ratelimits: old.ratelimits.clone(),
            created_by,
        };
        let successor = self.mint_inner(keyspace, new, Some(old.id), now).await?;
        let mut previous = old;
        previous.expires_at = Some(previous.expires_at.map_or(grace_end, |e| e.min(grace_end)));
        let previous = self.save(previous).await?;
        Ok((successor, previous))
    }

    /// The key `token` names, from the cache or the store; `None` for a malformed token (no
    /// lookup) or an unknown one.
    ///
    /// A token of a possible length is hashed and looked up in the cache first: a cached
    /// key's token needs no parsing (equal hashes mean equal tokens). Anything else is parsed,
    /// its checksum checked, before the store is asked.
    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<KeyspaceKey>>> {
        let possible = (token_len(MIN_TAG_LEN)..=token_len(MAX_TAG_LEN)).contains(&token.len());
        if !possible {
            return Ok(None);
        }
        let hash = self.hasher.hash(token);
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
        {
            return Ok(Some(Arc::clone(hit)));
        }
        if parse_keyspace_token(token).is_err() {
            return Ok(None);
        }
        if self
            .unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&hash)
        {
            return Ok(None);
        }
        let Some(found) = self.store.find_keyspace_key(&hash).await? else {
            let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
            if unknown.len() >= UNKNOWN_CAPACITY {
                unknown.clear();
            }
            unknown.insert(hash);
            return Ok(None);
        };
        let found = Arc::new(found);
        {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
                ids.clear();
            }
            cache.insert(hash, Arc::clone(&found));
            ids.insert(found.id, hash);
        }
        Ok(Some(found))
    }

    /// Verifies a presented key (DESIGN §12): found (in the caller's organisation and
    /// environment), not revoked, expired or suspended, permissions, named limits (every limit
    /// of the key, each spending its cost, all or none), credits. A step that refuses spends
    /// nothing at the later ones.
    pub async fn verify(&self, req: VerifyRequest<'_>) -> Result<VerifyOutcome> {
        let Some(key) = self.lookup(req.token).await? else {
            return Ok(VerifyOutcome::bare(VerifyCode::NotFound, None));
        };
        let visible = key.organization_id == req.organization_id
            && (req.environment != Some(Environment::Sandbox)
                || key.environment == Environment::Sandbox);
        if !visible {
            return Ok(VerifyOutcome::bare(VerifyCode::NotFound, None));
        }
        let refused = match key.status(req.now) {
            KeyspaceKeyStatus::Active => None,
            KeyspaceKeyStatus::Revoked => Some(VerifyCode::Revoked),
            KeyspaceKeyStatus::Expired => Some(VerifyCode::Expired),
            KeyspaceKeyStatus::Suspended => Some(VerifyCode::Suspended),
        };
        if let Some(code) = refused {
            return Ok(VerifyOutcome::bare(code, Some(key)));
        }
        let permitted = req.permissions.is_none_or(|q| q.allows(&key.permissions));
        let limits_cost = |l: &NamedLimit| {
            req.limit_costs
                .iter()
                .find(|(n, _)| *n == l.name)
                .map_or(1, |(_, c)| *c)
        };
        let mut outcome = VerifyOutcome::bare(VerifyCode::Valid, Some(Arc::clone(&key)));
        // Named limits: spent only when the permissions hold (a peek otherwise).
        if !key.ratelimits.is_empty() {
            let checks: Vec<LimitCheck<'_>> = key
                .ratelimits
                .iter()
                .map(|l| LimitCheck {
                    limit: l,
                    cost: if permitted { limits_cost(l) } else { 0 },
                })
                .collect();
            let limits = self.limiter.check(key.id, &checks).await?;
            outcome.ratelimits = limits.states;
            if permitted && !limits.allowed {
                outcome.code = VerifyCode::RateLimited;
            }
        }
        if !permitted {
            outcome.code = VerifyCode::InsufficientPermissions;
        }
        if key.credits.is_some() {
            let cost = if outcome.code == VerifyCode::Valid {
                req.credit_cost.unwrap_or(1)
            } else {
                0
            };
            let spend = self.store.spend_credits(key.id, cost, req.now).await?;
            outcome.credits_remaining = Some(spend.remaining);
            if !spend.spent {
                outcome.code = VerifyCode::UsageExceeded;
            }
        }
        Ok(outcome)
    }
}

/// Checks that every permission of a key is declared by its key space.
fn check_grants(keyspace: &Keyspace, permissions: &[String]) -> Result<()> {
    if permissions.len() > super::MAX_KEYSPACE_PERMISSIONS {
        return Err(Error::InvalidInput {
            field: "permissions",
            reason: "a key holds at most 1000 permissions",
        });
    }
    for p in permissions {
        check_permission_name(p)?;
        if !keyspace.declares(p) {
            return Err(Error::InvalidInput {
                field: "permissions",
                reason: "every permission must be one the key space declares",
            });
        }
    }
    Ok(())
}
