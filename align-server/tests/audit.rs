//! Every security-relevant change leaves a durable audit record (actor, IP, user agent, no
//! token material), every request a request-log entry, and both chains verify.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use align_audit::{Actor, AuditSink, Query, SqliteSink, SqliteSinkConfig, Stream};
use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn every_security_change_is_audited_and_every_request_logged() {
    let s = TestServer::start().await;
    let k = s.admin_key.clone();
    let ua = "audit-test/1.0";
    let auth = format!("Bearer {k}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("user-agent", ua),
    ];
    let send = |path: &'static str, body: serde_json::Value| {
        let s = &s;
        async move {
            s.send(
                Method::POST,
                path,
                &h,
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await
        }
    };
    let project = send("/api/v1/projects", json!({"name": "p"})).await;
    assert_eq!(project.status, StatusCode::CREATED);
    let minted = send(
        "/api/v1/keys",
        json!({"name": "x", "scope": "organization"}),
    )
    .await;
    let token = minted.body["key"].as_str().unwrap().to_owned();
    let id = minted.body["apiKeyId"].as_str().unwrap().to_owned();
    for action in ["suspend", "resume", "rotate", "revoke"] {
        let path = format!("/api/v1/keys/{id}/{action}");
        let r = s.send(Method::POST, &path, &h, Some(b"{}".to_vec())).await;
        assert!(r.status.is_success(), "{action}: {}", r.body);
    }
    let patch = s
        .send(
            Method::PATCH,
            "/api/v1/organization",
            &h,
            Some(br#"{"securityContact":"sec@acme.test"}"#.to_vec()),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    // A refusal: a narrowed key tries to create a project.
    let narrow = send(
        "/api/v1/keys",
        json!({"name": "ro", "scope": "organization", "permissions": ["keys:read"]}),
    )
    .await;
    let ro = narrow.body["key"].as_str().unwrap().to_owned();
    let denied = s.post("/api/v1/projects", &ro, json!({"name": "no"})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let dir = s.stop().await;
    let sink = SqliteSink::open(dir.path().join("align.db"), SqliteSinkConfig::default())
        .await
        .unwrap();
    let mut q = Query::new(Stream::Audit);
    q.limit = 100;
    let page = sink.query(&q).await.unwrap();
    let actions: Vec<&str> = page.records.iter().map(|r| r.entry().action()).collect();
    for expected in [
        "project.created",
        "api_key.created",
        "api_key.suspended",
        "api_key.resumed",
        "api_key.rotated",
        "api_key.revoked",
        "organization.updated",
        "permission.denied",
    ] {
        assert!(
            actions.contains(&expected),
            "missing {expected} in {actions:?}"
        );
    }
    for r in &page.records {
        let e = r.entry();
        assert!(matches!(e.actor(), Actor::ApiKey { .. }), "{:?}", e.actor());
        assert!(e.ip().is_some_and(|ip| ip.is_loopback()));
        assert!(e.request_id().is_some());
        if e.action() != "permission.denied" {
            assert_eq!(e.user_agent(), Some(ua));
        }
        let json = serde_json::to_string(r).unwrap();
        assert!(
            !json.contains(&token[13..]) && !json.contains(&k[13..]),
            "token in {json}"
        );
    }
    let mut rq = Query::new(Stream::Request);
    rq.limit = 100;
    let requests = sink.query(&rq).await.unwrap();
    assert_eq!(requests.records.len(), 9, "every request is logged, once");
    assert!(
        requests
            .records
            .iter()
            .all(|r| r.entry().status().is_some() && r.entry().latency_us().is_some())
    );
    for stream in [Stream::Audit, Stream::Request] {
        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
        assert!(
            report.is_intact() && report.checked > 0,
            "{stream:?}: {report:?}"
        );
    }
    sink.close().await.unwrap();
}

#[tokio::test]
async fn the_audit_api_lists_changes_with_filters_and_refuses_narrow_keys() {
    let s = TestServer::start().await;
    let (token, res) = s
        .mint(&s.admin_key, json!({"name": "t", "scope": "organization"}))
        .await;
    let id = res["apiKeyId"].as_str().unwrap().to_owned();
    s.post(
        &format!("/api/v1/keys/{id}/revoke"),
        &s.admin_key,
        json!({}),
    )
    .await;
    let r = s.get("/api/v1/audit-events", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data[0]["action"], "api_key.revoked", "newest first");
    assert_eq!(data[0]["target"], id.as_str());
    assert_eq!(data[0]["actor"]["type"], "api_key");
    assert_eq!(data[0]["actor"]["keyPrefix"], &s.admin_key[..12]);
    assert_eq!(data[0]["ip"], "127.0.0.1");
    assert!(!String::from_utf8_lossy(&r.raw).contains(&token[13..]));

    let only = s
        .get(
            "/api/v1/audit-events?action=api_key.created&limit=1",
            &s.admin_key,
        )
        .await;
    let only_data = only.body["data"].as_array().unwrap();
    assert_eq!(only_data.len(), 1);
    assert_eq!(only_data[0]["action"], "api_key.created");
    let bad = s
        .get("/api/v1/audit-events?since=yesterday", &s.admin_key)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let p = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "p"}))
        .await;
    let (pk, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "pk", "scope": "project", "projectId": p.body["id"]}),
        )
        .await;
    assert_eq!(
        s.get("/api/v1/audit-events", &pk).await.status,
        StatusCode::FORBIDDEN
    );
    let (nr, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "nr", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    assert_eq!(
        s.get("/api/v1/audit-events", &nr).await.status,
        StatusCode::FORBIDDEN
    );
    s.stop().await;
}

/// Reads every request-log record of a stopped server's data directory, and checks the chain.
async fn request_log(dir: &std::path::Path) -> Vec<align_audit::Record> {
    let sink = SqliteSink::open(dir.join("align.db"), SqliteSinkConfig::default())
        .await
        .unwrap();
    let mut q = Query::new(Stream::Request);
    q.limit = 1000;
    let page = sink.query(&q).await.unwrap();
    let report = sink.verify(Stream::Request, &mut |_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    sink.close().await.unwrap();
    page.records
}

#[tokio::test]
async fn a_flood_of_rejections_is_folded_into_summaries_and_every_request_is_counted() {
    let s = TestServer::start_with(|c| c.fold_rejections_after = 3).await;
    // A well-formed key that was never minted: 401 every time (test-only value).
    let bad = "ako_00000000_testonlytestonlytestonlytestonlytestonlytesto";
    let mut ids = Vec::new();
    for _ in 0..40 {
        let r = s.get("/api/v1/me", bad).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        ids.push(r.header("x-request-id").unwrap().to_owned());
    }
    // Accepted requests are never folded.
    for _ in 0..10 {
        assert_eq!(
            s.get("/api/v1/me", &s.admin_key).await.status,
            StatusCode::OK
        );
    }
    let metrics = s.get("/metrics", &s.admin_key).await;
    let dir = s.stop().await;
    let records = request_log(dir.path()).await;

    let ok = records.iter().filter(|r| r.entry().status() == Some(200));
    assert_eq!(ok.count(), 11, "ten calls of /me and one of /metrics");
    let rejected: Vec<_> = records
        .iter()
        .filter(|r| r.entry().status() == Some(401))
        .collect();
    let summaries: Vec<_> = rejected
        .iter()
        .filter(|r| !r.entry().metadata()["folded"].is_null())
        .collect();
    let single = rejected.len() - summaries.len();
    let folded: u64 = summaries
        .iter()
        .map(|r| r.entry().metadata()["folded"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        single as u64 + folded,
        40,
        "every rejection is accounted for"
    );
    assert!(!summaries.is_empty(), "40 rejections in a few seconds fold");
    assert!(
        single >= 3,
        "the first rejections of each second have their own entries"
    );
    for r in &summaries {
        let e = r.entry();
        let folded = &e.metadata()["folded"];
        // A summary is the first folded request's entry: its id, path and client.
        assert!(ids.iter().any(|id| Some(id.as_str()) == e.request_id()));
        assert!(ids.contains(&folded["lastRequestId"].as_str().unwrap().to_owned()));
        assert_eq!(e.path(), Some("/api/v1/me"));
        assert!(e.ip().is_some_and(|ip| ip.is_loopback()));
        assert!(folded["lastAt"].as_str().unwrap().ends_with('Z'));
        assert!(!e.metadata_json().contains("testonly"), "no key material");
    }
    let total: u64 = metrics
        .raw
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find_map(|l| l.strip_prefix("align_request_log_folded_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        total <= folded,
        "the metric counts summaries written so far"
    );
}

#[tokio::test]
async fn with_folding_off_every_rejection_has_its_own_entry() {
    let s = TestServer::start_with(|c| c.fold_rejections_after = 0).await;
    let bad = "ako_00000000_testonlytestonlytestonlytestonlytestonlytesto";
    for _ in 0..30 {
        assert_eq!(
            s.get("/api/v1/me", bad).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let dir = s.stop().await;
    let records = request_log(dir.path()).await;
    assert_eq!(records.len(), 30);
    assert!(
        records
            .iter()
            .all(|r| r.entry().metadata()["folded"].is_null())
    );
}
