//! The keyed-limiter and concurrency specifications, one body each, run on every back-end:
//! in memory always, in Redis when `ALIGN_TEST_REDIS_URL` is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use align_ratelimit::{Error, Rate, Timestamp};

use crate::backend::Backend;
use crate::support::{START, most_in_one_window};

/// `secs` after a start time aligned to nothing in particular.
fn at(secs: f64) -> Timestamp {
    Timestamp::from_nanos(START + (secs * 1e9) as u64)
}

fn key(name: &str) -> String {
    name.to_owned()
}

/// Each body below becomes `memory::<name>` and `redis::<name>`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&crate::backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[cfg(feature = "redis")]
                    if let Some(redis) = crate::backend::Redis::from_env(stringify!($name)) {
                        super::$name(&redis).await;
                    }
                    #[cfg(not(feature = "redis"))]
                    let _ = crate::backend::redis_url(stringify!($name));
                }
            )*
        }
    };
}

on_every_backend!(
    keys_are_limited_independently,
    zero_cost_reads_without_counting,
    a_cost_above_the_limit_is_an_error_not_a_denial,
    a_full_window_frees_exactly_when_its_oldest_request_leaves,
    many_tasks_on_one_key_get_exactly_the_limit,
    many_tasks_with_a_moving_clock_never_exceed_the_limit_in_any_window,
    permits_are_limited_per_key_and_returned_on_drop,
    concurrent_holders_never_exceed_the_limit,
);

async fn keys_are_limited_independently(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(2));
    assert!(
        limiter
            .check_at(&key("a"), 2, at(0.0))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !limiter
            .check_at(&key("a"), 1, at(0.1))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        limiter
            .check_at(&key("b"), 1, at(0.2))
            .await
            .unwrap()
            .allowed
    );
}

async fn zero_cost_reads_without_counting(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(5));
    let peek = limiter.check_at(&key("k"), 0, at(0.0)).await.unwrap();
    assert_eq!(
        (peek.allowed, peek.remaining, peek.reset_after),
        (true, 5, Duration::ZERO)
    );
    limiter.check_at(&key("k"), 3, at(1.0)).await.unwrap();
    let peek = limiter.check_at(&key("k"), 0, at(2.0)).await.unwrap();
    assert_eq!(peek.remaining, 2);
    assert_eq!(
        limiter.check_at(&key("k"), 0, at(3.0)).await.unwrap(),
        peek_at_3(peek)
    );
}

/// A zero-cost read a second later: the same, with the reset a second nearer.
fn peek_at_3(peek: align_ratelimit::Decision) -> align_ratelimit::Decision {
    align_ratelimit::Decision {
        reset_after: peek.reset_after - Duration::from_secs(1),
        ..peek
    }
}

async fn a_cost_above_the_limit_is_an_error_not_a_denial(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(5));
    assert_eq!(
        limiter.check_at(&key("k"), 6, at(0.0)).await,
        Err(Error::CostExceedsLimit { cost: 6, max: 5 })
    );
}

async fn a_full_window_frees_exactly_when_its_oldest_request_leaves(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(3));
    let k = key("k");
    for i in 0..3u32 {
        let d = limiter
            .check_at(&k, 1, at(0.5 + f64::from(i)))
            .await
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 2 - u64::from(i));
    }
    let now = at(10.0);
    let denied = limiter.check_at(&k, 1, now).await.unwrap();
    assert!(!denied.allowed);
    // The request at 0.5 s leaves at 60.5 s, give or take one bucket (W/600).
    assert_eq!(denied.retry_after_secs(), Some(51));
    let retry = denied.retry_after.unwrap();
    assert_eq!(denied.reset_after, retry);
    let just_before = Timestamp::from_nanos(now.as_nanos() + retry.as_nanos() as u64 - 1);
    assert!(!limiter.check_at(&k, 1, just_before).await.unwrap().allowed);
    assert!(limiter.check_at(&k, 1, now + retry).await.unwrap().allowed);
}

async fn many_tasks_on_one_key_get_exactly_the_limit(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(100));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..100 {
                    admitted += u32::from(limiter.check(&key("hot"), 1).await.unwrap().allowed);
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    // The test takes far less than the 60-second window, so nothing has left it yet.
    assert_eq!(admitted, 100);
}

async fn many_tasks_with_a_moving_clock_never_exceed_the_limit_in_any_window(b: &dyn Backend) {
    let limiter = b.window(Rate::per_minute(50));
    let clock = Arc::new(AtomicU64::new(START));
    // Each request moves the shared clock on by a third of 97 ms and reads it, so readings
    // usually reach the limiter out of order by only the few requests in flight at once (a
    // separate clock driver could run ahead of slow round trips); `most_in_one_window` copes
    // with a task descheduled for longer.
    const STEP: u64 = 97_000_000 / 3;
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (limiter, clock) = (Arc::clone(&limiter), Arc::clone(&clock));
            tokio::spawn(async move {
                let mut admitted = Vec::new();
                for _ in 0..1_000 {
                    let now = Timestamp::from_nanos(clock.fetch_add(STEP, Ordering::SeqCst) + STEP);
                    if limiter.check_at(&key("hot"), 1, now).await.unwrap().allowed {
                        admitted.push((now.as_nanos(), clock.load(Ordering::SeqCst)));
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for w in workers {
        admitted.extend(w.await.unwrap());
    }
    let most = most_in_one_window(&mut admitted, 3_000_000_000);
    assert!(most <= 50, "{most} admitted in one window");
}

async fn permits_are_limited_per_key_and_returned_on_drop(b: &dyn Backend) {
    let limiter = b.concurrency(2);
    let a1 = limiter.try_acquire(&key("a")).await.unwrap().unwrap();
    assert_eq!(a1.decision().remaining, 1);
    let _a2 = limiter.try_acquire(&key("a")).await.unwrap().unwrap();
    let denied = limiter.try_acquire(&key("a")).await.unwrap().unwrap_err();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_secs(), Some(1));
    assert!(limiter.try_acquire(&key("b")).await.unwrap().is_ok());
    drop(a1);
    // A shared store learns of the drop a round trip later.
    let mut tries = 0;
    while limiter.try_acquire(&key("a")).await.unwrap().is_err() {
        tries += 1;
        assert!(tries < 100, "the dropped slot never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn concurrent_holders_never_exceed_the_limit(b: &dyn Backend) {
    let limiter = b.concurrency(3);
    let holders = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (limiter, holders, peak) = (
                Arc::clone(&limiter),
                Arc::clone(&holders),
                Arc::clone(&peak),
            );
            tokio::spawn(async move {
                for _ in 0..200 {
                    if let Ok(slot) = limiter.try_acquire(&key("k")).await.unwrap() {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak {peak}");
}
