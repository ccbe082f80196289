//! DESIGN §12 across instances: two servers on one PostgreSQL database and one Redis, driven by
//! 64 concurrent verifiers, admit exactly a key's credits and exactly a named limit, and a key
//! revoked through one is refused by the other at once. Needs `ALIGN_TEST_POSTGRES_URL` and
//! `ALIGN_TEST_REDIS_URL`; prints why it is skipped without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use align_server::Database;
use align_server::config::RedisUrl;
use http::StatusCode;
use serde_json::{Value, json};
use support::TestServer;

const VERIFIERS: usize = 64;

async fn instance(url: &str, redis: &str, prefix: &str, key_file: &std::path::Path) -> TestServer {
    let (url, redis, prefix, key_file) = (
        url.to_owned(),
        redis.to_owned(),
        prefix.to_owned(),
        key_file.to_owned(),
    );
    TestServer::start_with(move |c| {
        c.database = Database::Postgres(url);
        c.secrets_key_file = Some(key_file);
        c.redis.url = Some(RedisUrl::parse(&redis).unwrap());
        c.redis.prefix = prefix;
        // The verifying key's own limits (DESIGN §4) must not be what stops the verifiers.
        c.rate_limit_per_minute = 1_000_000;
        c.max_concurrent_per_key = 1000;
    })
    .await
}

/// Every verifier verifies `token` until refused with `stop`; returns how many were `VALID`.
async fn drain(servers: &[Arc<TestServer>], verifier: &str, token: &str, stop: &str) -> usize {
    let mut tasks = Vec::new();
    for i in 0..VERIFIERS {
        let server = Arc::clone(&servers[i % servers.len()]);
        let (verifier, token, stop) = (verifier.to_owned(), token.to_owned(), stop.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut valid = 0usize;
            loop {
                let r = server
                    .post("/api/v1/keys/verify", &verifier, json!({"key": token}))
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                match r.body["code"].as_str().unwrap() {
                    "VALID" => valid += 1,
                    code if code == stop => return valid,
                    other => panic!("unexpected {other}: {}", r.body),
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

async fn code_of(s: &TestServer, verifier: &str, token: &str) -> String {
    s.post("/api/v1/keys/verify", verifier, json!({"key": token}))
        .await
        .body["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_spend_exactly_a_keys_credits_and_limits() {
    let Some(redis) = std::env::var("ALIGN_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!("skipped: ALIGN_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/)");
        return;
    };
    let Some((_scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let prefix = format!(
        "align-test:ks-{}-{}:",
        std::process::id(),
        uuid::Uuid::new_v4()
    );
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets-key");
    let a = Arc::new(instance(&url, &redis, &prefix, &key_file).await);
    let b = Arc::new(instance(&url, &redis, &prefix, &key_file).await);
    let admin = a.admin_key.clone();
    let r = a
        .post(
            "/api/v1/keyspaces",
            &admin,
            json!({"name": "api", "prefix": "cust", "permissions": ["invoices:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ks = r.body["id"].as_str().unwrap().to_owned();
    let (verifier, _) = a
        .mint(
            &admin,
            json!({"name": "gateway", "scope": "organization", "permissions": ["keys:verify"]}),
        )
        .await;
    let mint = |body: Value| {
        let (a, admin, ks) = (Arc::clone(&a), admin.clone(), ks.clone());
        async move {
            let r = a
                .post(&format!("/api/v1/keyspaces/{ks}/keys"), &admin, body)
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            (r.body["key"].as_str().unwrap().to_owned(), r.body)
        }
    };
    let servers = [Arc::clone(&a), Arc::clone(&b)];

    // Credits: 1000, spent by 64 verifiers over both instances.
    let (credited, _) = mint(json!({"name": "metered", "credits": {"remaining": 1000}})).await;
    let started = Instant::now();
    let valid = drain(&servers, &verifier, &credited, "USAGE_EXCEEDED").await;
    eprintln!("credits: {valid} VALID in {:?}", started.elapsed());
    assert_eq!(valid, 1000, "exactly the key's credits, over two instances");

    // A named limit: 300 an hour, counted in Redis by both instances.
    let (limited, _) = mint(json!({
        "name": "limited",
        "ratelimits": [{"name": "requests", "limit": 300, "durationSeconds": 3600}]
    }))
    .await;
    let valid = drain(&servers, &verifier, &limited, "RATE_LIMITED").await;
    assert_eq!(valid, 300, "exactly the named limit, over two instances");

    // Revoked through A: B refuses it at once (the change log's NOTIFY).
    let (token, key) = mint(json!({"name": "to revoke"})).await;
    assert_eq!(
        code_of(&b, &verifier, &token).await,
        "VALID",
        "B has it cached"
    );
    let id = key["id"].as_str().unwrap();
    let r = a
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys/{id}/revoke"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let revoked = Instant::now();
    while code_of(&b, &verifier, &token).await != "REVOKED" {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still verified a key revoked through A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("B answered REVOKED after {:?}", revoked.elapsed());
}
