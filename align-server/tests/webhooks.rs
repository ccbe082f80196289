//! Webhooks over HTTP, black-box: endpoints, signed deliveries to a loopback receiver
//! (verified with the public `standardwebhooks` crate), retries with a stable `webhook-id`,
//! environment isolation, the URL policy, `GET /events`, and the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;
use support::receiver::Receiver;

/// A server that may deliver to loopback, with a short retry schedule.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.retry_schedule = "1,1".parse().unwrap();
        c.webhooks.poll_interval = Duration::from_millis(50);
    })
    .await
}

/// An organisation-scoped sandbox key minted by the bootstrap admin.
async fn sandbox_key(s: &TestServer) -> String {
    let body = json!({"name": "sb", "scope": "organization", "environment": "sandbox"});
    s.mint(&s.admin_key, body).await.0
}

/// Registers an endpoint; returns (id, secret).
async fn endpoint(s: &TestServer, key: &str, body: Value) -> (String, String) {
    let r = s.post("/api/v1/webhook-endpoints", key, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

/// The endpoint's deliveries once `ready` holds for the list (polled for up to 10 s): a
/// receiver sees an attempt before the dispatcher has read its answer and recorded it
/// (meanwhile the delivery is leased, its `nextAttemptAt` pushed ahead).
async fn deliveries_once(s: &TestServer, ep: &str, key: &str, ready: fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/webhook-endpoints/{ep}/deliveries");
    let mut r = s.get(&path, key).await;
    for _ in 0..200 {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if ready(&r.body) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = s.get(&path, key).await;
    }
    r.body
}

/// Every event the key can poll, following cursors.
async fn all_events(s: &TestServer, key: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/api/v1/events?limit=2{query}");
    loop {
        let r = s.get(&path, key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/events?limit=2{query}&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_signed_delivered_and_also_pollable() {
    let s = server().await;
    let sandbox = sandbox_key(&s).await;
    let rx = Receiver::ok().await;
    let (ep, secret) = endpoint(&s, &sandbox, json!({ "url": rx.url() })).await;
    assert!(secret.starts_with("whsec_"));

    // api_key.created, .suspended, .rotated, .revoked
    let (_, k) = s
        .mint(&sandbox, json!({"name": "ci", "scope": "organization"}))
        .await;
    let id = k["apiKeyId"].as_str().unwrap().to_owned();
    for action in ["suspend", "rotate", "revoke"] {
        let r = s
            .post(&format!("/api/v1/keys/{id}/{action}"), &sandbox, json!({}))
            .await;
        assert!(r.status.is_success(), "{action}: {}", r.body);
    }
    // rate_limit.exceeded, once per window however many 429s.
    let (limited, lk) = s
        .mint(&sandbox, json!({"name": "slow", "scope": "organization"}))
        .await;
    let lid = lk["apiKeyId"].as_str().unwrap();
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{lid}"),
            &sandbox,
            json!({"rateLimitPerMinute": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut refused = 0;
    for _ in 0..4 {
        if s.get("/api/v1/me", &limited).await.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 2);
    // webhook.test
    let r = s
        .post(
            &format!("/api/v1/webhook-endpoints/{ep}/test"),
            &sandbox,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // webhook_endpoint.disabled: a second endpoint answers 410 Gone.
    let gone = Receiver::scripted(|_| 410).await;
    let (gone_id, _) = endpoint(
        &s,
        &sandbox,
        json!({ "url": gone.url(), "eventTypes": ["webhook.test"] }),
    )
    .await;
    let r = s
        .post(
            &format!("/api/v1/webhook-endpoints/{gone_id}/test"),
            &sandbox,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let want = [
        "api_key.created",
        "api_key.suspended",
        "api_key.rotated",
        "api_key.revoked",
        "api_key.updated",
        "rate_limit.exceeded",
        "webhook.test",
        "webhook_endpoint.disabled",
    ];
    let got = rx
        .wait_for(Duration::from_secs(15), "every event type", |r| {
            let types: BTreeSet<String> = r.iter().map(|x| x.event_type()).collect();
            want.iter().all(|w| types.contains(*w))
        })
        .await;
    // Let stragglers land, then check everything that arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if rx.received().len() > got.len() {
        rx.received()
    } else {
        got
    };
    for d in &got {
        assert!(d.verify(&secret), "signature of {}", d.event_type());
        assert!(d.json()["data"].is_object());
    }
    let limit_events = got
        .iter()
        .filter(|d| d.event_type() == "rate_limit.exceeded")
        .count();
    assert_eq!(limit_events, 1, "at most once per key per window");
    let disabled = got
        .iter()
        .find(|d| d.event_type() == "webhook_endpoint.disabled")
        .unwrap();
    assert_eq!(disabled.json()["data"]["endpointId"], gone_id.as_str());
    let revoked = got
        .iter()
        .find(|d| d.event_type() == "api_key.revoked")
        .unwrap();
    assert_eq!(revoked.json()["data"]["apiKeyId"], id.as_str());
    assert!(revoked.json()["data"]["revokedAt"].is_string());
    assert!(
        !String::from_utf8_lossy(&revoked.body).contains(&sandbox),
        "no token in payloads"
    );

    // The gone endpoint is disabled and says why.
    let r = s
        .get(&format!("/api/v1/webhook-endpoints/{gone_id}"), &sandbox)
        .await;
    assert_eq!(r.body["enabled"], false, "{}", r.body);
    assert!(r.body["disabledReason"].is_string());

    // Every delivered event is in GET /events, under the same id.
    let events = all_events(&s, &sandbox, "").await;
    let polled: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    for d in &got {
        assert!(polled.contains(d.id().as_str()), "{} not pollable", d.id());
        let e = events.iter().find(|e| e["id"] == d.id().as_str()).unwrap();
        assert_eq!(e["type"], d.json()["type"]);
        assert_eq!(e["data"], d.json()["data"]);
        assert_eq!(e["timestamp"], d.json()["timestamp"]);
    }
    // Filters: by type and by family.
    let revocations = all_events(&s, &sandbox, "&type=api_key.revoked").await;
    assert!(revocations.iter().all(|e| e["type"] == "api_key.revoked"));
    assert!(!revocations.is_empty());
    let key_events = all_events(&s, &sandbox, "&type=api_key.*").await;
    assert!(key_events.len() >= 5);
    assert!(
        key_events
            .iter()
            .all(|e| e["type"].as_str().unwrap().starts_with("api_key."))
    );
    let future = all_events(&s, &sandbox, "&since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());

    // The endpoint's deliveries list each attempt.
    let body = deliveries_once(&s, &ep, &sandbox, |b| b["data"][0]["status"] == "succeeded").await;
    let first = &body["data"][0];
    assert_eq!(first["status"], "succeeded", "{body}");
    assert_eq!(first["attempts"][0]["status"], 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_with_the_same_webhook_id() {
    let s = server().await;
    let rx = Receiver::scripted(|n| if n == 0 { 500 } else { 200 }).await;
    let sandbox = sandbox_key(&s).await;
    let (ep, secret) = endpoint(
        &s,
        &sandbox,
        json!({ "url": rx.url(), "eventTypes": ["api_key.*"] }),
    )
    .await;
    let r = s
        .post(
            &format!("/api/v1/webhook-endpoints/{ep}/test"),
            &sandbox,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let webhook_id = r.body["webhookId"].as_str().unwrap().to_owned();
    let got = rx
        .wait_for(Duration::from_secs(10), "a retry", |r| r.len() >= 2)
        .await;
    assert_eq!(got[0].id(), webhook_id);
    assert_eq!(got[1].id(), webhook_id, "same webhook-id on retry");
    assert!(got.iter().all(|d| d.verify(&secret)));
    assert_eq!(got[0].body, got[1].body, "same body on retry");

    // Both attempts are recorded; a manual retry sends it once more, same id.
    let deliveries =
        deliveries_once(&s, &ep, &sandbox, |b| b["data"][0]["attemptCount"] == 2).await;
    let d = &deliveries["data"][0];
    assert_eq!(d["attemptCount"], 2, "{deliveries}");
    assert_eq!(d["attempts"][0]["status"], 500);
    assert_eq!(d["attempts"][1]["status"], 200);
    assert_eq!(d["webhookId"], webhook_id.as_str());
    let did = d["id"].as_str().unwrap();
    let r = s
        .post(
            &format!("/api/v1/webhook-deliveries/{did}/retry"),
            &sandbox,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let got = rx
        .wait_for(Duration::from_secs(10), "the manual retry", |r| {
            r.len() >= 3
        })
        .await;
    assert_eq!(got[2].id(), webhook_id);

    // /metrics counts deliveries by outcome and the queue depth.
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing"))
    };
    let mut succeeded = 0.0;
    for _ in 0..100 {
        let r = s.get("/metrics", &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK);
        let text = String::from_utf8_lossy(&r.raw).into_owned();
        value(&text, "align_webhook_queue_depth ");
        value(&text, "align_audit_queue_depth ");
        succeeded = value(&text, "align_webhook_deliveries{status=\"succeeded\"}");
        if succeeded >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(succeeded >= 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_sandbox_events_never_cross() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let sandbox_rx = Receiver::ok().await;
    let sandbox = sandbox_key(&s).await;
    // A live key may register a sandbox endpoint, and a live one (https only).
    let (sandbox_ep, _) = endpoint(
        &s,
        &admin,
        json!({ "url": sandbox_rx.url(), "environment": "sandbox" }),
    )
    .await;
    let live_url = format!("https://{}/hook", sandbox_rx.addr);
    let (live_ep, _) = endpoint(&s, &admin, json!({ "url": live_url })).await;

    // Live events: a live key minted and revoked.
    let (_, k) = s
        .mint(&admin, json!({"name": "live-ci", "scope": "organization"}))
        .await;
    let id = k["apiKeyId"].as_str().unwrap();
    s.post(&format!("/api/v1/keys/{id}/revoke"), &admin, json!({}))
        .await;
    // A sandbox event afterwards: once it has arrived, the live ones had their chance.
    s.mint(&sandbox, json!({"name": "sb-ci", "scope": "organization"}))
        .await;
    sandbox_rx.wait_for_type("api_key.created").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for d in sandbox_rx.received() {
        let data = d.json()["data"].clone();
        assert_eq!(
            data["environment"], "sandbox",
            "a live event reached sandbox: {data}"
        );
    }

    // The live endpoint got only live events (its deliveries fail: the receiver has no TLS).
    let live_events = all_events(&s, &admin, "").await;
    let sandbox_events = all_events(&s, &sandbox, "").await;
    assert!(!sandbox_events.is_empty());
    let sandbox_ids: BTreeSet<&str> = sandbox_events
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let r = s
        .get(
            &format!("/api/v1/webhook-endpoints/{live_ep}/deliveries"),
            &admin,
        )
        .await;
    let delivered: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["webhookId"].as_str().unwrap())
        .collect();
    assert!(!delivered.is_empty(), "{}", r.body);
    assert!(delivered.iter().all(|id| !sandbox_ids.contains(id)));
    assert!(live_events.iter().all(|e| e["environment"] == "live"));

    // A sandbox key sees neither the live endpoint nor live events.
    let r = s
        .get(&format!("/api/v1/webhook-endpoints/{live_ep}"), &sandbox)
        .await;
    assert!(r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND);
    let r = s.get("/api/v1/webhook-endpoints", &sandbox).await;
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sandbox_ep.as_str()]);
    let r = s.get("/api/v1/events?environment=live", &sandbox).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // And may not create a live endpoint.
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &sandbox,
            json!({ "url": live_url, "environment": "live" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    s.stop().await;
}

/// `webhooks.allow_http_targets` (development): a live endpoint on a local `http://` receiver is
/// accepted and gets the live events signed, so a developer need not turn everything into
/// sandbox data; plain http to a public host stays refused for live endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_setting_lets_a_live_endpoint_use_a_local_http_receiver() {
    // Off by default (private targets alone do not open http for live endpoints).
    let s = server().await;
    let rx = Receiver::ok().await;
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_key,
            json!({ "url": rx.url(), "environment": "live" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "invalid_request");
    s.stop().await;

    let s = TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.allow_http_targets = true;
        c.webhooks.poll_interval = Duration::from_millis(50);
    })
    .await;
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_key,
            json!({ "url": "http://hooks.example.com/in", "environment": "live" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "invalid_request");
    let (_, secret) = endpoint(
        &s,
        &s.admin_key,
        json!({ "url": rx.url(), "environment": "live", "eventTypes": ["api_key.created"] }),
    )
    .await;
    let (_, k) = s
        .mint(
            &s.admin_key,
            json!({"name": "live-ci", "scope": "organization"}),
        )
        .await;
    assert_eq!(k["environment"], "live", "{k}");
    let mut got = rx.received();
    for _ in 0..200 {
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = rx.received();
    }
    assert_eq!(got.len(), 1, "one live event delivered over http");
    assert_eq!(got[0].event_type(), "api_key.created");
    assert!(got[0].verify(&secret));
    assert_eq!(got[0].json()["data"]["apiKeyId"], k["apiKeyId"]);
    s.stop().await;
}

#[tokio::test]
async fn endpoint_urls_are_checked_and_refusals_never_quote_them() {
    // Without the operator switch: private targets are refused too.
    let s = TestServer::start().await;
    let admin = s.admin_key.clone();
    let refused = [
        ("https://user:hunter2@hooks.example.com/in", "live"),
        ("http://hooks.example.com/in", "live"),
        ("https://hooks.example.com/in?token=hunter2", "live"),
        ("https://hooks.example.com/in?api_key=hunter2", "live"),
        ("https://127.0.0.1/in", "live"),
        ("https://localhost/in", "live"),
        ("https://10.1.2.3/in", "live"),
        ("https://192.168.0.10/in", "live"),
        ("https://169.254.169.254/latest/meta-data", "live"),
        ("https://100.64.0.1/in", "live"),
        ("https://[::1]/in", "live"),
        ("https://[fe80::1]/in", "live"),
        ("https://[fd00::1]/in", "live"),
        ("http://127.0.0.1:9/in", "sandbox"),
        ("ftp://hooks.example.com/in", "sandbox"),
        ("not a url", "live"),
    ];
    for (url, env) in refused {
        let r = s
            .post(
                "/api/v1/webhook-endpoints",
                &admin,
                json!({ "url": url, "environment": env }),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.body);
        assert_eq!(r.code(), "invalid_request", "{url}");
        assert!(
            !String::from_utf8_lossy(&r.raw).contains("hunter2"),
            "{url}"
        );
    }
    // Bad bodies.
    for body in [
        json!({}),
        json!({ "url": 5 }),
        json!({ "url": "https://hooks.example.com/in", "eventTypes": ["no.such.event"] }),
        json!({ "url": "https://hooks.example.com/in", "eventTypes": [] }),
        json!({ "url": "https://hooks.example.com/in", "signatureScheme": "v9" }),
        json!({ "url": "https://hooks.example.com/in", "environment": "staging" }),
        json!({ "url": "https://hooks.example.com/in", "extra": true }),
    ] {
        let r = s
            .post("/api/v1/webhook-endpoints", &admin, body.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    // Nothing was stored.
    let r = s.get("/api/v1/webhook-endpoints", &admin).await;
    assert_eq!(r.body["data"], json!([]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_can_be_read_changed_rotated_and_deleted_and_every_change_is_audited() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let rx = Receiver::ok().await;
    let sandbox = sandbox_key(&s).await;
    let (ep, old_secret) = endpoint(
        &s,
        &sandbox,
        json!({ "url": rx.url(), "eventTypes": ["api_key.revoked"], "maxPerSecond": 50 }),
    )
    .await;
    let path = format!("/api/v1/webhook-endpoints/{ep}");

    let r = s.get(&path, &sandbox).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["eventTypes"], json!(["api_key.revoked"]));
    assert_eq!(r.body["environment"], "sandbox");
    assert_eq!(r.body["maxPerSecond"], 50);
    assert!(r.body.get("secret").is_none(), "the secret is shown once");

    let r = s
        .json(
            Method::PATCH,
            &path,
            &sandbox,
            json!({ "eventTypes": null, "enabled": false }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["eventTypes"], Value::Null);
    assert_eq!(r.body["enabled"], false);
    let r = s
        .json(
            Method::PATCH,
            &path,
            &sandbox,
            json!({ "url": "https://user:pw@x.example/" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.post(&format!("{path}/test"), &sandbox, json!({})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("endpoint_disabled")),
        "a disabled endpoint gets no test"
    );
    let r = s
        .json(Method::PATCH, &path, &sandbox, json!({ "enabled": true }))
        .await;
    assert_eq!(r.body["enabled"], true);

    // Rotation: during the grace period every delivery carries both signatures.
    let r = s
        .post(
            &format!("{path}/rotate-secret"),
            &sandbox,
            json!({ "graceSeconds": 3600 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new_secret = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(r.body["previousSecretValidUntil"].is_string());
    s.post(&format!("{path}/test"), &sandbox, json!({})).await;
    let d = rx.wait_for_type("webhook.test").await;
    assert!(d.verify(&old_secret) && d.verify(&new_secret));
    assert_eq!(d.header("webhook-signature").split(' ').count(), 2);

    // Recover: nothing failed, nothing to do.
    let r = s
        .post(
            &format!("{path}/recover"),
            &sandbox,
            json!({ "since": "2020-01-01T00:00:00.000Z" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["recovered"], 0);

    // Least privilege: a read-only key reads but cannot change; a project key cannot see
    // organisation endpoints.
    let (reader, _) = s
        .mint(
            &sandbox,
            json!({"name": "ro", "scope": "organization", "permissions": ["webhooks:read"]}),
        )
        .await;
    assert_eq!(s.get(&path, &reader).await.status, StatusCode::OK);
    let r = s
        .json(Method::PATCH, &path, &reader, json!({ "enabled": false }))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .send(
            Method::DELETE,
            &path,
            &[("authorization", &format!("Bearer {reader}"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let project = s
        .post("/api/v1/projects", &admin, json!({ "name": "billing" }))
        .await;
    let pid = project.body["id"].as_str().unwrap();
    let (project_key, _) = s
        .mint(
            &admin,
            json!({"name": "pk", "scope": "project", "projectId": pid, "environment": "sandbox"}),
        )
        .await;
    assert_eq!(
        s.get(&path, &project_key).await.status,
        StatusCode::NOT_FOUND
    );

    let auth = format!("Bearer {sandbox}");
    let r = s
        .send(Method::DELETE, &path, &[("authorization", &auth)], None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&path, &sandbox).await.status, StatusCode::NOT_FOUND);
    let r = s
        .send(Method::DELETE, &path, &[("authorization", &auth)], None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The audit log has every change, with actor, IP and user agent, and no secret.
    let r = s.get("/api/v1/audit-events?limit=200", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.tested",
        "webhook_endpoint.deleted",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let created = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "webhook_endpoint.created")
        .unwrap();
    assert_eq!(created["actor"]["type"], "api_key");
    assert!(created["ip"].is_string());
    let text = String::from_utf8_lossy(&r.raw);
    for secret in [&old_secret, &new_secret, &sandbox, &admin] {
        assert!(!text.contains(secret.as_str()), "a secret in the audit log");
    }
    assert!(
        !text.contains("/hook"),
        "endpoint paths stay out of the audit log"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_that_hang_or_reset_do_not_slow_the_api() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.retry_schedule = "1,1".parse().unwrap();
        c.webhooks.poll_interval = Duration::from_millis(50);
        c.webhooks.attempt_timeout = Duration::from_secs(2);
    })
    .await;
    // One receiver accepts connections and never answers; another resets every connection.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = hang.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let reset = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reset_addr = reset.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in reset.incoming().flatten() {
            let _ = close_with_reset(stream);
        }
    });
    let sandbox = sandbox_key(&s).await;
    for addr in [hang_addr, reset_addr] {
        endpoint(&s, &sandbox, json!({ "url": format!("http://{addr}/in") })).await;
    }
    // Plenty of deliveries in flight to both.
    for i in 0..40 {
        s.mint(
            &sandbox,
            json!({"name": format!("k{i}"), "scope": "organization"}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let start = std::time::Instant::now();
        let r = s.get("/api/v1/me", &sandbox).await;
        assert_eq!(r.status, StatusCode::OK);
        slowest = slowest.max(start.elapsed());
    }
    assert!(
        !held.lock().unwrap().is_empty(),
        "the hanging receiver was reached"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "an API request took {slowest:?} while receivers hung"
    );
    s.stop().await;
}

/// Reads the start of the request and closes the connection with the rest unread, which
/// makes Linux answer with a TCP reset instead of a clean close.
fn close_with_reset(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut byte = [0_u8; 1];
    stream.read_exact(&mut byte)
}

/// Issue 21, finding 3: one organisation could register endpoints without limit, and every
/// one of them slowed every other organisation's lookups and fan-out. Past
/// `webhooks.max_endpoints_per_organization` a new endpoint answers `409 conflict`; deleting
/// one makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_finding_3_an_organisation_cannot_create_endpoints_past_its_cap() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.max_endpoints_per_organization = 3;
    })
    .await;
    let sandbox = sandbox_key(&s).await;
    let rx = Receiver::ok().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(endpoint(&s, &sandbox, json!({ "url": rx.url() })).await.0);
    }
    // The cap counts the organisation's endpoints in every environment.
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_key,
            json!({ "url": "https://127.0.0.1:9/hook", "environment": "live" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "conflict");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 webhook endpoints"), "{message}");
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &sandbox,
            json!({ "url": rx.url() }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    let listed = s.get("/api/v1/webhook-endpoints", &sandbox).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);

    let auth = format!("Bearer {sandbox}");
    let path = format!("/api/v1/webhook-endpoints/{}", ids[0]);
    let r = s
        .send(Method::DELETE, &path, &[("authorization", &auth)], None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    endpoint(&s, &sandbox, json!({ "url": rx.url() })).await;
}

/// Issue 21, finding 6: a delivery's attempts were never paged, so after 400 retries its
/// view answered 447,833 bytes even with `limit=1`. `GET /webhook-deliveries/{id}/attempts`
/// pages them newest first (`limit` 1–100, default 20), each attempt once, and a page of one
/// is a small answer; the deliveries list embeds only the latest 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_21_finding_6_a_deliverys_attempts_page_in_small_answers() {
    const ATTEMPTS: usize = 400;
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.retry_schedule =
            align_webhooks::RetrySchedule::new(vec![Duration::ZERO; ATTEMPTS - 1]);
        c.webhooks.poll_interval = Duration::from_millis(5);
    })
    .await;
    let sandbox = sandbox_key(&s).await;
    // Every answer a 500 with a 1 KiB body, the most an attempt records of it.
    let rx = Receiver::scripted_with_body(|_| 500, bytes::Bytes::from(vec![b'x'; 1024])).await;
    let (ep, _) = endpoint(
        &s,
        &sandbox,
        json!({ "url": rx.url(), "eventTypes": ["webhook.test"] }),
    )
    .await;
    let r = s
        .post(
            &format!("/api/v1/webhook-endpoints/{ep}/test"),
            &sandbox,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let delivery = r.body["deliveryIds"][0].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhook-endpoints/{ep}/deliveries?limit=1");
    let mut listed = s.get(&path, &sandbox).await;
    for _ in 0..1200 {
        if listed.body["data"][0]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = s.get(&path, &sandbox).await;
    }
    let row = &listed.body["data"][0];
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["attemptCount"], ATTEMPTS, "{row}");
    assert_eq!(row["attempts"].as_array().unwrap().len(), 10);
    assert!(listed.raw.len() < 16 * 1024, "{} bytes", listed.raw.len());

    let attempts = format!("/api/v1/webhook-deliveries/{delivery}/attempts");
    let one = s.get(&format!("{attempts}?limit=1"), &sandbox).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(one.body["data"][0]["status"], 500);
    assert!(one.body["nextCursor"].is_string());
    eprintln!(
        "limit=1 after {ATTEMPTS} failed attempts: {} bytes (review: 447,833)",
        one.raw.len()
    );
    assert!(one.raw.len() < 2048, "{} bytes", one.raw.len());

    // The default page is 20; following the cursors with limit=100 reads every attempt once,
    // newest first, in 4 pages.
    let first = s.get(&attempts, &sandbox).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 20);
    let mut seen: Vec<Value> = Vec::new();
    let mut pages = 0;
    let mut next = format!("{attempts}?limit=100");
    loop {
        let page = s.get(&next, &sandbox).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(page.body["data"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page.body["nextCursor"].as_str() {
            Some(c) => next = format!("{attempts}?limit=100&cursor={c}"),
            None => break,
        }
        assert!(pages <= 4, "paging does not end");
    }
    assert_eq!((seen.len(), pages), (ATTEMPTS, 4));
    let times: Vec<&str> = seen.iter().map(|a| a["at"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert_eq!(seen[0], one.body["data"][0], "the newest comes first");

    // Bad paging is a 400; no such delivery, a 404.
    for query in ["limit=0", "limit=101", "limit=x", "cursor=nope"] {
        let r = s.get(&format!("{attempts}?{query}"), &sandbox).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        assert_eq!(r.code(), "invalid_request");
    }
    let r = s
        .get(
            "/api/v1/webhook-deliveries/00000000-0000-4000-8000-000000000000/attempts",
            &sandbox,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}
