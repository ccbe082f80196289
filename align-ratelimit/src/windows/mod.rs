//! Named limits: several fixed windows per group, checked and spent all or nothing
//! ([`WindowSet`]), in memory ([`MemoryWindowSet`]) or in Redis (`RedisWindowSet`).

mod memory;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::future::LimitFuture;

pub use memory::MemoryWindowSet;

/// One named limit of a group, and what a check spends on it.
///
/// A counter is identified by the group, the `name` and the `window`: the same name with
/// another window is another counter, and changing `limit` keeps the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowLimit<'a> {
    /// The limit's name, unique in its group (any characters).
    pub name: &'a str,
    /// Units admitted per window (at least 1).
    pub limit: u64,
    /// The window's length: whole milliseconds, from 1 second to 366 days.
    pub window: Duration,
    /// Units this check spends (0 to 1,000,000,000; 0 only reads the counter).
    pub cost: u64,
}

impl<'a> WindowLimit<'a> {
    /// The most limits one check may name.
    pub const MAX_PER_CHECK: usize = 32;
    /// The largest cost one check may spend on a limit.
    pub const MAX_COST: u64 = 1_000_000_000;
    /// The shortest window.
    pub const MIN_WINDOW: Duration = Duration::from_secs(1);
    /// The longest window: 366 days.
    pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

    /// `limit` units per `window` under `name`, for a check costing 1.
    #[must_use]
    pub const fn new(name: &'a str, limit: u64, window: Duration) -> Self {
        Self {
            name,
            limit,
            window,
            cost: 1,
        }
    }

    /// The same limit for a check costing `cost` (0 reads without spending).
    #[must_use]
    pub const fn with_cost(self, cost: u64) -> Self {
        Self { cost, ..self }
    }

    /// The window in milliseconds (valid limits are whole milliseconds).
    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a counter at `used` admits this check's cost.
    fn admits(&self, used: u64) -> bool {
        self.cost == 0 || used.checked_add(self.cost).is_some_and(|n| n <= self.limit)
    }

    fn invalid(&self, reason: &'static str) -> Error {
        Error::InvalidWindowLimit {
            name: self.name.to_owned(),
            reason,
        }
    }
}

/// One limit after a check, in the order the check named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOutcome {
    /// Units admitted per window.
    pub limit: u64,
    /// Units left in the current window after this check (`limit - used`, at least 0).
    pub remaining: u64,
    /// Time until the current window ends and the counter starts again from 0.
    pub reset: Duration,
    /// Whether this limit alone would admit the check (a refused check may name limits that
    /// would have admitted it: they spent nothing).
    pub allowed: bool,
}

impl WindowOutcome {
    /// [`reset`](Self::reset) in whole seconds, rounded up: at least 1 while the window has not
    /// ended, e.g. for a `reset` header or field.
    #[must_use]
    pub fn reset_secs(&self) -> u64 {
        let secs = self.reset.as_secs();
        if self.reset.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs
        }
    }
}

/// The answer to one check over a group's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsDecision {
    /// Whether every limit admitted the check, so every cost was spent.
    pub allowed: bool,
    /// Each limit after the check, in the order the check named them.
    pub outcomes: Vec<WindowOutcome>,
    /// The first limit (index into the check's limits) that refused, when one did.
    pub refused_by: Option<usize>,
}

/// Named fixed-window limits per group, checked and spent all or nothing.
///
/// A group (e.g. an API key id) carries any number of named limits, each "`limit` units per
/// `window`". A check names the limits that apply and a cost for each, and is admitted only if
/// every one of them has room; then the cost is spent on all of them, otherwise on none.
///
/// **The rules**, the same on every back-end:
/// - Windows are fixed and aligned to the Unix epoch: a limit with a window of `w` ms counts in
///   window number `floor(now_ms / w)`, so a minute limit resets on every whole minute (UTC)
///   and a day limit at midnight UTC. A counter (`group`, `name`, `window`) starts each window
///   at 0.
/// - A check is **all or nothing**: if every limit has `used + cost <= limit`, every cost is
///   spent; otherwise nothing is spent and the check is refused. A cost of 0 never refuses and
///   spends nothing (a peek at the counter).
/// - Exact: however many tasks or instances check one group at once, no counter ever admits
///   more than its limit in one window. Fixed windows allow up to twice the limit across a
///   window boundary (the end of one window and the start of the next); that is the price of
///   being exact, cheap and shareable through Redis with one counter per window.
/// - Each [`WindowOutcome`] says what the limit looks like after the check: `remaining`
///   (`limit - used`, never below 0, e.g. after a limit was lowered), `reset` (until the
///   current window ends), and whether this limit alone would have admitted the check.
/// - Validation: a limit of at least 1, a window of whole milliseconds from 1 second to 366
///   days, a cost of at most 1,000,000,000 and no counter named twice in one check (the same
///   name with the same window), else [`Error::InvalidWindowLimit`]; at most 32 limits per
///   check, else [`Error::InvalidConfig`]. An invalid check spends nothing.
///
/// ```
/// use std::time::Duration;
/// use align_ratelimit::{MemoryWindowSet, TestClock, Timestamp, WindowLimit};
///
/// let clock = TestClock::new(Timestamp::from_unix_secs(1_700_000_020));
/// let set = MemoryWindowSet::with_clock(&clock);
/// let limits = [
///     WindowLimit::new("requests", 100, Duration::from_secs(60)),
///     WindowLimit::new("tokens", 1_000, Duration::from_secs(3_600)).with_cost(600),
/// ];
/// let first = set.check("key_1", &limits)?;
/// assert!(first.allowed);
/// assert_eq!(first.outcomes[1].remaining, 400);
/// assert_eq!(first.outcomes[0].reset_secs(), 20); // the minute ends at :00
///
/// // The tokens limit refuses, so the requests limit spends nothing either.
/// let second = set.check("key_1", &limits)?;
/// assert_eq!((second.allowed, second.refused_by), (false, Some(1)));
/// assert_eq!(second.outcomes[0].remaining, 99);
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
///
/// Object safe: a service holds an `Arc<dyn WindowSet>` and chooses memory
/// ([`MemoryWindowSet`]) or Redis (`RedisWindowSet`, feature `redis`) at start-up. The
/// in-memory set answers with a ready future; the Redis one makes one round trip and fails
/// with [`Error::Unavailable`] when Redis does not answer.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use align_ratelimit::{MemoryWindowSet, WindowLimit, WindowSet};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let set: Arc<dyn WindowSet> = Arc::new(MemoryWindowSet::new());
/// let limits = [WindowLimit::new("burst", 2, Duration::from_secs(3_600))];
/// assert!(set.check("key_1", &limits).await?.allowed);
/// assert!(set.check("key_1", &limits).await?.allowed);
/// assert!(!set.check("key_1", &limits).await?.allowed);
/// set.forget("key_1").await?; // the key was deleted
/// assert!(set.check("key_1", &limits).await?.allowed);
/// # Ok::<(), align_ratelimit::Error>(())
/// # }).unwrap();
/// ```
pub trait WindowSet: Send + Sync + 'static {
    /// Checks `limits` of `group` (e.g. a key id) now, spending every limit's cost if all of
    /// them admit it and nothing otherwise. Each counter is (`group`, name, window length).
    fn check<'a>(
        &'a self,
        group: &'a str,
        limits: &'a [WindowLimit<'_>],
    ) -> LimitFuture<'a, Result<WindowsDecision>>;

    /// Forgets every counter of `group` (e.g. a deleted key). By default nothing is kept, so
    /// nothing is forgotten.
    fn forget<'a>(&'a self, group: &'a str) -> LimitFuture<'a, Result<()>> {
        let _ = group;
        LimitFuture::ready(Ok(()))
    }
}

/// Checks the rules every back-end enforces before it looks at a counter.
pub(crate) fn validate(limits: &[WindowLimit<'_>]) -> Result<()> {
    if limits.len() > WindowLimit::MAX_PER_CHECK {
        return Err(Error::InvalidConfig("a check names at most 32 limits"));
    }
    for (i, l) in limits.iter().enumerate() {
        if l.limit == 0 {
            return Err(l.invalid("the limit must allow at least 1 unit per window"));
        }
        if l.window < WindowLimit::MIN_WINDOW
            || l.window > WindowLimit::MAX_WINDOW
            || l.window.subsec_nanos() % 1_000_000 != 0
        {
            return Err(
                l.invalid("the window must be whole milliseconds, from 1 second to 366 days")
            );
        }
        if l.cost > WindowLimit::MAX_COST {
            return Err(l.invalid("a check costs at most 1,000,000,000 units"));
        }
        if limits[..i]
            .iter()
            .any(|o| o.window == l.window && o.name == l.name)
        {
            return Err(l.invalid("the check names this limit twice (same name and window)"));
        }
    }
    Ok(())
}

/// Limit `l`'s outcome as the check finds its counter: `used` units in the current window,
/// which ends in `reset`. `remaining` is what is left before spending (all a refused check
/// reports); [`finish`] takes the cost off when the whole check is admitted.
pub(crate) fn found(l: &WindowLimit<'_>, used: u64, reset: Duration) -> WindowOutcome {
    WindowOutcome {
        limit: l.limit,
        remaining: l.limit.saturating_sub(used),
        reset,
        allowed: l.admits(used),
    }
}

/// The all-or-nothing decision on `limits`, from each limit's outcome as [`found`] (same order).
pub(crate) fn finish(
    limits: &[WindowLimit<'_>],
    mut outcomes: Vec<WindowOutcome>,
) -> WindowsDecision {
    let refused_by = outcomes.iter().position(|o| !o.allowed);
    if refused_by.is_none() {
        for (o, l) in outcomes.iter_mut().zip(limits) {
            // Admitted: used + cost <= limit, so remaining = limit - used >= cost.
            o.remaining = o.remaining.saturating_sub(l.cost);
        }
    }
    WindowsDecision {
        allowed: refused_by.is_none(),
        outcomes,
        refused_by,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn rejected(limits: &[WindowLimit<'_>]) -> Error {
        validate(limits).unwrap_err()
    }

    #[test]
    fn out_of_range_limits_are_refused_with_their_name() {
        let ok = WindowLimit::new("a", 1, MINUTE);
        validate(&[
            ok.with_cost(WindowLimit::MAX_COST),
            WindowLimit {
                window: WindowLimit::MIN_WINDOW,
                ..ok
            },
            WindowLimit {
                window: WindowLimit::MAX_WINDOW,
                ..ok
            },
        ])
        .unwrap();
        for bad in [
            WindowLimit { limit: 0, ..ok },
            WindowLimit {
                window: Duration::from_millis(999),
                ..ok
            },
            WindowLimit {
                window: WindowLimit::MAX_WINDOW + Duration::from_millis(1),
                ..ok
            },
            WindowLimit {
                window: Duration::from_micros(60_000_001),
                ..ok
            },
            ok.with_cost(WindowLimit::MAX_COST + 1),
        ] {
            let e = rejected(&[bad]);
            assert!(
                matches!(&e, Error::InvalidWindowLimit { name, .. } if name == "a"),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_counter_named_twice_or_too_many_limits_are_refused() {
        let a = WindowLimit::new("a", 5, MINUTE);
        // The same name with another window is another counter.
        validate(&[
            a,
            WindowLimit {
                window: MINUTE * 60,
                ..a
            },
        ])
        .unwrap();
        assert!(matches!(
            rejected(&[a, a.with_cost(2)]),
            Error::InvalidWindowLimit { .. }
        ));
        let names: Vec<String> = (0..=WindowLimit::MAX_PER_CHECK)
            .map(|i| format!("n{i}"))
            .collect();
        let many: Vec<_> = names
            .iter()
            .map(|n| WindowLimit::new(n, 1, MINUTE))
            .collect();
        validate(&many[..WindowLimit::MAX_PER_CHECK]).unwrap();
        assert!(matches!(rejected(&many), Error::InvalidConfig(_)));
    }

    #[test]
    fn reset_seconds_round_up() {
        let at = |reset| WindowOutcome {
            limit: 1,
            remaining: 1,
            reset,
            allowed: true,
        };
        assert_eq!(at(Duration::from_nanos(1)).reset_secs(), 1);
        assert_eq!(at(Duration::from_secs(60)).reset_secs(), 60);
        assert_eq!(at(Duration::from_millis(59_001)).reset_secs(), 60);
    }
}
