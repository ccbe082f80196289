//! The exact sliding-window log: the reference the other algorithms are tested against.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Result, ensure_cost};

/// The exact sliding window: remembers every admitted request still inside the window.
///
/// A request at `t` is admitted iff the units admitted in `(t - W, t]` plus its cost fit the
/// limit. Exact, and therefore the oracle in this crate's property tests, but its memory grows
/// with traffic: 16 bytes per admitted request in the window, up to `16·L` bytes per key.
#[derive(Debug, Clone, Copy)]
pub struct SlidingLog {
    limit: u64,
    window: Duration,
    window_nanos: u64,
}

/// Per-key state of [`SlidingLog`]: the admitted requests in the window, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SlidingLogState {
    entries: VecDeque<(u64, u64)>,
    total: u64,
}

impl SlidingLog {
    /// An exact sliding-window log for `rate`.
    pub fn new(rate: Rate) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        Ok(Self {
            limit,
            window: rate.window(),
            window_nanos,
        })
    }

    /// The units admitted in `(now - W, now]`, dropping older entries.
    fn prune(&self, st: &mut SlidingLogState, now: u64) {
        while let Some(&(t, cost)) = st.entries.front() {
            if t.saturating_add(self.window_nanos) > now {
                break;
            }
            st.total -= cost;
            st.entries.pop_front();
        }
    }
}

impl Algorithm for SlidingLog {
    type State = SlidingLogState;

    fn limit(&self) -> u64 {
        self.limit
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, _now: Timestamp) -> Self::State {
        SlidingLogState::default()
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.limit)?;
        // A clock read earlier than the newest entry is treated as that entry's time.
        let newest = st.entries.back().map_or(0, |&(t, _)| t);
        let now = now.as_nanos().max(newest);
        self.prune(st, now);
        let allowed = st.total + cost <= self.limit;
        if allowed && cost > 0 {
            st.entries.push_back((now, cost));
            st.total += cost;
        }
        let leaves_in = |t: u64| t.saturating_add(self.window_nanos).saturating_sub(now);
        let reset_after_nanos = st.entries.front().map_or(0, |&(t, _)| leaves_in(t));
        let retry_after_nanos = if allowed {
            None
        } else {
            let excess = st.total + cost - self.limit;
            let mut freed = 0;
            st.entries
                .iter()
                .find(|&&(_, c)| {
                    freed += c;
                    freed >= excess
                })
                .map(|&(t, _)| leaves_in(t))
                .or(Some(self.window_nanos))
        };
        Ok(Outcome {
            limit: self.limit,
            used: st.total,
            reset_after_nanos,
            retry_after_nanos,
        }
        .into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        st.entries
            .back()
            .is_none_or(|&(t, _)| t.saturating_add(self.window_nanos) <= now.as_nanos())
    }
}
