//! The fixed window: one counter per aligned window.

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Result, ensure_cost};

/// One counter per window aligned to the Unix epoch (`[k·W, (k+1)·W)`).
///
/// At most `L` units per aligned window, but up to `2·L` in an interval straddling a boundary.
/// The cheapest to reason about and to share; 16 bytes per key.
#[derive(Debug, Clone, Copy)]
pub struct FixedWindow {
    limit: u64,
    window: Duration,
    window_nanos: u64,
}

/// Per-key state of [`FixedWindow`]: the window's index and the units counted in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedWindowState {
    index: u64,
    used: u64,
}

impl FixedWindow {
    /// A fixed window for `rate`.
    pub fn new(rate: Rate) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        Ok(Self {
            limit,
            window: rate.window(),
            window_nanos,
        })
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn limit(&self) -> u64 {
        self.limit
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        FixedWindowState {
            index: now.as_nanos() / self.window_nanos,
            used: 0,
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.limit)?;
        let index = now.as_nanos() / self.window_nanos;
        // An earlier clock reading stays in the newer window.
        if index > st.index {
            *st = FixedWindowState { index, used: 0 };
        }
        let ends_in = (st.index + 1)
            .saturating_mul(self.window_nanos)
            .saturating_sub(now.as_nanos());
        Ok(Outcome::count(&mut st.used, self.limit, cost, ends_in).into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        st.used == 0 || st.index < now.as_nanos() / self.window_nanos
    }
}
