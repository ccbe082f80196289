//! Time per keyed check: the default sliding window (and GCRA) side by side with `governor`'s
//! keyed limiter, at 1, 10k and 1M keys, on one thread and on two.
//!
//! Run: `cargo bench -p align-ratelimit --bench keyed -- --warm-up-time 1 --measurement-time 3`.
//! With two threads the figure is wall time per check across both (aggregate throughput).

// A benchmark, like a test, may stop at a setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use align_ratelimit::{
    Algorithm, Clock, Gcra, KeyedLimiter, Rate, RateLimiter, SlidingWindow, TestClock, Timestamp,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

const KEY_COUNTS: [u64; 3] = [1, 10_000, 1_000_000];

/// Anything that can check one key, so every contender runs the same loop.
trait Check: Sync {
    fn check(&self, key: u64) -> bool;
}

impl<A: Algorithm, C: Clock> Check for KeyedLimiter<u64, A, C> {
    fn check(&self, key: u64) -> bool {
        RateLimiter::check(self, &key, 1).is_ok_and(|d| d.allowed)
    }
}

/// `governor`'s keyed limiter (a `DashMap` of GCRA cells) on clock `C`.
struct Governor<C: governor::clock::Clock>(
    governor::RateLimiter<u64, DefaultKeyedStateStore<u64>, C, NoOpMiddleware<C::Instant>>,
);

impl<C: governor::clock::Clock + Sync> Check for Governor<C>
where
    C::Instant: Sync,
{
    fn check(&self, key: u64) -> bool {
        self.0.check_key(&key).is_ok()
    }
}

/// `iters` checks on each of `threads` threads, cycling through `keys` keys; returns wall time
/// divided by the number of threads, i.e. time per check of the combined throughput.
fn run(limiter: &dyn Check, keys: u64, threads: u64, iters: u64) -> Duration {
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                // Threads start at different keys so they do not walk in step.
                let mut key = (t * keys / threads.max(1)) % keys;
                barrier.wait();
                for _ in 0..iters {
                    black_box(limiter.check(black_box(key)));
                    key += 1;
                    if key == keys {
                        key = 0;
                    }
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
        / threads as u32
}

/// Each limiter with its own real clock, then both sliding window and governor on a frozen
/// clock (an atomic load) to compare the limiters without the cost of reading time.
fn contenders() -> Vec<(&'static str, Box<dyn Check>)> {
    let rate = Rate::per_minute(600);
    let quota = governor::Quota::per_minute(NonZeroU32::MIN.saturating_add(599));
    let frozen = TestClock::new(Timestamp::from_unix_secs(1_700_000_000));
    vec![
        (
            "align-sliding-window",
            Box::new(KeyedLimiter::<u64, _>::new(
                SlidingWindow::new(rate).unwrap(),
            )),
        ),
        (
            "align-gcra",
            Box::new(KeyedLimiter::<u64, _>::new(Gcra::new(rate).unwrap())),
        ),
        (
            "governor",
            Box::new(Governor(governor::RateLimiter::keyed(quota))),
        ),
        (
            "align-sliding-window-frozen-clock",
            Box::new(KeyedLimiter::<u64, _, _>::with_clock(
                SlidingWindow::new(rate).unwrap(),
                frozen,
            )),
        ),
        (
            "governor-frozen-clock",
            Box::new(Governor(governor::RateLimiter::dashmap_with_clock(
                quota,
                FakeRelativeClock::default(),
            ))),
        ),
    ]
}

fn keyed_checks(c: &mut Criterion) {
    for keys in KEY_COUNTS {
        for (name, limiter) in contenders() {
            // Every key exists before measuring: the steady state, not first inserts.
            for key in 0..keys {
                limiter.check(key);
            }
            for threads in [1, 2] {
                let mut group = c.benchmark_group(format!("check/{keys}-keys/{threads}-threads"));
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter_custom(|iters| run(limiter.as_ref(), keys, threads, iters));
                });
                group.finish();
            }
        }
    }
}

criterion_group!(benches, keyed_checks);
criterion_main!(benches);
