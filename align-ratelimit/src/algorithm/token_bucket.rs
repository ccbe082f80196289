//! The token bucket: a level that refills continuously up to a capacity.

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};

/// A token bucket of `capacity` tokens refilled at `L` tokens per window.
///
/// The level is kept in nanoseconds of refill (one token is `T = W / L`, rounded up), so no
/// fractions are lost. Admits at most `capacity + d / T` units in any interval of length `d`,
/// like [`Gcra`](super::Gcra); 16 bytes per key.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    limit: u64,
    window: Duration,
    capacity: u64,
    token_nanos: u64,
}

/// Per-key state of [`TokenBucket`]: the level (in refill nanoseconds) and when it was measured.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucketState {
    level: u64,
    at: u64,
}

impl TokenBucket {
    /// A bucket for `rate` holding at most `capacity` tokens, starting full.
    pub fn new(rate: Rate, capacity: u64) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        if capacity == 0 {
            return Err(Error::InvalidConfig("the capacity must be at least 1"));
        }
        let token_nanos = window_nanos.div_ceil(limit);
        if token_nanos.checked_mul(capacity).is_none() {
            return Err(Error::InvalidConfig(
                "the capacity times the refill interval overflows",
            ));
        }
        Ok(Self {
            limit,
            window: rate.window(),
            capacity,
            token_nanos,
        })
    }

    fn full(&self) -> u64 {
        self.capacity * self.token_nanos
    }

    /// The level at `now`, refilled since the state was last measured.
    fn level_at(&self, st: &TokenBucketState, now: u64) -> u64 {
        st.level
            .saturating_add(now.saturating_sub(st.at))
            .min(self.full())
    }
}

impl Algorithm for TokenBucket {
    type State = TokenBucketState;

    fn limit(&self) -> u64 {
        self.limit
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        TokenBucketState {
            level: self.full(),
            at: now.as_nanos(),
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.capacity)?;
        // An earlier clock reading refills nothing.
        let now = now.as_nanos().max(st.at);
        st.level = self.level_at(st, now);
        st.at = now;
        let price = cost * self.token_nanos;
        let allowed = st.level >= price;
        if allowed {
            st.level -= price;
        }
        let missing = self.full() - st.level;
        let reset_after_nanos = match missing % self.token_nanos {
            0 if missing == 0 => 0,
            0 => self.token_nanos,
            r => r,
        };
        Ok(Outcome {
            limit: self.capacity,
            used: missing.div_ceil(self.token_nanos),
            reset_after_nanos,
            retry_after_nanos: (!allowed).then(|| price - st.level),
        }
        .into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        self.level_at(st, now.as_nanos()) == self.full()
    }
}
