#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The receiver kit: verification first, then de-duplication on `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use align_webhooks::{
    Deduplicator, Error, MemoryDeduplicator, Receipt, SigningSecret, WebhookReceiver,
    WebhookVerifier,
};
use chrono::{TimeZone, Utc};
use http::HeaderMap;

fn t(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

async fn dedups(ttl: Duration) -> Vec<(&'static str, Arc<dyn Deduplicator>)> {
    #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
    let mut out: Vec<(&'static str, Arc<dyn Deduplicator>)> =
        vec![("memory", Arc::new(MemoryDeduplicator::new(ttl)))];
    #[cfg(feature = "sqlite")]
    out.push((
        "sqlite",
        Arc::new(
            align_webhooks::SqliteDeduplicator::open_in_memory()
                .await
                .unwrap()
                .ttl(ttl),
        ),
    ));
    out
}

#[tokio::test]
async fn an_id_is_new_once_within_the_ttl_and_again_after_it() {
    for (name, d) in dedups(Duration::from_secs(60)).await {
        assert!(d.first_sighting("msg_a", t(0)).await.unwrap(), "{name}");
        assert!(!d.first_sighting("msg_a", t(30)).await.unwrap(), "{name}");
        assert!(d.first_sighting("msg_b", t(30)).await.unwrap(), "{name}");
        assert!(!d.first_sighting("msg_a", t(59)).await.unwrap(), "{name}");
        assert!(d.first_sighting("msg_a", t(60)).await.unwrap(), "{name}");
        assert!(!d.first_sighting("msg_a", t(61)).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn a_forgotten_id_is_processed_again() {
    for (name, d) in dedups(Duration::from_secs(60)).await {
        assert!(d.first_sighting("msg_f", t(0)).await.unwrap());
        d.forget("msg_f").await.unwrap();
        assert!(d.first_sighting("msg_f", t(1)).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn the_memory_store_sweeps_expired_ids() {
    let d = MemoryDeduplicator::new(Duration::from_secs(1));
    for i in 0..5000 {
        d.first_sighting(&format!("msg_{i}"), t(i)).await.unwrap();
    }
    assert!(d.len() < 3000, "{}", d.len());
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_sqlite_store_remembers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receiver.db");
    let d = align_webhooks::SqliteDeduplicator::open(&path)
        .await
        .unwrap();
    assert!(d.first_sighting("msg_r", Utc::now()).await.unwrap());
    drop(d);
    let d = align_webhooks::SqliteDeduplicator::open(&path)
        .await
        .unwrap();
    assert!(!d.first_sighting("msg_r", Utc::now()).await.unwrap());
}

fn signed(secret: &SigningSecret, id: &str, body: &[u8]) -> HeaderMap {
    let now = Utc::now().timestamp();
    let mut h = HeaderMap::new();
    h.insert("webhook-id", id.parse().unwrap());
    h.insert("webhook-timestamp", now.to_string().parse().unwrap());
    h.insert(
        "webhook-signature",
        secret.sign(id, now, body).parse().unwrap(),
    );
    h
}

#[tokio::test]
async fn the_receiver_verifies_before_it_records_an_id() {
    let secret = SigningSecret::generate().unwrap();
    let receiver = WebhookReceiver::new(
        WebhookVerifier::new(secret.clone()),
        MemoryDeduplicator::default(),
    );
    // A forgery with a real id must not use up that id.
    let forger = SigningSecret::generate().unwrap();
    let forged = signed(&forger, "msg_x", b"{}");
    assert!(matches!(
        receiver.receive(&forged, b"{}").await,
        Err(Error::InvalidSignature)
    ));
    let genuine = signed(&secret, "msg_x", b"{}");
    let Receipt::New(first) = receiver.receive(&genuine, b"{}").await.unwrap() else {
        panic!("genuine message was not new");
    };
    assert_eq!(first.id, "msg_x");
    // A retry (new timestamp, same id) is a duplicate.
    let retry = signed(&secret, "msg_x", b"{}");
    assert!(matches!(
        receiver.receive(&retry, b"{}").await.unwrap(),
        Receipt::Duplicate(_)
    ));
    // After a processing failure the retry is processed.
    receiver.processing_failed("msg_x").await.unwrap();
    assert!(matches!(
        receiver.receive(&retry, b"{}").await.unwrap(),
        Receipt::New(_)
    ));
}
