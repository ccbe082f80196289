//! Key events recorded in the same SQLite transaction as the change (the outbox hook).

#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use align_keys::store::KeyStore;
use align_keys::*;
use chrono::Utc;
use common::*;

/// Writes every event into `test_outbox` through the change's own transaction, or fails
/// when told to.
#[derive(Default)]
struct Outbox {
    fail: AtomicBool,
}

impl SqliteEventHook for Outbox {
    fn on_key_event(
        &self,
        tx: &rusqlite::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("outbox full".into());
        }
        tx.execute(
            "CREATE TABLE IF NOT EXISTS test_outbox (key_id TEXT, type TEXT)",
            [],
        )?;
        tx.execute(
            "INSERT INTO test_outbox VALUES (?1, ?2)",
            [key.id.to_string(), event.kind.event_type().to_owned()],
        )?;
        Ok(())
    }
}

fn outbox(path: &std::path::Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let Ok(mut stmt) = c.prepare("SELECT key_id, type FROM test_outbox ORDER BY rowid") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn every_change_records_its_event_and_a_failed_hook_rolls_the_change_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let hook = Arc::new(Outbox::default());
    let store = SqliteKeyStore::open(&path)
        .await
        .unwrap()
        .with_event_hook(Arc::clone(&hook) as Arc<dyn SqliteEventHook>);
    let store: Arc<dyn KeyStore> = Arc::new(store);
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store));
    let now = Utc::now();

    let minted = keys
        .mint(new_key(&f, "ci", Environment::Live), now)
        .await
        .unwrap();
    let id = minted.record.id;
    keys.suspend(id, now).await.unwrap();
    keys.suspend(id, now).await.unwrap(); // already suspended: no second event
    keys.resume(id).await.unwrap();
    let rotation = keys
        .rotate(id, StdDuration::from_secs(60), now)
        .await
        .unwrap();
    keys.revoke(id, now).await.unwrap();
    keys.revoke(id, now).await.unwrap(); // idempotent: no second event

    let k = id.to_string();
    let s = rotation.successor.record.id.to_string();
    let want: Vec<(String, String)> = [
        (&k, "api_key.created"),
        (&k, "api_key.suspended"),
        (&k, "api_key.resumed"),
        (&s, "api_key.rotated"),
        (&k, "api_key.revoked"),
    ]
    .into_iter()
    .map(|(a, b)| (a.clone(), b.to_owned()))
    .collect();
    assert_eq!(outbox(&path), want);

    // A hook that fails takes the change with it: nothing half-done.
    hook.fail.store(true, Ordering::SeqCst);
    let err = keys
        .mint(new_key(&f, "lost", Environment::Live), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EventHook(_)), "{err:?}");
    let err = keys.suspend(rotation.successor.record.id, now).await;
    assert!(matches!(err, Err(Error::EventHook(_))));
    let successor = store
        .get_key(rotation.successor.record.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        successor.suspended_at.is_none(),
        "the suspension rolled back"
    );
    let listed = store
        .list_keys(
            &KeyFilter {
                organization_id: f.org.id,
                project_id: None,
                environment: None,
                include_revoked: true,
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 2);
    assert!(listed.data.iter().all(|k| k.name != "lost"));
    assert_eq!(outbox(&path).len(), 5);
}

/// Remembers the attachment of every event it sees (as the note's text), in its transaction.
#[derive(Default)]
struct Notes {
    seen: std::sync::Mutex<Vec<(String, Option<String>)>>,
}

impl SqliteEventHook for Notes {
    fn on_key_event(
        &self,
        _tx: &rusqlite::Transaction<'_>,
        _key: &KeyRecord,
        event: KeyEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let note = event
            .attachment
            .as_ref()
            .and_then(|a| a.downcast_ref::<String>())
            .cloned();
        self.seen
            .lock()
            .unwrap()
            .push((event.kind.event_type().to_owned(), note));
        Ok(())
    }
}

#[tokio::test]
async fn an_attachment_reaches_the_hook_with_the_changes_event_only() {
    let hook = Arc::new(Notes::default());
    let store = SqliteKeyStore::open_in_memory()
        .await
        .unwrap()
        .with_event_hook(Arc::clone(&hook) as Arc<dyn SqliteEventHook>);
    let store: Arc<dyn KeyStore> = Arc::new(store);
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store));
    let now = Utc::now();
    let note = |text: &str| Attachment::new(text.to_owned());

    let minted = keys
        .with_attachment(note("mint"))
        .mint(new_key(&f, "ci", Environment::Live), now)
        .await
        .unwrap();
    let id = minted.record.id;
    // The rotation's one event is the successor's insert; the old key's shorter expiry is
    // written without one.
    keys.with_attachment(note("rotate"))
        .rotate(id, StdDuration::from_secs(60), now)
        .await
        .unwrap();
    keys.suspend(id, now).await.unwrap();
    keys.with_attachment(note("again"))
        .suspend(id, now)
        .await
        .unwrap(); // already suspended: no event, so the hook never sees the note
    keys.with_attachment(note("revoke"))
        .revoke(id, now)
        .await
        .unwrap();

    let seen = hook.seen.lock().unwrap().clone();
    let want: Vec<(String, Option<String>)> = [
        ("api_key.created", Some("mint")),
        ("api_key.rotated", Some("rotate")),
        ("api_key.suspended", None),
        ("api_key.revoked", Some("revoke")),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n.map(str::to_owned)))
    .collect();
    assert_eq!(seen, want);
}
