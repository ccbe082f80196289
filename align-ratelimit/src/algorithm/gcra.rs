//! GCRA, the generic cell rate algorithm (what `governor` implements).

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};

/// GCRA: one "theoretical arrival time" per key, spaced `T = W / L` per unit.
///
/// Admits a burst of `burst` units, then one unit every `T`. In any interval of length `d` it
/// admits at most `burst + d / T` units, so with the default `burst = L` up to about `2·L` can
/// land in one window of length W: smooth, cheap (8 bytes per key), but not a sliding window.
/// `T` is rounded up to whole nanoseconds, never faster than configured.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    limit: u64,
    window: Duration,
    burst: u64,
    emission_nanos: u64,
}

/// Per-key state of [`Gcra`]: the theoretical arrival time, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcraState {
    tat: u64,
}

impl Gcra {
    /// GCRA for `rate` with a burst equal to the limit.
    pub fn new(rate: Rate) -> Result<Self> {
        Self::with_burst(rate, rate.limit())
    }

    /// GCRA for `rate` admitting bursts of up to `burst` units.
    pub fn with_burst(rate: Rate, burst: u64) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        if burst == 0 {
            return Err(Error::InvalidConfig("the burst must be at least 1"));
        }
        let emission_nanos = window_nanos.div_ceil(limit);
        if emission_nanos.checked_mul(burst).is_none() {
            return Err(Error::InvalidConfig(
                "the burst times the emission interval overflows",
            ));
        }
        Ok(Self {
            limit,
            window: rate.window(),
            burst,
            emission_nanos,
        })
    }

    /// The emission interval `T` between two units once the burst is spent.
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_nanos)
    }

    /// The largest burst admitted at once.
    #[must_use]
    pub fn burst(&self) -> u64 {
        self.burst
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    fn limit(&self) -> u64 {
        self.limit
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, _now: Timestamp) -> Self::State {
        GcraState::default()
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.burst)?;
        let t = self.emission_nanos;
        let now = now.as_nanos();
        let tolerance = self.burst * t;
        let tat = st.tat.max(now);
        let new_tat = tat.saturating_add(cost * t);
        let allowed = new_tat - now <= tolerance;
        if allowed {
            st.tat = new_tat;
        }
        let backlog = st.tat.max(now) - now;
        let used = backlog.div_ceil(t);
        let reset_after_nanos = match backlog % t {
            0 if backlog == 0 => 0,
            0 => t,
            r => r,
        };
        Ok(Outcome {
            limit: self.burst,
            used,
            reset_after_nanos,
            retry_after_nanos: (!allowed).then(|| new_tat - now - tolerance),
        }
        .into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        st.tat <= now.as_nanos()
    }
}
