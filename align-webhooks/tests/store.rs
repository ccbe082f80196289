#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The outbox contract, run against every back-end.

mod common;

use std::sync::Arc;
use std::time::Duration;

use align_core::Environment;
use align_webhooks::{Attempt, DeliveryStatus, EventFilter, NewMessage, Next};
use chrono::{TimeZone, Utc};
use serde_json::json;

use common::endpoint;

fn t(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn msg(event_id: &str, event_type: &str, env: Environment) -> NewMessage {
    let mut m = NewMessage::new(event_id, event_type, env, json!({"keyId": event_id}));
    m.timestamp = t(0);
    m
}

fn attempt(at: i64, status: Option<u16>) -> Attempt {
    Attempt {
        at: t(at),
        status,
        latency_ms: 12,
        response_body: Some("ok".into()),
        error: None,
    }
}

async fn stores() -> common::Stores {
    common::Stores::every().await
}

#[tokio::test]
async fn enqueue_fans_out_to_enabled_endpoints_whose_environment_and_filter_match() {
    for (name, store) in stores().await {
        let all = endpoint(Environment::Live, "https://a.example/");
        let mut keys_only = endpoint(Environment::Live, "https://b.example/");
        keys_only.filter = EventFilter::Only(vec!["api_key.*".into()]);
        let mut other_type = endpoint(Environment::Live, "https://c.example/");
        other_type.filter = EventFilter::Only(vec!["project.created".into()]);
        let mut disabled = endpoint(Environment::Live, "https://d.example/");
        disabled.enabled = false;
        let sandbox = endpoint(Environment::Sandbox, "http://e.example/");
        for ep in [&all, &keys_only, &other_type, &disabled, &sandbox] {
            store.create_endpoint(ep).await.unwrap();
        }
        let out = store
            .enqueue(msg("evt_1", "api_key.revoked", Environment::Live), t(0))
            .await
            .unwrap();
        assert!(out.created, "{name}");
        assert_eq!(out.deliveries.len(), 2, "{name}");
        let mut targets = Vec::new();
        for id in &out.deliveries {
            let d = store.delivery(*id).await.unwrap();
            assert_eq!(d.status, DeliveryStatus::Pending);
            assert_eq!(d.message_id, out.message.id);
            assert_eq!(d.next_attempt_at, Some(t(0)));
            targets.push(d.endpoint_id);
        }
        targets.sort();
        let mut want = vec![all.id, keys_only.id];
        want.sort();
        assert_eq!(targets, want, "{name}");

        let sandbox_out = store
            .enqueue(msg("evt_2", "api_key.revoked", Environment::Sandbox), t(0))
            .await
            .unwrap();
        let d = store.delivery(sandbox_out.deliveries[0]).await.unwrap();
        assert_eq!(
            (sandbox_out.deliveries.len(), d.endpoint_id),
            (1, sandbox.id),
            "{name}"
        );
    }
}

#[tokio::test]
async fn enqueue_is_idempotent_by_event_id() {
    for (name, store) in stores().await {
        store
            .create_endpoint(&endpoint(Environment::Live, "https://a.example/"))
            .await
            .unwrap();
        let first = store
            .enqueue(msg("evt_same", "x.y", Environment::Live), t(0))
            .await
            .unwrap();
        let again = store
            .enqueue(msg("evt_same", "x.y", Environment::Live), t(5))
            .await
            .unwrap();
        assert!(!again.created && again.deliveries.is_empty(), "{name}");
        assert_eq!(again.message, first.message, "{name}");
        assert_eq!(
            store.message(&first.message.id).await.unwrap(),
            first.message
        );
    }
}

#[tokio::test]
async fn the_payload_is_type_timestamp_and_data() {
    for (_, store) in stores().await {
        let out = store
            .enqueue(msg("evt_p", "api_key.revoked", Environment::Live), t(0))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.message.payload).unwrap();
        assert_eq!(
            v,
            json!({"type": "api_key.revoked", "timestamp": "2027-01-15T08:00:00.000Z",
                   "data": {"keyId": "evt_p"}})
        );
        assert!(out.message.id.0.starts_with("msg_"));
    }
}

#[tokio::test]
async fn claimed_deliveries_are_leased_and_come_back_when_the_lease_ends() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        store
            .enqueue(msg("evt_l", "x", Environment::Live), t(0))
            .await
            .unwrap();
        let lease = Duration::from_secs(30);
        let due = store.claim_due(t(0), 10, lease).await.unwrap();
        assert_eq!(due.len(), 1, "{name}");
        assert_eq!(due[0].endpoint.id, ep.id);
        assert_eq!(due[0].message.event_id, "evt_l");
        assert!(store.claim_due(t(29), 10, lease).await.unwrap().is_empty());
        let again = store.claim_due(t(30), 10, lease).await.unwrap();
        assert_eq!(again[0].delivery.id, due[0].delivery.id, "{name}");
    }
}

#[tokio::test]
async fn deliveries_to_disabled_endpoints_are_not_claimed() {
    for (name, store) in stores().await {
        let mut ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        store
            .enqueue(msg("evt_d", "x", Environment::Live), t(0))
            .await
            .unwrap();
        store.disable_endpoint(ep.id, "manual").await.unwrap();
        assert!(
            store
                .claim_due(t(1), 10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        let stored = store.endpoint(ep.id).await.unwrap();
        assert!(!stored.enabled);
        assert_eq!(stored.disabled_reason.as_deref(), Some("manual"), "{name}");
        ep.enabled = true;
        store.update_endpoint(&ep).await.unwrap();
        assert_eq!(
            store
                .claim_due(t(1), 10, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn attempts_are_recorded_and_move_the_delivery_on() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let out = store
            .enqueue(msg("evt_a", "x", Environment::Live), t(0))
            .await
            .unwrap();
        let id = out.deliveries[0];
        let failing = store
            .record_attempt(id, attempt(1, Some(500)), Next::RetryAt(t(6)))
            .await
            .unwrap();
        assert_eq!(failing, Some(t(1)), "{name}");
        let d = store.delivery(id).await.unwrap();
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at),
            (DeliveryStatus::Pending, 1, Some(t(6)))
        );
        let mut timeout = attempt(6, None);
        timeout.error = Some("timed out".into());
        timeout.response_body = None;
        let failing = store
            .record_attempt(id, timeout.clone(), Next::RetryAt(t(300)))
            .await
            .unwrap();
        assert_eq!(
            failing,
            Some(t(1)),
            "a failure run keeps its start ({name})"
        );
        let failing = store
            .record_attempt(id, attempt(300, Some(204)), Next::Succeeded)
            .await
            .unwrap();
        assert_eq!(failing, None);
        let d = store.delivery(id).await.unwrap();
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at),
            (DeliveryStatus::Succeeded, 3, None)
        );
        let attempts = store.attempts(id).await.unwrap();
        assert_eq!(
            attempts,
            vec![
                attempt(1, Some(500)),
                timeout.clone(),
                attempt(300, Some(204))
            ],
            "{name}"
        );
        // The latest ones only, still oldest first (issue 21: a view of a delivery retried
        // hundreds of times reads a few).
        assert_eq!(
            store.latest_attempts(id, 2).await.unwrap(),
            vec![timeout, attempt(300, Some(204))],
            "{name}"
        );
        assert_eq!(
            store.latest_attempts(id, 10).await.unwrap(),
            attempts,
            "{name}"
        );
        assert!(
            store.latest_attempts(id, 0).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.endpoint(ep.id).await.unwrap().failing_since, None);
        assert_eq!(store.deliveries(ep.id, 10).await.unwrap()[0].id, id);
    }
}

/// The failure run (`failing_since`) belongs to the dispatcher: an owner's update keeps it,
/// disabling keeps it, and only re-enabling a disabled endpoint clears it.
#[tokio::test]
async fn only_re_enabling_an_endpoint_ends_its_failure_run() {
    for (name, store) in stores().await {
        let mut ep = endpoint(Environment::Live, "https://a.example/");
        assert!(
            store.update_endpoint(&ep).await.is_err(),
            "an unknown endpoint ({name})"
        );
        store.create_endpoint(&ep).await.unwrap();
        let out = store
            .enqueue(msg("evt_f", "x", Environment::Live), t(0))
            .await
            .unwrap();
        store
            .record_attempt(
                out.deliveries[0],
                attempt(1, Some(500)),
                Next::RetryAt(t(6)),
            )
            .await
            .unwrap();
        let failing = |e: align_webhooks::Endpoint| e.failing_since;
        ep.url = "https://b.example/".into();
        store.update_endpoint(&ep).await.unwrap();
        let stored = store.endpoint(ep.id).await.unwrap();
        assert_eq!(stored.url, "https://b.example/", "{name}");
        assert_eq!(
            failing(stored),
            Some(t(1)),
            "an update keeps the run ({name})"
        );
        ep.enabled = false;
        store.update_endpoint(&ep).await.unwrap();
        let stored = store.endpoint(ep.id).await.unwrap();
        assert_eq!(
            failing(stored),
            Some(t(1)),
            "disabling keeps the run ({name})"
        );
        ep.enabled = true;
        store.update_endpoint(&ep).await.unwrap();
        let stored = store.endpoint(ep.id).await.unwrap();
        assert_eq!(failing(stored), None, "re-enabling ends the run ({name})");
    }
}

#[tokio::test]
async fn postpone_retry_and_recovery() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let early = store
            .enqueue(msg("evt_r1", "x", Environment::Live), t(0))
            .await
            .unwrap()
            .deliveries[0];
        let late = store
            .enqueue(msg("evt_r2", "x", Environment::Live), t(100))
            .await
            .unwrap()
            .deliveries[0];
        store.postpone(late, t(500)).await.unwrap();
        assert_eq!(
            store.delivery(late).await.unwrap().next_attempt_at,
            Some(t(500))
        );
        for id in [early, late] {
            store
                .record_attempt(id, attempt(200, Some(500)), Next::Failed)
                .await
                .unwrap();
        }
        // Recovery picks only failures created since the given time.
        let n = store
            .recover_failed_since(ep.id, t(50), t(1000))
            .await
            .unwrap();
        assert_eq!(n, 1, "{name}");
        let d = store.delivery(late).await.unwrap();
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Pending, Some(t(1000)))
        );
        assert_eq!(
            store.delivery(early).await.unwrap().status,
            DeliveryStatus::Failed
        );
        // Manual retry of one delivery.
        store.retry(early, t(2000)).await.unwrap();
        let d = store.delivery(early).await.unwrap();
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Pending, Some(t(2000)))
        );
        assert!(
            store
                .retry(align_webhooks::DeliveryId::new(), t(0))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn endpoints_round_trip_with_their_keys() {
    for (name, store) in stores().await {
        let mut ep = endpoint(Environment::Sandbox, "http://a.example/");
        ep.max_per_second = Some(7);
        ep.filter = EventFilter::Only(vec!["a".into(), "b.*".into()]);
        store.create_endpoint(&ep).await.unwrap();
        let got = store.endpoint(ep.id).await.unwrap();
        assert_eq!(got.url, ep.url);
        assert_eq!(got.filter, ep.filter);
        assert_eq!(got.max_per_second, Some(7));
        assert_eq!(
            got.secrets.current().expose(),
            ep.secrets.current().expose(),
            "{name}"
        );
        assert_eq!(store.endpoints().await.unwrap().len(), 1);
        assert!(
            store
                .endpoint(align_webhooks::EndpointId::new())
                .await
                .is_err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempt_records_all_land_and_a_bad_one_spoils_none() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..60 {
            let out = store
                .enqueue(msg(&format!("evt_c{i}"), "x", Environment::Live), t(0))
                .await
                .unwrap();
            ids.push(out.deliveries[0]);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().copied().enumerate() {
            let one = Arc::clone(&store);
            tasks.spawn(async move {
                one.record_attempt(id, attempt(1, Some(200)), Next::Succeeded)
                    .await
                    .map(|_| i)
            });
            if i % 20 == 0 {
                let bad = Arc::clone(&store);
                tasks.spawn(async move {
                    bad.record_attempt(
                        align_webhooks::DeliveryId::new(),
                        attempt(1, Some(200)),
                        Next::Succeeded,
                    )
                    .await
                    .map(|_| usize::MAX)
                });
            }
        }
        let mut ok = 0;
        let mut not_found = 0;
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(align_webhooks::Error::NotFound(_)) => not_found += 1,
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!((ok, not_found), (60, 3), "{name}");
        for id in ids {
            let d = store.delivery(id).await.unwrap();
            assert_eq!(
                (d.status, d.attempts),
                (DeliveryStatus::Succeeded, 1),
                "{name}"
            );
            assert_eq!(store.attempts(id).await.unwrap().len(), 1, "{name}");
        }
    }
}

#[tokio::test]
async fn fan_out_never_crosses_organisations_or_projects() {
    use align_webhooks::Owner;
    let project = |org: &str, p: &str| Owner {
        organization: org.into(),
        project: Some(p.into()),
    };
    for (name, store) in stores().await {
        let org_a = endpoint(Environment::Live, "https://a.example/")
            .owned_by(Owner::organization("org-a"));
        let proj_a1 =
            endpoint(Environment::Live, "https://a1.example/").owned_by(project("org-a", "p1"));
        let proj_a2 =
            endpoint(Environment::Live, "https://a2.example/").owned_by(project("org-a", "p2"));
        let org_b = endpoint(Environment::Live, "https://b.example/")
            .owned_by(Owner::organization("org-b"));
        for ep in [&org_a, &proj_a1, &proj_a2, &org_b] {
            store.create_endpoint(ep).await.unwrap();
        }
        let targets = |out: align_webhooks::Enqueued| {
            let store = Arc::clone(&store);
            async move {
                let mut t = Vec::new();
                for id in &out.deliveries {
                    t.push(store.delivery(*id).await.unwrap().endpoint_id);
                }
                t.sort();
                t
            }
        };
        // A project event reaches its organisation's org-wide endpoint and that project's.
        let p1 =
            msg("evt_p1", "api_key.revoked", Environment::Live).owned_by(project("org-a", "p1"));
        let mut expect = vec![org_a.id, proj_a1.id];
        expect.sort();
        assert_eq!(
            targets(store.enqueue(p1, t(0)).await.unwrap()).await,
            expect,
            "{name}"
        );
        // An organisation event reaches only org-wide endpoints of that organisation.
        let a = msg("evt_a", "api_key.revoked", Environment::Live)
            .owned_by(Owner::organization("org-a"));
        assert_eq!(
            targets(store.enqueue(a, t(0)).await.unwrap()).await,
            vec![org_a.id],
            "{name}"
        );
        let b = msg("evt_b", "api_key.revoked", Environment::Live)
            .owned_by(Owner::organization("org-b"));
        assert_eq!(
            targets(store.enqueue(b, t(0)).await.unwrap()).await,
            vec![org_b.id],
            "{name}"
        );
        // Owners survive a round trip through the store.
        assert_eq!(
            store.endpoint(proj_a2.id).await.unwrap().owner,
            project("org-a", "p2"),
            "{name}"
        );
    }
}

/// Issue 21, finding 3: every enqueue and every endpoint list read the endpoints of every
/// organisation, so one organisation's thousands of endpoints slowed the others and its
/// lookups fanned out over everyone's. An event of organisation A creates deliveries for A's
/// endpoints only, and A's list holds A's endpoints only, however many B has.
#[tokio::test]
async fn issue_21_finding_3_one_organisations_endpoints_do_not_fan_out_or_slow_another() {
    use align_webhooks::Owner;
    for (name, store) in stores().await {
        let mut a_ids = Vec::new();
        for i in 0..2 {
            let ep = endpoint(Environment::Sandbox, &format!("https://a.example/{i}"))
                .owned_by(Owner::organization("org_a"));
            store.create_endpoint(&ep).await.unwrap();
            a_ids.push(ep.id);
        }
        for i in 0..300 {
            let ep = endpoint(Environment::Sandbox, &format!("https://b.example/{i}"))
                .owned_by(Owner::organization("org_b"));
            store.create_endpoint(&ep).await.unwrap();
        }

        let listed = store.organization_endpoints("org_a").await.unwrap();
        let listed: Vec<_> = listed.iter().map(|e| e.id).collect();
        assert_eq!(listed, a_ids, "{name}: org A's list");
        assert_eq!(
            store.organization_endpoints("org_b").await.unwrap().len(),
            300,
            "{name}"
        );
        assert!(
            store
                .organization_endpoints("org_c")
                .await
                .unwrap()
                .is_empty()
        );
        // What the cap is checked against, counted without reading the endpoints.
        for (org, n) in [("org_a", 2), ("org_b", 300), ("org_c", 0)] {
            assert_eq!(
                store.organization_endpoint_count(org).await.unwrap(),
                n,
                "{name}: {org}"
            );
        }

        let event = msg("evt_a", "api_key.created", Environment::Sandbox)
            .owned_by(Owner::organization("org_a"));
        let enqueued = store.enqueue(event, t(0)).await.unwrap();
        assert_eq!(
            enqueued.deliveries.len(),
            2,
            "{name}: fan-out of org A's event"
        );
        let mut targets = Vec::new();
        for d in &enqueued.deliveries {
            targets.push(store.delivery(*d).await.unwrap().endpoint_id);
        }
        targets.sort();
        a_ids.sort();
        assert_eq!(targets, a_ids, "{name}");

        let event = msg("evt_b", "api_key.created", Environment::Sandbox)
            .owned_by(Owner::organization("org_b"));
        let enqueued = store.enqueue(event, t(0)).await.unwrap();
        assert_eq!(
            enqueued.deliveries.len(),
            300,
            "{name}: fan-out of org B's event"
        );
        assert_eq!(store.outbox_stats().await.unwrap().pending, 302, "{name}");
    }
}

/// Issue 21, finding 4: the dispatcher leaves organisations and endpoints holding their
/// share out of its claims, so other due deliveries are claimed past their backlog.
#[tokio::test]
async fn issue_21_finding_4_a_claim_can_leave_organisations_and_endpoints_out() {
    use align_webhooks::{ClaimSkip, Owner};
    for (name, store) in stores().await {
        let mut org_a = Vec::new();
        for host in ["a1", "a2"] {
            let ep = endpoint(Environment::Sandbox, &format!("https://{host}.example/"))
                .owned_by(Owner::organization("org_a"));
            store.create_endpoint(&ep).await.unwrap();
            org_a.push(ep.id);
        }
        let ep = endpoint(Environment::Sandbox, "https://b.example/")
            .owned_by(Owner::organization("org_b"));
        store.create_endpoint(&ep).await.unwrap();
        // Org A's backlog (to both its endpoints) is due first.
        for i in 0..5 {
            let m = msg(
                &format!("evt_a_{i}"),
                "api_key.created",
                Environment::Sandbox,
            )
            .owned_by(Owner::organization("org_a"));
            store.enqueue(m, t(i)).await.unwrap();
        }
        let m = msg("evt_b", "api_key.created", Environment::Sandbox)
            .owned_by(Owner::organization("org_b"));
        store.enqueue(m, t(10)).await.unwrap();

        let lease = Duration::from_secs(60);
        let skip_org_a = ClaimSkip {
            organizations: vec!["org_a".to_owned()],
            ..ClaimSkip::default()
        };
        let due = store
            .claim_due_skipping(t(20), 2, lease, &skip_org_a)
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "{name}");
        assert_eq!(due[0].endpoint.owner.organization, "org_b", "{name}");
        // Issue 21's per-endpoint share: one endpoint left out, its organisation's other
        // endpoint is claimed past its backlog.
        let skip_a1 = ClaimSkip {
            endpoints: vec![org_a[0]],
            ..ClaimSkip::default()
        };
        let due = store
            .claim_due_skipping(t(20), 10, lease, &skip_a1)
            .await
            .unwrap();
        assert_eq!(due.len(), 5, "{name}: a2's");
        assert!(due.iter().all(|d| d.endpoint.id == org_a[1]), "{name}");
        let due = store
            .claim_due_skipping(t(20), 10, lease, &ClaimSkip::default())
            .await
            .unwrap();
        assert_eq!(due.len(), 5, "{name}: a1's, unclaimed until now");
        assert!(due.iter().all(|d| d.endpoint.id == org_a[0]), "{name}");
    }
}

/// Issue 21, finding 6: a delivery's attempts were never paged. Pages come newest first,
/// each attempt once, and another delivery's attempts (recorded in between) never mix in.
#[tokio::test]
async fn issue_21_finding_6_attempts_page_newest_first_each_once() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let one = store
            .enqueue(msg("evt_one", "x", Environment::Live), t(0))
            .await
            .unwrap()
            .deliveries[0];
        let other = store
            .enqueue(msg("evt_other", "x", Environment::Live), t(0))
            .await
            .unwrap()
            .deliveries[0];
        for i in 0..25 {
            for id in [one, other] {
                store
                    .record_attempt(id, attempt(i, Some(500)), Next::RetryAt(t(i + 1)))
                    .await
                    .unwrap();
            }
        }
        let mut seen = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            let (page, next) = store.attempt_page(one, before, 10).await.unwrap();
            assert!(page.len() <= 10, "{name}");
            seen.extend(page.iter().map(|a| a.at));
            pages += 1;
            match next {
                Some(n) => before = Some(n),
                None => break,
            }
            assert!(pages < 10, "{name}: paging does not end");
        }
        let expected: Vec<_> = (0..25).rev().map(t).collect();
        assert_eq!(seen, expected, "{name}: newest first, each once");
        assert_eq!(pages, 3, "{name}");
        // A limit of 0 is read as 1; an unknown delivery has no attempts.
        let (page, next) = store.attempt_page(one, None, 0).await.unwrap();
        assert_eq!((page.len(), page[0].at), (1, t(24)), "{name}");
        assert!(next.is_some(), "{name}");
        let unknown = align_webhooks::DeliveryId(uuid::Uuid::new_v4());
        let (page, next) = store.attempt_page(unknown, None, 10).await.unwrap();
        assert!(page.is_empty() && next.is_none(), "{name}");
    }
}

#[tokio::test]
async fn retention_removes_old_messages_and_finished_deliveries() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let live = Environment::Live;
        let old = store
            .enqueue(msg("evt_old", "api_key.revoked", live), t(0))
            .await
            .unwrap();
        let done = old.deliveries[0];
        store
            .record_attempt(done, attempt(1, Some(204)), Next::Succeeded)
            .await
            .unwrap();
        let waiting = store
            .enqueue(msg("evt_waiting", "api_key.revoked", live), t(0))
            .await
            .unwrap();
        let recent = store
            .enqueue(msg("evt_new", "api_key.revoked", live), t(100_000))
            .await
            .unwrap();
        store
            .record_attempt(
                recent.deliveries[0],
                attempt(100_001, Some(204)),
                Next::Succeeded,
            )
            .await
            .unwrap();

        // Finished deliveries past their age go with their attempts; a pending one stays.
        let p = store.purge(t(50_000), t(-1)).await.unwrap();
        assert_eq!((p.deliveries, p.attempts, p.messages), (1, 1, 0), "{name}");
        assert!(store.delivery(done).await.is_err(), "{name}");
        assert!(
            store.delivery(waiting.deliveries[0]).await.is_ok(),
            "{name}"
        );

        // Old events go with whatever deliveries are left of them; recent ones stay.
        let p = store.purge(t(50_000), t(50_000)).await.unwrap();
        assert_eq!((p.messages, p.deliveries, p.attempts), (2, 1, 0), "{name}");
        assert!(store.message(&old.message.id).await.is_err(), "{name}");
        assert!(store.message(&recent.message.id).await.is_ok(), "{name}");
        assert_eq!(
            store.attempts(recent.deliveries[0]).await.unwrap().len(),
            1,
            "{name}"
        );
        let nothing = store.purge(t(50_000), t(50_000)).await.unwrap();
        assert_eq!(nothing, align_webhooks::Purged::default(), "{name}");
    }
}

#[tokio::test]
async fn erasing_values_reaches_payloads_and_attempts_of_one_organisation() {
    for (name, store) in stores().await {
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let person = json!({"email": "dana@acme.test", "name": "Dana \"D\" Dev", "team": "Devops"});
        let mut m = msg("evt_person", "user.updated", Environment::Live);
        m.data = person.clone();
        let out = store.enqueue(m, t(0)).await.unwrap();
        let mut a = attempt(1, Some(400));
        a.response_body = Some("unknown user dana@acme.test".into());
        store
            .record_attempt(out.deliveries[0], a, Next::Failed)
            .await
            .unwrap();
        // The same person named in another organisation's event: not this erasure's.
        let mut elsewhere = msg("evt_elsewhere", "user.updated", Environment::Live);
        elsewhere.data = person;
        elsewhere.owner = align_webhooks::Owner::organization("other-org");
        let other = store.enqueue(elsewhere, t(0)).await.unwrap();

        let values = vec![
            "dana@acme.test".to_owned(),
            "Dana \"D\" Dev".to_owned(),
            "Dev".to_owned(),
            "x".to_owned(),
        ];
        let n = store.erase_values("", &values).await.unwrap();
        assert_eq!(
            n, 3,
            "{name}: the e-mail in the payload and the attempt, the name"
        );
        let payload = store.message(&out.message.id).await.unwrap().payload;
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            v["data"]["email"],
            align_webhooks::ERASED,
            "{name}: {payload}"
        );
        assert_eq!(
            v["data"]["name"],
            align_webhooks::ERASED,
            "{name}: {payload}"
        );
        assert_eq!(
            v["data"]["team"], "Devops",
            "{name}: a short name cuts into no word"
        );
        let attempts = store.attempts(out.deliveries[0]).await.unwrap();
        assert_eq!(
            attempts[0].response_body.as_deref(),
            Some("unknown user [erased]"),
            "{name}"
        );
        let untouched = store.message(&other.message.id).await.unwrap().payload;
        assert!(untouched.contains("dana@acme.test"), "{name}");
        assert_eq!(store.erase_values("", &values).await.unwrap(), 0, "{name}");
    }
}
