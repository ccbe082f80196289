//! Property tests over the whole request pipeline, in process (no sockets): any method, any
//! route (with real, random and hostile ids), any query, any headers and any body get an
//! answer that is never a `500`, always carries `X-Request-Id`, and is either the error
//! envelope or JSON. Run with `PROPTEST_CASES=20000` for a long campaign
//! (`reliability/run` does).

use std::net::SocketAddr;
use std::sync::Arc;

use align_audit::MemorySink;
use align_keys::{KeyManager, MemoryKeyStore, Sha256Hasher};
use align_webhooks::MemoryWebhookStore;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;

use crate::config::Config;
use crate::state::AppState;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    state: Arc<AppState>,
    key: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        rate_limit_per_minute: 60_000,
        ..Config::default()
    };
    let (state, key) = runtime.block_on(async {
        let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
        crate::bootstrap::bootstrap(&config, &keys).await.unwrap();
        let key = std::fs::read_to_string(config.bootstrap_key_path()).unwrap();
        let state = AppState::new(
            config,
            keys,
            Arc::new(MemorySink::new()),
            Arc::new(MemoryWebhookStore::new()),
            align_http::ReplyStore::memory(),
        )
        .unwrap();
        (Arc::new(state), key.trim().to_owned())
    });
    Fixture {
        runtime,
        state,
        key,
        _dir: dir,
    }
}

/// The API operations of the route table (what `docs/openapi.yaml` lists): (method, template).
fn api_routes() -> Vec<(&'static str, &'static str)> {
    crate::routes::ROUTE_TABLE
        .iter()
        .filter(|r| r.listing == crate::routes::Listing::Api)
        .map(|r| (r.method.as_str(), r.path))
        .collect()
}

/// Path segments: route words, ids of every shape, and hostile text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{id}".to_owned()),
        Just("00000000-0000-4000-8000-000000000000".to_owned()),
        Just("ep_00000000-0000-4000-8000-000000000000".to_owned()),
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%2F..%2F".to_owned()),
        "[a-z-]{0,12}",
        "[ -~]{0,24}".prop_map(|s| s.replace(['/', '?', '#', ' '], "")),
    ]
}

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::GET),
        Just(http::Method::POST),
        Just(http::Method::PATCH),
        Just(http::Method::DELETE),
        Just(http::Method::PUT),
        Just(http::Method::HEAD),
        Just(http::Method::OPTIONS),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let json = prop_oneof![
        Just(serde_json::json!({})),
        Just(serde_json::json!({"name": "x", "scope": "organization"})),
        Just(serde_json::json!({"name": "x", "scope": "project", "projectId": "nope"})),
        Just(serde_json::json!({"url": "https://hooks.example.com/in"})),
        Just(serde_json::json!({"url": "http://127.0.0.1/x", "eventTypes": ["*"]})),
        Just(serde_json::json!({"graceSeconds": -1})),
        Just(serde_json::json!({"rateLimitPerMinute": 1e300})),
        Just(serde_json::json!({"since": "yesterday"})),
        Just(serde_json::json!([1, 2, 3])),
        Just(serde_json::json!(null)),
        "[ -~]{0,40}".prop_map(|s| serde_json::json!({ "name": s, "url": s, "scope": s })),
    ]
    .prop_map(|v| serde_json::to_vec(&v).unwrap());
    prop_oneof![json, prop::collection::vec(any::<u8>(), 0..256)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn any_request_gets_an_answer_that_is_never_a_server_error(
        method in method(),
        route in prop::sample::select(api_routes()),
        replace in prop::collection::vec(segment(), 0..3),
        extra in prop::option::of(segment()),
        query in "[ -~]{0,40}",
        body in body(),
        auth in 0_u8..5,
        content_type in prop::option::of(prop_oneof![
            Just("application/json"), Just("text/plain"), Just("application/merge-patch+json")
        ]),
        idempotency in prop::option::of("[ -~]{0,20}"),
    ) {
        thread_local!(static FIXTURE: Fixture = fixture());
        FIXTURE.with(|f| {
            let mut path = route.1.to_owned();
            for seg in &replace {
                path = path.replacen("{id}", seg, 1);
            }
            path = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
            if let Some(extra) = &extra {
                path.push('/');
                path.push_str(extra);
            }
            let query = query.replace(['#', ' '], "");
            let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            let Ok(uri) = uri.parse::<http::Uri>() else {
                return Ok(()); // not a request hyper would hand us
            };
            let mut req = http::Request::builder().method(method.clone()).uri(uri);
            let bearer = format!("Bearer {}", f.key);
            req = match auth {
                0 => req,
                1 => req.header("authorization", bearer.as_str()),
                2 => req.header("x-api-key", f.key.as_str()),
                3 => req.header("authorization", "Bearer ako_00000000_nope").header("x-api-key", f.key.as_str()),
                _ => req.header("authorization", bearer.as_str()).header("x-api-key", f.key.as_str()),
            };
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(k) = &idempotency {
                if let Ok(v) = http::HeaderValue::from_str(k) {
                    req = req.header("idempotency-key", v);
                }
            }
            let req = req.body(Full::new(Bytes::from(body.clone()))).unwrap();
            let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let response = f
                .runtime
                .block_on(crate::app::handle(Arc::clone(&f.state), req, peer));
            let status = response.status();
            prop_assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "{} {}", method, path);
            prop_assert!(response.headers().contains_key("x-request-id"));
            let bytes = f
                .runtime
                .block_on(response.into_body().collect())
                .unwrap()
                .to_bytes();
            if status.is_client_error() || status.is_server_error() {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert!(v["error"]["code"].is_string(), "{}", v);
            } else if status != http::StatusCode::NO_CONTENT && path != "/metrics" {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
            }
            Ok(())
        })?;
    }
}

/// Every request's future is boxed once and then moved only as a pointer, but it is still
/// copied once into its box: its size is a cost of every request (docs/performance.md,
/// "The request's future"). Writing the request log's entry inside an `async fn` once made
/// it 3 KB (the entry and the verdict kept as room in every future); this keeps the room
/// each part takes from growing back unnoticed. The bounds hold for debug builds, where
/// futures are larger than in release (1.3 KB and 0.3 KB there, 1.2 KB and 0.3 KB in
/// release).
#[test]
fn the_request_future_stays_small() {
    let f = fixture();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let handle = crate::app::handle(
        Arc::clone(&f.state),
        http::Request::new(Full::new(Bytes::new())),
        peer,
    );
    let meta = Arc::new(crate::audit::RequestMeta {
        request_id: String::new(),
        peer,
        user_agent: None,
        method: "GET".to_owned(),
        path: "/".to_owned(),
        started: crate::audit::now(),
        user: std::sync::OnceLock::new(),
    });
    let log = f
        .state
        .log_request(meta, None, http::StatusCode::OK, std::time::Duration::ZERO);
    let (handle_size, log_size) = (size_of_val(&handle), size_of_val(&log));
    eprintln!("request future {handle_size} bytes, request-log future {log_size} bytes");
    assert!(
        handle_size <= 2048,
        "the request's future is {handle_size} bytes"
    );
    assert!(
        log_size <= 512,
        "the request log's future is {log_size} bytes"
    );
}
