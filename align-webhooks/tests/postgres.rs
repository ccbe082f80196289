//! What only the PostgreSQL outbox does: dispatchers on several instances share it without
//! claiming a delivery twice, and enqueueing joins the caller's transaction. Skipped, with a
//! printed reason, without `ALIGN_TEST_POSTGRES_URL`.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use align_core::Environment;
use align_core::postgres::ScratchSchema;
use align_webhooks::{NewMessage, PgWebhookStore, WebhookStore};
use chrono::Utc;
use serde_json::json;

use common::{endpoint, postgres_url};

async fn scratch() -> Option<ScratchSchema> {
    Some(ScratchSchema::create(&postgres_url()?).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatchers_never_claim_the_same_delivery() {
    let Some(scratch) = scratch().await else {
        return;
    };
    // Every instance holds the same key.
    let sealer = common::sealer();
    let first = PgWebhookStore::open(scratch.pool().unwrap(), sealer.clone())
        .await
        .unwrap();
    first
        .create_endpoint(&endpoint(Environment::Live, "https://a.example/"))
        .await
        .unwrap();
    let now = Utc::now();
    let mut all = HashSet::new();
    for i in 0..200 {
        let out = first
            .enqueue(
                NewMessage::new(
                    format!("evt_{i}"),
                    "api_key.revoked",
                    Environment::Live,
                    json!({}),
                ),
                now,
            )
            .await
            .unwrap();
        all.extend(out.deliveries);
    }
    assert_eq!(all.len(), 200);
    // Four instances, each with its own pool, claim until nothing is due.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = PgWebhookStore::open(scratch.pool().unwrap(), sealer.clone())
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let due = store
                    .claim_due(Utc::now(), 7, Duration::from_secs(60))
                    .await
                    .unwrap();
                if due.is_empty() {
                    return mine;
                }
                mine.extend(due.into_iter().map(|d| d.delivery.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    let mut instances_that_claimed = 0;
    for t in tasks {
        let mine = t.await.unwrap();
        instances_that_claimed += usize::from(!mine.is_empty());
        claimed.extend(mine);
    }
    let unique: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a delivery was claimed twice");
    assert_eq!(unique, all, "every delivery was claimed");
    assert!(instances_that_claimed >= 2, "the work was shared");
}

#[tokio::test]
async fn enqueue_in_transaction_commits_and_rolls_back_with_the_callers_change() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let pool = scratch.pool().unwrap();
    let store = PgWebhookStore::open(pool.clone(), common::sealer())
        .await
        .unwrap();
    store
        .create_endpoint(&endpoint(Environment::Live, "https://a.example/"))
        .await
        .unwrap();
    let mut client = pool.get().await.unwrap();
    client
        .batch_execute("CREATE TABLE test_changes (what TEXT)")
        .await
        .unwrap();
    for commit in [false, true] {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO test_changes VALUES ('x')", &[])
            .await
            .unwrap();
        let message = NewMessage::new(
            format!("evt_{commit}"),
            "api_key.revoked",
            Environment::Live,
            json!({}),
        );
        let out = PgWebhookStore::enqueue_in_transaction(&tx, &message, Utc::now())
            .await
            .unwrap();
        assert_eq!(out.deliveries.len(), 1);
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!(
        stats.pending, 1,
        "only the committed message has a delivery"
    );
    let changes: i64 = client
        .query_one("SELECT COUNT(*) FROM test_changes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(changes, 1);
}
