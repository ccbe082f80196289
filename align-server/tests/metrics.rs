//! `GET /metrics`: Prometheus text that parses and moves when requests are made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::collections::HashMap;

use http::StatusCode;
use serde_json::json;
use support::TestServer;

/// Parses the exposition format: every line is a comment or `name{labels} value`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{series}");
            for label in series[name_end + 1..series.len() - 1].split(',') {
                let (k, v) = label.split_once('=').expect("label=value");
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(v.starts_with('"') && v.ends_with('"'), "{v}");
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        out.insert(series.to_owned(), v);
    }
    out
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let s = TestServer::start().await;
    let first = s.get("/metrics", &s.admin_key).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let before = parse(&String::from_utf8_lossy(&first.raw));
    for _ in 0..3 {
        s.get("/api/v1/me", &s.admin_key).await;
    }
    s.get("/api/v1/me", "ako_invalid").await;
    let after = parse(&String::from_utf8_lossy(
        &s.get("/metrics", &s.admin_key).await.raw,
    ));
    let me = r#"align_http_requests_total{method="GET",route="/api/v1/me",status="200"}"#;
    assert_eq!(after[me] - before.get(me).copied().unwrap_or(0.0), 3.0);
    let invalid = r#"align_auth_total{outcome="invalid"}"#;
    assert_eq!(after[invalid] - before[invalid], 1.0);
    assert!(
        after["align_http_request_duration_seconds_count"]
            > before["align_http_request_duration_seconds_count"]
    );
    assert!(after["align_verifier_cached_keys"] >= 1.0);

    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "p", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    assert_eq!(
        s.get("/metrics", &narrow).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.send(http::Method::GET, "/metrics", &[], None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}
