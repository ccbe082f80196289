//! The default algorithm: a sliding window that is never over the limit, in 48 bytes per key
//! (and a 3 KiB ring for a key near its limit).

mod ring;

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};
use ring::{Cursor, Grid, Ring};

/// Slots of the compact ring every key starts with: 9 buckets over the window.
const COARSE: usize = 10;
/// Slots of the fine ring a key gets near its limit: 600 buckets over the window.
const FINE: usize = 601;
/// A key moves to the fine ring before a request takes it past 1/PROMOTE of its limit (or
/// past what the compact ring's 16-bit counters hold), ...
const PROMOTE: u32 = 4;
/// ... and back to the compact ring once under 1/DEMOTE of it (and under half of what the
/// compact ring holds).
const DEMOTE: u32 = 8;
/// The most units the compact ring counts (its counters are 16 bits wide).
const COARSE_MAX: u32 = u16::MAX as u32;

/// A sliding window that never admits more than the limit in any interval of its length.
///
/// Each key keeps per-bucket counters, and per bucket the time of its latest admission (to
/// 1/255 of a bucket, rounded up); a bucket's units count until that latest admission has
/// left the window. Every request is therefore counted at least as long as it is inside the
/// window, so **no interval of length W ever holds more than the limit**. A request is admitted
/// iff the units still counted plus its cost fit the limit.
///
/// Keys start on a compact ring of 9 buckets (48 bytes per key, all in the store's table).
/// Before a request could take a key past a quarter of its limit (or past 65 535 units in the
/// window, for limits above 262 140), the key moves to a ring of 600 buckets (W/600 each,
/// 32-bit counters: 3.0 KiB on the heap), and back once it is under an eighth (and under
/// 32 768 units). Denials happen only on the fine ring, where a bucket's units count at most
/// W/600 too long: the window denies slightly more than the exact log (the crate README gives
/// the measured rate). Limits up to 4 294 967 295 per window: a key at 1 000 000 per minute
/// costs the same 48 bytes while it is quiet and 48 bytes + 3.0 KiB while it is busy.
///
/// ```
/// use align_ratelimit::{Algorithm, Rate, SlidingWindow, Timestamp};
///
/// let window = SlidingWindow::new(Rate::per_minute(600))?;
/// let now = Timestamp::from_unix_secs(1_700_000_000);
/// let mut state = window.new_state(now);
/// let decision = window.check(&mut state, 1, now)?;
/// assert!(decision.allowed);
/// assert_eq!(decision.remaining, 599);
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SlidingWindow {
    limit: u32,
    /// Units up to which a key is admitted on the compact ring.
    promote_at: u32,
    /// Units above which a key stays on the fine ring.
    demote_at: u32,
    window: Duration,
    coarse: Grid<COARSE>,
    fine: Grid<FINE>,
}

/// Per-key state of [`SlidingWindow`]: the compact ring, or the fine one near the limit.
#[derive(Debug, Clone)]
pub struct SlidingWindowState {
    coarse: Ring<COARSE>,
    fine: Option<Box<Fine>>,
}

/// The fine ring, with what a denial needs cached in the first cache line: a key at its limit
/// is checked over and over, and most checks are denials that change nothing.
#[derive(Debug, Clone)]
#[repr(C)]
struct Fine {
    /// Until then (exclusive) no bucket leaves and the newest bucket stays the same.
    quiet_until: u64,
    /// When the oldest non-empty bucket leaves the window, and its units.
    oldest_leaves_at: u64,
    oldest_count: u32,
    ring: Ring<FINE, u32>,
}

impl SlidingWindow {
    /// A sliding window for `rate` (limits up to 4 294 967 295 per window).
    pub fn new(rate: Rate) -> Result<Self> {
        let (limit, window_nanos) = rate.validated()?;
        let limit = u32::try_from(limit).map_err(|_| {
            Error::InvalidConfig(
                "the sliding window counts at most 4294967295 per window; use Gcra or TokenBucket above that",
            )
        })?;
        Ok(Self {
            limit,
            promote_at: (limit / PROMOTE).min(COARSE_MAX),
            demote_at: (limit / DEMOTE).min(COARSE_MAX / 2),
            window: rate.window(),
            coarse: Grid::new(window_nanos),
            fine: Grid::new(window_nanos),
        })
    }

    /// At most how much longer than the window a request near the limit may be counted.
    #[must_use]
    pub fn resolution(&self) -> Duration {
        Duration::from_nanos(self.fine.bucket_nanos())
    }

    /// The denial of `cost` at `now` from the cache alone, when nothing can have changed since
    /// the last full check: exactly what the full check would return.
    fn quiet_denial(&self, fine: &Fine, cost: u32, now: u64) -> Option<Decision> {
        let total = u64::from(fine.ring.total());
        let excess = (total + u64::from(cost)).checked_sub(u64::from(self.limit))?;
        let quiet = now < fine.quiet_until
            && excess > 0
            && excess <= u64::from(fine.oldest_count)
            && total > u64::from(self.demote_at);
        quiet.then(|| {
            let wait = Duration::from_nanos(fine.oldest_leaves_at - now);
            Decision {
                allowed: false,
                limit: u64::from(self.limit),
                remaining: u64::from(self.limit) - u64::from(fine.ring.total()),
                reset_after: wait,
                retry_after: Some(wait),
            }
        })
    }

    /// Caches, after a full check, what [`Self::quiet_denial`] needs.
    fn remember(&self, fine: &mut Fine, cursor: &Cursor) {
        let (leaves_at, count) = self.fine.oldest(&fine.ring, cursor).unwrap_or((0, 0));
        fine.oldest_leaves_at = leaves_at;
        fine.oldest_count = count;
        fine.quiet_until = leaves_at.min(self.fine.next_bucket_at(cursor));
    }

    /// Admits `cost` on `ring` (prepared by `cursor`) if it fits, with the waits for the headers.
    fn decide<const N: usize>(
        &self,
        grid: &Grid<N>,
        ring: &mut Ring<N, u32>,
        cursor: &Cursor,
        cost: u32,
    ) -> Outcome {
        let need = u64::from(ring.total()) + u64::from(cost);
        let allowed = need <= u64::from(self.limit);
        if allowed && cost > 0 {
            grid.add(ring, cursor, cost, cursor.now);
        }
        // At most `cost`, itself at most the limit.
        let excess = u32::try_from(need.saturating_sub(u64::from(self.limit))).unwrap_or(u32::MAX);
        let (reset, retry) = grid.waits(ring, cursor, excess);
        Outcome {
            limit: u64::from(self.limit),
            used: u64::from(ring.total()),
            reset_after_nanos: reset,
            retry_after_nanos: retry,
        }
    }
}

impl Algorithm for SlidingWindow {
    type State = SlidingWindowState;

    fn limit(&self) -> u64 {
        u64::from(self.limit)
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        SlidingWindowState {
            coarse: self.coarse.empty(now.as_nanos()),
            fine: None,
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, u64::from(self.limit))?;
        // ensure_cost bounds cost by the u32 limit.
        let cost = cost as u32;
        let now = now.as_nanos();
        if let Some(fine) = st.fine.as_deref_mut() {
            if let Some(denied) = self.quiet_denial(fine, cost, now) {
                return Ok(denied);
            }
            let cursor = self.fine.prepare(&mut fine.ring, now);
            if fine.ring.total() > self.demote_at {
                let outcome = self.decide(&self.fine, &mut fine.ring, &cursor, cost);
                self.remember(fine, &cursor);
                return Ok(outcome.into());
            }
            // Well under the limit again: back to the compact ring.
            st.coarse = self
                .coarse
                .ring_of(now, self.fine.units(&fine.ring, &cursor));
            st.fine = None;
        }
        {
            let cursor = self.coarse.prepare(&mut st.coarse, now);
            if u64::from(st.coarse.total()) + u64::from(cost) <= u64::from(self.promote_at) {
                // Far from the limit: admitted on the compact ring, nothing can be denied.
                self.coarse.add(&mut st.coarse, &cursor, cost, now);
                let (reset, _) = self.coarse.waits(&st.coarse, &cursor, 0);
                return Ok(Outcome {
                    limit: u64::from(self.limit),
                    used: u64::from(st.coarse.total()),
                    reset_after_nanos: reset,
                    retry_after_nanos: None,
                }
                .into());
            }
            // Near the limit: decide on the fine ring.
            let ring = self
                .fine
                .ring_of(now, self.coarse.units(&st.coarse, &cursor));
            let mut fine = Box::new(Fine {
                quiet_until: 0,
                oldest_leaves_at: 0,
                oldest_count: 0,
                ring,
            });
            let fine_cursor = self.fine.prepare(&mut fine.ring, now);
            let outcome = self.decide(&self.fine, &mut fine.ring, &fine_cursor, cost);
            self.remember(&mut fine, &fine_cursor);
            st.coarse = self.coarse.empty(now);
            st.fine = Some(fine);
            Ok(outcome.into())
        }
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        match &st.fine {
            Some(fine) => self.fine.is_idle(&fine.ring, now.as_nanos()),
            None => self.coarse.is_idle(&st.coarse, now.as_nanos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multiple of 60 s, so buckets start on whole seconds.
    const T0: u64 = 1_700_000_040;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_nanos(T0 * 1_000_000_000 + (secs * 1e9) as u64)
    }

    fn per_minute(limit: u64) -> SlidingWindow {
        SlidingWindow::new(Rate::per_minute(limit)).unwrap()
    }

    #[test]
    fn default_state_is_48_bytes() {
        assert_eq!(std::mem::size_of::<SlidingWindowState>(), 48);
    }

    #[test]
    fn a_key_moves_to_the_fine_ring_near_its_limit_and_back_when_quiet() {
        let w = per_minute(8);
        let mut st = w.new_state(at(0.0));
        for i in 0..2 {
            assert!(w.check(&mut st, 1, at(f64::from(i))).unwrap().allowed);
        }
        assert!(
            st.fine.is_none(),
            "a quarter of the limit fits the compact ring"
        );
        assert!(w.check(&mut st, 1, at(2.0)).unwrap().allowed);
        assert!(st.fine.is_some());
        // After the window, the fine ring empties and the key returns to the compact one.
        assert_eq!(w.check(&mut st, 0, at(70.0)).unwrap().remaining, 8);
        assert!(st.fine.is_none());
    }

    #[test]
    fn a_full_window_frees_when_its_oldest_request_leaves() {
        let w = per_minute(3);
        assert_eq!(w.resolution(), Duration::from_millis(100));
        let mut st = w.new_state(at(0.0));
        for i in 0..3u32 {
            let d = w.check(&mut st, 1, at(0.5 + f64::from(i))).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - u64::from(i));
        }
        let denied = w.check(&mut st, 1, at(10.0)).unwrap();
        assert!(!denied.allowed);
        // The request at 0.5 s leaves at 60.5 s, give or take one fine bucket.
        assert_eq!(denied.retry_after_secs(), Some(51));
        assert_eq!(denied.reset_after, denied.retry_after.unwrap());
        assert!(!w.check(&mut st, 1, at(60.4)).unwrap().allowed);
        assert!(w.check(&mut st, 1, at(60.7)).unwrap().allowed);
    }

    #[test]
    fn cost_above_the_limit_is_an_error() {
        let w = per_minute(3);
        let mut st = w.new_state(at(0.0));
        assert_eq!(
            w.check(&mut st, 4, at(0.0)),
            Err(Error::CostExceedsLimit { cost: 4, max: 3 })
        );
    }

    #[test]
    fn a_clock_read_late_counts_from_the_newest_bucket() {
        let w = per_minute(2);
        let mut st = w.new_state(at(0.0));
        assert!(w.check(&mut st, 1, at(30.0)).unwrap().allowed);
        assert!(w.check(&mut st, 1, at(1.0)).unwrap().allowed);
        // Both count from 30 s on, so at 62 s (past 1 s + 60) nothing has left yet.
        assert!(!w.check(&mut st, 1, at(62.0)).unwrap().allowed);
        assert!(w.check(&mut st, 1, at(90.1)).unwrap().allowed);
    }

    #[test]
    fn idle_once_nothing_can_be_in_the_window() {
        let w = per_minute(5);
        let mut st = w.new_state(at(0.0));
        assert!(w.is_idle(&st, at(0.0)));
        w.check(&mut st, 1, at(1.0)).unwrap();
        assert!(!w.is_idle(&st, at(61.0)));
        assert!(w.is_idle(&st, at(67.0)));
    }

    #[test]
    fn limits_above_u32_are_refused() {
        assert!(SlidingWindow::new(Rate::per_minute(u64::from(u32::MAX) + 1)).is_err());
        assert!(SlidingWindow::new(Rate::per_minute(0)).is_err());
        assert!(SlidingWindow::new(Rate::per_minute(u64::from(u32::MAX))).is_ok());
    }

    /// An exact log of what a window admitted: the units in `(now - 60 s, now]`.
    #[derive(Default)]
    struct Log {
        admitted: std::collections::VecDeque<(f64, u64)>,
        in_window: u64,
    }

    impl Log {
        fn check(
            &mut self,
            w: &SlidingWindow,
            st: &mut SlidingWindowState,
            cost: u64,
            t: f64,
        ) -> bool {
            let d = w.check(st, cost, at(t)).unwrap();
            while let Some(&(t0, c)) = self.admitted.front() {
                if t0 > t - 60.0 {
                    break;
                }
                self.in_window -= c;
                self.admitted.pop_front();
            }
            if d.allowed {
                self.admitted.push_back((t, cost));
                self.in_window += cost;
            }
            assert!(
                self.in_window <= w.limit(),
                "{} in the minute to {t}",
                self.in_window
            );
            d.allowed
        }
    }

    /// A key at 1 000 000 per minute: never more than the limit in any minute, the compact
    /// ring's 16-bit counters never overflow, and the key returns to 48 bytes when quiet.
    #[test]
    fn a_million_per_minute_is_exact_safe() {
        let w = per_minute(1_000_000);
        let mut st = w.new_state(at(0.0));
        let mut log = Log::default();
        // Far from the limit, requests stay on the compact ring, up to its 65 535 units.
        for i in 0..60_000u32 {
            assert!(log.check(&w, &mut st, 1, f64::from(i) * 0.000_1));
        }
        assert!(st.fine.is_none());
        assert!(log.check(&w, &mut st, 10_000, 6.0));
        assert!(
            st.fine.is_some(),
            "past 65 535 units the fine ring takes over"
        );
        // Bursts of 10 000 every 10 ms fill the minute's limit.
        let mut t = 6.01;
        while log.in_window + 10_000 <= 1_000_000 {
            assert!(log.check(&w, &mut st, 10_000, t), "at {t}");
            t += 0.01;
        }
        assert!(!log.check(&w, &mut st, 10_000, t));
        let denied = w.check(&mut st, 1, at(30.0)).unwrap();
        assert!(!denied.allowed);
        assert!(denied.retry_after_secs().unwrap() <= 31);
        // A steady flood for two minutes: admitted again as the first minute's units leave,
        // and never more than the limit in any minute.
        let mut allowed = 0;
        for i in 0..40_000u32 {
            if log.check(&w, &mut st, 1_000, 30.0 + f64::from(i) * 0.003) {
                allowed += 1;
            }
        }
        assert!(allowed > 1_000, "{allowed}");
        // Quiet for a window: back to the compact ring, 48 bytes.
        assert_eq!(w.check(&mut st, 0, at(300.0)).unwrap().remaining, 1_000_000);
        assert!(st.fine.is_none());
    }
}
