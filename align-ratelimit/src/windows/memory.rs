//! [`MemoryWindowSet`]: named fixed-window limits in one process's memory.

use std::time::Duration;

use super::{WindowLimit, WindowSet, WindowsDecision, finish, found, validate};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::Result;
use crate::future::LimitFuture;
use crate::shards::Sharded;

/// Shards per set: enough that a few cores rarely meet on one lock.
const DEFAULT_SHARDS: usize = 64;
const NANOS_PER_MS: u64 = 1_000_000;
/// "No counter yet" in a check's list of counter positions.
const ABSENT: u32 = u32::MAX;

/// One counter: the units a named limit admitted in window number `index`.
struct Counter {
    name: Box<str>,
    window_ms: u64,
    index: u64,
    used: u64,
}

impl Counter {
    /// Whether the counter's window is over, so it counts nothing any more.
    fn ended(&self, now_ms: u64) -> bool {
        self.index < now_ms / self.window_ms
    }
}

/// Drops a group's ended counters and tells whether none is left (then the group may go).
fn prune(counters: &mut Vec<Counter>, now_ms: u64, removed: &mut usize) -> bool {
    let before = counters.len();
    counters.retain(|c| !c.ended(now_ms));
    *removed += before - counters.len();
    counters.is_empty()
}

/// A [`WindowSet`] in memory: exact within one process.
///
/// Groups are spread over 64 mutex-guarded shards by one hash of the group; a check takes its
/// group's shard lock once and decides and spends every limit under it, so concurrent checks
/// of one group never admit more than a limit, and checks of different groups rarely contend.
/// A group's counters sit in a short list searched in order (a check names a handful). Ended
/// counters are dropped when a shard doubles in size or a group gains a counter, and on demand
/// by [`evict_idle`](Self::evict_idle). Besides the returned outcomes, a check allocates only
/// when it creates a counter (its name) or a group.
///
/// A counter's window never moves back: should the clock step back, it keeps counting in the
/// newest window it has seen (its `reset` then never exceeds the window).
///
/// ```
/// use std::time::Duration;
/// use align_ratelimit::{MemoryWindowSet, WindowLimit};
///
/// let set = MemoryWindowSet::new();
/// let daily = [WindowLimit::new("daily", 1_000, Duration::from_secs(86_400)).with_cost(10)];
/// let decision = set.check("key_1", &daily)?;
/// assert!(decision.allowed);
/// assert_eq!(decision.outcomes[0].remaining, 990);
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
pub struct MemoryWindowSet<C: Clock = SystemClock> {
    clock: C,
    map: Sharded<Box<str>, Vec<Counter>>,
}

impl MemoryWindowSet {
    /// An empty set on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(SystemClock::new())
    }
}

impl Default for MemoryWindowSet {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryWindowSet<C> {
    /// An empty set reading time from `clock` (a [`TestClock`](crate::TestClock) in tests).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            map: Sharded::new(DEFAULT_SHARDS),
        }
    }

    /// Checks `limits` of `group` now: all or nothing (see [`WindowSet::check`]).
    pub fn check(&self, group: &str, limits: &[WindowLimit<'_>]) -> Result<WindowsDecision> {
        self.check_at(group, limits, self.clock.now())
    }

    /// Checks `limits` of `group` at `now` (Unix time): what [`check`](Self::check) does with
    /// a time the caller already read.
    pub fn check_at(
        &self,
        group: &str,
        limits: &[WindowLimit<'_>],
        now: Timestamp,
    ) -> Result<WindowsDecision> {
        validate(limits)?;
        let now_ns = now.as_nanos();
        let now_ms = now_ns / NANOS_PER_MS;
        let mut outcomes = Vec::with_capacity(limits.len());
        // Each limit's counter: its position in the group, if it has one.
        let mut counters_at = [ABSENT; WindowLimit::MAX_PER_CHECK];
        let hash = self.map.hash(group);
        let mut shard = self.map.lock(hash);
        let counters = shard.get_mut(hash, group);
        for (l, counter_at) in limits.iter().zip(&mut counters_at) {
            let window_ms = l.window_ms();
            let (mut index, mut used) = (now_ms / window_ms, 0);
            let counter = counters.as_deref().and_then(|cs| {
                cs.iter()
                    .enumerate()
                    .find(|(_, c)| c.window_ms == window_ms && *c.name == *l.name)
            });
            if let Some((p, c)) = counter {
                // A group holds far fewer than 2^32 counters.
                *counter_at = u32::try_from(p).unwrap_or(ABSENT);
                if c.index >= index {
                    (index, used) = (c.index, c.used);
                }
            }
            let ends_ns = index
                .saturating_add(1)
                .saturating_mul(window_ms)
                .saturating_mul(NANOS_PER_MS);
            let reset = Duration::from_nanos(ends_ns.saturating_sub(now_ns)).min(l.window);
            outcomes.push(found(l, used, reset));
        }
        let decision = finish(limits, outcomes);
        if !decision.allowed || limits.iter().all(|l| l.cost == 0) {
            return Ok(decision);
        }
        let spent = limits.iter().zip(&counters_at).filter(|(l, _)| l.cost > 0);
        match counters {
            Some(cs) => {
                let before = cs.len();
                for (l, &at) in spent {
                    match cs.get_mut(at as usize) {
                        Some(c) if at != ABSENT => {
                            // Its window, as found above: the newest of the counter's and now's.
                            if c.index < now_ms / c.window_ms {
                                (c.index, c.used) = (now_ms / c.window_ms, 0);
                            }
                            c.used += l.cost;
                        }
                        _ => cs.push(new_counter(l, now_ms)),
                    }
                }
                if cs.len() > before {
                    prune(cs, now_ms, &mut 0);
                }
            }
            None => {
                let cs = spent.map(|(l, _)| new_counter(l, now_ms)).collect();
                self.map.insert(&mut shard, hash, group.into(), cs, |cs| {
                    prune(cs, now_ms, &mut 0)
                });
            }
        }
        Ok(decision)
    }

    /// Forgets every counter of `group` (e.g. a deleted key).
    pub fn forget(&self, group: &str) {
        let hash = self.map.hash(group);
        self.map.lock(hash).remove(hash, group);
    }

    /// Drops every counter whose window has ended, returning how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now_ms = self.clock.now().as_nanos() / NANOS_PER_MS;
        let mut removed = 0;
        self.map.for_each_shard(|shard| {
            self.map.sweep(shard, |cs| prune(cs, now_ms, &mut removed));
        });
        removed
    }

    /// The number of counters held, ended ones not yet dropped included.
    pub fn len(&self) -> usize {
        let mut len = 0;
        self.map
            .for_each_shard(|shard| len += shard.values().map(Vec::len).sum::<usize>());
        len
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A counter for `l` that has spent its cost in the window holding `now_ms`.
fn new_counter(l: &WindowLimit<'_>, now_ms: u64) -> Counter {
    let window_ms = l.window_ms();
    Counter {
        name: l.name.into(),
        window_ms,
        index: now_ms / window_ms,
        used: l.cost,
    }
}

impl<C: Clock + 'static> WindowSet for MemoryWindowSet<C> {
    fn check<'a>(
        &'a self,
        group: &'a str,
        limits: &'a [WindowLimit<'_>],
    ) -> LimitFuture<'a, Result<WindowsDecision>> {
        LimitFuture::ready(Self::check(self, group, limits))
    }

    fn forget<'a>(&'a self, group: &'a str) -> LimitFuture<'a, Result<()>> {
        Self::forget(self, group);
        LimitFuture::ready(Ok(()))
    }
}

impl<C: Clock> std::fmt::Debug for MemoryWindowSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWindowSet").finish_non_exhaustive()
    }
}
