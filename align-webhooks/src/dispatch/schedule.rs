//! When to try again: the retry schedule, jitter and `Retry-After`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};

/// Delays after the first attempt: the n-th entry is the wait before attempt n + 1.
/// The default is Standard Webhooks' `5s, 5m, 30m, 2h, 5h, 10h, 10h`.
///
/// ```
/// use align_webhooks::RetrySchedule;
/// let s: RetrySchedule = "5,300,1800".parse().unwrap(); // ALIGN_WEBHOOKS_RETRY_SCHEDULE
/// assert_eq!(s.delays().len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let secs = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600];
        Self::new(secs.iter().map(|s| Duration::from_secs(*s)).collect())
    }
}

impl RetrySchedule {
    /// A schedule with these delays.
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The delays.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The un-jittered wait after the `attempts`-th attempt failed, or `None` when the
    /// schedule is over.
    pub fn after(&self, attempts: u32) -> Option<Duration> {
        let i = usize::try_from(attempts).ok()?.checked_sub(1)?;
        self.delays.get(i).copied()
    }
}

/// Parsing failed: the schedule must be comma-separated whole seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry schedule must be comma-separated whole seconds, e.g. 5,300,1800")]
pub struct ScheduleParseError;

impl FromStr for RetrySchedule {
    type Err = ScheduleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let delays = s
            .split(',')
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u64>().map(Duration::from_secs))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ScheduleParseError)?;
        Ok(Self::new(delays))
    }
}

/// `delay` scaled by a random factor in `[1 - jitter, 1 + jitter]`.
pub(crate) fn jittered(delay: Duration, jitter: f64) -> Duration {
    let mut buf = [0_u8; 8];
    let unit = match SystemRandom::new().fill(&mut buf) {
        // 53 random bits → [0, 1).
        Ok(()) => (u64::from_le_bytes(buf) >> 11) as f64 / (1_u64 << 53) as f64,
        Err(_) => 0.5,
    };
    let factor = 1.0 + jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
    delay.mul_f64(factor.max(0.0))
}

/// Parses a `Retry-After` value (delta seconds or an HTTP date) into a wait from `now`.
pub(crate) fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_the_standard_one() {
        let s = RetrySchedule::default();
        assert_eq!(s.after(0), None);
        assert_eq!(s.after(1), Some(Duration::from_secs(5)));
        assert_eq!(s.after(7), Some(Duration::from_secs(36_000)));
        assert_eq!(s.after(8), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100), 0.2);
            assert!(
                d >= Duration::from_secs(80) && d <= Duration::from_secs(120),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc2822("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now), None);
    }

    #[test]
    fn schedules_parse_from_the_environment_format() {
        let s: RetrySchedule = "5, 300,1800".parse().unwrap();
        assert_eq!(s.after(3), Some(Duration::from_secs(1800)));
        assert!("5,x".parse::<RetrySchedule>().is_err());
    }
}
