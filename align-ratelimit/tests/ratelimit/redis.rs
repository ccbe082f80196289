//! What only the shared Redis back-end promises: several instances on one limit, leases that
//! outlive a crash by at most their length, keys that expire, and failures that say where
//! without saying the password. The specifications every back-end meets are in `shared.rs`.

#![cfg(feature = "redis")]

use std::time::Duration;

use align_ratelimit::{
    Error, Rate, RedisConcurrencyLimiter, RedisOptions, RedisSlidingWindow, RedisStore,
};

use crate::backend::{Redis, redis_url, unique_prefix};

#[tokio::test]
async fn two_instances_on_one_redis_share_one_limit() {
    let Some(url) = redis_url("two_instances_on_one_redis_share_one_limit") else {
        return;
    };
    let options = RedisOptions {
        prefix: unique_prefix(),
        ..RedisOptions::default()
    };
    // Two stores: two connections, as two processes would have.
    let a = RedisStore::open(&url, options.clone()).unwrap();
    let b = RedisStore::open(&url, options).unwrap();
    let rate = Rate::per_minute(50);
    let (a, b) = (
        RedisSlidingWindow::new(&a, rate).unwrap(),
        RedisSlidingWindow::new(&b, rate).unwrap(),
    );
    let mut admitted = 0;
    for i in 0..200 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        admitted += u32::from(limiter.check(&"shared-key", 1).await.unwrap().allowed);
    }
    assert_eq!(admitted, 50);
    let denied = b.check(&"shared-key", 1).await.unwrap();
    assert_eq!((denied.allowed, denied.remaining), (false, 0));
    assert!(denied.retry_after_secs().unwrap() >= 59);
}

#[tokio::test]
async fn the_servers_clock_decides_and_a_window_frees_on_time() {
    let Some(redis) = Redis::from_env("the_servers_clock_decides_and_a_window_frees_on_time")
    else {
        return;
    };
    let limiter =
        RedisSlidingWindow::new(&redis.store, Rate::new(2, Duration::from_millis(400))).unwrap();
    assert!(limiter.check(&"k", 2).await.unwrap().allowed);
    let denied = limiter.check(&"k", 1).await.unwrap();
    assert!(!denied.allowed);
    let wait = denied.retry_after.unwrap();
    assert!(wait <= Duration::from_millis(400), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert!(limiter.check(&"k", 1).await.unwrap().allowed);
}

#[tokio::test]
async fn idle_keys_expire_from_redis() {
    let Some(url) = redis_url("idle_keys_expire_from_redis") else {
        return;
    };
    let prefix = unique_prefix();
    let store = RedisStore::open(
        &url,
        RedisOptions {
            prefix: prefix.clone(),
            ..RedisOptions::default()
        },
    )
    .unwrap();
    let limiter =
        RedisSlidingWindow::new(&store, Rate::new(5, Duration::from_millis(300))).unwrap();
    limiter.check(&"k", 1).await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=301).contains(&ttl), "{k}: {ttl} ms");
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_crashed_holders_slot_comes_back_when_its_lease_ends() {
    let Some(redis) = Redis::from_env("a_crashed_holders_slot_comes_back_when_its_lease_ends")
    else {
        return;
    };
    let limiter =
        RedisConcurrencyLimiter::new(&redis.store, 1, Duration::from_millis(300)).unwrap();
    let permit = limiter.try_acquire(&"k").await.unwrap().unwrap();
    // The holder dies without releasing.
    std::mem::forget(permit);
    assert!(limiter.try_acquire(&"k").await.unwrap().is_err());
    assert_eq!(limiter.in_flight(&"k").await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(limiter.in_flight(&"k").await.unwrap(), 0);
    let permit = limiter.try_acquire(&"k").await.unwrap().unwrap();
    permit.release().await.unwrap();
    assert_eq!(limiter.in_flight(&"k").await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_and_the_error_hides_the_password() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let store = RedisStore::open(
        "redis://user:s3cret-pw@127.0.0.1:1/0",
        RedisOptions::default(),
    )
    .unwrap();
    assert_eq!(store.target(), "127.0.0.1:1/0");
    let limiter = RedisSlidingWindow::new(&store, Rate::per_minute(10)).unwrap();
    let e = limiter.check(&"k", 1).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    let text = format!("{e} {e:?} {store:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let concurrency = RedisConcurrencyLimiter::new(&store, 1, Duration::from_secs(1)).unwrap();
    assert!(matches!(
        concurrency.try_acquire(&"k").await,
        Err(Error::Unavailable { .. })
    ));
    assert!(store.ping().await.is_err());
}

#[test]
fn a_store_needs_a_runtime_and_a_redis_url() {
    let e = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidStore(_)), "{e:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let e = RedisStore::open("http://:s3cret@example.invalid/", RedisOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::InvalidStore(_)), "{e:?}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    });
}
