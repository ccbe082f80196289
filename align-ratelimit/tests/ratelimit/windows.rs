//! Named limits (`WindowSet`): fixed windows aligned to the epoch, checked all or nothing,
//! exact under concurrency. The contract at the top runs on every back-end (Redis in
//! `windows_redis.rs`); the rest is the in-memory set against a reference model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use align_ratelimit::{
    Error, MemoryWindowSet, TestClock, Timestamp, WindowLimit, WindowOutcome, WindowSet,
    WindowsDecision,
};
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);

/// Remaining units of each limit, read with a cost of 0.
pub(crate) async fn remaining(
    set: &dyn WindowSet,
    group: &str,
    limits: &[WindowLimit<'_>],
) -> Vec<u64> {
    let peek: Vec<_> = limits.iter().map(|l| l.with_cost(0)).collect();
    let decision = set.check(group, &peek).await.unwrap();
    assert!(decision.allowed, "a peek is never refused");
    decision.outcomes.iter().map(|o| o.remaining).collect()
}

/// A refused check spends nothing, on any limit; a cost of 0 only reads.
pub(crate) async fn a_refused_check_spends_on_no_limit(set: &dyn WindowSet) {
    let limits = [
        WindowLimit::new("wide", 5, HOUR),
        WindowLimit::new("narrow", 3, DAY),
    ];
    for left in [2, 1, 0] {
        let d = set.check("g", &limits).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.refused_by, None);
        assert_eq!(
            d.outcomes.iter().map(|o| o.remaining).collect::<Vec<_>>(),
            [left + 2, left]
        );
    }
    let refused = set.check("g", &limits).await.unwrap();
    assert_eq!((refused.allowed, refused.refused_by), (false, Some(1)));
    // The wide limit would have admitted it, and still has what it had.
    assert!(refused.outcomes[0].allowed && !refused.outcomes[1].allowed);
    assert_eq!(
        (refused.outcomes[0].remaining, refused.outcomes[1].remaining),
        (2, 0)
    );
    assert_eq!(remaining(set, "g", &limits).await, [2, 0]);
    // A cost above a limit is a refusal, not an error; a lone limit with room admits.
    let too_big = [limits[0].with_cost(6)];
    assert_eq!(set.check("g", &too_big).await.unwrap().refused_by, Some(0));
    let wide = set.check("g", &limits[..1]).await.unwrap();
    assert!(wide.allowed);
    assert_eq!(wide.outcomes[0].remaining, 1);
    for o in set.check("g", &limits).await.unwrap().outcomes {
        assert!(o.reset > Duration::ZERO && o.reset_secs() >= 1);
    }
}

/// Groups and names holding separators or glob characters never share a counter, and
/// forgetting a group forgets only that group.
pub(crate) async fn groups_and_names_never_meet(set: &dyn WindowSet) {
    let pairs = [
        ("a:b", "c"),
        ("a", "b:c"),
        ("a", "b"),
        ("a*", "x"),
        ("ab", "x"),
        ("", ":"),
    ];
    for (group, name) in pairs {
        let one = [WindowLimit::new(name, 1, HOUR)];
        let d = set.check(group, &one).await.unwrap();
        assert!(d.allowed, "{group:?}/{name:?} met another counter");
        assert!(!set.check(group, &one).await.unwrap().allowed);
    }
    set.forget("a").await.unwrap();
    set.forget("a*").await.unwrap();
    for (group, name) in pairs {
        let one = [WindowLimit::new(name, 1, HOUR)];
        let forgotten = group == "a" || group == "a*";
        assert_eq!(
            set.check(group, &one).await.unwrap().allowed,
            forgotten,
            "{group:?}/{name:?}"
        );
    }
}

/// An invalid check is an error and spends nothing, on any limit.
pub(crate) async fn an_invalid_check_spends_nothing(set: &dyn WindowSet) {
    let good = WindowLimit::new("good", 2, HOUR);
    let bad = WindowLimit::new("bad", 0, HOUR);
    let e = set.check("g", &[good, bad]).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidWindowLimit { name, .. } if name == "bad"),
        "{e:?}"
    );
    assert_eq!(remaining(set, "g", &[good]).await, [2]);
}

fn at(secs: u64, millis: u64) -> Timestamp {
    Timestamp::from_nanos(secs * 1_000_000_000 + millis * 1_000_000)
}

#[tokio::test]
async fn the_contract_holds_in_memory() {
    a_refused_check_spends_on_no_limit(&MemoryWindowSet::new()).await;
    groups_and_names_never_meet(&MemoryWindowSet::new()).await;
    an_invalid_check_spends_nothing(&MemoryWindowSet::new()).await;
}

#[test]
fn windows_are_aligned_to_the_epoch() {
    let minute_start = 28_333_334 * 60; // 2023-11-14T22:14:00Z
    let clock = TestClock::new(at(minute_start + 59, 999));
    let set = MemoryWindowSet::with_clock(&clock);
    let limits = [WindowLimit::new("m", 2, Duration::from_secs(60))];
    let d = set.check("g", &limits).unwrap();
    assert_eq!(d.outcomes[0].reset, Duration::from_millis(1));
    assert_eq!(d.outcomes[0].reset_secs(), 1);
    assert_eq!(set.check("g", &limits).unwrap().outcomes[0].remaining, 0);
    assert!(!set.check("g", &limits).unwrap().allowed);
    // One millisecond later a new minute starts from 0.
    clock.advance(Duration::from_millis(1));
    let d = set.check("g", &limits).unwrap();
    assert!(d.allowed);
    assert_eq!(
        (d.outcomes[0].remaining, d.outcomes[0].reset),
        (1, Duration::from_secs(60))
    );
}

#[test]
fn a_lowered_limit_keeps_the_count_and_reports_no_negative_remaining() {
    let set = MemoryWindowSet::with_clock(TestClock::new(at(1_700_000_000, 0)));
    let high = WindowLimit::new("n", 10, HOUR).with_cost(8);
    assert!(set.check("g", &[high]).unwrap().allowed);
    let low = WindowLimit { limit: 5, ..high };
    let d = set.check("g", &[low.with_cost(0)]).unwrap();
    assert!(d.allowed, "a peek never refuses, even over the limit");
    assert_eq!(d.outcomes[0].remaining, 0);
    assert!(!set.check("g", &[low.with_cost(1)]).unwrap().allowed);
}

#[test]
fn a_clock_stepping_back_keeps_counting_in_the_newest_window() {
    let clock = TestClock::new(at(1_700_000_000, 0));
    let set = MemoryWindowSet::with_clock(&clock);
    let limits = [WindowLimit::new("s", 2, Duration::from_secs(10))];
    clock.set(at(1_700_000_010, 0));
    assert!(set.check("g", &limits).unwrap().allowed);
    assert!(set.check("g", &limits).unwrap().allowed);
    clock.set(at(1_700_000_009, 0));
    let d = set.check("g", &limits).unwrap();
    assert!(!d.allowed, "the earlier window does not start afresh");
    assert_eq!(
        d.outcomes[0].reset,
        Duration::from_secs(10),
        "reset stays within the window"
    );
}

#[test]
fn ended_windows_are_evicted_and_forget_drops_a_group() {
    let clock = TestClock::new(at(1_700_000_000, 0));
    let set = MemoryWindowSet::with_clock(&clock);
    let limits = [
        WindowLimit::new("short", 5, Duration::from_secs(1)),
        WindowLimit::new("long", 5, HOUR),
    ];
    set.check("a", &limits).unwrap();
    set.check("b", &limits[..1]).unwrap();
    // Peeks and refusals create nothing.
    set.check("c", &[limits[0].with_cost(0)]).unwrap();
    set.check("d", &[limits[0].with_cost(6)]).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.evict_idle(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(set.evict_idle(), 2);
    assert_eq!(set.len(), 1);
    set.forget("a");
    assert!(set.is_empty());
}

#[test]
fn sixty_four_tasks_on_one_group_admit_exactly_the_limit() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let clock = Arc::new(TestClock::new(at(1_700_000_000, 0)));
    let set: Arc<dyn WindowSet> = Arc::new(MemoryWindowSet::with_clock(clock));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let set = Arc::clone(&set);
            runtime.spawn(async move {
                let limits = [
                    WindowLimit::new("requests", 1_000, HOUR),
                    WindowLimit::new("daily", 5_000, DAY),
                ];
                let mut admitted = 0u64;
                for _ in 0..50 {
                    admitted += u64::from(set.check("g", &limits).await.unwrap().allowed);
                    tokio::task::yield_now().await;
                }
                admitted
            })
        })
        .collect();
    let admitted: u64 = runtime.block_on(async {
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    assert_eq!(admitted, 1_000);
    let limits = [
        WindowLimit::new("requests", 1_000, HOUR),
        WindowLimit::new("daily", 5_000, DAY),
    ];
    assert_eq!(runtime.block_on(remaining(&*set, "g", &limits)), [0, 4_000]);
}

/// The rules written as plainly as possible: one `(window number, used)` per counter.
#[derive(Default)]
struct Model {
    counters: HashMap<(String, u64), (u64, u64)>,
}

impl Model {
    fn check(&mut self, limits: &[WindowLimit<'_>], now_ns: u64) -> WindowsDecision {
        let now_ms = now_ns / 1_000_000;
        let seen: Vec<(u64, u64)> = limits
            .iter()
            .map(|l| {
                let w = l.window.as_millis() as u64;
                let index = now_ms / w;
                let used = match self.counters.get(&(l.name.to_owned(), w)) {
                    Some(&(i, used)) if i == index => used,
                    _ => 0,
                };
                (index, used)
            })
            .collect();
        let fits: Vec<bool> = limits
            .iter()
            .zip(&seen)
            .map(|(l, &(_, used))| l.cost == 0 || used + l.cost <= l.limit)
            .collect();
        let allowed = fits.iter().all(|&f| f);
        let mut outcomes = Vec::new();
        for ((l, &(index, used)), &fit) in limits.iter().zip(&seen).zip(&fits) {
            let w = l.window.as_millis() as u64;
            let used = if allowed { used + l.cost } else { used };
            if allowed && l.cost > 0 {
                self.counters.insert((l.name.to_owned(), w), (index, used));
            }
            outcomes.push(WindowOutcome {
                limit: l.limit,
                remaining: l.limit - used,
                reset: Duration::from_nanos((index + 1) * w * 1_000_000 - now_ns),
                allowed: fit,
            });
        }
        WindowsDecision {
            allowed,
            outcomes,
            refused_by: fits.iter().position(|&f| !f),
        }
    }
}

/// Four counters: "a" twice (two windows), "b" and "c:d".
fn pool() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((1u64..=12, 1_000u64..=4_000), 4)
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Check(Vec<(usize, u64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..3_000_000_000).prop_map(Op::Advance),
        3 => (
            prop::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4).prop_shuffle(),
            prop::collection::vec(0u64..=5, 4),
        )
            .prop_map(|(which, costs)| Op::Check(which.into_iter().map(|i| (i, costs[i])).collect())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random traffic over 1–4 limits: the same decisions as the model, never more than a
    /// limit admitted in one window, refused checks change nothing, resets within the window.
    #[test]
    fn the_memory_set_decides_like_the_model(
        start in 1_700_000_000_000_000_000u64..1_700_000_100_000_000_000,
        pool in pool(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let names = ["a", "b", "a", "c:d"];
        let spec: Vec<WindowLimit<'_>> = pool
            .iter()
            .enumerate()
            .map(|(i, &(limit, ms))| {
                // The second "a" has another window than the first: another counter.
                let ms = if i == 2 { pool[0].1 * 2 } else { ms };
                WindowLimit::new(names[i], limit, Duration::from_millis(ms))
            })
            .collect();
        let clock = TestClock::new(Timestamp::from_nanos(start));
        let set = MemoryWindowSet::with_clock(&clock);
        let mut model = Model::default();
        let mut admitted: HashMap<(usize, u64), u64> = HashMap::new();
        let mut now = start;
        for op in ops {
            match op {
                Op::Advance(ns) => {
                    now += ns;
                    clock.advance(Duration::from_nanos(ns));
                }
                Op::Check(which) => {
                    let limits: Vec<_> = which.iter().map(|&(i, cost)| spec[i].with_cost(cost)).collect();
                    let peek: Vec<_> = spec.iter().map(|l| l.with_cost(0)).collect();
                    let before = set.check("g", &peek).unwrap();
                    let got = set.check("g", &limits).unwrap();
                    let want = model.check(&limits, now);
                    prop_assert_eq!(&got, &want);
                    let after = set.check("g", &peek).unwrap();
                    if !got.allowed {
                        prop_assert_eq!(&before.outcomes, &after.outcomes, "a refused check changed a counter");
                    }
                    for (&(i, cost), o) in which.iter().zip(&got.outcomes) {
                        prop_assert!(o.reset > Duration::ZERO && o.reset <= spec[i].window);
                        if got.allowed {
                            let window = now / 1_000_000 / spec[i].window.as_millis() as u64;
                            let total = admitted.entry((i, window)).or_default();
                            *total += cost;
                            prop_assert!(*total <= spec[i].limit, "counter {} admitted {} in one window", i, total);
                            prop_assert_eq!(o.remaining, spec[i].limit - *total);
                        }
                    }
                }
            }
        }
    }
}
