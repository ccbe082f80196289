//! Time as the limiters see it: a [`Timestamp`] read from an injectable [`Clock`].

use std::ops::Add;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in nanoseconds since the Unix epoch (UTC).
///
/// Calendar quotas need wall-clock days and months, so timestamps are Unix time rather than an
/// opaque monotonic instant; [`SystemClock`] still never goes backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Self = Self(0);

    /// A timestamp `nanos` nanoseconds after the Unix epoch.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// A timestamp `secs` whole seconds after the Unix epoch (saturating far in the future).
    #[must_use]
    pub const fn from_unix_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;

    fn add(self, rhs: Duration) -> Self {
        Self(self.0.saturating_add(duration_nanos(rhs)))
    }
}

/// `d` in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A source of [`Timestamp`]s, injected into limiters so tests control time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock: Unix time read once at construction, advanced by the monotonic clock.
///
/// It never goes backwards, even when the system's wall clock is stepped. The monotonic clock
/// is `quanta`'s (the CPU's time-stamp counter where it is reliable, as in `governor`): reading
/// it costs a few nanoseconds, where `std::time::Instant::now` can cost tens on virtual machines.
#[derive(Debug, Clone)]
pub struct SystemClock {
    clock: quanta::Clock,
    origin: quanta::Instant,
    origin_unix_nanos: u64,
}

/// One calibrated clock per process: calibration takes a while, reading does not.
fn calibrated() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

impl SystemClock {
    /// A clock anchored to the current wall-clock time.
    #[must_use]
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let clock = calibrated().clone();
        Self {
            origin: clock.now(),
            clock,
            origin_unix_nanos: duration_nanos(unix),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(
            self.origin_unix_nanos
                .saturating_add(duration_nanos(self.clock.now().duration_since(self.origin))),
        )
    }
}

/// A clock that moves only when told to, for deterministic tests.
///
/// ```
/// use align_ratelimit::{Clock, TestClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = TestClock::new(Timestamp::from_unix_secs(1_700_000_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_unix_secs(1_700_000_002));
/// ```
#[derive(Debug, Default)]
pub struct TestClock(AtomicU64);

impl TestClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicU64::new(start.as_nanos()))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Sets the clock to `to` (which may be earlier: limiters must cope with that).
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.as_nanos(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
