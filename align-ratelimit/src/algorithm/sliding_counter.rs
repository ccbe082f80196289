//! The two-counter sliding-window estimate (Cloudflare's and Unkey's approximation).

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};

/// The two-counter estimate: `previous · (1 - elapsed / W) + current`.
///
/// Assumes the previous window's requests were spread evenly; when they were not (a burst at
/// its end), it admits more than `L` in some interval of length W (up to about `2·L`). The
/// current aligned window alone never exceeds `L`. 16 bytes per key.
#[derive(Debug, Clone, Copy)]
pub struct SlidingCounter {
    limit: u64,
    window: Duration,
    window_nanos: u64,
}

/// Per-key state of [`SlidingCounter`]: the current window's index and both windows' counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlidingCounterState {
    index: u64,
    previous: u32,
    current: u32,
}

impl SlidingCounter {
    /// A two-counter sliding window for `rate` (limits up to `u32::MAX`).
    pub fn new(rate: Rate) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        if limit > u64::from(u32::MAX) {
            return Err(Error::InvalidConfig(
                "the sliding counter counts at most 4294967295 per window",
            ));
        }
        Ok(Self {
            limit,
            window: rate.window(),
            window_nanos,
        })
    }

    /// The weighted share of `previous` at `elapsed` nanoseconds into the current window.
    fn weighted(&self, previous: u32, elapsed: u64) -> u64 {
        let left = u128::from(self.window_nanos - elapsed);
        (u128::from(previous) * left / u128::from(self.window_nanos)) as u64
    }

    /// The first offset into a window at which `previous`'s weighted share is at most `m`.
    fn offset_where_share_at_most(&self, previous: u32, m: u64) -> u64 {
        let previous = u64::from(previous);
        if previous <= m {
            return 0;
        }
        let w = u128::from(self.window_nanos);
        (u128::from(previous - m - 1) * w / u128::from(previous)) as u64 + 1
    }
}

impl Algorithm for SlidingCounter {
    type State = SlidingCounterState;

    fn limit(&self) -> u64 {
        self.limit
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        SlidingCounterState {
            index: now.as_nanos() / self.window_nanos,
            ..SlidingCounterState::default()
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.limit)?;
        let mut now = now.as_nanos();
        let index = now / self.window_nanos;
        if index > st.index {
            let previous = if index == st.index + 1 { st.current } else { 0 };
            *st = SlidingCounterState {
                index,
                previous,
                current: 0,
            };
        } else {
            // An earlier clock reading is taken as the start of the current window.
            now = now.max(st.index * self.window_nanos);
        }
        let start = st.index * self.window_nanos;
        let elapsed = now - start;
        let share = self.weighted(st.previous, elapsed);
        let current = u64::from(st.current);
        let allowed = share + current + cost <= self.limit;
        if allowed {
            // cost ≤ limit ≤ u32::MAX, and so is current + cost.
            st.current += cost as u32;
        }
        let current = u64::from(st.current);
        let end = start + self.window_nanos;
        // Remaining grows when the previous window's share next drops by one unit, or, once it
        // is zero, when the current window's count starts to fade in the next window.
        let reset_after_nanos = if share > 0 {
            start + self.offset_where_share_at_most(st.previous, share - 1) - now
        } else if current > 0 {
            end + 1 - now
        } else {
            0
        };
        let retry_after_nanos = (!allowed).then(|| {
            if current + cost <= self.limit {
                let room = self.limit - current - cost;
                start + self.offset_where_share_at_most(st.previous, room) - now
            } else {
                let room = self.limit - cost;
                end + self.offset_where_share_at_most(st.current, room) - now
            }
        });
        Ok(Outcome {
            limit: self.limit,
            used: share + current,
            reset_after_nanos,
            retry_after_nanos,
        }
        .into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        (st.previous == 0 && st.current == 0) || st.index + 1 < now.as_nanos() / self.window_nanos
    }
}
