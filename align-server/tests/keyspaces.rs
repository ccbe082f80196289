//! DESIGN §12 over HTTP: key spaces, the keys an organisation mints in them for its own
//! customers, and `POST /api/v1/keys/verify` with every `code`, permission queries (a
//! property test against a reference evaluator), credits (refill, and nothing spent by a
//! verification refused earlier) and named limits (each its own window, exact).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Value, json};
use support::TestServer;

const VOCABULARY: [&str; 6] = [
    "invoices:read",
    "invoices:write",
    "refunds:read",
    "refunds:write",
    "admin",
    "reports.daily:read",
];

/// A key space `acme` over [`VOCABULARY`] and an Align key that may only verify; returns
/// (key space id, verifier token).
async fn setup(s: &TestServer) -> (String, String) {
    let r = s
        .post(
            "/api/v1/keyspaces",
            &s.admin_key,
            json!({"name": "Acme API", "prefix": "acme", "permissions": VOCABULARY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["prefix"], "acme");
    let ks = r.body["id"].as_str().unwrap().to_owned();
    let (verifier, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "gateway", "scope": "organization", "permissions": ["keys:verify"]}),
        )
        .await;
    (ks, verifier)
}

/// Mints a key in key space `ks` with `body` (a name is added); returns (token, resource).
async fn mint(s: &TestServer, ks: &str, body: Value) -> (String, Value) {
    let mut body = body;
    if body.get("name").is_none() {
        body["name"] = json!("customer key");
    }
    let r = s
        .post(&format!("/api/v1/keyspaces/{ks}/keys"), &s.admin_key, body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body["key"].as_str().unwrap().to_owned();
    assert!(token.starts_with("acme_"), "{token}");
    (token, r.body)
}

async fn verify(s: &TestServer, verifier: &str, body: Value) -> Value {
    let r = s.post("/api/v1/keys/verify", verifier, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn act(s: &TestServer, ks: &str, id: &str, action: &str) -> Value {
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys/{id}/{action}"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{action}: {}", r.body);
    r.body
}

#[tokio::test]
async fn every_code_of_a_verification() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, key) = mint(
        &s,
        &ks,
        json!({"ownerId": "cus_8812", "meta": {"plan": "pro"}, "permissions": ["invoices:read"]}),
    )
    .await;
    let id = key["id"].as_str().unwrap();

    let v = verify(&s, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["keyId"], id);
    assert_eq!(v["keyspaceId"], ks.as_str());
    assert_eq!(v["ownerId"], "cus_8812");
    assert_eq!(v["meta"], json!({"plan": "pro"}));
    assert_eq!(v["permissions"], json!(["invoices:read"]));
    assert_eq!(v["credits"], Value::Null);
    assert_eq!(v["ratelimits"], json!([]));

    // NOT_FOUND: mistyped (checksum), unknown, an Align key, garbage, empty.
    let mut mistyped = token.clone().into_bytes();
    let last = mistyped.len() - 1;
    mistyped[last] = if mistyped[last] == b'A' { b'B' } else { b'A' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    for presented in [
        mistyped.as_str(),
        s.admin_key.as_str(),
        "not a key",
        "",
        "acme_00000000_",
    ] {
        let v = verify(&s, &verifier, json!({"key": presented})).await;
        assert_eq!(v["code"], "NOT_FOUND", "{presented}: {v}");
        assert_eq!(v["valid"], false);
        assert_eq!(v["keyId"], Value::Null);
    }

    let v = verify(
        &s,
        &verifier,
        json!({"key": token, "permissions": "invoices:write"}),
    )
    .await;
    assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS", "{v}");

    act(&s, &ks, id, "suspend").await;
    let v = verify(&s, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "SUSPENDED", "{v}");
    act(&s, &ks, id, "resume").await;
    assert_eq!(
        verify(&s, &verifier, json!({"key": token})).await["code"],
        "VALID"
    );

    act(&s, &ks, id, "revoke").await;
    let v = verify(&s, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "REVOKED", "{v}");
    // Final: a revoked key is not resumed.
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys/{id}/resume"),
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "key_not_active");

    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let (expiring, _) = mint(&s, &ks, json!({"expiresAt": soon})).await;
    assert_eq!(
        verify(&s, &verifier, json!({"key": expiring})).await["code"],
        "VALID"
    );
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert_eq!(
        verify(&s, &verifier, json!({"key": expiring})).await["code"],
        "EXPIRED"
    );

    let (limited, _) = mint(
        &s,
        &ks,
        json!({"ratelimits": [{"name": "requests", "limit": 1, "durationSeconds": 3600}]}),
    )
    .await;
    assert_eq!(
        verify(&s, &verifier, json!({"key": limited})).await["code"],
        "VALID"
    );
    let v = verify(&s, &verifier, json!({"key": limited})).await;
    assert_eq!(v["code"], "RATE_LIMITED", "{v}");
    assert_eq!(v["ratelimits"][0]["name"], "requests");
    assert_eq!(v["ratelimits"][0]["remaining"], 0);

    let (metered, _) = mint(&s, &ks, json!({"credits": {"remaining": 1}})).await;
    let v = verify(&s, &verifier, json!({"key": metered})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["credits"], json!({"remaining": 0}));
    let v = verify(&s, &verifier, json!({"key": metered})).await;
    assert_eq!(v["code"], "USAGE_EXCEEDED", "{v}");
    assert_eq!(v["credits"], json!({"remaining": 0}));
}

#[tokio::test]
async fn keyspace_keys_never_open_aligns_own_api() {
    let s = TestServer::start().await;
    let (ks, _) = setup(&s).await;
    let (token, _) = mint(&s, &ks, json!({})).await;
    let r = s.get("/api/v1/me", &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.code(), "invalid_key");
    // Nor may one verify: verification takes an Align key.
    let r = s
        .post("/api/v1/keys/verify", &token, json!({"key": token}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verification_needs_keys_verify_on_an_organisation_key() {
    let s = TestServer::start().await;
    let (ks, _) = setup(&s).await;
    let (token, _) = mint(&s, &ks, json!({})).await;
    let (reader, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "reader", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    let r = s
        .post("/api/v1/keys/verify", &reader, json!({"key": token}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let project = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "web"}))
        .await;
    let pid = project.body["id"].as_str().unwrap();
    let (scoped, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "p", "scope": "project", "projectId": pid}),
        )
        .await;
    let r = s
        .post("/api/v1/keys/verify", &scoped, json!({"key": token}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A bad request is a 400, not a verification.
    let r = s
        .post(
            "/api/v1/keys/verify",
            &s.admin_key,
            json!({"key": token, "permissions": "invoices:read AND"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("byte 17")
    );
    let r = s
        .post(
            "/api/v1/keys/verify",
            &s.admin_key,
            json!({"permissions": "a"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn sandbox_callers_mint_and_verify_only_sandbox_keys() {
    let s = TestServer::start().await;
    let (ks, _) = setup(&s).await;
    let (live, _) = mint(&s, &ks, json!({})).await;
    let (sandbox_admin, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "sb", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    // A sandbox key creates no key space, and mints no live key.
    let r = s
        .post(
            "/api/v1/keyspaces",
            &sandbox_admin,
            json!({"name": "x", "prefix": "xy", "permissions": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys"),
            &sandbox_admin,
            json!({"name": "x", "environment": "live"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys"),
            &sandbox_admin,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["environment"], "sandbox");
    let sandbox_token = r.body["key"].as_str().unwrap().to_owned();
    // It verifies its own environment's keys; a live key is not there for it.
    let v = verify(&s, &sandbox_admin, json!({"key": sandbox_token})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    let v = verify(&s, &sandbox_admin, json!({"key": live})).await;
    assert_eq!(v["code"], "NOT_FOUND", "{v}");
    // It lists only sandbox keys.
    let r = s
        .get(&format!("/api/v1/keyspaces/{ks}/keys"), &sandbox_admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let envs: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["environment"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["sandbox"]);
}

#[tokio::test]
async fn keyspaces_are_validated_listed_patched_and_unique_by_prefix() {
    let s = TestServer::start().await;
    let (ks, _) = setup(&s).await;
    for (body, why) in [
        (json!({"name": "x", "prefix": "ako"}), "reserved prefix"),
        (json!({"name": "x", "prefix": "A1"}), "bad prefix"),
        (json!({"name": "x", "prefix": "toolongxx"}), "long prefix"),
        (
            json!({"name": "x", "prefix": "xy", "permissions": ["Bad Name"]}),
            "bad permission",
        ),
        (
            json!({"name": "x", "prefix": "xy", "permissions": ["a", "a"]}),
            "repeated permission",
        ),
        (json!({"name": "", "prefix": "xy"}), "empty name"),
    ] {
        let r = s.post("/api/v1/keyspaces", &s.admin_key, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.body);
        assert_eq!(r.code(), "invalid_request", "{why}");
    }
    let r = s
        .post(
            "/api/v1/keyspaces",
            &s.admin_key,
            json!({"name": "again", "prefix": "acme"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = s.get("/api/v1/keyspaces", &s.admin_key).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keyspaces/{ks}"),
            &s.admin_key,
            json!({"name": "Renamed", "permissions": ["invoices:read", "exports:run"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    // A key may hold only what its space declares now.
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys"),
            &s.admin_key,
            json!({"name": "k", "permissions": ["refunds:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let (_, key) = mint(
        &s,
        &ks,
        json!({"permissions": ["exports:run", "invoices:*"]}),
    )
    .await;
    assert_eq!(key["permissions"], json!(["exports:run", "invoices:*"]));
    // Another organisation's, or an unknown, key space is 404.
    let r = s
        .get(
            "/api/v1/keyspaces/6f1c1e0e-3f4a-4b8e-9a59-0c1f1d3a5b7c",
            &s.admin_key,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_are_listed_by_owner_patched_and_rotated_with_grace() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (a, ka) = mint(
        &s,
        &ks,
        json!({"ownerId": "cus_1", "credits": {"remaining": 10}}),
    )
    .await;
    mint(&s, &ks, json!({"ownerId": "cus_2"})).await;
    mint(&s, &ks, json!({"ownerId": "cus_1"})).await;
    let r = s
        .get(
            &format!("/api/v1/keyspaces/{ks}/keys?ownerId=cus_1"),
            &s.admin_key,
        )
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2, "{}", r.body);
    let id = ka["id"].as_str().unwrap();
    verify(&s, &verifier, json!({"key": a, "credits": {"cost": 4}})).await;
    let r = s
        .get(&format!("/api/v1/keyspaces/{ks}/keys/{id}"), &s.admin_key)
        .await;
    assert_eq!(r.body["credits"]["remaining"], 6, "{}", r.body);
    assert!(r.body.get("key").is_none());

    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keyspaces/{ks}/keys/{id}"),
            &s.admin_key,
            json!({"name": "renamed", "meta": {"tier": 2}, "credits": {"remaining": 100, "refill": {"amount": 100, "interval": "month"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["credits"]["remaining"], 100);
    assert_eq!(r.body["credits"]["refill"]["interval"], "month");
    let v = verify(&s, &verifier, json!({"key": a})).await;
    assert_eq!(
        v["meta"],
        json!({"tier": 2}),
        "the cache follows a change at once"
    );
    assert_eq!(v["credits"]["remaining"], 99);

    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys/{id}/rotate"),
            &s.admin_key,
            json!({"graceSeconds": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let successor = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(r.body["rotatedFromKeyId"], id);
    assert_eq!(r.body["credits"]["remaining"], 99);
    assert_ne!(r.body["id"], id);
    assert_eq!(
        verify(&s, &verifier, json!({"key": successor})).await["code"],
        "VALID"
    );
    assert_eq!(
        verify(&s, &verifier, json!({"key": a})).await["code"],
        "VALID"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        verify(&s, &verifier, json!({"key": a})).await["code"],
        "EXPIRED"
    );
    assert_eq!(
        verify(&s, &verifier, json!({"key": successor})).await["code"],
        "VALID"
    );
}

#[tokio::test]
async fn a_verification_refused_earlier_spends_nothing_later() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, _) = mint(
        &s,
        &ks,
        json!({
            "permissions": ["invoices:read"],
            "credits": {"remaining": 5},
            "ratelimits": [{"name": "requests", "limit": 2, "durationSeconds": 3600}]
        }),
    )
    .await;
    // Refused by permissions: neither the limit nor the credits move.
    for _ in 0..3 {
        let v = verify(&s, &verifier, json!({"key": token, "permissions": "admin"})).await;
        assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS");
        assert_eq!(v["credits"]["remaining"], 5, "{v}");
        assert_eq!(v["ratelimits"][0]["remaining"], 2, "{v}");
    }
    // Two pass, spending both.
    for left in [4, 3] {
        let v = verify(&s, &verifier, json!({"key": token})).await;
        assert_eq!(v["code"], "VALID");
        assert_eq!(v["credits"]["remaining"], left);
    }
    // Refused by the limit: the credits do not move.
    for _ in 0..3 {
        let v = verify(&s, &verifier, json!({"key": token})).await;
        assert_eq!(v["code"], "RATE_LIMITED");
        assert_eq!(v["credits"]["remaining"], 3, "{v}");
    }
}

#[tokio::test]
async fn named_limits_each_count_their_own_window_exactly() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, _) = mint(
        &s,
        &ks,
        json!({"ratelimits": [
            {"name": "burst", "limit": 3, "durationSeconds": 2},
            {"name": "hourly", "limit": 5, "durationSeconds": 3600}
        ]}),
    )
    .await;
    // Start just after a 2-second window begins (windows are aligned to the epoch).
    let ms = chrono::Utc::now().timestamp_millis().rem_euclid(2000);
    tokio::time::sleep(Duration::from_millis((2000 - ms + 20) as u64)).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(verify(&s, &verifier, json!({"key": token})).await["code"].clone());
    }
    assert_eq!(codes, ["VALID", "VALID", "VALID", "RATE_LIMITED"]);
    let v = verify(&s, &verifier, json!({"key": token})).await;
    assert_eq!(v["ratelimits"][0]["name"], "burst");
    assert_eq!(v["ratelimits"][0]["remaining"], 0);
    assert!(v["ratelimits"][0]["reset"].as_u64().unwrap() <= 2);
    assert_eq!(
        v["ratelimits"][1]["remaining"], 2,
        "a refusal spent nothing on hourly"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // burst is back; hourly holds 2 more.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(verify(&s, &verifier, json!({"key": token})).await["code"].clone());
    }
    assert_eq!(codes, ["VALID", "VALID", "RATE_LIMITED"]);
    // A cost per limit: 0 spends nothing.
    let v = verify(
        &s,
        &verifier,
        json!({"key": token, "ratelimits": [{"name": "hourly", "cost": 0}, {"name": "burst", "cost": 0}]}),
    )
    .await;
    assert_eq!(v["code"], "VALID", "{v}");
}

#[tokio::test]
async fn credits_refill_once_a_boundary_has_passed() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, key) = mint(
        &s,
        &ks,
        json!({"credits": {"remaining": 2, "refill": {"amount": 3, "interval": "day"}}}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            verify(&s, &verifier, json!({"key": token})).await["code"],
            "VALID"
        );
    }
    assert_eq!(
        verify(&s, &verifier, json!({"key": token})).await["code"],
        "USAGE_EXCEEDED"
    );
    // The last refill moves to yesterday, as if midnight had passed since.
    let db = rusqlite::Connection::open(s.data_dir().join("align.db")).unwrap();
    let yesterday = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let changed = db
        .execute(
            "UPDATE keys_keyspace_keys SET refilled_at = ?1 WHERE id = ?2",
            rusqlite::params![yesterday, key["id"].as_str().unwrap()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let v = verify(&s, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["credits"]["remaining"], 2, "refilled to 3, one spent");
}

/// The reference evaluator: what a query allows, by its definition (DESIGN §12).
#[derive(Debug, Clone)]
enum Q {
    Atom(String),
    And(Box<Self>, Box<Self>),
    Or(Box<Self>, Box<Self>),
}

impl Q {
    fn text(&self) -> String {
        match self {
            Self::Atom(a) => a.clone(),
            Self::And(a, b) => format!("({} AND {})", a.text(), b.text()),
            Self::Or(a, b) => format!("({} or {})", a.text(), b.text()),
        }
    }

    fn allows(&self, held: &[String]) -> bool {
        match self {
            Self::Atom(a) => held.iter().any(|h| {
                h == a
                    || match (a.split_once(':'), h.split_once(':')) {
                        (Some((ar, aa)), Some((hr, ha))) => ar == hr && (ha == "*" || aa == "*"),
                        _ => false,
                    }
            }),
            Self::And(a, b) => a.allows(held) && b.allows(held),
            Self::Or(a, b) => a.allows(held) || b.allows(held),
        }
    }
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(VOCABULARY.to_vec()).prop_map(str::to_owned),
        Just("invoices:*".to_owned()),
        Just("refunds:*".to_owned()),
        Just("other:read".to_owned()),
    ]
}

fn query() -> impl Strategy<Value = Q> {
    atom().prop_map(Q::Atom).prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Q::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Q::Or(Box::new(a), Box::new(b))),
        ]
    })
}

#[tokio::test]
async fn permission_queries_answer_as_the_reference_evaluator() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let grants = proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(VOCABULARY.to_vec()).prop_map(str::to_owned),
            Just("invoices:*".to_owned()),
        ],
        0..4,
    )
    .prop_map(|mut v| {
        v.sort();
        v.dedup();
        v
    });
    let mut runner = TestRunner::new(PropConfig::with_cases(48));
    let mut keys = Vec::new();
    for _ in 0..6 {
        let held = grants.new_tree(&mut runner).unwrap().current();
        let (token, _) = mint(&s, &ks, json!({"permissions": held})).await;
        keys.push((token, held));
    }
    let q = query();
    for _ in 0..48 {
        let query = q.new_tree(&mut runner).unwrap().current();
        for (token, held) in &keys {
            let v = verify(
                &s,
                &verifier,
                json!({"key": token, "permissions": query.text()}),
            )
            .await;
            let expected = if query.allows(held) {
                "VALID"
            } else {
                "INSUFFICIENT_PERMISSIONS"
            };
            assert_eq!(v["code"], expected, "{} over {held:?}", query.text());
        }
    }
}

#[tokio::test]
async fn verifications_count_in_the_verified_keys_usage() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, key) = mint(&s, &ks, json!({"permissions": ["admin"]})).await;
    let id = key["id"].as_str().unwrap();
    verify(&s, &verifier, json!({"key": token})).await;
    verify(&s, &verifier, json!({"key": token})).await;
    verify(
        &s,
        &verifier,
        json!({"key": token, "permissions": "invoices:read"}),
    )
    .await;
    let mut usage = Value::Null;
    for _ in 0..50 {
        let r = s
            .get(
                &format!("/api/v1/keyspaces/{ks}/keys/{id}/usage"),
                &s.admin_key,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        usage = r.body;
        let total: u64 = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum();
        if total == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sum = |f: &str| -> u64 {
        usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[f].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("requests"), 3, "{usage}");
    assert_eq!(sum("succeeded"), 2);
    assert_eq!(sum("clientErrors"), 1);
}

#[tokio::test]
async fn no_token_of_a_keyspace_key_is_at_rest_or_in_a_log() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, _) = mint(&s, &ks, json!({})).await;
    verify(&s, &verifier, json!({"key": token})).await;
    let secret = &token[token.len() - 49..];
    let dir = s.stop().await;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the token",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Least privilege (DESIGN §3, §12): minting, rotating, resuming and changing a key space key
/// are all judged by the one policy as producing it, so no caller without `keyspaces:write` on
/// the key's environment gets or widens one by any path.
#[tokio::test]
async fn no_producer_without_keyspaces_write_on_its_environment_makes_or_widens_a_key() {
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let (token, key) = mint(
        &s,
        &ks,
        json!({"permissions": ["invoices:read"], "credits": {"remaining": 1}}),
    )
    .await;
    let id = key["id"].as_str().unwrap().to_owned();
    act(&s, &ks, &id, "suspend").await;
    let (reader, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "reader", "scope": "organization", "permissions": ["keyspaces:read", "keys:verify"]}),
        )
        .await;
    let (sandbox, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "sandbox", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let project = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "web"}))
        .await;
    let pid = project.body["id"].as_str().unwrap();
    let (scoped, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "p", "scope": "project", "projectId": pid}),
        )
        .await;
    let base = format!("/api/v1/keyspaces/{ks}/keys");
    for (who, producer) in [
        ("reader", &reader),
        ("sandbox", &sandbox),
        ("project", &scoped),
    ] {
        let attempts = [
            (
                Method::POST,
                base.clone(),
                json!({"name": "x", "environment": "live"}),
            ),
            (Method::POST, format!("{base}/{id}/rotate"), json!({})),
            (Method::POST, format!("{base}/{id}/resume"), json!({})),
            (
                Method::PATCH,
                format!("{base}/{id}"),
                json!({"credits": {"remaining": 1000000}, "permissions": ["invoices:read", "admin"]}),
            ),
        ];
        for (method, path, body) in attempts {
            let r = s.json(method.clone(), &path, producer, body).await;
            assert!(
                r.status == StatusCode::FORBIDDEN || r.status == StatusCode::NOT_FOUND,
                "{who}: {method} {path} answered {}: {}",
                r.status,
                r.body
            );
            assert!(r.body.get("key").is_none());
        }
    }
    // The key is as it was: suspended, one credit, its one permission; one live key only.
    let r = s.get(&format!("{base}/{id}"), &s.admin_key).await;
    assert!(r.body["suspendedAt"].is_string(), "{}", r.body);
    assert_eq!(r.body["credits"]["remaining"], 1);
    assert_eq!(r.body["permissions"], json!(["invoices:read"]));
    let all = s.get(&base, &s.admin_key).await;
    assert_eq!(
        all.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        all.body
    );
    assert_eq!(
        verify(&s, &verifier, json!({"key": token})).await["code"],
        "SUSPENDED"
    );
}

/// The field names of an object.
fn fields(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The `required` list of schema `name` in `docs/openapi.yaml`.
fn required(spec: &Value, name: &str) -> std::collections::BTreeSet<String> {
    spec["components"]["schemas"][name]["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no required list"))
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// `docs/openapi.yaml` names exactly the fields the server answers: a key space, a key space
/// key, and a verification (the schema and every example of `verifyKey`), found or not.
#[tokio::test]
async fn the_spec_names_exactly_the_fields_of_each_answer() {
    let spec: Value = serde_norway::from_str(include_str!("../../docs/openapi.yaml")).unwrap();
    let s = TestServer::start().await;
    let (ks, verifier) = setup(&s).await;
    let r = s
        .get(&format!("/api/v1/keyspaces/{ks}"), &s.admin_key)
        .await;
    assert_eq!(fields(&r.body), required(&spec, "Keyspace"));
    let (token, minted) = mint(&s, &ks, json!({"credits": {"remaining": 5}})).await;
    let mut key = fields(&minted);
    assert!(key.remove("key"), "the mint answers the token");
    assert_eq!(key, required(&spec, "KeyspaceKey"));

    let schema = required(&spec, "Verification");
    let found = verify(&s, &verifier, json!({"key": token})).await;
    let missing = verify(&s, &verifier, json!({"key": "acme_00000000_x"})).await;
    assert_eq!(found["code"], "VALID");
    assert_eq!(fields(&found), schema);
    assert_eq!(fields(&missing), schema);
    let examples = spec["paths"]["/api/v1/keys/verify"]["post"]["responses"]["200"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .unwrap();
    assert!(examples.len() >= 2);
    for (name, example) in examples {
        assert_eq!(fields(&example["value"]), schema, "example {name}");
    }
}
