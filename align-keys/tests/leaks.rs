//! The `LeakStore` contract and the organisation's leak policy, run against every back-end.
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use align_keys::store::{KeyStore, PageRequest};
use align_keys::*;
use chrono::{DateTime, Utc};
use common::*;

/// A key store and the same store as a leak store.
type Both = (&'static str, Arc<dyn KeyStore>, Arc<dyn LeakStore>);

fn both<S: KeyStore + LeakStore>(name: &'static str, store: S) -> Both {
    let store = Arc::new(store);
    (name, store.clone(), store)
}

/// Every back-end over an empty store, and PostgreSQL's scratch schema (kept while it lives).
async fn backends() -> (Vec<Both>, Option<Box<dyn std::any::Any>>) {
    let mut stores = vec![both("memory", MemoryKeyStore::new())];
    stores.push(both(
        "sqlite",
        SqliteKeyStore::open_in_memory().await.unwrap(),
    ));
    let mut keep: Option<Box<dyn std::any::Any>> = None;
    match postgres_url() {
        Some(url) => {
            let scratch = align_keys::postgres::ScratchSchema::create(&url)
                .await
                .unwrap();
            let store = PgKeyStore::open(scratch.pool().unwrap()).await.unwrap();
            stores.push(both("postgres", store));
            keep = Some(Box::new(scratch));
        }
        None => skipping_postgres(),
    }
    (stores, keep)
}

fn report(f: &Fixture, key: KeyId, url: &str) -> LeakReport {
    let reporter = Reporter::GithubSecretScanning;
    LeakReport {
        id: LeakReportId::new(),
        fingerprint: LeakReport::fingerprint_of(reporter, key, Some(url), Some("content")),
        organization_id: f.org.id,
        project_id: Some(f.project.id),
        key_id: key,
        key_prefix: "ako_0123abcd".into(),
        environment: Environment::Live,
        reporter,
        token_type: Some("align_live_api_key".into()),
        url: Some(url.into()),
        source: Some("content".into()),
        reason: None,
        reported_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
        action: LeakAction::Revoked,
    }
}

#[tokio::test]
async fn the_same_report_is_recorded_once() {
    let (stores, _keep) = backends().await;
    for (name, keys, leaks) in stores {
        let f = seed(keys.as_ref()).await;
        let key = KeyId::new();
        let first = report(&f, key, "https://github.com/o/r/blob/1/a.env");
        let (stored, added) = leaks.record_leak(&first).await.unwrap();
        assert!(added, "{name}");
        assert_eq!(stored, first, "{name}");

        let mut again = report(&f, key, "https://github.com/o/r/blob/1/a.env");
        again.action = LeakAction::AlreadyInactive;
        let (stored, added) = leaks.record_leak(&again).await.unwrap();
        assert!(!added, "{name}: a repeat adds nothing");
        assert_eq!(stored, first, "{name}: a repeat answers the first report");

        let elsewhere = report(&f, key, "https://github.com/o/r/blob/2/b.env");
        assert!(leaks.record_leak(&elsewhere).await.unwrap().1, "{name}");

        let page = leaks
            .list_leaks(f.org.id, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(page.data, vec![first.clone(), elsewhere.clone()], "{name}");
        let other_org = leaks
            .list_leaks(OrganizationId::new(), &PageRequest::default())
            .await
            .unwrap();
        assert!(other_org.data.is_empty(), "{name}");

        leaks.delete_leak(first.id).await.unwrap();
        let (_, added) = leaks.record_leak(&first).await.unwrap();
        assert!(added, "{name}: a deleted report can be made again");
    }
}

#[tokio::test]
async fn leak_reports_page_oldest_first() {
    let (stores, _keep) = backends().await;
    for (name, keys, leaks) in stores {
        let f = seed(keys.as_ref()).await;
        for i in 0..5 {
            let r = report(&f, KeyId::new(), &format!("https://example.test/{i}"));
            leaks.record_leak(&r).await.unwrap();
        }
        let mut req = PageRequest {
            limit: 2,
            cursor: None,
        };
        let mut urls = Vec::new();
        loop {
            let page = leaks.list_leaks(f.org.id, &req).await.unwrap();
            urls.extend(page.data.into_iter().filter_map(|r| r.url));
            match page.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        let want: Vec<String> = (0..5)
            .map(|i| format!("https://example.test/{i}"))
            .collect();
        assert_eq!(urls, want, "{name}");
    }
}

#[tokio::test]
async fn the_leak_policy_defaults_to_revoke_live_and_round_trips() {
    let (stores, _keep) = backends().await;
    for (name, keys, _) in stores {
        let f = seed(keys.as_ref()).await;
        let org = keys.get_organization(f.org.id).await.unwrap().unwrap();
        assert_eq!(org.leak_policy, LeakPolicy::default(), "{name}");
        let mut changed = org.clone();
        changed.leak_policy = LeakPolicy {
            live: LeakedKeyAction::Notify,
            sandbox: LeakedKeyAction::Revoke,
        };
        keys.update_organization(&changed).await.unwrap();
        let got = keys.get_organization(f.org.id).await.unwrap().unwrap();
        assert_eq!(got.leak_policy, changed.leak_policy, "{name}");
        let listed = keys
            .list_organizations(&PageRequest::default())
            .await
            .unwrap();
        assert_eq!(listed.data[0].leak_policy, changed.leak_policy, "{name}");
    }
}
