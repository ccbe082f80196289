//! Time per `MemoryWindowSet::check` naming 1 and 3 limits, for one group and for 10k groups,
//! on the system clock and on a frozen one (an atomic load). Every check is admitted: the
//! limits are far above what a run spends, so each check reads and spends every counter.
//!
//! Run: `cargo bench -p align-ratelimit --bench windows -- --warm-up-time 1 --measurement-time 3`.

// A benchmark, like a test, may stop at a setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use align_ratelimit::{Clock, MemoryWindowSet, TestClock, Timestamp, WindowLimit};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const LIMITS: [WindowLimit<'static>; 3] = [
    WindowLimit::new("requests", u64::MAX, Duration::from_secs(60)),
    WindowLimit::new("hourly", u64::MAX, Duration::from_secs(3_600)),
    WindowLimit::new("daily", u64::MAX, Duration::from_secs(86_400)),
];

fn bench_set<C: Clock>(c: &mut Criterion, clock: &str, set: &MemoryWindowSet<C>) {
    for groups in [1usize, 10_000] {
        let names: Vec<String> = (0..groups).map(|g| format!("key_{g:08x}")).collect();
        for n in [1, 3] {
            let limits = &LIMITS[..n];
            for name in &names {
                set.check(name, limits).unwrap();
            }
            let mut group = c.benchmark_group(format!("windows/{groups}-groups/{n}-limits"));
            group.bench_function(BenchmarkId::from_parameter(clock), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % names.len();
                    black_box(set.check(black_box(&names[i]), black_box(limits)).unwrap())
                });
            });
            group.finish();
        }
    }
}

fn window_checks(c: &mut Criterion) {
    bench_set(c, "system-clock", &MemoryWindowSet::new());
    let frozen = TestClock::new(Timestamp::from_unix_secs(1_700_000_000));
    bench_set(c, "frozen-clock", &MemoryWindowSet::with_clock(&frozen));
}

criterion_group!(benches, window_checks);
criterion_main!(benches);
