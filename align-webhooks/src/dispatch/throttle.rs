//! The per-endpoint throughput cap, as a virtual schedule (GCRA): each endpoint has the
//! earliest time its next attempt may start, and every admitted attempt pushes it on by
//! `1 / rate`. Attempts are therefore evenly spaced. A sleep can overshoot under load, which
//! would let later attempts bunch up, so a second check at the moment of sending
//! ([`Throttle::gate`]) keeps the actual start times of the last `rate` attempts and holds an
//! attempt back until no one-second window would see more than `rate` of them.

use std::collections::{HashMap, VecDeque};
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
    started: Mutex<HashMap<EndpointId, VecDeque<Instant>>>,
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

    /// At the moment of sending: `None` (and the start is recorded) if fewer than `rate`
    /// attempts to `endpoint` started in the second before `now`; otherwise how long to wait
    /// before asking again.
    pub(crate) fn gate(&self, endpoint: EndpointId, rate: u32, now: Instant) -> Option<Duration> {
        const WINDOW: Duration = Duration::from_secs(1);
        let rate = usize::try_from(rate.max(1)).unwrap_or(usize::MAX);
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let log = started.entry(endpoint).or_default();
        while log.len() > rate {
            log.pop_front();
        }
        if log.len() == rate {
            if let Some(oldest) = log.front() {
                let age = now.saturating_duration_since(*oldest);
                if age < WINDOW {
                    return Some(WINDOW - age);
                }
            }
            log.pop_front();
        }
        log.push_back(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_never_lets_a_second_see_more_than_the_rate() {
        let t = Throttle::default();
        let ep = EndpointId::new();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(t.gate(ep, 3, start + Duration::from_millis(i * 10)), None);
        }
        // A fourth within the same second waits until the first is a second old.
        assert_eq!(
            t.gate(ep, 3, start + Duration::from_millis(500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(t.gate(ep, 3, start + Duration::from_millis(1000)), None);
        assert_eq!(
            t.gate(ep, 3, start + Duration::from_millis(1005)),
            Some(Duration::from_millis(5))
        );
        assert_eq!(t.gate(EndpointId::new(), 3, start), None);
    }

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
