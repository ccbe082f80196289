//! A ring of bucket counters over one window: the building block of [`SlidingWindow`].
//!
//! [`SlidingWindow`]: super::SlidingWindow

/// Fractions of a bucket in which a bucket's latest admission is recorded.
const STEPS: u64 = 255;

/// Division by a constant through a precomputed reciprocal: one multiplication instead of a
/// hardware divide on every check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Divisor {
    d: u64,
    reciprocal: u64,
}

impl Divisor {
    /// A divisor for `d` (at least 1).
    pub(crate) fn new(d: u64) -> Self {
        let d = d.max(1);
        Self {
            d,
            reciprocal: u64::MAX / d,
        }
    }

    /// `n / d`, rounded down.
    pub(crate) fn div(self, n: u64) -> u64 {
        // The estimate is at most 2 below the quotient; step up to it.
        let mut q = ((u128::from(n) * u128::from(self.reciprocal)) >> 64) as u64;
        let mut r = n - q * self.d;
        while r >= self.d {
            q += 1;
            r -= self.d;
        }
        q
    }
}

/// A bucket counter: `u16` on the compact ring every key has (48 bytes a key), `u32` on the
/// fine ring of a key near its limit (limits above 65 535 per window).
pub(crate) trait Count: Copy + Default + PartialEq + std::fmt::Debug {
    /// Nothing counted.
    const ZERO: Self;
    /// The count, widened.
    fn get(self) -> u32;
    /// `self + n`, saturating at the type's maximum (callers keep counts below it).
    fn plus(self, n: u32) -> Self;
    /// `self - n`, saturating at zero.
    fn minus(self, n: Self) -> Self;
}

impl Count for u16 {
    const ZERO: Self = 0;
    fn get(self) -> u32 {
        u32::from(self)
    }
    fn plus(self, n: u32) -> Self {
        Self::try_from(u32::from(self).saturating_add(n)).unwrap_or(Self::MAX)
    }
    fn minus(self, n: Self) -> Self {
        self.saturating_sub(n)
    }
}

impl Count for u32 {
    const ZERO: Self = 0;
    fn get(self) -> u32 {
        self
    }
    fn plus(self, n: u32) -> Self {
        self.saturating_add(n)
    }
    fn minus(self, n: Self) -> Self {
        self.saturating_sub(n)
    }
}

/// The geometry of a ring of `N` slots over a window: `N - 1` buckets span it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid<const N: usize> {
    window_nanos: u64,
    bucket: Divisor,
    /// One 255th of a bucket, rounded up: the unit of [`Ring::latest`].
    step: Divisor,
}

/// Per-key counters: per bucket, its units and its latest admission.
///
/// `repr(C)` keeps the few fields every check reads at the front, in one cache line.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Ring<const N: usize, C: Count = u16> {
    /// The newest bucket's index, modulo 2^32: only differences to the current index are used.
    head: u32,
    /// The oldest bucket that may hold units, modulo 2^32: checks skip the empty ones before it.
    tail: u32,
    total: C,
    counts: [C; N],
    /// Offset of the bucket's latest admission from the bucket's start, in steps, rounded up.
    latest: [u8; N],
}

/// Where a check stands after [`Grid::prepare`]: the current bucket and the oldest live one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    pub(crate) now: u64,
    idx: u64,
    first: u64,
    first_slot: usize,
}

impl<const N: usize, C: Count> Ring<N, C> {
    /// Units counted in the window.
    pub(crate) fn total(&self) -> u32 {
        self.total.get()
    }
}

impl<const N: usize> Grid<N> {
    /// A grid of `N - 1` buckets over `window_nanos` (`N` ≥ 2).
    pub(crate) fn new(window_nanos: u64) -> Self {
        let bucket_nanos = window_nanos.div_ceil(N.max(2) as u64 - 1);
        Self {
            window_nanos,
            bucket: Divisor::new(bucket_nanos),
            step: Divisor::new(bucket_nanos.div_ceil(STEPS)),
        }
    }

    /// The width of one bucket in nanoseconds.
    pub(crate) fn bucket_nanos(&self) -> u64 {
        self.bucket.d
    }

    /// A ring with nothing counted, its newest bucket at `now`'s.
    pub(crate) fn empty<C: Count>(&self, now: u64) -> Ring<N, C> {
        let head = self.bucket.div(now) as u32;
        Ring {
            counts: [C::ZERO; N],
            latest: [0; N],
            total: C::ZERO,
            head,
            tail: head,
        }
    }

    fn slot(bucket: u64) -> usize {
        // N is a small constant, so the remainder fits any usize.
        (bucket % N as u64) as usize
    }

    fn next(slot: usize) -> usize {
        if slot + 1 == N { 0 } else { slot + 1 }
    }

    fn clear<C: Count>(r: &mut Ring<N, C>, slot: usize) {
        r.total = r.total.minus(r.counts[slot]);
        r.counts[slot] = C::ZERO;
        r.latest[slot] = 0;
    }

    /// The index of the newest bucket once `now` is taken into account (the ring's own newest
    /// if `now` is behind it), without changing the ring.
    fn head_index<C: Count>(&self, r: &Ring<N, C>, now: u64) -> (u64, u32) {
        let idx = self.bucket.div(now);
        let elapsed = (idx as u32).wrapping_sub(r.head);
        if elapsed > u32::MAX / 2 {
            // `now` is behind the newest bucket (a clock read earlier on another thread):
            // count in the newest bucket, which keeps the request in the window longer.
            return (idx.wrapping_add(u64::from(elapsed.wrapping_neg())), 0);
        }
        (idx, elapsed)
    }

    /// Moves the ring to `now`: drops the buckets too old to overlap the window and those whose
    /// latest admission has left it.
    pub(crate) fn prepare<C: Count>(&self, r: &mut Ring<N, C>, now: u64) -> Cursor {
        let (idx, elapsed) = self.head_index(r, now);
        if elapsed as usize >= N {
            r.counts = [C::ZERO; N];
            r.latest = [0; N];
            r.total = C::ZERO;
        } else {
            for bucket in idx.wrapping_sub(u64::from(elapsed)).wrapping_add(1)..=idx {
                Self::clear(r, Self::slot(bucket));
            }
        }
        r.head = idx as u32;
        // Buckets leave in order, so stop at the first that has not, starting from the oldest
        // that may hold units (the buckets before it are known to be empty).
        let oldest = idx.saturating_sub(N as u64 - 1);
        let behind = (idx as u32).wrapping_sub(r.tail);
        let mut first = if r.total == C::ZERO {
            idx
        } else if (behind as usize) < N {
            idx - u64::from(behind).min(idx)
        } else {
            oldest
        }
        .max(oldest);
        let mut first_slot = Self::slot(first);
        while first < idx {
            if r.counts[first_slot] != C::ZERO {
                if self.leaves_at(r, first, first_slot) > now {
                    break;
                }
                Self::clear(r, first_slot);
            }
            first += 1;
            first_slot = Self::next(first_slot);
        }
        r.tail = first as u32;
        Cursor {
            now,
            idx,
            first,
            first_slot,
        }
    }

    /// When the latest admission in `bucket` (held in `slot`) leaves the window.
    fn leaves_at<C: Count>(&self, r: &Ring<N, C>, bucket: u64, slot: usize) -> u64 {
        self.latest_time(r, bucket, slot)
            .saturating_add(self.window_nanos)
    }

    /// An upper bound on the time of the latest admission in `bucket`.
    fn latest_time<C: Count>(&self, r: &Ring<N, C>, bucket: u64, slot: usize) -> u64 {
        // Steps are rounded up, so cap at the bucket's end: no later than the ring drops it.
        bucket
            .saturating_mul(self.bucket.d)
            .saturating_add((u64::from(r.latest[slot]) * self.step.d).min(self.bucket.d))
    }

    /// The offset of `at` into `bucket`, in steps, rounded up (at most 255).
    fn step_of(&self, bucket: u64, at: u64) -> u8 {
        let into = at.saturating_sub(bucket.saturating_mul(self.bucket.d));
        let steps = self.step.div(into);
        let steps = steps + u64::from(steps * self.step.d < into);
        u8::try_from(steps).unwrap_or(u8::MAX)
    }

    /// Counts `cost` units admitted at `at` in the cursor's newest bucket.
    pub(crate) fn add<C: Count>(&self, r: &mut Ring<N, C>, c: &Cursor, cost: u32, at: u64) {
        let slot = Self::slot(c.idx);
        if r.total == C::ZERO {
            r.tail = c.idx as u32;
        }
        r.counts[slot] = r.counts[slot].plus(cost);
        r.latest[slot] = r.latest[slot].max(self.step_of(c.idx, at));
        r.total = r.total.plus(cost);
    }

    /// Nanoseconds from the cursor's `now` until the oldest units leave (`Reset`), and, if
    /// `excess` units must leave first, until they have (`Retry-After`).
    pub(crate) fn waits<C: Count>(
        &self,
        r: &Ring<N, C>,
        c: &Cursor,
        excess: u32,
    ) -> (u64, Option<u64>) {
        let mut reset = 0;
        let mut freed = 0u32;
        let (mut bucket, mut slot) = (c.first, c.first_slot);
        while bucket <= c.idx {
            let count = r.counts[slot].get();
            if count != 0 {
                let leaves_in = self.leaves_at(r, bucket, slot).saturating_sub(c.now);
                if reset == 0 {
                    reset = leaves_in;
                }
                freed = freed.saturating_add(count);
                if freed >= excess {
                    return (reset, (excess > 0).then_some(leaves_in));
                }
            }
            bucket += 1;
            slot = Self::next(slot);
        }
        // Only reachable if more must leave than is counted: wait out a whole ring.
        (
            reset,
            (excess > 0).then_some(self.window_nanos + self.bucket.d),
        )
    }

    /// When the oldest non-empty bucket leaves the window, and its units.
    pub(crate) fn oldest<C: Count>(&self, r: &Ring<N, C>, c: &Cursor) -> Option<(u64, u32)> {
        let (mut bucket, mut slot) = (c.first, c.first_slot);
        while bucket <= c.idx {
            if r.counts[slot] != C::ZERO {
                return Some((self.leaves_at(r, bucket, slot), r.counts[slot].get()));
            }
            bucket += 1;
            slot = Self::next(slot);
        }
        None
    }

    /// When the bucket after the cursor's newest starts.
    pub(crate) fn next_bucket_at(&self, c: &Cursor) -> u64 {
        (c.idx + 1).saturating_mul(self.bucket.d)
    }

    /// Whether nothing in `r` can still be in the window at `now`.
    pub(crate) fn is_idle<C: Count>(&self, r: &Ring<N, C>, now: u64) -> bool {
        if r.total == C::ZERO {
            return true;
        }
        let elapsed = (self.bucket.div(now) as u32).wrapping_sub(r.head);
        (N as u32..=u32::MAX / 2).contains(&elapsed)
    }

    /// The ring's units as `(upper bound on their admission time, count)`, oldest first (the
    /// order [`Grid::ring_of`] relies on).
    pub(crate) fn units<'a, C: Count>(
        &'a self,
        r: &'a Ring<N, C>,
        c: &Cursor,
    ) -> impl Iterator<Item = (u64, u32)> + 'a {
        let first = c.first;
        (first..=c.idx).filter_map(move |bucket| {
            let slot = Self::slot(bucket);
            (r.counts[slot] != C::ZERO)
                .then(|| (self.latest_time(r, bucket, slot), r.counts[slot].get()))
        })
    }

    /// A ring at `now` holding `units` (from another grid), each counted no earlier than given.
    /// The caller keeps the units' sum within `C` (a key moves to the compact ring only with
    /// fewer than 32 768 units counted).
    pub(crate) fn ring_of<C: Count>(
        &self,
        now: u64,
        units: impl Iterator<Item = (u64, u32)>,
    ) -> Ring<N, C> {
        let units: Vec<_> = units.collect();
        let newest = units.iter().map(|&(t, _)| t).max().unwrap_or(now).max(now);
        let mut r: Ring<N, C> = self.empty(newest);
        let head = self.bucket.div(newest);
        r.tail = units
            .first()
            .map_or(head, |&(at, _)| self.bucket.div(at))
            .clamp(head.saturating_sub(N as u64 - 1), head) as u32;
        for (at, count) in units {
            // A unit older than the ring reaches (rounding) counts in its oldest bucket: later
            // than it came, so never for less long.
            let bucket = self
                .bucket
                .div(at)
                .clamp(head.saturating_sub(N as u64 - 1), head);
            let slot = Self::slot(bucket);
            r.counts[slot] = r.counts[slot].plus(count);
            r.latest[slot] = r.latest[slot].max(self.step_of(bucket, at));
            r.total = r.total.plus(count);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reciprocal_divides_exactly() {
        for d in [1, 3, 7, 255, 4_615_384_616, 60_000_000_000, u64::MAX / 3] {
            let div = Divisor::new(d);
            for n in [
                0,
                1,
                d - 1,
                d,
                d + 1,
                1_700_000_000_123_456_789,
                u64::MAX - 1,
                u64::MAX,
            ] {
                assert_eq!(div.div(n), n / d, "{n} / {d}");
            }
        }
    }
}
