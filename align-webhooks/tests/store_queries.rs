#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reading the outbox back: the event log, delivery pages, deleting endpoints, statistics.
//! Run against every back-end.

mod common;

use align_core::Environment;
use align_webhooks::{
    Attempt, DeliveryStatus, MessageQuery, NewMessage, Next, OutboxStats, Owner, WebhookStore,
};
use chrono::{TimeZone, Utc};
use serde_json::json;

use common::endpoint;

fn t(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

async fn stores() -> common::Stores {
    common::Stores::every().await
}

fn owner(org: &str, project: Option<&str>) -> Owner {
    Owner {
        organization: org.into(),
        project: project.map(str::to_owned),
    }
}

async fn put(store: &dyn WebhookStore, id: &str, ty: &str, env: Environment, o: Owner, at: i64) {
    let m = NewMessage::new(id, ty, env, json!({"n": id})).owned_by(o);
    store.enqueue(m, t(at)).await.unwrap();
}

async fn ids(store: &dyn WebhookStore, q: &MessageQuery) -> Vec<String> {
    let mut out = Vec::new();
    let mut q = q.clone();
    loop {
        let page = store.messages(&q).await.unwrap();
        assert!(page.messages.len() <= q.limit.max(1));
        out.extend(page.messages.into_iter().map(|m| m.event_id));
        match page.next {
            Some(n) => q.after = n,
            None => return out,
        }
    }
}

#[tokio::test]
async fn the_event_log_is_scoped_filtered_and_paged_oldest_first() {
    for (name, store) in stores().await {
        let s = store.as_ref();
        put(
            s,
            "e1",
            "api_key.created",
            Environment::Live,
            owner("o1", None),
            0,
        )
        .await;
        put(
            s,
            "e2",
            "api_key.revoked",
            Environment::Live,
            owner("o1", Some("p1")),
            10,
        )
        .await;
        put(
            s,
            "e3",
            "apikey_created",
            Environment::Live,
            owner("o1", Some("p1")),
            20,
        )
        .await;
        put(
            s,
            "e4",
            "webhook.test",
            Environment::Sandbox,
            owner("o1", None),
            30,
        )
        .await;
        put(
            s,
            "e5",
            "api_key.created",
            Environment::Live,
            owner("o2", None),
            40,
        )
        .await;
        put(
            s,
            "e6",
            "webhook.test",
            Environment::Live,
            owner("o1", Some("p2")),
            50,
        )
        .await;

        let mut q = MessageQuery::new("o1", Environment::Live);
        q.limit = 2;
        assert_eq!(ids(s, &q).await, ["e1", "e2", "e3", "e6"], "{name}");

        q.project = Some("p1".into());
        assert_eq!(ids(s, &q).await, ["e2", "e3"], "{name}: project");
        q.project = None;

        q.event_type = Some("api_key.*".into());
        assert_eq!(
            ids(s, &q).await,
            ["e1", "e2"],
            "{name}: family, `_` is literal"
        );
        q.event_type = Some("webhook.test".into());
        assert_eq!(ids(s, &q).await, ["e6"], "{name}: exact type");
        q.event_type = None;

        q.since = Some(t(10));
        q.until = Some(t(50));
        assert_eq!(ids(s, &q).await, ["e2", "e3"], "{name}: time window");

        let sandbox = MessageQuery::new("o1", Environment::Sandbox);
        assert_eq!(ids(s, &sandbox).await, ["e4"], "{name}: sandbox");
        let other = MessageQuery::new("o3", Environment::Live);
        assert!(ids(s, &other).await.is_empty(), "{name}: unknown org");

        // The stored message is the exact payload endpoints receive.
        let page = s
            .messages(&MessageQuery::new("o2", Environment::Live))
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&page.messages[0].payload).unwrap();
        assert_eq!(body["type"], "api_key.created");
        assert_eq!(body["data"]["n"], "e5");
    }
}

#[tokio::test]
async fn delivery_pages_go_newest_first_and_deleting_an_endpoint_takes_its_deliveries() {
    for (name, store) in stores().await {
        let s = store.as_ref();
        let a = endpoint(Environment::Live, "https://a.example/");
        let b = endpoint(Environment::Live, "https://b.example/");
        s.create_endpoint(&a).await.unwrap();
        s.create_endpoint(&b).await.unwrap();
        for i in 0..5 {
            put(
                s,
                &format!("m{i}"),
                "x.y",
                Environment::Live,
                Owner::default(),
                i,
            )
            .await;
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let (page, next) = s.delivery_page(a.id, before, 2).await.unwrap();
            assert!(page.len() <= 2, "{name}");
            assert!(page.iter().all(|d| d.endpoint_id == a.id), "{name}");
            seen.extend(page);
            match next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{name}");
        assert!(
            seen.windows(2).all(|w| w[0].created_at >= w[1].created_at),
            "{name}: newest first"
        );

        let first = seen[0].id;
        s.record_attempt(
            first,
            Attempt {
                at: t(100),
                status: Some(200),
                latency_ms: 3,
                response_body: None,
                error: None,
            },
            Next::Succeeded,
        )
        .await
        .unwrap();
        let stats = s.outbox_stats().await.unwrap();
        assert_eq!(
            stats,
            OutboxStats {
                pending: 9,
                succeeded: 1,
                failed: 0
            },
            "{name}"
        );

        s.delete_endpoint(a.id).await.unwrap();
        assert!(s.endpoint(a.id).await.is_err(), "{name}");
        assert!(s.delivery(first).await.is_err(), "{name}");
        assert!(s.attempts(first).await.unwrap().is_empty(), "{name}");
        assert!(s.delete_endpoint(a.id).await.is_err(), "{name}: twice");
        let (left, _) = s.delivery_page(b.id, None, 100).await.unwrap();
        assert_eq!(
            left.len(),
            5,
            "{name}: the other endpoint keeps its deliveries"
        );
        assert!(left.iter().all(|d| d.status == DeliveryStatus::Pending));
        // Messages stay: they are the event log.
        let q = MessageQuery::new("", Environment::Live);
        assert_eq!(ids(s, &q).await.len(), 5, "{name}");
    }
}

#[tokio::test]
async fn a_message_for_one_endpoint_reaches_only_it_whatever_its_filter() {
    for (name, store) in stores().await {
        let s = store.as_ref();
        let mut picky = endpoint(Environment::Live, "https://a.example/");
        picky.filter = align_webhooks::EventFilter::Only(vec!["api_key.*".into()]);
        let other = endpoint(Environment::Live, "https://b.example/");
        s.create_endpoint(&picky).await.unwrap();
        s.create_endpoint(&other).await.unwrap();
        let m =
            NewMessage::new("t1", "webhook.test", Environment::Live, json!({})).only_to(picky.id);
        let out = s.enqueue(m, t(0)).await.unwrap();
        assert_eq!(out.deliveries.len(), 1, "{name}");
        let d = s.delivery(out.deliveries[0]).await.unwrap();
        assert_eq!(d.endpoint_id, picky.id, "{name}");
        // Still never across owners or environments.
        let foreign = NewMessage::new("t2", "webhook.test", Environment::Live, json!({}))
            .owned_by(owner("elsewhere", None))
            .only_to(picky.id);
        assert!(
            s.enqueue(foreign, t(0))
                .await
                .unwrap()
                .deliveries
                .is_empty(),
            "{name}"
        );
        let sandbox = NewMessage::new("t3", "webhook.test", Environment::Sandbox, json!({}))
            .only_to(picky.id);
        assert!(
            s.enqueue(sandbox, t(0))
                .await
                .unwrap()
                .deliveries
                .is_empty(),
            "{name}"
        );
    }
}
