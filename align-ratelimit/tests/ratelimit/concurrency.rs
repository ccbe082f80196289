//! The concurrency limiter: slots per key, returned on drop and on panic.

use std::sync::Arc;

use align_ratelimit::ConcurrencyLimiter;

#[test]
fn permits_are_limited_per_key_and_returned_on_drop() {
    let limiter = ConcurrencyLimiter::new(2).unwrap();
    let a1 = limiter.try_acquire(&"a").unwrap();
    assert_eq!(a1.decision().remaining, 1);
    let _a2 = limiter.try_acquire(&"a").unwrap();
    let denied = limiter.try_acquire(&"a").unwrap_err();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_secs(), Some(1));
    assert!(limiter.try_acquire(&"b").is_ok());
    drop(a1);
    assert_eq!(limiter.in_flight(&"a"), 1);
    assert!(limiter.try_acquire(&"a").is_ok());
}

#[test]
fn a_permit_is_returned_when_its_holder_panics() {
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let held = limiter.clone();
    let outcome = std::thread::spawn(move || {
        let _permit = held.try_acquire(&"k").unwrap();
        panic!("handler failed while holding the permit");
    })
    .join();
    assert!(outcome.is_err());
    assert_eq!(limiter.in_flight(&"k"), 0);
    assert!(limiter.try_acquire(&"k").is_ok());
}

#[test]
fn concurrent_holders_never_exceed_the_limit() {
    let limiter = ConcurrencyLimiter::new(3).unwrap();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let limiter = limiter.clone();
            let peak = Arc::clone(&peak);
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    if let Ok(_permit) = limiter.try_acquire(&"k") {
                        let now = limiter.in_flight(&"k");
                        peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 3);
    assert_eq!(limiter.in_flight(&"k"), 0);
}
