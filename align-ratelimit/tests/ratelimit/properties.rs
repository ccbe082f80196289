//! Property tests against the sliding-window log over random arrivals, costs and clocks.

use std::time::Duration;

use align_ratelimit::{
    FixedWindow, Gcra, Rate, SlidingCounter, SlidingLog, SlidingWindow, TokenBucket,
};
use proptest::prelude::*;

use crate::support::{Arrival, Replayed, START, max_in_any_window, replay, worst_excess_over_rate};

/// A limit, a window (nanoseconds), and arrivals whose clock may step back a little.
fn workload(max_backstep: u64) -> impl Strategy<Value = (u64, u64, Vec<Arrival>)> {
    (1u64..=12, 1_000_000_000u64..=10_000_000_000).prop_flat_map(move |(limit, window)| {
        let gap = prop_oneof![
            3 => Just(0u64),
            4 => 0..window / 20,
            3 => 0..window / 2,
            1 => 0..window * 2,
        ];
        let step = (gap, 0..=max_backstep, 1..=limit.min(4));
        (
            Just(limit),
            Just(window),
            prop::collection::vec(step, 1..250).prop_map(|steps| {
                let mut at = START;
                steps
                    .into_iter()
                    .map(|(gap, back, cost)| {
                        at += gap;
                        Arrival {
                            at: at - back.min(gap),
                            cost,
                        }
                    })
                    .collect()
            }),
        )
    })
}

fn rate(limit: u64, window: u64) -> Rate {
    Rate::new(limit, Duration::from_nanos(window))
}

/// The promise: no interval of one window holds more than the limit (and, checked while
/// replaying, Retry-After and Reset are exact to the nanosecond).
fn never_over_the_limit(
    replayed: &[Replayed],
    limit: u64,
    window: u64,
) -> Result<(), TestCaseError> {
    prop_assert!(max_in_any_window(replayed, window) <= limit);
    Ok(())
}

/// A request with nothing admitted in the last 1 + 1/8 windows is always admitted (in memory,
/// units count at most one compact bucket, W/9, too long; in Redis at most W/600).
fn admits_after_a_quiet_window(replayed: &[Replayed], window: u64) -> Result<(), TestCaseError> {
    for (i, r) in replayed.iter().enumerate() {
        let quiet_since = r.at.saturating_sub(window + window / 8);
        let recent = replayed[..i]
            .iter()
            .any(|p| p.decision.allowed && p.at >= quiet_since);
        prop_assert!(recent || r.decision.allowed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn default_window_never_admits_more_than_the_limit_in_any_window(
        (limit, window, arrivals) in workload(50_000_000)
    ) {
        let replayed = replay(&SlidingWindow::new(rate(limit, window)).unwrap(), &arrivals);
        never_over_the_limit(&replayed, limit, window)?;
    }

    #[test]
    fn the_log_oracle_is_exact_and_never_over_the_limit(
        (limit, window, arrivals) in workload(50_000_000)
    ) {
        let replayed = replay(&SlidingLog::new(rate(limit, window)).unwrap(), &arrivals);
        prop_assert!(max_in_any_window(&replayed, window) <= limit);
        // Exact: every denial had the window full, counting the request's own cost.
        for (i, r) in replayed.iter().enumerate().filter(|(_, r)| !r.decision.allowed) {
            let in_window: u64 = replayed[..i]
                .iter()
                .filter(|p| p.decision.allowed && p.at + window > r.at)
                .map(|p| p.cost)
                .sum();
            prop_assert!(in_window + r.cost > limit);
        }
    }

    #[test]
    fn default_window_denies_nothing_the_oracle_admits_when_it_is_empty(
        (limit, window, arrivals) in workload(0)
    ) {
        let w = SlidingWindow::new(rate(limit, window)).unwrap();
        admits_after_a_quiet_window(&replay(&w, &arrivals), window)?;
    }

    #[test]
    fn gcra_admits_at_most_burst_plus_elapsed_over_interval(
        (limit, window, arrivals) in workload(0), burst in 4u64..=8
    ) {
        let gcra = Gcra::with_burst(rate(limit, window), burst).unwrap();
        let replayed = replay(&gcra, &arrivals);
        let t = gcra.emission_interval().as_nanos() as u64;
        prop_assert!(worst_excess_over_rate(&replayed, gcra.burst(), t) <= 0);
    }

    #[test]
    fn token_bucket_admits_at_most_capacity_plus_refill(
        (limit, window, arrivals) in workload(0), capacity in 4u64..=8
    ) {
        let bucket = TokenBucket::new(rate(limit, window), capacity).unwrap();
        let replayed = replay(&bucket, &arrivals);
        let t = window.div_ceil(limit);
        prop_assert!(worst_excess_over_rate(&replayed, capacity, t) <= 0);
    }

    #[test]
    fn fixed_window_and_sliding_counter_keep_each_aligned_window_within_the_limit(
        (limit, window, arrivals) in workload(0)
    ) {
        let fixed = replay(&FixedWindow::new(rate(limit, window)).unwrap(), &arrivals);
        let counter = replay(&SlidingCounter::new(rate(limit, window)).unwrap(), &arrivals);
        for replayed in [fixed, counter] {
            let mut per_window = std::collections::HashMap::<u64, u64>::new();
            for r in replayed.iter().filter(|r| r.decision.allowed) {
                *per_window.entry(r.at / window).or_default() += r.cost;
            }
            prop_assert!(per_window.values().all(|&n| n <= limit));
        }
    }
}

#[test]
fn the_two_counter_estimate_can_exceed_the_limit_in_a_sliding_window() {
    // Ten requests at the very end of one window; half a window later the estimate assumes
    // they were spread over their window, counts only five, and admits five more: fifteen
    // within less than one window. The default window admits none of them.
    let window = 60_000_000_000;
    let start = START - START % window;
    let mut arrivals: Vec<_> = (0..10)
        .map(|i| Arrival {
            at: start + window - 1_000 + i,
            cost: 1,
        })
        .collect();
    arrivals.extend((0..10).map(|i| Arrival {
        at: start + window + window / 2 + i,
        cost: 1,
    }));
    let counter = replay(&SlidingCounter::new(rate(10, window)).unwrap(), &arrivals);
    let exact = replay(&SlidingWindow::new(rate(10, window)).unwrap(), &arrivals);
    assert!(max_in_any_window(&counter, window) > 10);
    assert_eq!(max_in_any_window(&exact, window), 10);
}

/// The same properties, the same workloads, on the Redis sliding window (one key per case).
#[cfg(feature = "redis")]
mod in_redis {
    use std::sync::atomic::{AtomicU64, Ordering};

    use align_ratelimit::{RedisOptions, RedisSlidingWindow, RedisStore};
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::backend::{InRedis, redis_url, unique_prefix};
    use crate::support::replay_on;

    /// Runs `property` over `cases` workloads, each replayed on a fresh key in Redis.
    fn on_redis(
        test: &str,
        cases: u32,
        max_backstep: u64,
        property: impl Fn(&[Replayed], u64, u64) -> Result<(), TestCaseError>,
    ) {
        let Some(url) = redis_url(test) else { return };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let options = RedisOptions {
            prefix: unique_prefix(),
            ..RedisOptions::default()
        };
        let store = runtime
            .block_on(async { RedisStore::open(&url, options) })
            .unwrap();
        let next = AtomicU64::new(0);
        let mut runner = TestRunner::new(Config::with_cases(cases));
        runner
            .run(&workload(max_backstep), |(limit, window, arrivals)| {
                let mut subject = InRedis {
                    runtime: &runtime,
                    limiter: RedisSlidingWindow::new(&store, rate(limit, window)).unwrap(),
                    key: format!("case-{}", next.fetch_add(1, Ordering::Relaxed)),
                };
                let replayed = replay_on(&mut subject, &arrivals);
                property(&replayed, limit, window)
            })
            .unwrap();
    }

    #[test]
    fn redis_window_never_admits_more_than_the_limit_in_any_window() {
        on_redis(
            "redis_window_never_admits_more_than_the_limit_in_any_window",
            64,
            50_000_000,
            never_over_the_limit,
        );
    }

    #[test]
    fn redis_window_denies_nothing_the_oracle_admits_when_it_is_empty() {
        on_redis(
            "redis_window_denies_nothing_the_oracle_admits_when_it_is_empty",
            32,
            0,
            |replayed, _, window| admits_after_a_quiet_window(replayed, window),
        );
    }
}

#[cfg(not(feature = "redis"))]
#[test]
fn redis_window_properties() {
    let _ = crate::backend::redis_url("redis_window_properties");
}
