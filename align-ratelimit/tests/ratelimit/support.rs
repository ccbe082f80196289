//! Shared helpers: replaying arrivals through an algorithm and the sliding-window oracle.

use align_ratelimit::{Algorithm, Decision, Timestamp};

/// A start time far from the epoch, aligned to nothing in particular.
pub(crate) const START: u64 = 1_700_000_000_123_456_789;

/// The most admissions certainly inside one sliding window of a minute, narrowed by `bucket`
/// (the window's resolution), given for each admission the clock readings just before and
/// just after it (nanoseconds).
///
/// A reading that reaches the limiter late (another thread read the clock later and got to
/// the limiter first) is counted at the newest time the limiter has seen, so each admission
/// counts somewhere between its two readings. A window starting at one admission's earlier
/// reading certainly holds every admission whose two readings both fall inside it: however
/// long a thread is descheduled between reading the clock and reaching the limiter, this
/// count never exceeds what the limiter really admitted in a window (it is only less strict).
pub(crate) fn most_in_one_window(admitted: &mut [(u64, u64)], bucket: u64) -> usize {
    admitted.sort_unstable();
    let span = 60_000_000_000 - bucket;
    (0..admitted.len())
        .map(|i| {
            let t = admitted[i].0;
            admitted[i..]
                .iter()
                .take_while(|&&(before, _)| before < t + span)
                .filter(|&&(_, after)| after < t + span)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// One request as seen by the limiter: the clock reading and its cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) at: u64,
    pub(crate) cost: u64,
}

/// One replayed request: its effective time (the latest clock reading so far), cost, decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replayed {
    pub(crate) at: u64,
    pub(crate) cost: u64,
    pub(crate) decision: Decision,
}

/// A limiter under test, on one key: in memory (an algorithm and its state) or in Redis.
pub(crate) trait Subject {
    /// Decides on a request costing `cost` at `at` (nanoseconds), counting it if admitted.
    fn check(&mut self, cost: u64, at: u64) -> Decision;
    /// What [`Subject::check`] would decide now, without changing anything.
    fn probe(&self, cost: u64, at: u64) -> Decision;
}

/// An [`Algorithm`] on one state, as the keyed store runs it.
pub(crate) struct InMemory<'a, A: Algorithm> {
    algorithm: &'a A,
    state: A::State,
}

impl<'a, A: Algorithm> InMemory<'a, A> {
    pub(crate) fn new(algorithm: &'a A, start: u64) -> Self {
        let state = algorithm.new_state(Timestamp::from_nanos(start));
        Self { algorithm, state }
    }
}

impl<A> Subject for InMemory<'_, A>
where
    A: Algorithm,
    A::State: Clone,
{
    fn check(&mut self, cost: u64, at: u64) -> Decision {
        self.algorithm
            .check(&mut self.state, cost, Timestamp::from_nanos(at))
            .unwrap()
    }

    fn probe(&self, cost: u64, at: u64) -> Decision {
        self.algorithm
            .check(&mut self.state.clone(), cost, Timestamp::from_nanos(at))
            .unwrap()
    }
}

/// Feeds `arrivals` to `algorithm` on one state, checking the reset/retry promises on the way.
pub(crate) fn replay<A>(algorithm: &A, arrivals: &[Arrival]) -> Vec<Replayed>
where
    A: Algorithm,
    A::State: Clone,
{
    replay_on(&mut InMemory::new(algorithm, arrivals[0].at), arrivals)
}

/// Feeds `arrivals` to `subject`, checking the reset/retry promises on the way.
pub(crate) fn replay_on(subject: &mut impl Subject, arrivals: &[Arrival]) -> Vec<Replayed> {
    let mut latest = 0;
    arrivals
        .iter()
        .map(|a| {
            latest = latest.max(a.at);
            let decision = subject.check(a.cost, a.at);
            if a.at == latest {
                assert_reset_and_retry_are_exact(subject, &decision, a, latest);
            }
            Replayed {
                at: latest,
                cost: a.cost,
                decision,
            }
        })
        .collect()
}

/// `Retry-After` is the first instant the same request is admitted, and `Reset` the first
/// instant `remaining` grows, both exactly (to the nanosecond).
fn assert_reset_and_retry_are_exact(
    subject: &impl Subject,
    decision: &Decision,
    arrival: &Arrival,
    now: u64,
) {
    let probe = |cost: u64, at: u64| subject.probe(cost, at);
    if let Some(retry) = decision.retry_after {
        let retry = u64::try_from(retry.as_nanos()).unwrap();
        assert!(retry > 0, "a denial must ask to wait: {decision:?}");
        assert!(
            probe(arrival.cost, now + retry).allowed,
            "admitted at Retry-After"
        );
        assert!(
            !probe(arrival.cost, now + retry - 1).allowed,
            "denied before Retry-After"
        );
    }
    let reset = u64::try_from(decision.reset_after.as_nanos()).unwrap();
    if reset > 0 {
        assert_eq!(
            probe(0, now + reset - 1).remaining,
            decision.remaining,
            "Reset is not early"
        );
        assert!(
            probe(0, now + reset).remaining > decision.remaining,
            "Reset is not late"
        );
    } else {
        assert_eq!(
            decision.remaining, decision.limit,
            "Reset 0 means nothing is counted"
        );
    }
}

/// The most units admitted in any half-open interval `[a, a + window)`.
pub(crate) fn max_in_any_window(replayed: &[Replayed], window: u64) -> u64 {
    let admitted: Vec<_> = replayed.iter().filter(|r| r.decision.allowed).collect();
    let mut worst = 0;
    let mut sum = 0;
    let mut first = 0;
    for r in &admitted {
        sum += r.cost;
        while admitted[first].at + window <= r.at {
            sum -= admitted[first].cost;
            first += 1;
        }
        worst = worst.max(sum);
    }
    worst
}

/// The most units admitted in `[t_i, t_j]` beyond `burst + (t_j - t_i) / interval`, over all
/// admitted pairs: never positive for GCRA and the token bucket.
pub(crate) fn worst_excess_over_rate(replayed: &[Replayed], burst: u64, interval: u64) -> i128 {
    let admitted: Vec<_> = replayed.iter().filter(|r| r.decision.allowed).collect();
    let mut worst = i128::MIN;
    for i in 0..admitted.len() {
        let mut sum = 0;
        for r in &admitted[i..] {
            sum += r.cost;
            let bound = burst + (r.at - admitted[i].at) / interval;
            worst = worst.max(i128::from(sum) - i128::from(bound));
        }
    }
    worst
}

/// A small deterministic generator for randomized workloads that must be reproducible.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean (Poisson arrivals).
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}
