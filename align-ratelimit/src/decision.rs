//! The outcome of one check: [`Decision`].

use std::time::Duration;

/// What a limiter decided about one request, with everything the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted (and its cost counted).
    pub allowed: bool,
    /// The limit in force for this key (`X-RateLimit-Limit`).
    pub limit: u64,
    /// Units still available right now, after this request (`X-RateLimit-Remaining`).
    pub remaining: u64,
    /// Time until `remaining` next grows; zero when nothing is counted against the key.
    pub reset_after: Duration,
    /// For a denied request: time until the same request would be admitted.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `reset_after` in whole seconds, rounded up (`X-RateLimit-Reset`).
    #[must_use]
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// [`reset_after_secs`](Self::reset_after_secs) as an HTTP header shows it: never more
    /// than the `window` (DESIGN §4: 0–60 for a minute). A sliding window counts a request
    /// until its bucket leaves, up to a fraction of a second past the window, so the exact
    /// reset may round up to one second more; `Retry-After` stays exact.
    ///
    /// ```
    /// use std::time::Duration;
    /// use align_ratelimit::Decision;
    /// let d = Decision { allowed: true, limit: 600, remaining: 599,
    ///     reset_after: Duration::from_millis(60_050), retry_after: None };
    /// assert_eq!(d.reset_after_secs(), 61);
    /// assert_eq!(d.reset_secs_within(Duration::from_secs(60)), 60);
    /// ```
    #[must_use]
    pub fn reset_secs_within(&self, window: Duration) -> u64 {
        self.reset_after_secs().min(ceil_secs(window))
    }

    /// `retry_after` in whole seconds, rounded up and at least 1 (`Retry-After`).
    #[must_use]
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| ceil_secs(d).max(1))
    }
}

/// `d` rounded up to whole seconds, so a client that waits that long is never early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_seconds_round_up_and_retry_after_is_at_least_one() {
        let d = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_after: Duration::from_millis(1_001),
            retry_after: Some(Duration::from_nanos(1)),
        };
        assert_eq!(d.reset_after_secs(), 2);
        assert_eq!(d.retry_after_secs(), Some(1));
        let exact = Decision {
            reset_after: Duration::from_secs(3),
            retry_after: Some(Duration::ZERO),
            ..d
        };
        assert_eq!(exact.reset_after_secs(), 3);
        assert_eq!(exact.retry_after_secs(), Some(1));
    }
}
