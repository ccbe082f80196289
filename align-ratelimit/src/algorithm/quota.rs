//! Quotas: N units per calendar day or month (UTC), refilled at each period's start.

use std::time::Duration;

use super::{Algorithm, Outcome};
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::error::{Error, Result, ensure_cost};

const DAY_SECS: u64 = 86_400;
const NANOS: u64 = 1_000_000_000;

/// The calendar period a [`Quota`] refills on, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Refills at 00:00:00 UTC every day.
    Day,
    /// Refills at 00:00:00 UTC on the first day of every month.
    Month,
}

/// A quota of `limit` units per calendar [`Period`]; the whole quota refills when a period starts.
///
/// `X-RateLimit-Reset` is then the time until the next period. 16 bytes per key.
///
/// ```
/// use align_ratelimit::{Algorithm, Quota, Timestamp};
///
/// let quota = Quota::per_month(10_000)?;
/// let jan_31 = Timestamp::from_unix_secs(1_738_367_999); // 2025-01-31T23:59:59Z
/// let mut state = quota.new_state(jan_31);
/// assert_eq!(quota.check(&mut state, 10_000, jan_31)?.remaining, 0);
/// assert!(!quota.check(&mut state, 1, jan_31)?.allowed);
/// let feb_1 = Timestamp::from_unix_secs(1_738_368_000);
/// assert_eq!(quota.check(&mut state, 1, feb_1)?.remaining, 9_999);
/// # Ok::<(), align_ratelimit::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    limit: u64,
    period: Period,
}

/// Per-key state of [`Quota`]: which period is counted, and how much of it is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaState {
    period: u64,
    used: u64,
}

impl Quota {
    /// `limit` units per `period`.
    pub fn new(limit: u64, period: Period) -> Result<Self> {
        if limit == 0 {
            return Err(Error::InvalidConfig("a quota must allow at least 1 unit"));
        }
        Ok(Self { limit, period })
    }

    /// `limit` units per UTC day.
    pub fn per_day(limit: u64) -> Result<Self> {
        Self::new(limit, Period::Day)
    }

    /// `limit` units per UTC calendar month.
    pub fn per_month(limit: u64) -> Result<Self> {
        Self::new(limit, Period::Month)
    }

    /// The calendar period the quota refills on.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The index of the period containing `now` and the second at which it ends.
    fn period_at(&self, now: Timestamp) -> (u64, u64) {
        let days = now.as_nanos() / NANOS / DAY_SECS;
        match self.period {
            Period::Day => (days, (days + 1) * DAY_SECS),
            Period::Month => {
                let (year, month) = civil_from_days(days);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (
                    year * 12 + month - 1,
                    days_from_civil(next_year, next_month) * DAY_SECS,
                )
            }
        }
    }
}

impl Algorithm for Quota {
    type State = QuotaState;

    fn limit(&self) -> u64 {
        self.limit
    }

    /// A day, or a nominal 30-day month (the IETF field needs one number).
    fn window(&self) -> Duration {
        match self.period {
            Period::Day => Duration::from_secs(DAY_SECS),
            Period::Month => Duration::from_secs(30 * DAY_SECS),
        }
    }

    fn new_state(&self, now: Timestamp) -> Self::State {
        QuotaState {
            period: self.period_at(now).0,
            used: 0,
        }
    }

    fn check(&self, st: &mut Self::State, cost: u64, now: Timestamp) -> Result<Decision> {
        ensure_cost(cost, self.limit)?;
        let (period, ends_at_secs) = self.period_at(now);
        if period > st.period {
            *st = QuotaState { period, used: 0 };
        }
        let ends_in = ends_at_secs
            .saturating_mul(NANOS)
            .saturating_sub(now.as_nanos());
        Ok(Outcome::count(&mut st.used, self.limit, cost, ends_in).into())
    }

    fn is_idle(&self, st: &Self::State, now: Timestamp) -> bool {
        st.used == 0 || st.period < self.period_at(now).0
    }
}

// Calendar arithmetic for UTC months (H. Hinnant's public-domain algorithms); a date crate
// would add a dependency for these two functions.

/// The (year, month 1–12) of `days` days after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days from 1970-01-01 to the first day of `month` (1–12) of `year` (1970 or later).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year % 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips_month_starts() {
        assert_eq!(civil_from_days(0), (1970, 1));
        // 2024-02-29 is day 19_782; 2024-03-01 is day 19_783.
        assert_eq!(civil_from_days(19_782), (2024, 2));
        assert_eq!(civil_from_days(19_783), (2024, 3));
        assert_eq!(days_from_civil(2024, 3), 19_783);
        assert_eq!(days_from_civil(1970, 1), 0);
        for days in (0..80_000).step_by(7) {
            let (y, m) = civil_from_days(days);
            let start = days_from_civil(y, m);
            assert!(start <= days && days - start < 31, "day {days}");
        }
    }

    #[test]
    fn daily_quota_refills_at_midnight_utc() {
        let q = Quota::per_day(2).unwrap();
        let before = Timestamp::from_unix_secs(19_782 * DAY_SECS + DAY_SECS - 1);
        let mut st = q.new_state(before);
        assert!(q.check(&mut st, 2, before).unwrap().allowed);
        let denied = q.check(&mut st, 1, before).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_secs(), Some(1));
        assert_eq!(denied.reset_after_secs(), 1);
        let after = Timestamp::from_unix_secs(19_783 * DAY_SECS);
        let d = q.check(&mut st, 1, after).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset_after_secs(), DAY_SECS);
    }

    #[test]
    fn monthly_quota_refills_on_the_first_including_leap_february() {
        let q = Quota::per_month(5).unwrap();
        let feb_29 = Timestamp::from_unix_secs(19_782 * DAY_SECS + 12 * 3_600);
        let mut st = q.new_state(feb_29);
        assert!(q.check(&mut st, 5, feb_29).unwrap().allowed);
        let denied = q.check(&mut st, 1, feb_29).unwrap();
        assert_eq!(denied.retry_after_secs(), Some(12 * 3_600));
        let mar_1 = Timestamp::from_unix_secs(19_783 * DAY_SECS);
        assert_eq!(q.check(&mut st, 1, mar_1).unwrap().remaining, 4);
        assert!(q.is_idle(
            &st,
            Timestamp::from_unix_secs(days_from_civil(2024, 4) * DAY_SECS)
        ));
    }
}
