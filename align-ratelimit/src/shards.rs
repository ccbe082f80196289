//! A hash map split into independently locked shards, shared by the keyed stores.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::fast::RandomState;
use hashbrown::HashTable;

/// Entries a shard may hold before its first sweep for idle keys.
const FIRST_SWEEP: usize = 256;

/// `(K, V)` pairs in `2^n` shards, each behind its own mutex on its own cache line.
pub(crate) struct Sharded<K, V> {
    hasher: RandomState,
    shards: Box<[LockedShard<K, V>]>,
    mask: u64,
}

/// One shard behind its lock, alone on its cache lines.
type LockedShard<K, V> = CacheLine<Mutex<Shard<K, V>>>;

/// Keeps each shard's lock on its own cache lines, so threads on different shards never contend.
#[repr(align(128))]
struct CacheLine<T>(T);

/// One shard: its entries, and the size at which it next sweeps idle entries out.
pub(crate) struct Shard<K, V> {
    table: HashTable<(K, V)>,
    sweep_at: usize,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    /// A map with at least `shards` shards (rounded up to a power of two).
    pub(crate) fn new(shards: usize) -> Self {
        let count = shards.clamp(1, 1 << 16).next_power_of_two();
        Self {
            hasher: RandomState::default(),
            shards: (0..count)
                .map(|_| {
                    CacheLine(Mutex::new(Shard {
                        table: HashTable::new(),
                        sweep_at: FIRST_SWEEP,
                    }))
                })
                .collect(),
            mask: count as u64 - 1,
        }
    }

    /// The hash of `key` (or of a borrowed form of it, e.g. a `&str` for a `Box<str>` key),
    /// computed once per operation.
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64
    where
        K: Borrow<Q>,
    {
        self.hasher.hash_one(key)
    }

    /// Locks the shard that holds `hash`.
    pub(crate) fn lock(&self, hash: u64) -> MutexGuard<'_, Shard<K, V>> {
        // Bits 40.. pick the shard: the table itself uses the low bits for the bucket and the
        // top 7 bits as tags, so sharding on either would crowd every shard's table.
        let index = ((hash >> 40) & self.mask) as usize;
        let shard = &self.shards[index];
        // A panic elsewhere while holding the lock leaves valid (if stale) counters: keep going.
        shard.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts a key known to be absent, first sweeping out entries for which `idle` holds
    /// once the shard has doubled since its last sweep (amortised O(1) per insert).
    pub(crate) fn insert(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: K,
        value: V,
        idle: impl FnMut(&mut V) -> bool,
    ) {
        if shard.table.len() >= shard.sweep_at {
            self.sweep(shard, idle);
        }
        shard
            .table
            .insert_unique(hash, (key, value), |(k, _)| self.hasher.hash_one(k));
    }

    /// Removes the entries for which `idle` holds and returns how many were removed. `idle`
    /// may also trim what it keeps (a value holding several counters drops its ended ones).
    pub(crate) fn sweep(
        &self,
        shard: &mut Shard<K, V>,
        mut idle: impl FnMut(&mut V) -> bool,
    ) -> usize {
        let before = shard.table.len();
        shard.table.retain(|(_, v)| !idle(v));
        let len = shard.table.len();
        shard.sweep_at = (2 * len).max(FIRST_SWEEP);
        if shard.table.capacity() > 4 * shard.sweep_at {
            shard
                .table
                .shrink_to(shard.sweep_at, |(k, _)| self.hasher.hash_one(k));
        }
        before - len
    }

    /// Runs `f` on every shard in turn, each under its lock.
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut Shard<K, V>)) {
        for shard in &self.shards {
            f(&mut shard.0.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

impl<K: Eq, V> Shard<K, V> {
    /// The value stored for `key`, if any.
    pub(crate) fn get_mut<Q: Eq + ?Sized>(&mut self, hash: u64, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.table
            .find_mut(hash, |(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Removes `key`'s entry, if any.
    pub(crate) fn remove<Q: Eq + ?Sized>(&mut self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Ok(entry) = self.table.find_entry(hash, |(k, _)| k.borrow() == key) {
            entry.remove();
        }
    }

    /// The number of entries in this shard.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The values in this shard, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|(_, v)| v)
    }
}
