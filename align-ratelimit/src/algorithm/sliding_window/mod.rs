//! The default algorithm: a sliding window of `SLOTS` counters that is never over the limit.

use std::time::Duration;

use super::{Algorithm, Outcome, Rate};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};

/// A sliding window kept as a ring of `SLOTS` bucket counters, exact on the safe side.
///
/// The window W is cut into `SLOTS - 1` buckets of width `g = W / (SLOTS - 1)` (rounded up).
/// Each bucket keeps its admitted units and, to 1/255 of `g` (rounded up), the time of its
/// latest admission; the bucket counts until that latest admission has left the window. A
/// request is admitted only if the units still counted plus its cost fit the limit. Every
/// request is counted at least as long as it is inside the window, so **no interval of length
/// W ever holds more than the limit**. The price is that a bucket's earlier requests count until
/// its latest one leaves: less than `g` too long, which denies slightly more than the exact log
/// on a randomized workload (the crate README gives the measured figure).
///
/// Memory: `3·SLOTS + 6` bytes per key, 48 bytes with the default 14 slots (13 buckets of about
/// 4.6 s for a 60-second window). Limits up to 65 535 per window.
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
pub struct SlidingWindow<const SLOTS: usize = 14> {
    limit: u16,
    window: Duration,
    window_nanos: u64,
    bucket_nanos: u64,
}

/// Per-key state of [`SlidingWindow`]: per bucket, its units and its latest admission.
#[derive(Debug, Clone)]
pub struct SlidingWindowState<const SLOTS: usize = 14> {
    counts: [u16; SLOTS],
    /// Offset of the bucket's latest admission from the bucket's start, in 1/255 of a bucket.
    latest: [u8; SLOTS],
    total: u16,
    /// The newest bucket's index, modulo 2^32: only differences to the current index are used.
    head: u32,
}

/// Fractions of a bucket in which the latest admission is recorded.
const STEPS: u128 = 255;

impl SlidingWindow {
    /// The default sliding window (14 slots) for `rate`.
    pub fn new(rate: Rate) -> Result<Self> {
        Self::with_slots(rate)
    }
}

impl<const SLOTS: usize> SlidingWindow<SLOTS> {
    /// A sliding window with `SLOTS` counters: more slots deny less early and use more memory.
    pub fn with_slots(rate: Rate) -> Result<Self> {
        if !(2..=4096).contains(&SLOTS) {
            return Err(Error::InvalidConfig(
                "a sliding window needs between 2 and 4096 slots",
            ));
        }
        let (limit, window_nanos) = rate.validated()?;
        let limit = u16::try_from(limit).map_err(|_| {
            Error::InvalidConfig(
                "the sliding window counts at most 65535 per window; use Gcra or TokenBucket above that",
            )
        })?;
        let buckets = SLOTS as u64 - 1;
        Ok(Self {
            limit,
            window: rate.window(),
            window_nanos,
            bucket_nanos: window_nanos.div_ceil(buckets),
        })
    }

    /// The width of one bucket: at most how much longer than W a request may be counted.
    #[must_use]
    pub fn bucket_width(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos)
    }

    fn slot(bucket: u64) -> usize {
        // SLOTS ≤ 4096, so the remainder fits any usize.
        (bucket % SLOTS as u64) as usize
    }

    /// Drops the buckets too old to overlap the window and returns the current bucket's index.
    fn advance(&self, st: &mut SlidingWindowState<SLOTS>, now: Timestamp) -> u64 {
        let idx = now.as_nanos() / self.bucket_nanos;
        let elapsed = (idx as u32).wrapping_sub(st.head);
        if elapsed > u32::MAX / 2 {
            // `now` is behind the newest bucket (a clock read earlier on another thread):
            // count in the newest bucket, which keeps the request in the window longer.
            return idx.wrapping_add(u64::from(elapsed.wrapping_neg()));
        }
        if elapsed as usize >= SLOTS {
            st.counts = [0; SLOTS];
            st.latest = [0; SLOTS];
            st.total = 0;
        } else {
            for bucket in idx.wrapping_sub(u64::from(elapsed)).wrapping_add(1)..=idx {
                Self::clear(st, Self::slot(bucket));
            }
        }
        st.head = idx as u32;
        idx
    }

    fn clear(st: &mut SlidingWindowState<SLOTS>, slot: usize) {
        st.total = st.total.saturating_sub(st.counts[slot]);
        st.counts[slot] = 0;
        st.latest[slot] = 0;
    }

    /// When the latest admission in `bucket` (held in `slot`) leaves the window.
    fn leaves_at(&self, st: &SlidingWindowState<SLOTS>, bucket: u64, slot: usize) -> u64 {
        let offset = (u128::from(st.latest[slot]) * u128::from(self.bucket_nanos)).div_ceil(STEPS);
        bucket
            .saturating_mul(self.bucket_nanos)
            .saturating_add(offset as u64)
            .saturating_add(self.window_nanos)
    }

    /// The offset of `now` into `bucket`, in 1/255 of a bucket, rounded up.
    fn step_of(&self, bucket: u64, now: u64) -> u8 {
        let into = now.saturating_sub(bucket.saturating_mul(self.bucket_nanos));
        let step = (u128::from(into) * STEPS).div_ceil(u128::from(self.bucket_nanos));
        u8::try_from(step).unwrap_or(u8::MAX)
    }
}

impl<const SLOTS: usize> Algorithm for SlidingWindow<SLOTS> {
    type State = SlidingWindowState<SLOTS>;

    fn limit(&self) -> u64 {
        u64::from(self.limit)
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        SlidingWindowState {
            counts: [0; SLOTS],
            latest: [0; SLOTS],
            total: 0,
            head: (now.as_nanos() / self.bucket_nanos) as u32,
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, u64::from(self.limit))?;
        // ensure_cost bounds cost by the u16 limit.
        let cost = cost as u16;
        let idx = self.advance(st, now);
        let now = now.as_nanos();
        let oldest = idx.saturating_sub(SLOTS as u64 - 1);
        // Buckets whose latest admission has left the window no longer count; they leave in
        // bucket order, so stop at the first that has not.
        for bucket in oldest..idx {
            let slot = Self::slot(bucket);
            if st.counts[slot] == 0 {
                continue;
            }
            if self.leaves_at(st, bucket, slot) > now {
                break;
            }
            Self::clear(st, slot);
        }
        let need = u32::from(st.total) + u32::from(cost);
        let allowed = need <= u32::from(self.limit);
        if allowed && cost > 0 {
            let slot = Self::slot(idx);
            st.counts[slot] = st.counts[slot].saturating_add(cost);
            st.latest[slot] = st.latest[slot].max(self.step_of(idx, now));
            st.total = st.total.saturating_add(cost);
        }
        // Walk from the oldest bucket: the first non-empty one sets Reset; the first by which
        // enough units have left sets Retry-After.
        let mut reset_after_nanos = 0;
        let mut retry_after_nanos = None;
        let mut freed = 0u32;
        let excess = need.saturating_sub(u32::from(self.limit));
        for bucket in oldest..=idx {
            let slot = Self::slot(bucket);
            let count = st.counts[slot];
            if count == 0 {
                continue;
            }
            let leaves_in = self.leaves_at(st, bucket, slot).saturating_sub(now);
            if reset_after_nanos == 0 {
                reset_after_nanos = leaves_in;
            }
            freed += u32::from(count);
            if allowed {
                break;
            }
            if freed >= excess {
                retry_after_nanos = Some(leaves_in);
                break;
            }
        }
        if !allowed && retry_after_nanos.is_none() {
            // Unreachable while the counters are consistent; stay safe if they are not.
            retry_after_nanos = Some(self.window_nanos + self.bucket_nanos);
        }
        Ok(Outcome {
            limit: u64::from(self.limit),
            used: u64::from(st.total),
            reset_after_nanos,
            retry_after_nanos,
        }
        .into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        if st.total == 0 {
            return true;
        }
        let elapsed = ((now.as_nanos() / self.bucket_nanos) as u32).wrapping_sub(st.head);
        (SLOTS as u32..=u32::MAX / 2).contains(&elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multiple of the 5-second buckets a 65-second window gets with the default 14 slots.
    const T0: u64 = 1_700_000_040;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_nanos(T0 * 1_000_000_000 + (secs * 1e9) as u64)
    }

    fn per_65s(limit: u64) -> SlidingWindow {
        SlidingWindow::new(Rate::new(limit, Duration::from_secs(65))).unwrap()
    }

    #[test]
    fn default_state_is_48_bytes() {
        assert_eq!(std::mem::size_of::<SlidingWindowState>(), 48);
    }

    #[test]
    fn a_bucket_counts_until_its_latest_request_leaves_the_window() {
        let w = per_65s(3);
        assert_eq!(w.bucket_width(), Duration::from_secs(5));
        let mut st = w.new_state(at(0.0));
        for i in 0..3u32 {
            let d = w.check(&mut st, 1, at(0.5 + f64::from(i))).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - u64::from(i));
        }
        // The latest request of bucket [0, 5) came at 2.5 s (recorded as 128/255 of 5 s).
        let leaves = Duration::from_nanos(67_509_803_922 - 10_000_000_000);
        let denied = w.check(&mut st, 1, at(10.0)).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(leaves));
        assert_eq!(denied.reset_after, leaves);
        assert_eq!(denied.retry_after_secs(), Some(58));
        assert!(!w.check(&mut st, 1, at(67.5)).unwrap().allowed);
        let d = w.check(&mut st, 3, at(67.51)).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn cost_above_the_limit_is_an_error() {
        let w = per_65s(3);
        let mut st = w.new_state(at(0.0));
        assert_eq!(
            w.check(&mut st, 4, at(0.0)),
            Err(Error::CostExceedsLimit { cost: 4, max: 3 })
        );
    }

    #[test]
    fn a_clock_read_late_counts_from_the_newest_bucket() {
        let w = per_65s(2);
        let mut st = w.new_state(at(0.0));
        assert!(w.check(&mut st, 1, at(30.0)).unwrap().allowed);
        assert!(w.check(&mut st, 1, at(1.0)).unwrap().allowed);
        // Both count from 30 s on, so at 66 s (past 1 s + 65) nothing has left yet.
        assert!(!w.check(&mut st, 1, at(66.0)).unwrap().allowed);
        assert!(w.check(&mut st, 1, at(95.0)).unwrap().allowed);
    }

    #[test]
    fn idle_once_no_bucket_can_overlap_the_window() {
        let w = per_65s(5);
        let mut st = w.new_state(at(0.0));
        assert!(w.is_idle(&st, at(0.0)));
        w.check(&mut st, 1, at(1.0)).unwrap();
        assert!(!w.is_idle(&st, at(69.0)));
        assert!(w.is_idle(&st, at(70.0)));
    }

    #[test]
    fn limits_above_u16_are_refused() {
        assert!(SlidingWindow::new(Rate::per_minute(70_000)).is_err());
        assert!(SlidingWindow::new(Rate::per_minute(0)).is_err());
        assert!(SlidingWindow::<1>::with_slots(Rate::per_minute(5)).is_err());
    }
}
