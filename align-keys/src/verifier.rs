//! [`KeyVerifier`]: presented token → typed outcome, with an in-process cache.
//!
//! A cache hit costs a parse, one SHA-256 and a read-locked map lookup: no store round trip.
//! State changes made through [`KeyVerifier::refresh`] (which [`crate::KeyManager`] calls on
//! revoke, suspend, resume and rotate) reach the cache before the call returns, so the very
//! next verification sees them. `last_used_at` is kept in the cache entry and written to the
//! store in batches by [`KeyVerifier::flush_last_used`].

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{KeyId, KeyRecord, KeyStatus};
use crate::error::{Error, Result};
use crate::hash::{KeyHash, KeyHasher};
use crate::store::KeyLookup;
use crate::token::{self, TokenDefect};

const SHARDS: usize = 64;

/// What a presented token turned out to be.
#[derive(Debug, Clone)]
pub enum Verification {
    /// A usable key.
    Valid(VerifiedKey),
    /// Not a key: malformed, or well-formed but unknown.
    Invalid(InvalidKey),
    /// The key was revoked.
    Revoked(Arc<KeyRecord>),
    /// The key is past its expiry.
    Expired(Arc<KeyRecord>),
    /// The key is suspended.
    Suspended(Arc<KeyRecord>),
}

/// Why a token is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKey {
    /// Rejected by the parser: no lookup was made.
    Malformed(TokenDefect),
    /// Well-formed, but no key has this hash.
    Unknown,
}

/// A key that verified, with the time of this use.
#[derive(Clone)]
pub struct VerifiedKey {
    entry: Arc<Entry>,
    /// The instant of this verification: the key's current `lastUsedAt`.
    pub used_at: DateTime<Utc>,
}

impl VerifiedKey {
    /// The key's id, prefix, organisation and environment in the shared vocabulary, for
    /// layers that only name the caller (no secret in it).
    pub fn identity(&self) -> Arc<align_core::KeyIdentity> {
        Arc::clone(&self.entry.identity)
    }

    /// The key's record as cached (its `last_used_at` may lag; use [`Self::last_used_at`]).
    pub fn record(&self) -> &KeyRecord {
        &self.entry.record
    }

    /// The record, shared.
    pub fn record_arc(&self) -> Arc<KeyRecord> {
        Arc::clone(&self.entry.record)
    }

    /// The key's latest use, this one included.
    pub fn last_used_at(&self) -> DateTime<Utc> {
        self.used_at
    }
}

impl std::fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedKey")
            .field("record", &self.entry.record)
            .field("used_at", &self.used_at)
            .finish()
    }
}

/// The outcome of [`KeyVerifier::verify_cached`].
#[derive(Debug, Clone)]
pub enum Cached {
    /// Answered without the store.
    Answer(Verification),
    /// Not cached: ask the store for this hash ([`KeyVerifier::verify`] does).
    Miss(KeyHash),
}

/// Cache sizes.
#[derive(Debug, Clone, Copy)]
pub struct VerifierConfig {
    /// Most known keys kept in memory (a full shard is emptied and refilled from the store).
    pub capacity: usize,
    /// Most unknown hashes remembered, so floods of made-up keys do not reach the store.
    pub negative_capacity: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            negative_capacity: 100_000,
        }
    }
}

/// A cached key. The fields that decide the outcome sit inline, so a hit reads one
/// allocation and never touches the shared record.
struct Entry {
    record: Arc<KeyRecord>,
    /// The record's id, prefix, organisation and environment as text, made once per cached
    /// key rather than per request.
    identity: Arc<align_core::KeyIdentity>,
    revoked: bool,
    suspended: bool,
    expires_at_ms: i64,
    last_used_ms: AtomicI64,
    dirty: AtomicBool,
}

impl Entry {
    fn new(record: Arc<KeyRecord>, last_used_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            identity: Arc::new(align_core::KeyIdentity {
                key_id: record.id.to_string(),
                prefix: record.prefix.clone(),
                organization_id: record.organization_id.to_string(),
                environment: record.environment,
            }),
            revoked: record.revoked_at.is_some(),
            suspended: record.suspended_at.is_some(),
            expires_at_ms: record.expires_at.map_or(i64::MAX, |t| t.timestamp_millis()),
            record,
            last_used_ms: AtomicI64::new(last_used_ms),
            dirty: AtomicBool::new(false),
        })
    }

    /// Same precedence as [`KeyRecord::status_at`].
    fn status_at(&self, now_ms: i64) -> KeyStatus {
        if self.revoked {
            KeyStatus::Revoked
        } else if self.expires_at_ms <= now_ms {
            KeyStatus::Expired
        } else if self.suspended {
            KeyStatus::Suspended
        } else {
            KeyStatus::Active
        }
    }
}

/// The `KeyHash` is already uniform, so the table uses its first eight bytes as they are.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = RwLock<HashMap<KeyHash, Arc<Entry>, BuildHasherDefault<PassThrough>>>;
type UnknownShard = Mutex<HashSet<KeyHash, BuildHasherDefault<PassThrough>>>;

/// Verifies presented tokens against a [`KeyLookup`] (any [`KeyStore`](crate::KeyStore) is one:
/// [`KeyStore::into_lookup`](crate::KeyStore::into_lookup)), caching what it learns.
pub struct KeyVerifier {
    store: Arc<dyn KeyLookup>,
    hasher: Arc<dyn KeyHasher>,
    config: VerifierConfig,
    shards: Box<[Shard]>,
    negative: Box<[UnknownShard]>,
    /// id → hash of cached keys; its lock also orders cache fills against refreshes.
    index: Mutex<HashMap<KeyId, KeyHash>>,
    epoch: AtomicU64,
    dirty: Mutex<Vec<Arc<Entry>>>,
    listeners: RwLock<Vec<ChangeListener>>,
}

impl std::fmt::Debug for KeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What [`KeyVerifier::add_change_listener`] calls: `Some(id)` for a changed key, `None` to
/// forget everything.
pub type ChangeListener = Arc<dyn Fn(Option<KeyId>) + Send + Sync>;

fn shard_of(hash: &KeyHash) -> usize {
    hash.0[8] as usize % SHARDS
}

/// The answer for a token the parser refused.
fn malformed(e: Error) -> Verification {
    match e {
        Error::MalformedToken(defect) => Verification::Invalid(InvalidKey::Malformed(defect)),
        _ => Verification::Invalid(InvalidKey::Unknown),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeyVerifier {
    /// A verifier over `store`, hashing with `hasher`, with default cache sizes.
    pub fn new(store: Arc<dyn KeyLookup>, hasher: Arc<dyn KeyHasher>) -> Self {
        Self::with_config(store, hasher, VerifierConfig::default())
    }

    /// A verifier with explicit cache sizes.
    pub fn with_config(
        store: Arc<dyn KeyLookup>,
        hasher: Arc<dyn KeyHasher>,
        config: VerifierConfig,
    ) -> Self {
        Self {
            store,
            hasher,
            config,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            negative: (0..SHARDS).map(|_| Mutex::default()).collect(),
            index: Mutex::default(),
            epoch: AtomicU64::new(0),
            dirty: Mutex::default(),
            listeners: RwLock::default(),
        }
    }

    /// Tells `listener` of every change the change watcher reads from the store's log: a
    /// changed key's id, or `None` when the watcher starts over (everything may have changed).
    /// Other caches over the same change log (the key spaces' keys) follow it this way.
    pub fn add_change_listener(&self, listener: ChangeListener) {
        self.listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    fn tell_listeners(&self, change: Option<KeyId>) {
        for l in self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            l(change);
        }
    }

    /// The key lookup behind this verifier.
    pub fn store(&self) -> &Arc<dyn KeyLookup> {
        &self.store
    }

    /// The hasher this verifier uses.
    pub fn hasher(&self) -> &Arc<dyn KeyHasher> {
        &self.hasher
    }

    /// Checks `token` at instant `now`.
    ///
    /// Malformed tokens are answered without a store lookup (a token of the right length is
    /// hashed and looked up in the cache first: a cached key's token needs no parsing); a
    /// cached key without a store round trip. Only store failures are errors: every kind of bad key is a [`Verification`].
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verification> {
        match self.verify_cached(token, now) {
            Cached::Answer(v) => Ok(v),
            Cached::Miss(hash) => self.verify_from_store(hash, now).await,
        }
    }

    /// The synchronous part of [`Self::verify`]: answers from the parser and the caches, or
    /// says which hash the store must be asked for. Embedders with a synchronous hot path can
    /// call it directly and fall back to `verify` on a miss.
    pub fn verify_cached(&self, token: &str, now: DateTime<Utc>) -> Cached {
        // A token whose hash is cached is that key's token (SHA-256 does not collide), so the
        // parser's checks (tag, length, characters, checksum) would all pass for it: a hit
        // costs the hash and the lookup only, and only what the cache does not know is
        // parsed. Tokens of another length are refused before any hashing, as before.
        if token.len() == token::TOKEN_LEN {
            let hash = self.hasher.hash(token);
            if let Some(entry) = self.cached(&hash) {
                return Cached::Answer(self.judge(entry, now));
            }
            // Likewise a hash in the negative cache: only hashes of tokens that parsed are
            // remembered as unknown, so a flood of one made-up key is answered without the
            // parser too.
            if self.known_unknown(&hash) {
                return Cached::Answer(Verification::Invalid(InvalidKey::Unknown));
            }
            return match token::parse(token) {
                Ok(_) => Cached::Miss(hash),
                Err(e) => Cached::Answer(malformed(e)),
            };
        }
        match token::parse(token) {
            Ok(parsed) => {
                let hash = self.hasher.hash(parsed.as_secret_str());
                if let Some(entry) = self.cached(&hash) {
                    return Cached::Answer(self.judge(entry, now));
                }
                self.uncached(hash)
            }
            Err(e) => Cached::Answer(malformed(e)),
        }
    }

    /// A well-formed token the cache does not hold: known to be unknown, or a store lookup.
    fn uncached(&self, hash: KeyHash) -> Cached {
        if self.known_unknown(&hash) {
            return Cached::Answer(Verification::Invalid(InvalidKey::Unknown));
        }
        Cached::Miss(hash)
    }

    /// Whether `hash` is in the negative cache. Only [`Self::remember_unknown`] fills it, and
    /// only with hashes of tokens that parsed (a store lookup follows a parse).
    fn known_unknown(&self, hash: &KeyHash) -> bool {
        lock(&self.negative[shard_of(hash)]).contains(hash)
    }

    async fn verify_from_store(&self, hash: KeyHash, now: DateTime<Utc>) -> Result<Verification> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        match self.store.find_key_by_hash(&hash).await? {
            Some(record) => Ok(self.judge(self.fill(hash, record, epoch), now)),
            None => {
                self.remember_unknown(hash);
                Ok(Verification::Invalid(InvalidKey::Unknown))
            }
        }
    }

    fn cached(&self, hash: &KeyHash) -> Option<Arc<Entry>> {
        let shard = self.shards[shard_of(hash)]
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(hash).cloned()
    }

    fn judge(&self, entry: Arc<Entry>, now: DateTime<Utc>) -> Verification {
        let now_ms = now.timestamp_millis();
        match entry.status_at(now_ms) {
            KeyStatus::Active => {
                // Write only when something changes: repeated hits stay read-mostly.
                if entry.last_used_ms.load(Ordering::Relaxed) < now_ms {
                    entry.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
                }
                if !entry.dirty.load(Ordering::Acquire) && !entry.dirty.swap(true, Ordering::AcqRel)
                {
                    lock(&self.dirty).push(Arc::clone(&entry));
                }
                Verification::Valid(VerifiedKey {
                    entry,
                    used_at: now,
                })
            }
            KeyStatus::Revoked => Verification::Revoked(Arc::clone(&entry.record)),
            KeyStatus::Expired => Verification::Expired(Arc::clone(&entry.record)),
            KeyStatus::Suspended => Verification::Suspended(Arc::clone(&entry.record)),
        }
    }

    /// Caches a record read from the store, unless a refresh happened since the read began
    /// (then the read may be stale and the store is asked again next time).
    fn fill(&self, hash: KeyHash, record: KeyRecord, epoch: u64) -> Arc<Entry> {
        let last_used = record.last_used_at.map_or(0, |t| t.timestamp_millis());
        let fresh = Entry::new(Arc::new(record), last_used);
        let mut index = lock(&self.index);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return fresh;
        }
        let mut shard = self.shards[shard_of(&hash)]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= (self.config.capacity / SHARDS).max(1) {
            for entry in shard.values() {
                index.remove(&entry.record.id);
            }
            shard.clear();
        }
        let entry = Arc::clone(shard.entry(hash).or_insert(fresh));
        index.insert(entry.record.id, hash);
        entry
    }

    fn remember_unknown(&self, hash: KeyHash) {
        let mut set = lock(&self.negative[shard_of(&hash)]);
        if set.len() >= (self.config.negative_capacity / SHARDS).max(1) {
            set.clear();
        }
        set.insert(hash);
    }

    /// Makes the cache reflect `record` (after a revoke, suspend, resume, rename or expiry
    /// change in the store). Call it after the store write; the next verification sees it.
    pub fn refresh(&self, record: &KeyRecord) {
        let index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let Some(hash) = index.get(&record.id) else {
            return;
        };
        let mut shard = self.shards[shard_of(hash)]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = shard.get(hash) {
            let last_used = old.last_used_ms.load(Ordering::Relaxed);
            let replacement = Entry::new(Arc::new(record.clone()), last_used);
            shard.insert(*hash, replacement);
        }
    }

    /// Drops a key from the cache (the next verification reads the store).
    pub fn invalidate(&self, id: KeyId) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(hash) = index.remove(&id) {
            let mut shard = self.shards[shard_of(&hash)]
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            shard.remove(&hash);
        }
    }

    /// Drops every cached key (the next verification of each reads the store). Entries
    /// waiting for a `last_used_at` flush stay in the flush list.
    fn clear(&self) {
        let mut index = lock(&self.index);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        index.clear();
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Drops cached keys not used since `now - idle_for` (their `last_used_at` is already
    /// written: entries waiting for a flush stay), so that memory follows the keys in use
    /// rather than every key ever seen; the next use of a dropped key reads the store once.
    /// Shrinks the tables that emptied. Returns how many keys were dropped.
    pub fn evict_idle(&self, now: DateTime<Utc>, idle_for: Duration) -> usize {
        let cutoff = now
            .timestamp_millis()
            .saturating_sub(i64::try_from(idle_for.as_millis()).unwrap_or(i64::MAX));
        let mut index = lock(&self.index);
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, entry| {
                let keep = entry.dirty.load(Ordering::Acquire)
                    || entry.last_used_ms.load(Ordering::Relaxed) >= cutoff;
                if !keep {
                    index.remove(&entry.record.id);
                }
                keep
            });
            removed += before - shard.len();
            if shard.capacity() > 4 * shard.len().max(16) {
                shard.shrink_to_fit();
            }
        }
        if index.capacity() > 4 * index.len().max(16) {
            index.shrink_to_fit();
        }
        removed
    }

    /// Forgets that `hash` was unknown (called when a key with this hash is stored).
    pub fn forget_unknown(&self, hash: &KeyHash) {
        lock(&self.negative[shard_of(hash)]).remove(hash);
    }

    /// A number that grows whenever a cached key may have changed: on every refresh,
    /// invalidation (the change watcher's included) and clear. A cache of something derived
    /// from keys, such as their creators' roles, stays valid while it does not move. A role
    /// change counts as a change of every key of that user (the stores log it so).
    pub fn changes(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// How many keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Writes pending `last_used_at` times to the store in one batch; returns how many keys
    /// were written. On failure the times stay pending for the next flush.
    pub async fn flush_last_used(&self) -> Result<usize> {
        let pending = std::mem::take(&mut *lock(&self.dirty));
        if pending.is_empty() {
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(pending.len());
        for entry in &pending {
            entry.dirty.store(false, Ordering::Release);
            let ms = entry.last_used_ms.load(Ordering::Relaxed);
            if let Some(at) = DateTime::from_timestamp_millis(ms) {
                batch.push((entry.record.id, at));
            }
        }
        match self.store.record_last_used(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut dirty = lock(&self.dirty);
                for entry in pending {
                    if !entry.dirty.swap(true, Ordering::AcqRel) {
                        dirty.push(entry);
                    }
                }
                Err(e)
            }
        }
    }

    /// Number of keys whose `last_used_at` is waiting to be flushed.
    pub fn pending_last_used(&self) -> usize {
        lock(&self.dirty).len()
    }

    /// Spawns a task that reads the store's change log and drops changed keys from the cache,
    /// so that revocations, suspensions and other changes made by another process (an
    /// operator CLI, another server) are seen within `every`: the task reads the log whenever
    /// the store signals a change ([`KeyLookup::wait_for_changes`]; PostgreSQL does, through
    /// LISTEN/NOTIFY) and at least every `every`. Changes made through this process's
    /// [`crate::KeyManager`] are seen at once without it.
    ///
    /// The task's first read only finds where the log ends, and it may run a while after
    /// this call; the cache is emptied then, so that a key cached and changed meanwhile is
    /// read again. [`Self::start_change_watcher`] takes that first read before it returns.
    pub fn spawn_change_watcher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_watch_loop(-1, every)
    }

    /// [`Self::spawn_change_watcher`], with the end of the change log read (and the cache
    /// emptied) before it returns: call it before serving, and no key verified afterwards is
    /// read twice for it. A failed read leaves that to the task.
    pub async fn start_change_watcher(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let position = match self.store.key_changes_since(-1).await {
            Ok((_, end)) => {
                self.clear();
                self.tell_listeners(None);
                end
            }
            Err(_) => -1,
        };
        self.spawn_watch_loop(position, every)
    }

    /// The watcher's loop from `position` (negative: the log's end is not known yet).
    fn spawn_watch_loop(
        self: &Arc<Self>,
        mut position: i64,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                // A failed read keeps the position; the next round asks again.
                if let Ok((changed, next)) = this.store.key_changes_since(position).await {
                    if position < 0 {
                        // Only where the log ends: a key cached, then changed, before this
                        // read would never be seen as changed. Start from an empty cache.
                        this.clear();
                        this.tell_listeners(None);
                    }
                    for id in changed {
                        this.invalidate(id);
                        this.tell_listeners(Some(id));
                    }
                    position = next;
                }
                this.store.wait_for_changes(every).await;
            }
        })
    }

    /// Spawns a task that calls [`Self::flush_last_used`] every `every` until aborted.
    /// Call `flush_last_used` once more on shutdown.
    pub fn spawn_last_used_flusher(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A failed flush keeps its entries pending; the next tick retries.
                let _ = this.flush_last_used().await;
            }
        })
    }
}
