//! Rate limits shared through Redis (`ratelimit.redis_url`): two instances on one Redis admit
//! one key's limit once in total, and while Redis does not answer the configured policy holds
//! (fail open on each instance's own limiter, or fail closed with 503). The two-instance test
//! needs `ALIGN_TEST_REDIS_URL` and prints why it is skipped without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use align_server::config::{RedisFailure, RedisUrl};
use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

const REDIS_ENV: &str = "ALIGN_TEST_REDIS_URL";

fn redis_url(test: &str) -> Option<String> {
    match std::env::var(REDIS_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!(
                "{test}: skipped: {REDIS_ENV} is not set (e.g. {REDIS_ENV}=redis://127.0.0.1:6379/)"
            );
            None
        }
    }
}

/// A key prefix no other test run uses, so parallel runs sharing one Redis never meet.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("align-test:{}-{nanos:x}:", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_admit_a_keys_limit_once_in_total() {
    let Some(url) = redis_url("two_instances_on_one_redis_admit_a_keys_limit_once_in_total") else {
        return;
    };
    let prefix = unique_prefix();
    let shared = |c: &mut align_server::Config| {
        c.redis.url = Some(RedisUrl::parse(&url).unwrap());
        c.redis.prefix.clone_from(&prefix);
    };
    let a = TestServer::start_with(shared).await;
    // The second instance: same data directory (same align.db), same Redis, another port.
    let b = a.start_another_instance(shared).await;
    assert_ne!(a.addr, b.addr);

    let (token, key) = a
        .mint(
            &a.admin_key,
            json!({"name": "two-instances", "scope": "organization"}),
        )
        .await;
    // The default limit is shared first: one request on each instance counts twice.
    assert_eq!(
        a.get("/api/v1/me", &token)
            .await
            .header("x-ratelimit-remaining"),
        Some("599")
    );
    assert_eq!(
        b.get("/api/v1/me", &token)
            .await
            .header("x-ratelimit-remaining"),
        Some("598")
    );

    // A limit of 50 keeps the test fast; instance B learns of the change within 250 ms.
    let id = key["apiKeyId"].as_str().unwrap();
    let r = a
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{id}"),
            &a.admin_key,
            json!({"rateLimitPerMinute": 50}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let limit = b.get("/api/v1/me", &token).await;
        if limit.header("x-ratelimit-limit") == Some("50") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance B never saw the new limit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // That probe on B was the first request counted under the new rate.
    let mut admitted = [0u32, 1];
    let mut denied = 0;
    for i in 0..120 {
        let server = if i % 2 == 0 { &a } else { &b };
        let r = server.get("/api/v1/me", &token).await;
        match r.status {
            StatusCode::OK => admitted[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.code(), "rate_limit");
                assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
                assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
                denied += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(
        admitted[0] + admitted[1],
        50,
        "admitted per instance: {admitted:?}"
    );
    assert!(
        admitted[0] >= 20 && admitted[1] >= 20,
        "both instances served: {admitted:?}"
    );
    assert_eq!(denied, 121 - 50);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_a_keys_daily_quota() {
    let Some(url) = redis_url("two_instances_on_one_redis_share_a_keys_daily_quota") else {
        return;
    };
    let prefix = unique_prefix();
    let shared = |c: &mut align_server::Config| {
        c.redis.url = Some(RedisUrl::parse(&url).unwrap());
        c.redis.prefix.clone_from(&prefix);
        c.quota_per_day = Some(30);
        c.quota_per_month = Some(1000);
    };
    let a = TestServer::start_with(shared).await;
    let b = a.start_another_instance(shared).await;
    let (token, _) = a
        .mint(
            &a.admin_key,
            json!({"name": "quota", "scope": "organization"}),
        )
        .await;
    let mut admitted = [0u32, 0];
    for i in 0..80 {
        let server = if i % 2 == 0 { &a } else { &b };
        let r = server.get("/api/v1/me", &token).await;
        match r.status {
            StatusCode::OK => admitted[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.code(), "quota_exceeded");
                // Until midnight UTC.
                let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=86_400).contains(&wait), "{wait}");
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(
        admitted,
        [15, 15],
        "30 a day across both instances, not 30 each"
    );
    // The monthly quota counted the same 30 in Redis (denials by the daily one never reach it).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let month_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}q:m:1000:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut used = Vec::new();
    for k in &month_keys {
        let u: u64 = redis::cmd("HGET")
            .arg(k)
            .arg("u")
            .query_async(&mut conn)
            .await
            .unwrap();
        used.push(u);
    }
    used.sort_unstable();
    assert!(used.contains(&30), "monthly counts {used:?}");
    b.stop().await;
    a.stop().await;
}

/// Port 1 on loopback: nothing listens, so the connection is refused at once.
const UNREACHABLE: &str = "redis://:s3cret@127.0.0.1:1/";

#[tokio::test]
async fn with_redis_unreachable_failing_open_admits_on_the_local_limiter() {
    let s = TestServer::start_with(|c| {
        c.redis.url = Some(RedisUrl::parse(UNREACHABLE).unwrap());
        c.redis.failure = RedisFailure::Open;
        c.rate_limit_per_minute = 3;
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
    }
    let r = s.get("/api/v1/me", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "rate_limit");
    s.stop().await;
}

#[tokio::test]
async fn with_redis_unreachable_failing_closed_answers_503_with_retry_after() {
    let s = TestServer::start_with(|c| {
        c.redis.url = Some(RedisUrl::parse(UNREACHABLE).unwrap());
        c.redis.failure = RedisFailure::Closed;
    })
    .await;
    for _ in 0..3 {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.code(), "unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(!r.body.to_string().contains("s3cret"));
    }
    // Requests without a key never reach the limiter.
    let r = s.send(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

/// A loopback TCP relay to the test Redis that the test can cut and restore, to play an outage.
struct Relay {
    addr: std::net::SocketAddr,
    target: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut relay = Self {
            addr,
            target,
            tasks: Vec::new(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the listener and every relayed connection (dropping the JoinSet aborts them).
    async fn cut(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// `host:port` of a `redis://` URL (loopback in tests).
fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(6379))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_open_and_sharing_resumes_when_redis_answers_again() {
    let test = "an_outage_fails_open_and_sharing_resumes_when_redis_answers_again";
    let Some(url) = redis_url(test) else { return };
    let mut relay = Relay::start(host_port(&url)).await;
    let mut via_relay = url::Url::parse(&url).unwrap();
    via_relay.set_port(Some(relay.addr.port())).unwrap();
    let prefix = unique_prefix();
    let s = TestServer::start_with(|c| {
        c.redis.url = Some(RedisUrl::parse(via_relay.as_str()).unwrap());
        c.redis.prefix.clone_from(&prefix);
        c.rate_limit_per_minute = 100;
    })
    .await;
    let remaining = |r: &support::Reply| r.header("x-ratelimit-remaining").unwrap().to_owned();
    let mut key_id = String::new();
    for expected in ["99", "98"] {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(remaining(&r), expected);
        key_id = r.body["apiKeyId"].as_str().unwrap().to_owned();
    }
    relay.cut().await;
    // Failing open: admitted, on this instance's own (fresh) window.
    for expected in ["99", "98", "97"] {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(remaining(&r), expected);
    }
    relay.restore().await;
    // Within a few probe intervals requests are counted in Redis again, after the two before.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let state = format!("{prefix}sw:100:60000000000:{{{key_id}}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/api/v1/me", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let total: u64 = redis::cmd("HGET")
            .arg(&state)
            .arg("total")
            .query_async(&mut conn)
            .await
            .unwrap();
        if total > 2 {
            assert_eq!(remaining(&r), (100 - total).to_string());
            break;
        }
        assert!(Instant::now() < deadline, "Redis never counted again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}
