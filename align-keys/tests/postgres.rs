//! What only the PostgreSQL store does: several instances over one database (LISTEN/NOTIFY
//! revocation, concurrent migrations), events in the change's transaction, and errors that
//! never show the URL's password. Skipped, with a printed reason, without
//! `ALIGN_TEST_POSTGRES_URL`.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use align_keys::postgres::ScratchSchema;
use align_keys::store::KeyStore;
use align_keys::*;
use async_trait::async_trait;
use chrono::Utc;
use common::*;

async fn scratch() -> Option<ScratchSchema> {
    Some(ScratchSchema::create(&postgres_url()?).await.unwrap())
}

async fn instance(scratch: &ScratchSchema) -> PgKeyStore {
    PgKeyStore::open(scratch.pool().unwrap())
        .await
        .unwrap()
        .listen_for_changes(scratch.config())
        .unwrap()
}

#[tokio::test]
async fn a_revocation_through_one_instance_reaches_the_others_cache_within_a_second() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let a = manager(Arc::new(instance(&scratch).await));
    let b = manager(Arc::new(instance(&scratch).await));
    let f = seed(a.store().as_ref()).await;
    // A poll interval far beyond the deadline: only the notification can make it in time.
    let watcher = a.verifier().spawn_change_watcher(Duration::from_secs(60));
    let minted = a
        .mint(new_key(&f, "shared", Environment::Live), Utc::now())
        .await
        .unwrap();
    let token = minted.token.expose();
    assert!(matches!(
        a.verifier().verify(token, Utc::now()).await.unwrap(),
        Verification::Valid(_)
    ));
    // Let the watcher take its starting position and the listener subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;

    b.revoke(minted.record.id, Utc::now()).await.unwrap();
    let revoked_at = Instant::now();
    let mut seen = None;
    while revoked_at.elapsed() < Duration::from_secs(1) {
        if matches!(
            a.verifier().verify(token, Utc::now()).await.unwrap(),
            Verification::Revoked(_)
        ) {
            seen = Some(revoked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watcher.abort();
    let seen = seen.expect("instance A still accepted the key a second after B revoked it");
    eprintln!("revocation reached the other instance after {seen:?}");
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let opened = futures_join_all((0..4).map(|_| PgKeyStore::open(scratch.pool().unwrap()))).await;
    for store in opened {
        assert_eq!(store.unwrap().schema_version().await.unwrap(), 7);
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Writes every event into `test_outbox` through the change's own transaction, or fails when
/// told to.
#[derive(Default)]
struct Outbox {
    fail: AtomicBool,
}

#[async_trait]
impl PgEventHook for Outbox {
    async fn on_key_event(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        key: &KeyRecord,
        event: KeyEvent,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("outbox full".into());
        }
        tx.execute(
            "INSERT INTO test_outbox (key_id, type) VALUES ($1, $2)",
            &[&key.id.to_string(), &event.kind.event_type()],
        )
        .await?;
        Ok(())
    }
}

#[tokio::test]
async fn every_change_records_its_event_and_a_failed_hook_rolls_the_change_back() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let pool = scratch.pool().unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE test_outbox (seq BIGSERIAL, key_id TEXT, type TEXT)")
        .await
        .unwrap();
    let outbox = || async {
        pool.get()
            .await
            .unwrap()
            .query("SELECT key_id, type FROM test_outbox ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect::<Vec<_>>()
    };
    let hook = Arc::new(Outbox::default());
    let store: Arc<dyn KeyStore> = Arc::new(
        PgKeyStore::open(pool.clone())
            .await
            .unwrap()
            .with_event_hook(Arc::clone(&hook) as Arc<dyn PgEventHook>),
    );
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store));
    let now = Utc::now();

    let minted = keys
        .mint(new_key(&f, "ci", Environment::Live), now)
        .await
        .unwrap();
    let id = minted.record.id;
    keys.suspend(id, now).await.unwrap();
    keys.resume(id).await.unwrap();
    keys.revoke(id, now).await.unwrap();
    keys.revoke(id, now).await.unwrap(); // idempotent: no second event
    let k = id.to_string();
    let want: Vec<(String, String)> = [
        "api_key.created",
        "api_key.suspended",
        "api_key.resumed",
        "api_key.revoked",
    ]
    .into_iter()
    .map(|t| (k.clone(), t.to_owned()))
    .collect();
    assert_eq!(outbox().await, want);

    hook.fail.store(true, Ordering::SeqCst);
    let other = keys
        .mint(new_key(&f, "other", Environment::Live), now)
        .await
        .unwrap_err();
    assert!(matches!(other, Error::EventHook(_)), "{other:?}");
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
    assert_eq!(listed.data.len(), 1, "the failed mint rolled back");
    assert_eq!(outbox().await.len(), 4);
}

#[tokio::test]
async fn errors_never_show_the_password_of_the_url() {
    // Nothing listens on port 1: the connection is refused at once.
    let err = PgKeyStore::connect("postgres://align:s3cret-pw@127.0.0.1:1/align")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let bad = PgKeyStore::connect("postgres://align:s3cret-pw@127.0.0.1:port/align")
        .await
        .unwrap_err();
    for e in [err, bad] {
        let text = format!("{e} {e:?}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
