//! Calendar quotas: never more than the limit in one UTC day or month, a full refill when the
//! next one starts, and (feature `redis`, `ALIGN_TEST_REDIS_URL`) the Redis quota deciding
//! exactly as the in-memory one on the same traffic, shared by several instances.

use std::collections::HashMap;

use align_ratelimit::{Algorithm, Decision, Quota, Timestamp};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;
const DAY: u64 = 86_400 * SEC;

/// A quota, a start time (2024 to 2030) and steps: the clock moves by a few seconds, hours,
/// days or weeks (so days and months end within a case), sometimes back a little, and each
/// request costs 0 to the limit.
fn workload() -> impl Strategy<Value = (Quota, u64, Vec<(i64, u64)>)> {
    (any::<bool>(), 1u64..12).prop_flat_map(|(monthly, limit)| {
        let quota = if monthly {
            Quota::per_month(limit)
        } else {
            Quota::per_day(limit)
        }
        .unwrap();
        let step = prop_oneof![
            4 => (0i64..3_000).prop_map(|ms| ms * 1_000_000),
            3 => (0i64..7_200).prop_map(|s| s * 1_000_000_000),
            2 => (0i64..3 * 86_400).prop_map(|s| s * 1_000_000_000),
            1 => (0i64..20 * 86_400).prop_map(|s| s * 1_000_000_000),
            1 => (-5_000i64..0).prop_map(|ms| ms * 1_000_000),
        ];
        (
            Just(quota),
            (19_723 * DAY)..(21_915 * DAY),
            prop::collection::vec((step, 0..=limit), 1..60),
        )
    })
}

/// The times of a workload's requests (never before the start).
fn times(start: u64, steps: &[(i64, u64)]) -> Vec<u64> {
    let mut now = start;
    steps
        .iter()
        .map(|&(step, _)| {
            now = now.saturating_add_signed(step).max(start);
            now
        })
        .collect()
}

/// The in-memory decisions on one key.
fn in_memory(quota: &Quota, start: u64, steps: &[(i64, u64)]) -> Vec<Decision> {
    let mut state = quota.new_state(Timestamp::from_nanos(start));
    times(start, steps)
        .into_iter()
        .zip(steps)
        .map(|(at, &(_, cost))| {
            quota
                .check(&mut state, cost, Timestamp::from_nanos(at))
                .unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_quota_never_admits_more_than_its_limit_in_one_period(
        (quota, start, steps) in workload()
    ) {
        let decisions = in_memory(&quota, start, &steps);
        // Admitted requests of one period all see that period's end as their reset.
        let mut used: HashMap<u64, u64> = HashMap::new();
        for ((at, &(_, cost)), d) in times(start, &steps).into_iter().zip(&steps).zip(&decisions) {
            if d.allowed && cost > 0 {
                let end = at + d.reset_after.as_nanos() as u64;
                let total = used.entry(end).or_default();
                *total += cost;
                prop_assert!(*total <= quota.limit(), "{} used in the period ending at {end}", total);
                prop_assert!(d.reset_after.as_nanos() as u64 <= 31 * DAY);
            }
            if !d.allowed {
                // A denial waits exactly until the period ends, and the first request after
                // that is admitted again.
                let wait = d.retry_after.unwrap();
                let mut copy = quota.new_state(Timestamp::from_nanos(at));
                let later = Timestamp::from_nanos(at + wait.as_nanos() as u64);
                prop_assert!(quota.check(&mut copy, cost, later).unwrap().allowed);
            }
        }
    }
}

#[cfg(feature = "redis")]
mod in_redis {
    use std::sync::atomic::{AtomicU64, Ordering};

    use align_ratelimit::{AsyncRateLimiter, Quota, RedisOptions, RedisQuota, RedisStore};
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::backend::{Redis, redis_url, unique_prefix};

    #[test]
    fn the_redis_quota_decides_exactly_as_the_in_memory_one() {
        let test = "the_redis_quota_decides_exactly_as_the_in_memory_one";
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
        // Each case is up to 60 round trips: fewer cases than in memory.
        let mut runner = TestRunner::new(Config::with_cases(64));
        runner
            .run(&workload(), |(quota, start, steps)| {
                let redis = RedisQuota::new(&store, quota).unwrap();
                let key = format!("case-{}", next.fetch_add(1, Ordering::Relaxed));
                let expected = in_memory(&quota, start, &steps);
                for ((at, &(_, cost)), want) in
                    times(start, &steps).into_iter().zip(&steps).zip(expected)
                {
                    let at = Timestamp::from_nanos(at);
                    let peek = runtime.block_on(redis.peek_at(&key, cost, at)).unwrap();
                    let got = runtime.block_on(redis.check_at(&key, cost, at)).unwrap();
                    prop_assert_eq!(got, want, "at {:?} cost {}", at, cost);
                    prop_assert_eq!(peek, want, "peek at {:?}", at);
                }
                Ok(())
            })
            .unwrap();
    }

    #[tokio::test]
    async fn a_daily_redis_quota_refills_at_midnight_utc_and_reports_the_wait() {
        let test = "a_daily_redis_quota_refills_at_midnight_utc_and_reports_the_wait";
        let Some(redis) = Redis::from_env(test) else {
            return;
        };
        let quota = RedisQuota::new(&redis.store, Quota::per_day(3).unwrap()).unwrap();
        // 2024-02-29T23:59:30Z.
        let t = |s: u64| Timestamp::from_unix_secs(1_709_251_170 + s);
        assert!(quota.check_at(&"k", 3, t(0)).await.unwrap().allowed);
        let denied = quota.check_at(&"k", 1, t(0)).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_secs(), Some(30));
        assert_eq!(denied.reset_after_secs(), 30);
        assert!(!quota.check_at(&"k", 1, t(29)).await.unwrap().allowed);
        let refilled = quota.check_at(&"k", 1, t(30)).await.unwrap();
        assert!(refilled.allowed);
        assert_eq!(refilled.remaining, 2);
        quota.forget(&"k").await.unwrap();
        assert_eq!(quota.check_at(&"k", 0, t(30)).await.unwrap().remaining, 3);
    }

    #[tokio::test]
    async fn two_instances_share_one_quota_on_the_servers_clock() {
        let test = "two_instances_share_one_quota_on_the_servers_clock";
        let Some(url) = redis_url(test) else { return };
        let prefix = unique_prefix();
        let options = RedisOptions {
            prefix: prefix.clone(),
            ..RedisOptions::default()
        };
        // Two stores: two connections, as two processes would have.
        let a = RedisStore::open(&url, options.clone()).unwrap();
        let b = RedisStore::open(&url, options).unwrap();
        let month = Quota::per_month(50).unwrap();
        let (a, b) = (
            RedisQuota::new(&a, month).unwrap(),
            RedisQuota::new(&b, month).unwrap(),
        );
        let mut admitted = 0;
        for i in 0..120 {
            let limiter: &dyn AsyncRateLimiter<str> = if i % 2 == 0 { &a } else { &b };
            admitted += u32::from(limiter.check("shared-key", 1).await.unwrap().allowed);
        }
        assert_eq!(admitted, 50);
        let denied = b.check(&"shared-key", 1).await.unwrap();
        assert_eq!((denied.allowed, denied.remaining), (false, 0));
        // Until the first of next month: at most 31 days, at least a second.
        let wait = denied.retry_after.unwrap();
        assert!(
            wait.as_secs() >= 1 && wait.as_secs() <= 31 * 86_400,
            "{wait:?}"
        );
        // The count expires an hour after the month ends.
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}q:m:50:{{shared-key}}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let expected = wait.as_millis() as i64 + 3_600_000;
        assert!(
            (expected - 2_000..=expected + 2_000).contains(&ttl),
            "ttl {ttl}, wait {wait:?}"
        );
    }
}

#[cfg(not(feature = "redis"))]
#[test]
fn redis_quota() {
    let _ = crate::backend::redis_url("redis_quota");
}
