//! Named limits in Redis (`RedisWindowSet`): the contract of `windows.rs`, exactness across
//! instances, windows that roll over on the server's clock, and counters that expire.

#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use align_ratelimit::{RedisOptions, RedisStore, RedisWindowSet, WindowLimit, WindowSet};

use crate::backend::{Redis, redis_url, unique_prefix};
use crate::windows::{
    a_refused_check_spends_on_no_limit, an_invalid_check_spends_nothing,
    groups_and_names_never_meet, remaining,
};

/// 30 days: no test run crosses the end of such a window (aligned to the epoch) in practice.
const LONG: Duration = Duration::from_secs(30 * 86_400);

#[tokio::test]
async fn the_contract_holds_in_redis() {
    let Some(redis) = Redis::from_env("the_contract_holds_in_redis") else {
        return;
    };
    let set = RedisWindowSet::new(&redis.store);
    a_refused_check_spends_on_no_limit(&set).await;
    groups_and_names_never_meet(&set).await;
    an_invalid_check_spends_nothing(&set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_and_sixty_four_callers_admit_exactly_the_limit() {
    let test = "two_instances_and_sixty_four_callers_admit_exactly_the_limit";
    let Some(url) = redis_url(test) else {
        return;
    };
    let options = RedisOptions {
        prefix: unique_prefix(),
        timeout: Duration::from_secs(5),
    };
    // Two stores: two connections, as two processes would have.
    let instances: [Arc<dyn WindowSet>; 2] = [
        Arc::new(RedisWindowSet::new(
            &RedisStore::open(&url, options.clone()).unwrap(),
        )),
        Arc::new(RedisWindowSet::new(
            &RedisStore::open(&url, options).unwrap(),
        )),
    ];
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let set = Arc::clone(&instances[i % 2]);
            tokio::spawn(async move {
                let limits = [
                    WindowLimit::new("requests", 500, LONG),
                    WindowLimit::new("tokens", 100_000, LONG).with_cost(3),
                ];
                let mut admitted = 0u64;
                for _ in 0..20 {
                    admitted += u64::from(set.check("key:1", &limits).await.unwrap().allowed);
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert_eq!(admitted, 500);
    let limits = [
        WindowLimit::new("requests", 500, LONG),
        WindowLimit::new("tokens", 100_000, LONG),
    ];
    assert_eq!(
        remaining(&*instances[1], "key:1", &limits).await,
        [0, 98_500]
    );
}

#[tokio::test]
async fn a_window_rolls_over_on_the_servers_clock() {
    let Some(redis) = Redis::from_env("a_window_rolls_over_on_the_servers_clock") else {
        return;
    };
    let set = RedisWindowSet::new(&redis.store);
    let second = [WindowLimit::new("per-second", 3, Duration::from_secs(1))];
    // Start early in a window, so the three checks below fall in one.
    let peek = set.check("g", &[second[0].with_cost(0)]).await.unwrap();
    if peek.outcomes[0].reset < Duration::from_millis(500) {
        tokio::time::sleep(peek.outcomes[0].reset + Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        assert!(set.check("g", &second).await.unwrap().allowed);
    }
    let refused = set.check("g", &second).await.unwrap();
    assert_eq!(refused.refused_by, Some(0));
    let reset = refused.outcomes[0].reset;
    assert!(
        reset > Duration::ZERO && reset <= Duration::from_secs(1),
        "{reset:?}"
    );
    assert_eq!(refused.outcomes[0].reset_secs(), 1);
    tokio::time::sleep(reset + Duration::from_millis(20)).await;
    let next = set.check("g", &second).await.unwrap();
    assert!(next.allowed);
    assert_eq!(next.outcomes[0].remaining, 2);
}

#[tokio::test]
async fn counters_are_named_unambiguously_and_expire_after_their_window() {
    let test = "counters_are_named_unambiguously_and_expire_after_their_window";
    let Some(url) = redis_url(test) else {
        return;
    };
    let prefix = unique_prefix();
    let options = RedisOptions {
        prefix: prefix.clone(),
        timeout: Duration::from_secs(5),
    };
    let set = RedisWindowSet::new(&RedisStore::open(&url, options).unwrap());
    let limits = [
        WindowLimit::new("n:1", 10, Duration::from_secs(60)),
        WindowLimit::new("peek", 10, Duration::from_secs(60)).with_cost(0),
    ];
    set.check("a:b", &limits).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Only the spent counter exists: group length and group, name in hex, window, number.
    assert_eq!(keys.len(), 1, "{keys:?}");
    let base = format!("{prefix}w:3:a:b:6e3a31:60000:");
    let index: u64 = keys[0].strip_prefix(&base).unwrap().parse().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(index.abs_diff(now_ms / 60_000) <= 1, "{index}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1_000..=61_000).contains(&ttl), "{ttl} ms");
}

#[tokio::test]
async fn counts_beyond_two_to_the_fifty_three_are_exact() {
    let test = "counts_beyond_two_to_the_fifty_three_are_exact";
    let Some(url) = redis_url(test) else {
        return;
    };
    let prefix = unique_prefix();
    let options = RedisOptions {
        prefix: prefix.clone(),
        timeout: Duration::from_secs(5),
    };
    let set = RedisWindowSet::new(&RedisStore::open(&url, options).unwrap());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let window_ms = LONG.as_millis() as u64;
    // "big" in hex is 626967. A double cannot tell 2^60 - 4 from 2^60 + 1; the script can.
    let key = format!(
        "{prefix}w:1:g:626967:{window_ms}:{}",
        secs * 1_000 / window_ms
    );
    let limit = (1u64 << 60) + 1;
    redis::cmd("SET")
        .arg(&key)
        .arg(limit - 5)
        .arg("PX")
        .arg(60_000)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let big = WindowLimit::new("big", limit, LONG);
    let d = set.check("g", &[big.with_cost(5)]).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.outcomes[0].remaining, 0);
    let refused = set.check("g", &[big]).await.unwrap();
    assert_eq!(refused.refused_by, Some(0));
    let used: u64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(used, limit);
}
