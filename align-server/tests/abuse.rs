//! Resource-abuse regressions from the second outside review (issue 21), over HTTP against
//! a running server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

/// A gauge's value in `/metrics`.
async fn gauge(s: &TestServer, name: &str) -> u64 {
    let r = s.get("/metrics", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.raw.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .expect("the gauge is in the metrics")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn issue_21_finding_1_idempotent_error_replies_cannot_exhaust_memory() {
    let s = TestServer::start().await;
    let (weak, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "weak", "scope": "organization", "environment": "sandbox",
                   "permissions": ["projects:read"]}),
        )
        .await;
    let field = "A".repeat(1024 * 1024 - 16);
    let body = format!("{{\"{field}\":1}}").into_bytes();
    let auth = format!("Bearer {weak}");
    for i in 0..40 {
        let idem = format!("flood-{i}");
        let r = s
            .send(
                Method::POST,
                "/api/v1/keys",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("idempotency-key", &idem),
                ],
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(
            r.raw.len() < 1024,
            "the reply echoes the input: {} bytes",
            r.raw.len()
        );
    }
    let held = gauge(&s, "align_idempotency_bytes").await;
    assert!(held < 64 * 1024, "idempotency holds {held} bytes");
}

#[tokio::test]
async fn issue_21_finding_2_requests_without_a_key_are_folded_in_the_request_log() {
    let s = TestServer::start_with(|c| c.fold_rejections_after = 5).await;
    let started = std::time::Instant::now();
    let n = 200;
    for _ in 0..n {
        assert_eq!(
            s.send(Method::GET, "/nope", &[], None).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            s.send(Method::GET, "/healthz", &[], None).await.status,
            StatusCode::OK
        );
    }
    // At most 5 entries per status and calendar second of their own (the requests touched at
    // most the whole seconds elapsed plus two partial ones); the rest counted in summaries,
    // written by the once-a-second sweep.
    let seconds = started.elapsed().as_secs() + 2;
    let own_entries_at_most = 2 * 5 * seconds;
    let mut folded = 0;
    for _ in 0..40 {
        folded = gauge(&s, "align_request_log_folded_total").await;
        if folded + own_entries_at_most >= 2 * n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        folded + own_entries_at_most >= 2 * n,
        "only {folded} of {} requests without a key were folded in {seconds} s",
        2 * n
    );
}

/// Issue 21, finding 2, over HTTP: with the disk low (here: a free-space floor no disk
/// reaches), `/healthz` still answers `200` but says `degraded` with `low_disk`, `/metrics`
/// shows `align_disk_low 1`, and a revocation still succeeds.
#[tokio::test]
async fn issue_21_finding_2_a_low_disk_is_reported_and_revocation_still_works() {
    let s = TestServer::start_with(|c| c.logs.low_disk_free_bytes = u64::MAX).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = s.send(Method::GET, "/healthz", &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["status"] == "degraded" {
            assert_eq!(r.body["warnings"], json!(["low_disk"]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(gauge(&s, "align_disk_low").await, 1);
    let (key, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "leaked", "scope": "organization"}),
        )
        .await;
    let id = resource["apiKeyId"].as_str().unwrap();
    let r = s
        .post(
            &format!("/api/v1/keys/{id}/revoke"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.get("/api/v1/me", &key).await.code(), "key_revoked");
}

/// With room on the disk, `/healthz` says `ok` and the gauges are there.
#[tokio::test]
async fn issue_21_finding_2_the_disk_gauges_are_reported() {
    let s = TestServer::start().await;
    let r = s.send(Method::GET, "/healthz", &[], None).await;
    assert_eq!(r.body["status"], "ok", "{}", r.body);
    assert_eq!(gauge(&s, "align_disk_low").await, 0);
    assert!(gauge(&s, "align_disk_free_bytes").await > 0);
    assert!(gauge(&s, "align_data_dir_bytes").await > 0);
}
