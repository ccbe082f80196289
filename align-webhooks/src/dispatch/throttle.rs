//! The per-endpoint throughput cap, as a virtual schedule (GCRA): each endpoint has the
//! earliest time its next attempt may start, and every admitted attempt pushes it on by
//! `1 / rate`. Attempts are therefore evenly spaced and no one-second window sees more than
//! `rate` of them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::model::EndpointId;

/// What the throttle decided for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A slot is reserved: wait this long, then send.
    SendAfter(Duration),
    /// No slot within the allowed wait: put the delivery back for this long.
    Postpone(Duration),
}

/// Per-endpoint next-slot times.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    next_slot: Mutex<HashMap<EndpointId, Instant>>,
}

impl Throttle {
    /// Reserves the next slot for `endpoint` if it starts within `max_wait` of `now`.
    pub(crate) fn admit(
        &self,
        endpoint: EndpointId,
        rate: u32,
        now: Instant,
        max_wait: Duration,
    ) -> Admission {
        let interval = Duration::from_secs(1) / rate.max(1);
        let mut slots = self
            .next_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = slots.get(&endpoint).map_or(now, |&t| t.max(now));
        let wait = slot.saturating_duration_since(now);
        if wait > max_wait {
            return Admission::Postpone(wait);
        }
        slots.insert(endpoint, slot + interval);
        Admission::SendAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_spaced_by_one_over_the_rate() {
        let t = Throttle::default();
        let ep = EndpointId::new();
        let start = Instant::now();
        let max = Duration::from_secs(1);
        assert_eq!(
            t.admit(ep, 5, start, max),
            Admission::SendAfter(Duration::ZERO)
        );
        assert_eq!(
            t.admit(ep, 5, start, max),
            Admission::SendAfter(Duration::from_millis(200))
        );
        assert_eq!(
            t.admit(ep, 5, start, max),
            Admission::SendAfter(Duration::from_millis(400))
        );
        for _ in 0..3 {
            assert!(matches!(
                t.admit(ep, 5, start, max),
                Admission::SendAfter(_)
            ));
        }
        assert_eq!(
            t.admit(ep, 5, start, max),
            Admission::Postpone(Duration::from_millis(1200))
        );
        assert_eq!(
            t.admit(EndpointId::new(), 5, start, max),
            Admission::SendAfter(Duration::ZERO)
        );
    }
}
