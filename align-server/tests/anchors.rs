//! Anchors over HTTP: while serving, the heads of the audit and request logs are signed into
//! `DIR/audit-anchors.jsonl` and sent as `audit.checkpoint` events (`GET /events`, and a
//! delivery to every live endpoint that wants them), so they leave the machine; a clean
//! shutdown anchors the final heads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use align_audit::{Anchor, AnchorLog, AuditSink, SqliteSink, SqliteSinkConfig, Stream};
use http::StatusCode;
use serde_json::json;
use support::TestServer;

async fn heads(dir: &std::path::Path) -> Vec<align_audit::Head> {
    let sink = SqliteSink::open(dir.join("align.db"), SqliteSinkConfig::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for stream in Stream::ALL {
        out.push(sink.head(stream).await.unwrap());
    }
    sink.close().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_are_written_delivered_and_pollable_and_shutdown_anchors_the_last_heads() {
    let s = TestServer::start_with(|c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.poll_interval = Duration::from_millis(50);
        c.audit_anchor_interval = Duration::from_secs(1);
    })
    .await;
    let dir = s.data_dir();
    // A live endpoint (https only; this one never answers) for the audit.* events.
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &s.admin_key,
            json!({ "url": "https://anchors.invalid/in", "eventTypes": ["audit.*"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let endpoint = r.body["id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        s.mint(
            &s.admin_key,
            json!({"name": format!("k{n}"), "scope": "organization"}),
        )
        .await;
    }

    // Within an interval or two, an anchor covers every audit record written so far.
    let audit_head = heads(&dir).await[1];
    let file = align_server::audit_anchor_log_path(&dir);
    let started = Instant::now();
    let anchored = loop {
        let latest = AnchorLog::latest(&file).unwrap();
        match latest.get(&Stream::Audit) {
            Some(a) if a.head().sequence >= audit_head.sequence => break a.clone(),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no anchor");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let key = align_server::audit_anchor_key(&dir, false)
        .unwrap()
        .unwrap();
    assert!(anchored.is_signed_by(key.public_key()));

    // It is in the event log, its data the anchor and nothing else.
    let listed = s
        .get(
            "/api/v1/events?type=audit.checkpoint&limit=1000",
            &s.admin_key,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let events = listed.body["data"].as_array().unwrap().clone();
    let data = events
        .iter()
        .map(|e| e["data"].clone())
        .find(|d| d["stream"] == "audit" && d["sequence"] == anchored.head().sequence)
        .unwrap_or_else(|| panic!("no event for {anchored:?}: {}", listed.body));
    let fields: BTreeSet<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "stream",
            "sequence",
            "hash",
            "createdAt",
            "keyId",
            "signature"
        ])
    );
    let polled: Anchor = serde_json::from_value(data).unwrap();
    assert_eq!(polled, anchored);
    assert_eq!(polled.key_id(), key.public_key().id());
    assert!(events.iter().all(|e| e["environment"] == "live"));

    // And it is on its way to the endpoint that asked for audit.* events.
    let path = format!("/api/v1/webhook-endpoints/{endpoint}/deliveries");
    let started = Instant::now();
    loop {
        let r = s.get(&path, &s.admin_key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let types: Vec<&str> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["eventType"].as_str())
            .collect();
        if !types.is_empty() {
            assert!(types.iter().all(|t| *t == "audit.checkpoint"), "{types:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A clean shutdown anchors the heads as they end.
    let kept = s.stop().await;
    let last = heads(kept.path()).await;
    let latest = AnchorLog::latest(&file).unwrap();
    assert_eq!(latest[&Stream::Request].head(), last[0]);
    assert_eq!(latest[&Stream::Audit].head(), last[1]);

    // The key and the anchors are the owner's alone; the key is in neither the anchor file
    // nor any delivery.
    let pkcs8 = std::fs::read_to_string(kept.path().join(align_server::ANCHOR_KEY_FILE)).unwrap();
    let pkcs8 = pkcs8.trim();
    let anchors = std::fs::read_to_string(&file).unwrap();
    assert!(!anchors.contains(&pkcs8[32..96]));
    assert!(!String::from_utf8_lossy(&listed.raw).contains(&pkcs8[32..96]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in [align_server::ANCHOR_KEY_FILE, align_server::ANCHOR_LOG_FILE] {
            let mode = std::fs::metadata(kept.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
}
