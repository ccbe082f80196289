//! [`KeyManager`]: mint, revoke, suspend, resume and rotate keys, keeping the verifier's
//! cache in step with the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    IpNet, KeyEvent, KeyEventKind, KeyId, KeyRecord, OrganizationId, PermissionSet, Scope, UserId,
};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHasher;
use crate::policy::{Caller, KeySpec, UserCaller};
use crate::secret::Secret;
use crate::store::KeyStore;
use crate::token::{self, Environment};
use crate::verifier::KeyVerifier;

/// How many fresh tokens to try when a generated prefix is already taken.
const PREFIX_ATTEMPTS: usize = 8;
/// Most networks in a key's allow-list.
pub const MAX_ALLOWED_CIDRS: usize = 100;
/// Longest key name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// What to mint. Run it past the policy first ([`KeyManager::mint_as`] does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Human name, 1..=200 characters.
    pub name: String,
    /// Owning organisation.
    pub organization_id: OrganizationId,
    /// Organisation-wide or one project.
    pub scope: Scope,
    /// `None` for every permission the scope allows.
    pub permissions: Option<PermissionSet>,
    /// Live or sandbox.
    pub environment: Environment,
    /// The user on whose authority the key exists.
    pub created_by: UserId,
    /// Optional expiry, in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute instead of the server default.
    pub rate_limit_per_minute: Option<u32>,
    /// If not empty, the networks the key may be used from.
    pub allowed_cidrs: Vec<IpNet>,
}

impl NewKey {
    /// The policy's view of this key.
    pub fn spec(&self) -> KeySpec {
        KeySpec {
            scope: self.scope,
            permissions: self.permissions,
            environment: self.environment,
        }
    }
}

/// Changes to a key; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// New name.
    pub name: Option<String>,
    /// New expiry, or `Some(None)` for none.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New per-key rate limit, or `Some(None)` for the server default.
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// New allow-list (empty: any network).
    pub allowed_cidrs: Option<Vec<IpNet>>,
}

/// A key just minted: the token is shown once, the record is what is stored.
#[derive(Debug, Clone)]
pub struct MintedKey {
    /// The whole token. Show it to its owner once.
    pub token: Secret,
    /// The stored record.
    pub record: KeyRecord,
}

/// The result of a rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The successor, with its token (shown once).
    pub successor: MintedKey,
    /// The old key, now expiring at the end of the grace period.
    pub previous: KeyRecord,
}

/// Mints and manages keys over a [`KeyStore`], keeping a [`KeyVerifier`] current.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use align_keys::*;
/// let store = Arc::new(MemoryKeyStore::new());
/// let keys = KeyManager::new(store, Arc::new(Sha256Hasher));
/// let new = NewKey {
///     name: "ci-read".into(),
///     organization_id: OrganizationId::new(),
///     scope: Scope::Organization,
///     permissions: None,
///     environment: Environment::Live,
///     created_by: UserId::new(),
///     expires_at: None,
///     rate_limit_per_minute: None,
///     allowed_cidrs: vec![],
/// };
/// let minted = keys.mint(new, chrono::Utc::now()).await.unwrap();
/// let seen = keys.verifier().verify(minted.token.expose(), chrono::Utc::now()).await.unwrap();
/// assert!(matches!(seen, Verification::Valid(_)));
/// keys.revoke(minted.record.id, chrono::Utc::now()).await.unwrap();
/// let seen = keys.verifier().verify(minted.token.expose(), chrono::Utc::now()).await.unwrap();
/// assert!(matches!(seen, Verification::Revoked(_)));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct KeyManager {
    verifier: Arc<KeyVerifier>,
}

impl KeyManager {
    /// A manager with a fresh default [`KeyVerifier`].
    pub fn new(store: Arc<dyn KeyStore>, hasher: Arc<dyn KeyHasher>) -> Self {
        Self::with_verifier(Arc::new(KeyVerifier::new(store, hasher)))
    }

    /// A manager sharing an existing verifier (and so its store, hasher and cache).
    pub fn with_verifier(verifier: Arc<KeyVerifier>) -> Self {
        Self { verifier }
    }

    /// The verifier whose cache this manager keeps current.
    pub fn verifier(&self) -> &Arc<KeyVerifier> {
        &self.verifier
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        self.verifier.store()
    }

    /// Mints a key without a policy check: for trusted callers (bootstrap, operator CLI).
    /// Retries with a fresh token if the random prefix is already taken.
    pub async fn mint(&self, new: NewKey, now: DateTime<Utc>) -> Result<MintedKey> {
        self.mint_inner(new, None, now).await
    }

    /// Mints a key on behalf of `caller` after checking that it is no broader than the caller
    /// (scope, permissions, environment) and that the creator's role allows it. The new key's
    /// organisation and creator are the caller's.
    pub async fn mint_as(
        &self,
        caller: &Caller<'_>,
        mut new: NewKey,
        now: DateTime<Utc>,
    ) -> Result<MintedKey> {
        new.organization_id = caller.key.organization_id;
        new.created_by = caller.key.created_by;
        caller.check_mint(&new.spec()).map_err(Error::Forbidden)?;
        self.mint_inner(new, None, now).await
    }

    /// Mints a key on behalf of a signed-in user (a console) after checking that their
    /// current role allows it ([`crate::policy::check_user_mint`]). The new key's
    /// organisation and creator are the user's.
    pub async fn mint_as_user(
        &self,
        caller: &UserCaller<'_>,
        mut new: NewKey,
        now: DateTime<Utc>,
    ) -> Result<MintedKey> {
        new.organization_id = caller.user.organization_id;
        new.created_by = caller.user.id;
        caller.check_mint(&new.spec()).map_err(Error::Forbidden)?;
        self.mint_inner(new, None, now).await
    }

    async fn mint_inner(
        &self,
        new: NewKey,
        rotated_from: Option<KeyId>,
        now: DateTime<Utc>,
    ) -> Result<MintedKey> {
        validate_name(&new.name)?;
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::InvalidInput {
                field: "expiresAt",
                reason: "must be in the future",
            });
        }
        let mut record = KeyRecord {
            id: KeyId::new(),
            name: new.name,
            prefix: String::new(),
            environment: new.environment,
            organization_id: new.organization_id,
            scope: new.scope,
            permissions: new.permissions,
            created_by: new.created_by,
            created_at: now,
            last_used_at: None,
            expires_at: new.expires_at,
            revoked_at: None,
            suspended_at: None,
            rotated_from,
            rate_limit_per_minute: new.rate_limit_per_minute,
            allowed_cidrs: new.allowed_cidrs,
        };
        for _ in 0..PREFIX_ATTEMPTS {
            let minted = token::generate(new.environment)?;
            let hash = self.verifier.hasher().hash(minted.token.expose());
            record.prefix = minted.prefix;
            let kind = if rotated_from.is_some() {
                KeyEventKind::Rotated
            } else {
                KeyEventKind::Created
            };
            let event = KeyEvent { kind, at: now };
            match self
                .store()
                .insert_key_with_event(&record, &hash, event)
                .await
            {
                Ok(()) => {
                    self.verifier.forget_unknown(&hash);
                    return Ok(MintedKey {
                        token: minted.token,
                        record,
                    });
                }
                Err(Error::PrefixTaken) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::PrefixTaken)
    }

    async fn load(&self, id: KeyId) -> Result<KeyRecord> {
        self.store()
            .get_key(id)
            .await?
            .ok_or(Error::NotFound(ObjectKind::ApiKey))
    }

    /// Writes `record`, with `event` when something happened worth an event.
    async fn save(&self, record: KeyRecord, event: Option<KeyEvent>) -> Result<KeyRecord> {
        match event {
            Some(event) => self.store().update_key_with_event(&record, event).await?,
            None => self.store().update_key(&record).await?,
        }
        self.verifier.refresh(&record);
        Ok(record)
    }

    /// Revokes a key for good; idempotent (a second call keeps the first time). The next
    /// verification of its token answers [`crate::Verification::Revoked`].
    pub async fn revoke(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyRecord> {
        let mut record = self.load(id).await?;
        let event = record.revoked_at.is_none().then_some(KeyEvent {
            kind: KeyEventKind::Revoked,
            at: now,
        });
        record.revoked_at.get_or_insert(now);
        self.save(record, event).await
    }

    /// Suspends a key until [`Self::resume`]; idempotent.
    pub async fn suspend(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyRecord> {
        let mut record = self.load(id).await?;
        let event = record.suspended_at.is_none().then_some(KeyEvent {
            kind: KeyEventKind::Suspended,
            at: now,
        });
        record.suspended_at.get_or_insert(now);
        self.save(record, event).await
    }

    /// Lifts a suspension; idempotent. A revoked key stays revoked.
    pub async fn resume(&self, id: KeyId) -> Result<KeyRecord> {
        let mut record = self.load(id).await?;
        let event = record.suspended_at.is_some().then(|| KeyEvent {
            kind: KeyEventKind::Resumed,
            at: Utc::now(),
        });
        record.suspended_at = None;
        self.save(record, event).await
    }

    /// Applies `changes` (name, expiry, rate-limit override, allowed networks) to a key.
    pub async fn update(&self, id: KeyId, changes: KeyChanges) -> Result<KeyRecord> {
        let mut record = self.load(id).await?;
        if let Some(name) = changes.name {
            validate_name(&name)?;
            record.name = name;
        }
        if let Some(expiry) = changes.expires_at {
            record.expires_at = expiry;
        }
        if let Some(limit) = changes.rate_limit_per_minute {
            if limit == Some(0) {
                return Err(Error::InvalidInput {
                    field: "rateLimitPerMinute",
                    reason: "must be at least 1",
                });
            }
            record.rate_limit_per_minute = limit;
        }
        if let Some(nets) = changes.allowed_cidrs {
            if nets.len() > MAX_ALLOWED_CIDRS {
                return Err(Error::InvalidInput {
                    field: "allowedCidrs",
                    reason: "at most 100 networks",
                });
            }
            record.allowed_cidrs = nets;
        }
        let event = KeyEvent {
            kind: KeyEventKind::Updated,
            at: Utc::now(),
        };
        self.save(record, Some(event)).await
    }

    /// Mints a successor with the same name, scope, permissions, environment, creator and
    /// expiry, and lets the old key work for `grace` more (zero-downtime rotation).
    pub async fn rotate(&self, id: KeyId, grace: Duration, now: DateTime<Utc>) -> Result<Rotation> {
        let old = self.load(id).await?;
        if old.status_at(now) == crate::domain::KeyStatus::Revoked {
            return Err(Error::InvalidInput {
                field: "id",
                reason: "a revoked key cannot be rotated",
            });
        }
        let grace = chrono::Duration::from_std(grace).map_err(|_| Error::InvalidInput {
            field: "graceSeconds",
            reason: "too large",
        })?;
        let grace_end = now.checked_add_signed(grace).ok_or(Error::InvalidInput {
            field: "graceSeconds",
            reason: "too large",
        })?;
        let new = NewKey {
            name: old.name.clone(),
            organization_id: old.organization_id,
            scope: old.scope,
            permissions: old.permissions,
            environment: old.environment,
            created_by: old.created_by,
            expires_at: old.expires_at.filter(|e| *e > now),
            rate_limit_per_minute: old.rate_limit_per_minute,
            allowed_cidrs: old.allowed_cidrs.clone(),
        };
        let successor = self.mint_inner(new, Some(old.id), now).await?;
        let mut previous = old;
        previous.expires_at = Some(previous.expires_at.map_or(grace_end, |e| e.min(grace_end)));
        let previous = self.save(previous, None).await?;
        Ok(Rotation {
            successor,
            previous,
        })
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidInput {
            field: "name",
            reason: "must not be empty",
        });
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::InvalidInput {
            field: "name",
            reason: "must be at most 200 characters",
        });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            field: "name",
            reason: "must not contain control characters",
        });
    }
    Ok(())
}
