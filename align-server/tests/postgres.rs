//! Two server instances in one process over one PostgreSQL schema: a key revoked through one
//! is refused by the other within a second (and its audit record is read through the other),
//! and webhook messages enqueued through either are each delivered, also after one instance is
//! stopped. Skipped, with a printed reason, without `ALIGN_TEST_POSTGRES_URL`. The same with
//! real `align serve` processes, one killed with SIGKILL while it holds deliveries, is
//! `align-cli/tests/instances.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use align_server::Database;
use http::StatusCode;
use serde_json::json;
use support::TestServer;
use support::receiver::Receiver;

/// An instance on the database at `url`, with its own data directory and the secrets key file
/// `key_file` that every instance shares (as a mounted secret would be).
async fn instance(url: &str, key_file: &std::path::Path) -> TestServer {
    let url = url.to_owned();
    let key_file = key_file.to_owned();
    TestServer::start_with(move |c| {
        c.database = Database::Postgres(url);
        c.secrets_key_file = Some(key_file);
        c.webhooks.allow_private_targets = true;
        c.webhooks.retry_schedule = "1,1".parse().unwrap();
        c.webhooks.poll_interval = Duration::from_millis(50);
        // Claims of a killed instance come due again after twice this plus 2 s.
        c.webhooks.attempt_timeout = Duration::from_secs(2);
    })
    .await
}

/// An instance on a runtime of its own, so that shutting that runtime down ends every task
/// of the instance at once (listener, dispatcher, watcher, connections), as a crash would.
fn instance_on_own_runtime(
    url: &str,
    key_file: &std::path::Path,
) -> (TestServer, tokio::runtime::Runtime) {
    let url = url.to_owned();
    let key_file = key_file.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(instance(&url, &key_file));
        (server, rt)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocations_and_the_outbox() {
    let Some((scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets-key");
    let a = instance(&url, &key_file).await;
    let (b, b_runtime) = instance_on_own_runtime(&url, &key_file);
    assert!(!a.admin_key.is_empty(), "the first instance bootstraps");
    assert!(
        b.admin_key.is_empty(),
        "the second finds the database set up"
    );
    let admin = a.admin_key.clone();

    // Revocation through A reaches B's cache within a second.
    let (key, resource) = a
        .mint(&admin, json!({"name": "shared", "scope": "organization"}))
        .await;
    assert_eq!(b.get("/api/v1/me", &key).await.status, StatusCode::OK);
    let id = resource["apiKeyId"].as_str().unwrap();
    let r = a
        .post(&format!("/api/v1/keys/{id}/revoke"), &admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let revoked = Instant::now();
    loop {
        let r = b.get("/api/v1/me", &key).await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.code(), "key_revoked");
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "instance B still accepted a key revoked through A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("B refused the revoked key after {:?}", revoked.elapsed());
    // The revocation made through A is in the audit log B answers from: one shared chain.
    let r = b
        .get("/api/v1/audit-events?action=api_key.revoked", &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"][0]["target"], id, "{}", r.body);

    // Messages enqueued through both are each delivered once the dispatchers share them.
    let (sandbox, _) = a
        .mint(
            &admin,
            json!({"name": "sandbox-admin", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let rx = Receiver::ok().await;
    let r = a
        .post(
            "/api/v1/webhook-endpoints",
            &sandbox,
            json!({ "url": rx.url(), "eventTypes": ["webhook.test"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ep = r.body["id"].as_str().unwrap().to_owned();
    let test = format!("/api/v1/webhook-endpoints/{ep}/test");
    for i in 0..10 {
        let via = if i % 2 == 0 { &a } else { &b };
        let r = via.post(&test, &sandbox, json!({})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let distinct = |got: &[support::receiver::Received]| {
        got.iter().map(|r| r.id()).collect::<HashSet<_>>().len()
    };
    rx.wait_for(Duration::from_secs(10), "10 test messages", |got| {
        distinct(got) == 10
    })
    .await;

    // Messages enqueued through B, then B dies at once (its dispatcher may hold claims on
    // some): A delivers every one, the claimed ones when their leases end.
    for _ in 0..5 {
        let r = b.post(&test, &sandbox, json!({})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    b_runtime.shutdown_background();
    drop(b);
    rx.wait_for(Duration::from_secs(60), "15 test messages", |got| {
        distinct(got) == 15
    })
    .await;
    a.stop().await;
    drop(scratch);
}

/// Issue 21, finding 6: "idempotency is per instance (a replay on another instance minted a
/// second key)". With PostgreSQL the replies are shared: the same `Idempotency-Key` sent to
/// the other instance replays the first answer (the same key, the same token), a different
/// body with it is refused on either, and the kept reply is sealed at rest: the token is not
/// in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_finding_6_a_replay_on_another_instance_replays_the_first_answer() {
    let Some((scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets-key");
    let a = instance(&url, &key_file).await;
    let b = instance(&url, &key_file).await;
    let admin = a.admin_key.clone();
    let first = mint_idempotent(&a, &admin, "order-1", "shared-replay").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = mint_idempotent(&b, &admin, "order-1", "shared-replay").await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["apiKeyId"], first.body["apiKeyId"]);
    assert_eq!(again.body["key"], first.body["key"]);
    // Only one key of that name exists.
    let listed = a.get("/api/v1/keys?limit=100", &admin).await;
    let named = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["keyName"] == "shared-replay")
        .count();
    assert_eq!(named, 1, "{}", listed.body);

    // The same key with another body is refused on both instances.
    for server in [&a, &b] {
        let other = mint_idempotent(server, &admin, "order-1", "something-else").await;
        assert_eq!(
            other.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            other.body
        );
        assert_eq!(other.code(), "idempotency_key_reused");
    }

    // At rest: the reply is sealed, the token appears nowhere in the table.
    let token = first.body["key"].as_str().unwrap();
    let pool = align_keys::postgres::connect(&url).unwrap();
    let client = pool.get().await.unwrap();
    let rows = client
        .query("SELECT reply FROM idempotency_replies", &[])
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let reply: Option<String> = row.get(0);
        let reply = reply.unwrap_or_default();
        assert!(reply.starts_with("sealed:"), "{reply}");
        assert!(!reply.contains(token));
        assert!(!reply.contains(&token[..12]));
    }
    drop(client);
    a.stop().await;
    b.stop().await;
    drop(scratch);
}

/// `POST /api/v1/keys` for an organisation key named `name`, with `Idempotency-Key: idem`.
async fn mint_idempotent(
    server: &TestServer,
    admin: &str,
    idem: &str,
    name: &str,
) -> support::Reply {
    let auth = format!("Bearer {admin}");
    let body = serde_json::to_vec(&json!({"name": name, "scope": "organization"})).unwrap();
    server
        .send(
            http::Method::POST,
            "/api/v1/keys",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", idem),
            ],
            Some(body),
        )
        .await
}
