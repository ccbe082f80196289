#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash safety: a dispatcher process killed with SIGKILL mid-delivery and restarted
//! delivers every message at least once, with unchanged ids.
//!
//! The dispatcher runs in a child process: this test binary re-executed with
//! `CHILD_DB` set, which makes `crash_child` (a no-op otherwise) run a dispatcher forever.
#![cfg(all(feature = "sqlite", unix))]

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use align_core::Environment;
use align_webhooks::{
    DeliveryStatus, Dispatcher, DispatcherConfig, MessageId, NewMessage, RetrySchedule,
    SqliteWebhookStore, UrlPolicy, VerificationKey, Verifier, WebhookStore, WebhookVerifier,
};
use chrono::Utc;
use serde_json::json;

use common::{Reply, TestReceiver, endpoint, eventually};

const CHILD_DB: &str = "ALIGN_WEBHOOKS_CRASH_CHILD_DB";
const MESSAGES: usize = 24;

#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let db = std::path::PathBuf::from(db);
        let store = Arc::new(
            SqliteWebhookStore::open(&db, common::sealer_beside(&db))
                .await
                .unwrap(),
        );
        let config = DispatcherConfig {
            concurrency: 2,
            attempt_timeout: Duration::from_secs(1),
            lease: Duration::from_secs(1),
            retry_schedule: RetrySchedule::new(vec![Duration::from_millis(50); 10]),
            poll_interval: Duration::from_millis(20),
            url_policy: UrlPolicy::new().allow_private_targets(true),
            ..DispatcherConfig::default()
        };
        let dispatcher = Dispatcher::new(store, config).unwrap();
        dispatcher.run(std::future::pending()).await.unwrap();
    });
}

fn spawn_child(db: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DB, db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_delivery_loses_no_message() {
    if std::env::var(CHILD_DB).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let receiver =
        TestReceiver::start(|_, _| Reply::status(200).delay(Duration::from_millis(120))).await;
    let store = SqliteWebhookStore::open(&db, common::sealer_beside(&db))
        .await
        .unwrap();
    let ep = endpoint(Environment::Sandbox, &receiver.url("/hook"));
    store.create_endpoint(&ep).await.unwrap();
    let mut ids = BTreeSet::new();
    for i in 0..MESSAGES {
        let m = NewMessage::new(
            format!("evt_{i}"),
            "x.y",
            Environment::Sandbox,
            json!({"i": i}),
        );
        ids.insert(store.enqueue(m, Utc::now()).await.unwrap().message.id.0);
    }

    // First run: killed with SIGKILL while deliveries are in flight.
    let mut child = spawn_child(&db);
    assert!(eventually(Duration::from_secs(30), || async { receiver.count() >= 5 }).await);
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = receiver.count();
    assert!(
        at_kill < MESSAGES,
        "the kill came too late to test anything"
    );

    // Second run: picks up everything, including what was in flight (after its lease).
    let mut child = spawn_child(&db);
    // Done when the receiver has seen every id and the outbox knows every delivery succeeded
    // (which needs the in-flight ones to be sent again once their lease ends).
    let all = eventually(Duration::from_secs(60), || async {
        let seen: BTreeSet<String> = receiver
            .received()
            .iter()
            .map(common::Received::id)
            .collect();
        let deliveries = store.deliveries(ep.id, MESSAGES + 1).await.unwrap();
        seen.is_superset(&ids)
            && deliveries.len() == MESSAGES
            && deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Succeeded)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(all, "some messages were never delivered");

    let received = receiver.received();
    let seen: BTreeSet<String> = received.iter().map(common::Received::id).collect();
    assert_eq!(seen, ids, "ids changed or unknown ids appeared");
    // The deliveries in flight at the kill were sent again: at least once, not at most once.
    assert!(
        received.len() > ids.len(),
        "nothing was in flight at the kill"
    );
    let verifier = WebhookVerifier::with_keys(vec![
        VerificationKey::parse(ep.secrets.current().expose().expose()).unwrap(),
    ]);
    for r in &received {
        verifier.verify(&r.headers, &r.body).unwrap();
    }
    for id in &ids {
        let stored = store.message(&MessageId(id.clone())).await.unwrap();
        assert!(
            received
                .iter()
                .any(|r| r.id() == *id && r.body == stored.payload.as_bytes())
        );
    }
}
