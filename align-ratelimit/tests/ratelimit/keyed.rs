//! The keyed store: isolation between keys, eviction, and many threads on one key.

use std::sync::Arc;
use std::time::Duration;

use align_ratelimit::{
    Error, KeyedLimiter, Quota, Rate, RateLimiter, SlidingWindow, TestClock, Timestamp,
};

use crate::support::{START, most_in_one_window};

fn clock() -> Arc<TestClock> {
    Arc::new(TestClock::new(Timestamp::from_nanos(START)))
}

#[test]
fn keys_are_limited_independently() {
    let limiter =
        KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(2)).unwrap(), clock());
    assert!(limiter.check(&"a", 2).unwrap().allowed);
    assert!(!limiter.check(&"a", 1).unwrap().allowed);
    assert!(limiter.check(&"b", 1).unwrap().allowed);
}

#[test]
fn zero_cost_reads_without_counting_or_storing() {
    let limiter =
        KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(5)).unwrap(), clock());
    let peek = limiter.check(&1u64, 0).unwrap();
    assert_eq!((peek.allowed, peek.remaining), (true, 5));
    assert!(limiter.is_empty());
    limiter.check(&1u64, 3).unwrap();
    assert_eq!(limiter.check(&1u64, 0).unwrap().remaining, 2);
}

#[test]
fn a_cost_above_the_limit_is_an_error_not_a_denial() {
    let limiter =
        KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(5)).unwrap(), clock());
    assert_eq!(
        limiter.check(&1u64, 6),
        Err(Error::CostExceedsLimit { cost: 6, max: 5 })
    );
}

#[test]
fn idle_keys_are_evicted_so_memory_stays_bounded() {
    let clock = clock();
    let limiter = KeyedLimiter::with_clock(
        SlidingWindow::new(Rate::per_minute(600)).unwrap(),
        Arc::clone(&clock),
    );
    // 200k distinct keys, 1,000 new ones per second: about 63k are active at any time.
    let mut peak = 0;
    for key in 0..200_000u64 {
        if key % 1_000 == 0 {
            clock.advance(Duration::from_secs(1));
            peak = peak.max(limiter.len());
        }
        limiter.check(&key, 1).unwrap();
    }
    assert!(peak < 2 * 63_000 + 64 * 256, "peak {peak}");
    clock.advance(Duration::from_secs(70));
    let held = limiter.len();
    assert_eq!(limiter.evict_idle(), held);
    assert!(limiter.is_empty());
}

#[test]
fn a_daily_quota_refills_at_midnight_utc_and_reports_the_wait() {
    // 2024-02-29T23:59:30Z.
    let clock = Arc::new(TestClock::new(Timestamp::from_unix_secs(1_709_251_170)));
    let limiter = KeyedLimiter::with_clock(Quota::per_day(3).unwrap(), Arc::clone(&clock));
    assert!(limiter.check(&"k", 3).unwrap().allowed);
    let denied = limiter.check(&"k", 1).unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_secs(), Some(30));
    assert_eq!(denied.reset_after_secs(), 30);
    clock.advance(Duration::from_secs(29));
    assert!(!limiter.check(&"k", 1).unwrap().allowed);
    clock.advance(Duration::from_secs(1));
    let refilled = limiter.check(&"k", 1).unwrap();
    assert!(refilled.allowed);
    assert_eq!(refilled.remaining, 2);
}

#[test]
fn forgetting_a_key_resets_it() {
    let limiter = KeyedLimiter::with_clock(Quota::per_day(1).unwrap(), clock());
    assert!(limiter.check(&"k", 1).unwrap().allowed);
    assert!(!limiter.check(&"k", 1).unwrap().allowed);
    limiter.forget(&"k");
    assert!(limiter.check(&"k", 1).unwrap().allowed);
}

#[test]
fn many_threads_on_one_key_get_exactly_the_limit() {
    let limiter = Arc::new(KeyedLimiter::new(
        SlidingWindow::new(Rate::per_minute(600)).unwrap(),
    ));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                (0..5_000)
                    .filter(|_| limiter.check(&"hot", 1).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // The test takes far less than the 60-second window, so nothing has left it yet.
    assert_eq!(admitted, 600);
}

#[test]
fn many_threads_with_a_moving_clock_never_exceed_the_limit_in_any_window() {
    let clock = clock();
    let limiter = Arc::new(KeyedLimiter::with_clock(
        SlidingWindow::new(Rate::per_minute(50)).unwrap(),
        Arc::clone(&clock),
    ));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                for _ in 0..20_000 {
                    let before = limiter.now();
                    if limiter.check_at(&"hot", 1, before).unwrap().allowed {
                        admitted.push((before.as_nanos(), limiter.now().as_nanos()));
                    }
                }
                admitted
            })
        })
        .collect();
    for _ in 0..2_000 {
        clock.advance(Duration::from_millis(97));
        std::thread::yield_now();
    }
    let mut admitted: Vec<(u64, u64)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let most = most_in_one_window(&mut admitted, 3_000_000_000);
    assert!(most <= 50, "{most} admitted in one window");
}
