//! Regressions for the permission findings of the first outside security review (issue 20),
//! each over HTTP against a running server: a credential-producing operation is judged as a
//! mint of its result (findings 1 and 2), sandbox keys change no organisation-wide object
//! (6), a credential header sent twice is ambiguous (7), and metrics need an operator's
//! credential (9).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use std::time::Duration;

use align_keys::store::Directory;
use align_keys::{
    Environment, KeyManager, NewKey, Organization, OrganizationId, Role, Scope, Sha256Hasher,
    SqliteKeyStore, User, UserId,
};
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Reply, TestServer};

/// The bootstrap admin key's id.
async fn admin_key_id(s: &TestServer) -> String {
    let me = s.get("/api/v1/me", &s.admin_key).await;
    me.body["apiKeyId"].as_str().unwrap().to_owned()
}

async fn patch(s: &TestServer, key: &str, id: &str, body: Value) -> Reply {
    s.json(Method::PATCH, &format!("/api/v1/keys/{id}"), key, body)
        .await
}

async fn act(s: &TestServer, key: &str, id: &str, action: &str, body: Value) -> Reply {
    s.post(&format!("/api/v1/keys/{id}/{action}"), key, body)
        .await
}

fn id_of(resource: &Value) -> String {
    resource["apiKeyId"].as_str().unwrap().to_owned()
}

fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
    assert_eq!(r.code(), "forbidden", "{what}");
}

async fn new_project(s: &TestServer) -> String {
    let r = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "billing"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn store(s: &TestServer) -> SqliteKeyStore {
    SqliteKeyStore::open(s.data_dir().join("align.db"))
        .await
        .unwrap()
}

/// An engineer of the server's organisation and a live key of theirs for `project`, minted
/// by the operator as `align keys create` would.
async fn engineer_key(s: &TestServer, project: &str) -> (UserId, String) {
    let store = store(s).await;
    let org = store
        .list_organizations(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let engineer = User {
        id: UserId::new(),
        organization_id: org,
        email: "dev@acme.test".into(),
        name: None,
        role: Role::Engineer,
        created_at: Utc::now(),
    };
    store.create_user(&engineer).await.unwrap();
    let keys = KeyManager::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(Sha256Hasher),
    );
    let minted = keys
        .mint(
            NewKey {
                name: "dev".into(),
                organization_id: org,
                scope: Scope::Project(project.parse().unwrap()),
                permissions: None,
                environment: Environment::Live,
                created_by: engineer.id,
                expires_at: None,
                rate_limit_per_minute: None,
                allowed_cidrs: vec![],
                owner_id: None,
                meta: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    (engineer.id, minted.token.expose().to_owned())
}

/// The server caches a creator's role for a second.
async fn demote(s: &TestServer, user: UserId) {
    store(s)
        .await
        .set_user_role(user, Role::Viewer)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
}

#[tokio::test]
async fn finding_1_a_narrowed_key_cannot_take_over_a_broader_one_by_rotating_it() {
    let s = TestServer::start().await;
    let admin_id = admin_key_id(&s).await;
    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "narrow", "scope": "organization",
                   "permissions": ["keys:read", "keys:write"]}),
        )
        .await;
    let r = act(&s, &narrow, &admin_id, "rotate", json!({"graceSeconds": 0})).await;
    assert_refused(&r, "rotating the admin key");
    assert!(r.body.get("key").is_none());
    assert_eq!(
        s.get("/api/v1/me", &s.admin_key).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/v1/audit-events", &narrow).await.status,
        StatusCode::FORBIDDEN
    );
    // The refusal is audited.
    let audit = s
        .get(
            "/api/v1/audit-events?action=permission.denied",
            &s.admin_key,
        )
        .await;
    assert!(
        audit.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"].as_str().unwrap().contains(&admin_id)),
        "{}",
        audit.body
    );
    // The narrow key may still rotate a key no broader than itself.
    let (_, peer) = s
        .mint(
            &s.admin_key,
            json!({"name": "peer", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    let r = act(
        &s,
        &narrow,
        &id_of(&peer),
        "rotate",
        json!({"graceSeconds": 0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["permissions"], json!(["keys:read"]));
}

#[tokio::test]
async fn finding_1_inside_a_project_a_keys_only_key_cannot_rotate_a_sibling_with_every_permission()
{
    let s = TestServer::start().await;
    let project = new_project(&s).await;
    let (keys_only, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "keys-only", "scope": "project", "projectId": project,
                   "permissions": ["keys:read", "keys:write"]}),
        )
        .await;
    let (_, sibling) = s
        .mint(
            &s.admin_key,
            json!({"name": "all", "scope": "project", "projectId": project}),
        )
        .await;
    let r = act(&s, &keys_only, &id_of(&sibling), "rotate", json!({})).await;
    assert_refused(&r, "rotating a broader sibling");
    let r = s
        .post(
            "/api/v1/webhook-endpoints",
            &keys_only,
            json!({"url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn finding_1_a_narrowed_key_cannot_resume_a_key_an_admin_suspended() {
    let s = TestServer::start().await;
    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "narrow", "scope": "organization",
                   "permissions": ["keys:read", "keys:write"]}),
        )
        .await;
    let (broad, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "broad", "scope": "organization"}),
        )
        .await;
    let id = id_of(&resource);
    let r = act(&s, &s.admin_key, &id, "suspend", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = act(&s, &narrow, &id, "resume", json!({})).await;
    assert_refused(&r, "resuming a broader key");
    assert_eq!(s.get("/api/v1/me", &broad).await.code(), "key_suspended");
    // The admin may resume it.
    let r = act(&s, &s.admin_key, &id, "resume", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.get("/api/v1/me", &broad).await.status, StatusCode::OK);
}

#[tokio::test]
async fn finding_1_a_rotated_successor_holds_no_more_than_its_producers_current_role() {
    let s = TestServer::start().await;
    let project = new_project(&s).await;
    let (engineer, dev_key) = engineer_key(&s, &project).await;
    let me = s.get("/api/v1/me", &dev_key).await;
    let r = act(
        &s,
        &dev_key,
        me.body["apiKeyId"].as_str().unwrap(),
        "rotate",
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let successor = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(r.body["createdByUserId"], json!(engineer.to_string()));
    demote(&s, engineer).await;
    let r = s
        .post(
            "/api/v1/keys",
            &successor,
            json!({"name": "x", "scope": "project", "projectId": project}),
        )
        .await;
    assert_refused(&r, "minting with the successor of a demoted creator");
}

#[tokio::test]
async fn finding_2_a_key_cannot_widen_its_own_rate_limit_networks_or_expiry() {
    let s = TestServer::start().await;
    let (key, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "limited", "scope": "organization"}),
        )
        .await;
    let id = id_of(&resource);
    let r = patch(
        &s,
        &s.admin_key,
        &id,
        json!({"rateLimitPerMinute": 10, "allowedCidrs": ["127.0.0.1/32"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = patch(&s, &key, &id, json!({"rateLimitPerMinute": 60000})).await;
    assert_refused(&r, "raising its own rate");
    let r = patch(&s, &key, &id, json!({"rateLimitPerMinute": null})).await;
    assert_refused(&r, "clearing its own rate back to the default");
    let r = patch(&s, &key, &id, json!({"allowedCidrs": []})).await;
    assert_refused(&r, "clearing its own allow-list");
    let r = patch(&s, &key, &id, json!({"allowedCidrs": ["0.0.0.0/0"]})).await;
    assert_refused(&r, "widening its own allow-list");
    let r = s.get(&format!("/api/v1/keys/{id}"), &s.admin_key).await;
    assert_eq!(r.body["rateLimitPerMinute"], json!(10));
    assert_eq!(r.body["allowedCidrs"], json!(["127.0.0.1/32"]));

    // Narrowing itself is fine.
    let r = patch(&s, &key, &id, json!({"rateLimitPerMinute": 5})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // A key minted with an expiry cannot make itself live forever or longer.
    let soon = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (expiring, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "expiring", "scope": "organization", "expiresAt": soon}),
        )
        .await;
    let id = id_of(&resource);
    let r = patch(&s, &expiring, &id, json!({"expiresAt": null})).await;
    assert_refused(&r, "clearing its own expiry");
    let later = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = patch(&s, &expiring, &id, json!({"expiresAt": later})).await;
    assert_refused(&r, "extending its own expiry");
    // Nor mint a key that outlives it: what it leaves unset, the new key inherits.
    let r = s
        .post(
            "/api/v1/keys",
            &expiring,
            json!({"name": "forever", "scope": "organization", "permissions": ["keys:read"],
                   "expiresAt": later}),
        )
        .await;
    assert_refused(&r, "minting a key that outlives it");
    let (_, child) = s
        .mint(
            &expiring,
            json!({"name": "child", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    assert_eq!(child["expiresAt"], resource["expiresAt"]);
}

#[tokio::test]
async fn finding_2_expired_and_rotated_out_keys_are_final() {
    let s = TestServer::start().await;
    let soon = (Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (expired, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "short", "scope": "organization", "expiresAt": soon}),
        )
        .await;
    let expired_id = id_of(&resource);
    let (_, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "old", "scope": "organization"}),
        )
        .await;
    let rotated_id = id_of(&resource);
    let r = act(
        &s,
        &s.admin_key,
        &rotated_id,
        "rotate",
        json!({"graceSeconds": 0}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(s.get("/api/v1/me", &expired).await.code(), "key_expired");

    for id in [&expired_id, &rotated_id] {
        let r = patch(&s, &s.admin_key, id, json!({"expiresAt": null})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(r.code(), "key_not_active");
        let later = (Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let r = patch(&s, &s.admin_key, id, json!({"expiresAt": later})).await;
        assert_eq!(r.code(), "key_not_active");
        for action in ["resume", "rotate"] {
            let r = act(&s, &s.admin_key, id, action, json!({})).await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.body);
            assert_eq!(r.code(), "key_not_active", "{action}");
        }
    }
    assert_eq!(s.get("/api/v1/me", &expired).await.code(), "key_expired");
    // Revoked keys too.
    let (revoked, resource) = s
        .mint(
            &s.admin_key,
            json!({"name": "gone", "scope": "organization"}),
        )
        .await;
    let id = id_of(&resource);
    act(&s, &s.admin_key, &id, "revoke", json!({})).await;
    for action in ["resume", "rotate"] {
        assert_eq!(
            act(&s, &s.admin_key, &id, action, json!({})).await.code(),
            "key_not_active"
        );
    }
    assert_eq!(s.get("/api/v1/me", &revoked).await.code(), "key_revoked");
}

#[tokio::test]
async fn finding_6_a_sandbox_key_changes_no_organisation_wide_data() {
    let s = TestServer::start().await;
    let (sandbox, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "sandbox", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &sandbox,
            json!({"securityContact": "attacker@example.com"}),
        )
        .await;
    assert_refused(&r, "PATCH /organization");
    let r = s
        .post(
            "/api/v1/projects",
            &sandbox,
            json!({"name": "from-sandbox"}),
        )
        .await;
    assert_refused(&r, "POST /projects");
    // Reading stays allowed, and nothing changed.
    let r = s.get("/api/v1/organization", &sandbox).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_ne!(r.body["securityContact"], json!("attacker@example.com"));
    let projects = s.get("/api/v1/projects", &s.admin_key).await;
    assert!(
        !projects.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "from-sandbox")
    );
}

#[tokio::test]
async fn finding_7_a_credential_header_sent_twice_is_ambiguous() {
    let s = TestServer::start().await;
    let (other, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "other", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    let a = format!("Bearer {}", s.admin_key);
    let b = format!("Bearer {other}");
    let joined = format!("{a}, {b}");
    let cases: [&[(&str, &str)]; 7] = [
        &[("authorization", &joined)],
        &[("x-api-key", &format!("{}, {other}", s.admin_key))],
        &[("authorization", &a), ("authorization", &b)],
        &[("authorization", &b), ("authorization", &a)],
        &[("authorization", &a), ("authorization", &a)],
        &[("x-api-key", &s.admin_key), ("x-api-key", &other)],
        &[("authorization", &a), ("x-api-key", &other)],
    ];
    for headers in cases {
        let r = s.send(Method::GET, "/api/v1/me", headers, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}: {}", r.body);
        assert_eq!(r.code(), "ambiguous_credentials", "{headers:?}");
    }
    // The same key in both headers, once each, is fine.
    let r = s
        .send(
            Method::GET,
            "/api/v1/me",
            &[("authorization", &a), ("x-api-key", &s.admin_key)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

const METRICS_TOKEN: &str = "test-fixture-metrics-token-0123456789abcdef";

#[tokio::test]
async fn finding_9_metrics_need_an_operator_credential() {
    let s = TestServer::start_with(|c| c.metrics.token = Some(METRICS_TOKEN.into())).await;
    let (narrow, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "keys-star", "scope": "organization",
                   "permissions": ["keys:read", "keys:write"]}),
        )
        .await;
    assert_refused(&s.get("/metrics", &narrow).await, "a narrowed admin key");
    let r = s.get("/metrics", METRICS_TOKEN).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        std::str::from_utf8(&r.raw)
            .unwrap()
            .contains("align_http_requests")
    );
    let wrong = s
        .get("/metrics", "test-fixture-metrics-token-0123456789abcdeX")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // An admin key with every permission reads them in a one-organisation deployment...
    assert_eq!(s.get("/metrics", &s.admin_key).await.status, StatusCode::OK);
    // ...but not once the deployment holds another organisation's data.
    store(&s)
        .await
        .create_organization(&Organization {
            id: OrganizationId::new(),
            name: "Other".into(),
            privacy_contact: None,
            security_contact: None,
            leak_policy: align_keys::LeakPolicy::default(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    assert_refused(
        &s.get("/metrics", &s.admin_key).await,
        "an organisation's admin",
    );
    assert_eq!(
        s.get("/metrics", METRICS_TOKEN).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn x_ratelimit_reset_is_never_more_than_the_window() {
    let s = TestServer::start().await;
    let (fresh, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "fresh", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    // The very first request of a fresh key (issue 24: it once showed 61), then more.
    for _ in 0..30 {
        let r = s.get("/api/v1/me", &fresh).await;
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(
            reset <= 60,
            "X-RateLimit-Reset {reset} is more than the 60 s window"
        );
    }
    // A server whose keys have 1,000,000 per minute (issue 24: above 65,535 it refused to
    // start): a fresh key works, and its first answers say so, with the reset in the window.
    let s = TestServer::start_with(|c| c.rate_limit_per_minute = 1_000_000).await;
    let (big, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "big", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    for n in 0..30u64 {
        let r = s.get("/api/v1/me", &big).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-ratelimit-limit"), Some("1000000"));
        let remaining: u64 = r.header("x-ratelimit-remaining").unwrap().parse().unwrap();
        assert_eq!(remaining, 1_000_000 - 1 - n);
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset <= 60, "X-RateLimit-Reset {reset} for the big key");
    }
}
