//! Resident memory per key at 1M active keys, each limiter measured in a fresh process.
//!
//! Run: `cargo bench -p align-ratelimit --bench memory`. Reads `/proc/self/statm` (Linux).

// A benchmark, like a test, may stop at a setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::process::Command;

use align_ratelimit::{Gcra, KeyedLimiter, Rate, RateLimiter, SlidingWindow, SystemClock};

const KEYS: u64 = 1_000_000;

/// Resident set size in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Checks each of `keys` keys `times` times and prints the resident growth per key.
fn measure(name: &str, keys: u64, times: u64, check: impl Fn(u64)) {
    let before = rss();
    for key in 0..keys {
        for _ in 0..times {
            check(key);
        }
    }
    let after = rss();
    println!(
        "{name}: {:.1} bytes per key ({} MiB for {keys} keys, {times} checks each)",
        (after - before) as f64 / keys as f64,
        (after - before) >> 20
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate = Rate::per_minute(600);
    match args.iter().find_map(|a| a.strip_prefix("--limiter=")) {
        Some("align-sliding-window") => {
            let l = KeyedLimiter::<u64, _, _>::with_clock(
                SlidingWindow::new(rate).unwrap(),
                SystemClock::new(),
            );
            measure("align-sliding-window", KEYS, 1, |k| {
                let _ = l.check(&k, 1);
            });
            assert_eq!(l.len() as u64, KEYS);
        }
        Some("align-sliding-window-hot") => {
            // Keys past a quarter of their limit move to the fine ring (on the heap).
            let l = KeyedLimiter::<u64, _>::new(SlidingWindow::new(rate).unwrap());
            measure("align-sliding-window-hot", 10_000, 200, |k| {
                let _ = l.check(&k, 1);
            });
        }
        Some("align-gcra") => {
            let l = KeyedLimiter::<u64, _>::new(Gcra::new(rate).unwrap());
            measure("align-gcra", KEYS, 1, |k| {
                let _ = l.check(&k, 1);
            });
            println!(
                "  (GCRA keys are idle 100 ms after one request: {} held)",
                l.len()
            );
        }
        Some("governor") => {
            let quota = governor::Quota::per_minute(NonZeroU32::MIN.saturating_add(599));
            let l = governor::RateLimiter::<u64, _, _>::keyed(quota);
            measure("governor", KEYS, 1, |k| {
                let _ = l.check_key(&k);
            });
        }
        _ => {
            let exe = std::env::current_exe().unwrap();
            let limiters = [
                "align-sliding-window",
                "align-sliding-window-hot",
                "align-gcra",
                "governor",
            ];
            for name in limiters {
                let out = Command::new(&exe)
                    .arg(format!("--limiter={name}"))
                    .output()
                    .unwrap();
                print!("{}", String::from_utf8_lossy(&out.stdout));
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
