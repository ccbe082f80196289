//! [`KeyManager`]: mint, revoke, suspend, resume and rotate keys, keeping the verifier's
//! cache in step with the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    Attachment, IpNet, KeyEvent, KeyEventKind, KeyId, KeyRecord, KeyStatus, MAX_META_BYTES,
    MAX_OWNER_ID_LEN, Meta, OrganizationId, PermissionSet, Scope, UserId,
};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHasher;
use crate::judge::{Grant, Producer, Unset, judge};
use crate::policy::KeySpec;
use crate::store::KeyStore;
use crate::token::{self, Environment};
use crate::verifier::KeyVerifier;
use align_core::Secret;

/// How many fresh tokens to try when a generated prefix is already taken.
const PREFIX_ATTEMPTS: usize = 8;
/// Most networks in a key's allow-list.
pub const MAX_ALLOWED_CIDRS: usize = 100;
/// The most characters a key's name may have (the one rule for names, [`align_core::name`]).
pub use align_core::name::MAX_NAME_LEN;

/// What to mint. Run it past the policy first ([`KeyManager::mint_as`] does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Human name, 1..=200 characters.
    pub name: String,
    /// Owning organisation.
    pub organization_id: OrganizationId,
    /// Organisation-wide or one project.
    pub scope: Scope,
    /// `None` for every permission the scope allows; otherwise a set of the store's
    /// vocabulary ([`KeyLookup::vocabulary`](crate::store::KeyLookup::vocabulary), e.g. from [`crate::Vocabulary::parse`]).
    pub permissions: Option<PermissionSet>,
    /// Live or sandbox.
    pub environment: Environment,
    /// The user on whose authority the key exists; [`UserId::SERVICE`] for a key the
    /// embedding service mints on no user's authority.
    pub created_by: UserId,
    /// Optional expiry, in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute instead of the server default.
    pub rate_limit_per_minute: Option<u32>,
    /// If not empty, the networks the key may be used from.
    pub allowed_cidrs: Vec<IpNet>,
    /// The embedder's id for the key's owner, at most 256 characters.
    pub owner_id: Option<String>,
    /// The embedder's data about the key, at most 4 KiB serialized.
    pub meta: Option<Meta>,
}

impl NewKey {
    /// A live, organisation-scoped key named `name` with every permission, minted by the
    /// embedding service ([`UserId::SERVICE`]) with no expiry, limit, networks, owner or
    /// meta: set the fields to narrow it.
    ///
    /// ```
    /// use align_keys::{NewKey, OrganizationId, Vocabulary};
    /// const API: Vocabulary = Vocabulary::new(&["invoices:read", "invoices:write"]);
    /// let mut new = NewKey::new("acme-sync", OrganizationId::new());
    /// new.permissions = Some(API.parse(["invoices:read"]).unwrap());
    /// new.owner_id = Some("cus_8812".into());
    /// ```
    pub fn new(name: impl Into<String>, organization_id: OrganizationId) -> Self {
        Self {
            name: name.into(),
            organization_id,
            scope: Scope::Organization,
            permissions: None,
            environment: Environment::Live,
            created_by: UserId::SERVICE,
            expires_at: None,
            rate_limit_per_minute: None,
            allowed_cidrs: Vec::new(),
            owner_id: None,
            meta: None,
        }
    }

    /// The policy's view of this key.
    pub fn spec(&self) -> KeySpec {
        KeySpec {
            scope: self.scope,
            permissions: self.permissions,
            environment: self.environment,
        }
    }

    /// Every power the key would hold, as the judge sees it.
    pub fn grant(&self) -> Grant {
        Grant {
            scope: self.scope,
            permissions: self.permissions,
            environment: self.environment,
            expires_at: self.expires_at,
            rate_limit_per_minute: self.rate_limit_per_minute,
            allowed_cidrs: self.allowed_cidrs.clone(),
        }
    }

    fn set_grant(&mut self, grant: Grant) {
        self.expires_at = grant.expires_at;
        self.rate_limit_per_minute = grant.rate_limit_per_minute;
        self.allowed_cidrs = grant.allowed_cidrs;
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
    /// New owner id, or `Some(None)` for none.
    pub owner_id: Option<Option<String>>,
    /// New meta, or `Some(None)` for none.
    pub meta: Option<Option<Meta>>,
}

impl KeyChanges {
    /// The API's names of the fields these changes set (`name`, `expiresAt`,
    /// `rateLimitPerMinute`, `allowedCidrs`, `ownerId`, `meta`), for the audit record of an
    /// update; empty when nothing would change.
    pub fn changed_fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("expiresAt", self.expires_at.is_some()),
            ("rateLimitPerMinute", self.rate_limit_per_minute.is_some()),
            ("allowedCidrs", self.allowed_cidrs.is_some()),
            ("ownerId", self.owner_id.is_some()),
            ("meta", self.meta.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect()
    }
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
///     owner_id: None,
///     meta: None,
/// };
/// let minted = keys.mint(new, chrono::Utc::now()).await.unwrap();
/// let seen = keys.verifier().verify(minted.token.expose(), chrono::Utc::now()).await.unwrap();
/// assert!(matches!(seen, Verification::Valid(_)));
/// keys.revoke(minted.record.id, chrono::Utc::now()).await.unwrap();
/// let seen = keys.verifier().verify(minted.token.expose(), chrono::Utc::now()).await.unwrap();
/// assert!(matches!(seen, Verification::Revoked(_)));
/// # });
/// ```
#[derive(Clone)]
pub struct KeyManager {
    store: Arc<dyn KeyStore>,
    verifier: Arc<KeyVerifier>,
    default_rate_limit: u32,
    /// Handed to the store's event hook with every event this manager's changes make.
    attachment: Option<Attachment>,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("verifier", &self.verifier)
            .field("default_rate_limit", &self.default_rate_limit)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

/// The rate limit of a key without its own, unless [`KeyManager::with_default_rate_limit`]
/// says otherwise (DESIGN §4).
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 600;

impl KeyManager {
    /// A manager with a fresh default [`KeyVerifier`].
    pub fn new(store: Arc<dyn KeyStore>, hasher: Arc<dyn KeyHasher>) -> Self {
        let verifier = KeyVerifier::new(Arc::clone(&store).into_lookup(), hasher);
        Self::with_verifier(store, Arc::new(verifier))
    }

    /// A manager over `store` sharing an existing verifier (and so its hasher and cache). The
    /// verifier must look keys up in the same `store` (built from
    /// [`KeyStore::into_lookup`]), or its cache would not see this manager's changes.
    pub fn with_verifier(store: Arc<dyn KeyStore>, verifier: Arc<KeyVerifier>) -> Self {
        Self {
            store,
            verifier,
            default_rate_limit: DEFAULT_RATE_LIMIT_PER_MINUTE,
            attachment: None,
        }
    }

    /// This manager (sharing its verifier and settings) for one change that hands
    /// `attachment` to the store's event hook, inside the change's transaction, with its event
    /// ([`KeyEvent::attachment`]). A change without an event (an idempotent repeat, the old
    /// key's shortened expiry in a rotation) does not reach the hook; the rotation's event is
    /// the successor's insert. Use a fresh one per change: every event the returned manager
    /// makes carries the same attachment.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use align_keys::*;
    /// let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
    /// let new = NewKey {
    ///     name: "ci".into(),
    ///     organization_id: OrganizationId::new(),
    ///     scope: Scope::Organization,
    ///     permissions: None,
    ///     environment: Environment::Live,
    ///     created_by: UserId::new(),
    ///     expires_at: None,
    ///     rate_limit_per_minute: None,
    ///     allowed_cidrs: vec![],
    ///     owner_id: None,
    ///     meta: None,
    /// };
    /// // A store's event hook finds the note in `event.attachment`.
    /// let note = Attachment::new(String::from("request req_1"));
    /// keys.with_attachment(note).mint(new, chrono::Utc::now()).await.unwrap();
    /// # });
    /// ```
    #[must_use]
    pub fn with_attachment(&self, attachment: Attachment) -> Self {
        Self {
            attachment: Some(attachment),
            ..self.clone()
        }
    }

    /// An event of `kind` at `at`, carrying this manager's attachment.
    fn event(&self, kind: KeyEventKind, at: DateTime<Utc>) -> KeyEvent {
        KeyEvent {
            kind,
            at,
            attachment: self.attachment.clone(),
        }
    }

    /// The rate limit of keys without their own (what the server enforces for them), which
    /// the judge compares rate limits against. Default 600.
    #[must_use]
    pub fn with_default_rate_limit(mut self, per_minute: u32) -> Self {
        self.default_rate_limit = per_minute;
        self
    }

    /// Refuses what `producer` could not mint inside its own bounds ([`judge`]).
    fn judge(&self, producer: &Producer<'_>, result: &Grant) -> Result<()> {
        judge(producer, result, self.default_rate_limit).map_err(Error::Forbidden)
    }

    /// The verifier whose cache this manager keeps current.
    pub fn verifier(&self) -> &Arc<KeyVerifier> {
        &self.verifier
    }

    /// Starts the background work verification needs (the change watcher and the last-used
    /// flusher, each every `every`); stop it with [`crate::KeyTasks::shutdown`].
    pub async fn start_tasks(&self, every: std::time::Duration) -> crate::KeyTasks {
        crate::KeyTasks::start(&self.verifier, every).await
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// Mints a key as the operator (bootstrap, operator CLI): [`Self::mint_as`] with
    /// [`Producer::Operator`]. Retries with a fresh token if the random prefix is taken.
    pub async fn mint(&self, new: NewKey, now: DateTime<Utc>) -> Result<MintedKey> {
        self.mint_as(&Producer::Operator, new, now).await
    }

    /// Mints a key on behalf of `producer` after [`judge`] finds it no broader than the
    /// producer (role, scope, permissions, environment, expiry, rate, networks). A key or a
    /// user mints in its own organisation and on its creator's (its own) authority; powers
    /// the request leaves unset take a key producer's own bounds ([`Producer::fill_unset`]).
    pub async fn mint_as(
        &self,
        producer: &Producer<'_>,
        mut new: NewKey,
        now: DateTime<Utc>,
    ) -> Result<MintedKey> {
        match producer {
            Producer::Key(c) => new.organization_id = c.key.organization_id,
            Producer::User(u) => new.organization_id = u.user.organization_id,
            Producer::Operator => {}
        }
        if let Some(user) = producer.user_id() {
            new.created_by = user;
        }
        let mut grant = new.grant();
        producer.fill_unset(
            &mut grant,
            Unset {
                expires_at: new.expires_at.is_none(),
                rate_limit_per_minute: new.rate_limit_per_minute.is_none(),
                allowed_cidrs: new.allowed_cidrs.is_empty(),
            },
        );
        self.judge(producer, &grant)?;
        new.set_grant(grant);
        self.mint_inner(new, None, now).await
    }

    async fn mint_inner(
        &self,
        new: NewKey,
        rotated_from: Option<(KeyId, Vec<String>)>,
        now: DateTime<Utc>,
    ) -> Result<MintedKey> {
        validate_name(&new.name)?;
        validate_owner(new.owner_id.as_deref())?;
        validate_meta(new.meta.as_ref())?;
        let (rotated_from, unrecognized_permissions) = match rotated_from {
            Some((id, unrecognized)) => (Some(id), unrecognized),
            None => (None, Vec::new()),
        };
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
            unrecognized_permissions,
            vocabulary: self.store().vocabulary(),
            owner_id: new.owner_id,
            meta: new.meta,
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
            let event = self.event(kind, now);
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
        self.stamp(id, now, KeyEventKind::Revoked, |k| &mut k.revoked_at)
            .await
    }

    /// Suspends a key until [`Self::resume`]; idempotent.
    pub async fn suspend(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyRecord> {
        self.stamp(id, now, KeyEventKind::Suspended, |k| &mut k.suspended_at)
            .await
    }

    /// Sets the time `field` picks on key `id` to `now` unless it is set already (a second
    /// call keeps the first time), with a `kind` event the first time.
    async fn stamp(
        &self,
        id: KeyId,
        now: DateTime<Utc>,
        kind: KeyEventKind,
        field: fn(&mut KeyRecord) -> &mut Option<DateTime<Utc>>,
    ) -> Result<KeyRecord> {
        let mut record = self.load(id).await?;
        let at = field(&mut record);
        let event = at.is_none().then(|| self.event(kind, now));
        at.get_or_insert(now);
        self.save(record, event).await
    }

    /// Lifts a suspension as the operator: [`Self::resume_as`] with [`Producer::Operator`].
    pub async fn resume(&self, id: KeyId) -> Result<KeyRecord> {
        self.resume_as(&Producer::Operator, id, Utc::now()).await
    }

    /// Lifts a suspension; idempotent. Making a key usable again is judged as minting it:
    /// `producer` must be able to mint a key with all its powers. A revoked or expired key
    /// is [`Error::KeyNotActive`].
    pub async fn resume_as(
        &self,
        producer: &Producer<'_>,
        id: KeyId,
        now: DateTime<Utc>,
    ) -> Result<KeyRecord> {
        let mut record = self.load_changeable(id, now).await?;
        if record.suspended_at.is_none() {
            return Ok(record);
        }
        self.judge(producer, &Grant::of(&record))?;
        record.suspended_at = None;
        let event = self.event(KeyEventKind::Resumed, now);
        self.save(record, Some(event)).await
    }

    /// Applies `changes` as the operator: [`Self::update_as`] with [`Producer::Operator`].
    pub async fn update(&self, id: KeyId, changes: KeyChanges) -> Result<KeyRecord> {
        self.update_as(&Producer::Operator, id, changes, Utc::now())
            .await
    }

    /// Applies `changes` (name, expiry, rate-limit override, allowed networks) to a key. A
    /// change that widens it (a later or no expiry, a higher rate, networks outside the old
    /// list) is judged as minting the result; narrowing needs no more than access to the key.
    /// A revoked or expired key is [`Error::KeyNotActive`].
    pub async fn update_as(
        &self,
        producer: &Producer<'_>,
        id: KeyId,
        changes: KeyChanges,
        now: DateTime<Utc>,
    ) -> Result<KeyRecord> {
        let mut record = self.load_changeable(id, now).await?;
        let before = Grant::of(&record);
        if let Some(name) = changes.name {
            validate_name(&name)?;
            record.name = name;
        }
        if let Some(expiry) = changes.expires_at {
            if expiry.is_some_and(|e| e <= now) {
                return Err(Error::InvalidInput {
                    field: "expiresAt",
                    reason: "must be in the future",
                });
            }
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
        if let Some(owner) = changes.owner_id {
            validate_owner(owner.as_deref())?;
            record.owner_id = owner;
        }
        if let Some(meta) = changes.meta {
            validate_meta(meta.as_ref())?;
            record.meta = meta;
        }
        let after = Grant::of(&record);
        if after.widens(&before, self.default_rate_limit) {
            self.judge(producer, &after)?;
        }
        let event = self.event(KeyEventKind::Updated, now);
        self.save(record, Some(event)).await
    }

    /// Loads a key that may still change: not revoked, not expired.
    async fn load_changeable(&self, id: KeyId, now: DateTime<Utc>) -> Result<KeyRecord> {
        let record = self.load(id).await?;
        match record.status_at(now) {
            KeyStatus::Revoked | KeyStatus::Expired => Err(Error::KeyNotActive),
            KeyStatus::Active | KeyStatus::Suspended => Ok(record),
        }
    }

    /// Rotates as the operator: [`Self::rotate_as`] with [`Producer::Operator`].
    pub async fn rotate(&self, id: KeyId, grace: Duration, now: DateTime<Utc>) -> Result<Rotation> {
        self.rotate_as(&Producer::Operator, id, grace, now).await
    }

    /// Mints a successor with the same name, scope, permissions (unrecognized names
    /// included), environment, expiry, rate limit, networks, owner and meta, and lets the old key work for `grace` more (zero-downtime
    /// rotation). The successor is judged as a mint by `producer` and exists on its
    /// authority (its creator is the producer's user; the operator keeps the old creator). A
    /// revoked or expired key is [`Error::KeyNotActive`].
    pub async fn rotate_as(
        &self,
        producer: &Producer<'_>,
        id: KeyId,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let old = self.load_changeable(id, now).await?;
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
            created_by: producer.user_id().unwrap_or(old.created_by),
            expires_at: old.expires_at,
            rate_limit_per_minute: old.rate_limit_per_minute,
            allowed_cidrs: old.allowed_cidrs.clone(),
            owner_id: old.owner_id.clone(),
            meta: old.meta.clone(),
        };
        self.judge(producer, &new.grant())?;
        let successor = self
            .mint_inner(
                new,
                Some((old.id, old.unrecognized_permissions.clone())),
                now,
            )
            .await?;
        let mut previous = old;
        previous.expires_at = Some(previous.expires_at.map_or(grace_end, |e| e.min(grace_end)));
        let previous = self.save(previous, None).await?;
        Ok(Rotation {
            successor,
            previous,
        })
    }
}

pub(crate) fn validate_owner(owner: Option<&str>) -> Result<()> {
    match owner {
        Some(o) if o.chars().count() > MAX_OWNER_ID_LEN => Err(Error::InvalidInput {
            field: "ownerId",
            reason: "must be at most 256 characters",
        }),
        Some("") => Err(Error::InvalidInput {
            field: "ownerId",
            reason: "must not be empty",
        }),
        _ => Ok(()),
    }
}

pub(crate) fn validate_meta(meta: Option<&Meta>) -> Result<()> {
    let Some(meta) = meta else { return Ok(()) };
    let mut counter = ByteCount(0);
    // Serializing a JSON map cannot fail; an error would only come from the counter.
    let written = serde_json::to_writer(&mut counter, meta);
    if written.is_err() || counter.0 > MAX_META_BYTES {
        return Err(Error::InvalidInput {
            field: "meta",
            reason: "must be at most 4096 bytes serialized",
        });
    }
    Ok(())
}

/// Counts the bytes written to it (to size `meta` without keeping a copy).
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    align_core::name::checked_name(name)
        .map(drop)
        .map_err(|defect| Error::InvalidInput {
            field: "name",
            reason: defect.reason(),
        })
}
