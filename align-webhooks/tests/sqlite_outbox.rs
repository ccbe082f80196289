#![allow(clippy::unwrap_used, clippy::expect_used)]
//! SQLite specifics: the outbox joins the caller's transaction and survives reopening.
#![cfg(feature = "sqlite")]

mod common;

use align_core::Environment;
use align_webhooks::{NewMessage, SqliteWebhookStore, WebhookStore, enqueue_in_transaction};
use chrono::Utc;
use serde_json::json;

use common::endpoint;

#[tokio::test]
async fn enqueue_commits_and_rolls_back_with_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let store = SqliteWebhookStore::open(&path, common::sealer_beside(&path))
        .await
        .unwrap();
    store
        .create_endpoint(&endpoint(Environment::Live, "https://a.example/"))
        .await
        .unwrap();

    let mut conn = rusqlite::Connection::open(&path).unwrap();
    SqliteWebhookStore::migrate(&mut conn).unwrap();
    conn.execute_batch("CREATE TABLE app_things (name TEXT)")
        .unwrap();

    // Rolled back: neither the change nor the event exists.
    {
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO app_things VALUES ('a')", [])
            .unwrap();
        let m = NewMessage::new("evt_rb", "thing.created", Environment::Live, json!({}));
        let out = enqueue_in_transaction(&tx, &m, Utc::now()).unwrap();
        assert_eq!(out.deliveries.len(), 1);
        tx.rollback().unwrap();
    }
    let due = store
        .claim_due(Utc::now(), 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(due.is_empty());

    // Committed: both exist, and the dispatcher's store sees the delivery.
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO app_things VALUES ('b')", [])
        .unwrap();
    let m = NewMessage::new(
        "evt_ok",
        "thing.created",
        Environment::Live,
        json!({"n": 1}),
    );
    let out = enqueue_in_transaction(&tx, &m, Utc::now()).unwrap();
    tx.commit().unwrap();
    let due = store
        .claim_due(Utc::now(), 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message.id, out.message.id);
}

#[tokio::test]
async fn the_outbox_survives_reopening_with_ids_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let (ep, out) = {
        let store = SqliteWebhookStore::open(&path, common::sealer_beside(&path))
            .await
            .unwrap();
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let out = store
            .enqueue(
                NewMessage::new("evt_keep", "x", Environment::Live, json!({})),
                Utc::now(),
            )
            .await
            .unwrap();
        (ep, out)
    };
    let store = SqliteWebhookStore::open(&path, common::sealer_beside(&path))
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 7);
    let due = store
        .claim_due(Utc::now(), 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message, out.message);
    assert_eq!(due[0].delivery.id, out.deliveries[0]);
    assert_eq!(
        due[0].endpoint.secrets.current().expose(),
        ep.secrets.current().expose()
    );
}

#[tokio::test]
async fn tables_are_prefixed_and_the_database_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let _store = SqliteWebhookStore::open(&path, common::sealer_beside(&path))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(names.contains(&"webhooks_migrations".to_owned()));
    assert!(
        names.iter().all(|n| n.starts_with("webhooks_")),
        "{names:?}"
    );
}

#[tokio::test]
async fn the_store_does_not_print_secrets() {
    let store = SqliteWebhookStore::open_in_memory().await.unwrap();
    let ep = endpoint(Environment::Live, "https://a.example/");
    store.create_endpoint(&ep).await.unwrap();
    let got = store.endpoint(ep.id).await.unwrap();
    let secret = got.secrets.current().expose();
    let printed = format!("{store:?} {got:?}");
    assert!(!printed.contains(&secret.expose()[6..]));
}
