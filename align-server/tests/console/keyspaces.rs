//! The console's Key spaces pages (DESIGN §12): a key space made and changed in the console,
//! a key minted in it whose token is shown exactly once, the owner filter, revoke, suspend,
//! resume and rotate through the API's own operations (seen by `POST /api/v1/keys/verify`),
//! a key's verifications charted, bad input answered in the form, and the one policy: only
//! admins reach key spaces (organisation-level objects).

use std::time::Duration;

use align_keys::store::Directory;
use align_keys::{Role, SqliteKeyStore};
use http::StatusCode;
use serde_json::{Value, json};

use super::{
    ADMIN, ADMIN_PASSWORD, Browser, ENGINEER, ENGINEER_PASSWORD, Page, Site, audit_records, site,
};

/// The key space id in a `/console/keyspaces/{id}?…` location.
fn keyspace_id(location: &str) -> String {
    let rest = location
        .strip_prefix("/console/keyspaces/")
        .unwrap_or_else(|| panic!("not a key space page: {location}"));
    rest.split(['?', '/']).next().unwrap().to_owned()
}

/// The key id in a `/console/keyspaces/{id}/keys/{keyId}/created` location.
fn minted_id(location: &str) -> String {
    let parts: Vec<&str> = location.split('/').collect();
    match parts.as_slice() {
        ["", "console", "keyspaces", _, "keys", key, "created"] => (*key).to_owned(),
        _ => panic!("not a shown-once page: {location}"),
    }
}

/// The row of key `id` in a key space page.
fn row<'p>(page: &'p Page, id: &str) -> &'p str {
    let at = page
        .body
        .find(&format!("<tr data-key-id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no row of {id} in {}", page.body));
    let row = &page.body[at..];
    &row[..row.find("</tr>").unwrap()]
}

/// An Align key that may only verify.
async fn verifier(site: &Site) -> String {
    let s = &site.server;
    let (token, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "gateway", "scope": "organization", "permissions": ["keys:verify"]}),
        )
        .await;
    token
}

async fn verify(site: &Site, verifier: &str, body: Value) -> Value {
    let r = site
        .server
        .post("/api/v1/keys/verify", verifier, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

impl Browser<'_> {
    /// Creates key space `acme` through the form; returns its id.
    async fn create_keyspace(&mut self, csrf: &str) -> String {
        let made = self
            .post(
                "/console/keyspaces",
                &[
                    ("csrf", csrf),
                    ("name", "Acme API"),
                    ("prefix", "acme"),
                    ("permissions", "invoices:read, invoices:write admin"),
                ],
            )
            .await;
        assert_eq!(made.status, 303, "{}", made.body);
        keyspace_id(made.location())
    }

    /// Mints a key through the form (with `extra` fields; live unless they say); returns the
    /// answer.
    async fn mint_key(&mut self, csrf: &str, ks: &str, extra: &[(&str, &str)]) -> Page {
        let mut form = vec![("csrf", csrf)];
        form.extend_from_slice(extra);
        if !extra.iter().any(|(k, _)| *k == "environment") {
            form.push(("environment", "live"));
        }
        self.post(&format!("/console/keyspaces/{ks}/keys"), &form)
            .await
    }

    /// Mints a key and reads its token from the shown-once page; returns (key id, token).
    async fn minted(&mut self, csrf: &str, ks: &str, extra: &[(&str, &str)]) -> (String, String) {
        let made = self.mint_key(csrf, ks, extra).await;
        assert_eq!(made.status, 303, "{}", made.body);
        let id = minted_id(made.location());
        let token = self
            .get(made.location())
            .await
            .testid("key-secret")
            .unwrap();
        (id, token)
    }
}

#[tokio::test]
async fn a_minted_key_is_shown_once_listed_without_its_token_and_revoked_through_the_console() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let keys = b.get("/console/keys").await;
    assert!(keys.body.contains("data-testid=\"nav-keyspaces\""));

    let ks = b.create_keyspace(&csrf).await;
    let list = b.get("/console/keyspaces").await;
    assert!(
        list.body
            .contains(&format!("<tr data-keyspace-id=\"{ks}\">"))
    );
    let page = b.get(&format!("/console/keyspaces/{ks}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.testid("keyspace-prefix").unwrap(), "acme_");
    assert_eq!(
        page.testid("keyspace-permissions").unwrap(),
        "invoices:read, invoices:write, admin"
    );
    for p in ["invoices:read", "invoices:write", "admin"] {
        assert!(
            page.body.contains(&format!(
                "type=\"checkbox\" name=\"permissions\" value=\"{p}\""
            )),
            "{p}"
        );
    }

    let made = b
        .mint_key(
            &csrf,
            &ks,
            &[
                ("name", "cus_1 production"),
                ("ownerId", "cus_1"),
                ("permissions", "invoices:read"),
                ("permissions", "admin"),
                ("creditsRemaining", "5"),
                ("refillAmount", "10"),
                ("refillInterval", "day"),
                ("ratelimits", "requests 100 60\r\n"),
                ("expiresAt", "2099-01-31T12:00"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let id = minted_id(made.location());
    let dialog = b.get(made.location()).await;
    assert!(
        dialog
            .body
            .contains("<dialog open data-testid=\"key-dialog\"")
    );
    assert_eq!(
        dialog.testid("key-warning").unwrap(),
        "Copy this key now. It will not be shown again."
    );
    let token = dialog.testid("key-secret").unwrap();
    assert!(token.starts_with("acme_"), "{token}");
    assert!(!made.location().contains(&token));

    // Exactly once: a reload shows that it was shown, and no page holds it.
    let reload = b.get(made.location()).await;
    assert_eq!(
        reload.testid("key-gone").unwrap(),
        "This key was shown once and cannot be shown again."
    );
    assert!(!reload.body.contains(&token));
    let page = b.get(&format!("/console/keyspaces/{ks}")).await;
    assert!(!page.body.contains(&token));
    let r = row(&page, &id);
    for (col, text) in [
        ("owner", "cus_1"),
        ("environment", "live"),
        ("credits", "5 (refilled to 10 each day)"),
        ("limits", "requests: 100 per 60 s"),
    ] {
        assert!(
            r.contains(&format!("data-col=\"{col}\">{text}</td>")),
            "{col}: {r}"
        );
    }
    assert!(r.contains(">active</span>"), "{r}");
    let key_page = b.get(&format!("/console/keyspaces/{ks}/keys/{id}")).await;
    assert_eq!(
        key_page.testid("key-permissions").unwrap(),
        "invoices:read, admin"
    );
    assert!(!key_page.body.contains(&token));

    let verifier = verifier(&site).await;
    let v = verify(&site, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["ownerId"], "cus_1");
    assert_eq!(v["credits"]["remaining"], 4);
    assert_eq!(v["expiresAt"], "2099-01-31T12:00:00.000Z");

    let revoked = b
        .post(
            &format!("/console/keyspaces/{ks}/keys/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(
        revoked.location(),
        format!("/console/keyspaces/{ks}?env=live")
    );
    let v = verify(&site, &verifier, json!({"key": token})).await;
    assert_eq!(v["code"], "REVOKED", "{v}");
    let page = b.get(revoked.location()).await;
    let r = row(&page, &id);
    assert!(r.contains(">revoked</span>"), "{r}");
    assert!(!r.contains("revoke-key"), "{r}");

    // The audit log names the user, as the API names the key.
    let mine = audit_records(&site.server, &format!("&actor={}", site.admin)).await;
    let actions: Vec<&str> = mine.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in [
        "keyspace.created",
        "keyspace_key.created",
        "keyspace_key.revoked",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    site.server.stop().await;
}

#[tokio::test]
async fn the_key_list_filters_by_owner_and_environment() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let ks = b.create_keyspace(&csrf).await;
    let (a, _) = b
        .minted(&csrf, &ks, &[("name", "a"), ("ownerId", "cus_a")])
        .await;
    let (other, _) = b
        .minted(&csrf, &ks, &[("name", "b"), ("ownerId", "cus_b")])
        .await;
    let (sandbox, token) = b
        .minted(
            &csrf,
            &ks,
            &[
                ("name", "s"),
                ("ownerId", "cus_a"),
                ("environment", "sandbox"),
            ],
        )
        .await;
    assert!(token.starts_with("acme_"));

    let all = b.get(&format!("/console/keyspaces/{ks}")).await;
    assert_eq!(all.body.matches("<tr data-key-id=").count(), 2);
    let mine = b
        .get(&format!("/console/keyspaces/{ks}?ownerId=cus_a"))
        .await;
    assert_eq!(mine.body.matches("<tr data-key-id=").count(), 1);
    assert!(mine.body.contains(&format!("<tr data-key-id=\"{a}\">")));
    assert!(!mine.body.contains(&other));
    let sandboxed = b
        .get(&format!(
            "/console/keyspaces/{ks}?env=sandbox&ownerId=cus_a"
        ))
        .await;
    assert_eq!(sandboxed.body.matches("<tr data-key-id=").count(), 1);
    assert!(
        sandboxed
            .body
            .contains(&format!("<tr data-key-id=\"{sandbox}\">"))
    );
    let nobody = b
        .get(&format!("/console/keyspaces/{ks}?ownerId=cus_z"))
        .await;
    assert_eq!(nobody.body.matches("<tr data-key-id=").count(), 0);
    assert!(
        nobody
            .body
            .contains("No key of this owner in this environment.")
    );
    site.server.stop().await;
}

#[tokio::test]
async fn suspend_resume_and_rotate_go_through_the_apis_operations() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let ks = b.create_keyspace(&csrf).await;
    let (id, token) = b.minted(&csrf, &ks, &[("name", "rotating")]).await;
    let verifier = verifier(&site).await;
    let act = |action: &'static str| format!("/console/keyspaces/{ks}/keys/{id}/{action}");

    let suspended = b
        .post(&act("suspend"), &[("csrf", &csrf), ("from", "key")])
        .await;
    assert_eq!(suspended.status, 303, "{}", suspended.body);
    assert_eq!(
        suspended.location(),
        format!("/console/keyspaces/{ks}/keys/{id}?env=live")
    );
    assert_eq!(
        verify(&site, &verifier, json!({"key": token})).await["code"],
        "SUSPENDED"
    );
    let page = b.get(suspended.location()).await;
    assert_eq!(page.testid("key-status").unwrap(), "suspended");
    assert!(page.body.contains("data-testid=\"resume-key\""));
    b.post(&act("resume"), &[("csrf", &csrf)]).await;
    assert_eq!(
        verify(&site, &verifier, json!({"key": token})).await["code"],
        "VALID"
    );

    let rotated = b
        .post(&act("rotate"), &[("csrf", &csrf), ("graceSeconds", "600")])
        .await;
    assert_eq!(rotated.status, 303, "{}", rotated.body);
    let next_id = minted_id(rotated.location());
    assert_ne!(next_id, id);
    let next = b
        .get(rotated.location())
        .await
        .testid("key-secret")
        .unwrap();
    assert_ne!(next, token);
    assert!(b.get(rotated.location()).await.testid("key-gone").is_some());
    assert_eq!(
        verify(&site, &verifier, json!({"key": next})).await["code"],
        "VALID"
    );
    // The old key works for the grace period.
    assert_eq!(
        verify(&site, &verifier, json!({"key": token})).await["code"],
        "VALID"
    );
    let refused = b
        .post(
            &act("rotate"),
            &[("csrf", &csrf), ("graceSeconds", "9999999")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .testid("error")
            .unwrap()
            .contains("graceSeconds is at most")
    );
    assert_eq!(
        b.post(&act("explode"), &[("csrf", &csrf)]).await.status,
        404
    );
    site.server.stop().await;
}

#[tokio::test]
async fn a_key_pages_usage_charts_its_verifications() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let ks = b.create_keyspace(&csrf).await;
    let (id, token) = b
        .minted(
            &csrf,
            &ks,
            &[("name", "charted"), ("permissions", "invoices:read")],
        )
        .await;
    let path = format!("/console/keyspaces/{ks}/keys/{id}");
    let before = b.get(&path).await;
    assert!(
        before
            .body
            .contains("aria-label=\"0 requests, last 24 hours\"")
    );
    assert!(before.body.contains("data-testid=\"no-verifications\""));

    let verifier = verifier(&site).await;
    for _ in 0..3 {
        assert_eq!(
            verify(&site, &verifier, json!({"key": token})).await["code"],
            "VALID"
        );
    }
    let v = verify(
        &site,
        &verifier,
        json!({"key": token, "permissions": "invoices:write"}),
    )
    .await;
    assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS");
    let mut page = b.get(&path).await;
    for _ in 0..100 {
        if page
            .body
            .contains("aria-label=\"4 requests, last 24 hours\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = b.get(&path).await;
    }
    assert_eq!(page.status, 200);
    assert_eq!(page.testid("key-name").as_deref(), Some("charted"));
    assert!(
        page.body
            .contains("aria-label=\"4 requests, last 24 hours\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("aria-label=\"4 requests, last 30 days\"")
    );
    assert!(page.body.contains("class=\"succeeded\""));
    assert!(page.body.contains("class=\"client-errors\""));
    let table = &page.body[page
        .body
        .find("data-testid=\"latest-verifications\"")
        .unwrap()..];
    assert_eq!(table.matches("<code>VALID</code>").count(), 3);
    assert_eq!(
        table
            .matches("<code>INSUFFICIENT_PERMISSIONS</code>")
            .count(),
        1
    );
    assert!(!page.body.contains(&token));
    // Another key space's id in the path, or an unknown key, has no page.
    let other = b
        .post(
            "/console/keyspaces",
            &[("csrf", &csrf), ("name", "Other"), ("prefix", "other")],
        )
        .await;
    let other = keyspace_id(other.location());
    assert_eq!(
        b.get(&format!("/console/keyspaces/{other}/keys/{id}"))
            .await
            .status,
        404
    );
    assert_eq!(
        b.get(&format!(
            "/console/keyspaces/{ks}/keys/00000000-0000-4000-8000-000000000000"
        ))
        .await
        .status,
        404
    );
    site.server.stop().await;
}

#[tokio::test]
async fn bad_input_is_answered_in_the_form_that_sent_it_and_keeps_what_was_typed() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let refused = b
        .post(
            "/console/keyspaces",
            &[("csrf", &csrf), ("name", "Taken"), ("prefix", "ako")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.testid("error").unwrap().contains("prefix"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"Taken\""));
    let ks = b.create_keyspace(&csrf).await;
    let twice = b
        .post(
            "/console/keyspaces",
            &[("csrf", &csrf), ("name", "Again"), ("prefix", "acme")],
        )
        .await;
    assert_eq!(twice.status, 409);
    assert!(
        twice
            .testid("error")
            .unwrap()
            .contains("already has a key space")
    );

    let bad = b
        .mint_key(
            &csrf,
            &ks,
            &[
                ("name", "kept name"),
                ("ownerId", "cus_9"),
                ("ratelimits", "requests 100"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.testid("error").unwrap().contains("line 1"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("value=\"kept name\""));
    assert!(bad.body.contains("value=\"cus_9\""));
    let unknown = b
        .mint_key(
            &csrf,
            &ks,
            &[("name", "x"), ("permissions", "refunds:write")],
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert!(unknown.body.contains("data-testid=\"error\""));
    assert_eq!(unknown.body.matches("<tr data-key-id=").count(), 0);

    // Rename and a new vocabulary; a bad one is answered beside the settings.
    let saved = b
        .post(
            &format!("/console/keyspaces/{ks}"),
            &[
                ("csrf", &csrf),
                ("name", "Acme v2"),
                ("permissions", "invoices:read refunds:write"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = b.get(saved.location()).await;
    assert_eq!(page.testid("keyspace-name").unwrap(), "Acme v2");
    assert_eq!(
        page.testid("keyspace-permissions").unwrap(),
        "invoices:read, refunds:write"
    );
    let bad = b
        .post(
            &format!("/console/keyspaces/{ks}"),
            &[
                ("csrf", &csrf),
                ("name", "Acme v3"),
                ("permissions", "not a:valid:name"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("value=\"Acme v3\""));
    let fields: Vec<Value> = audit_records(&site.server, "&action=keyspace.updated")
        .await
        .iter()
        .map(|r| r["metadata"]["fields"].clone())
        .collect();
    assert_eq!(fields, [json!(["name", "permissions"])]);
    site.server.stop().await;
}

#[tokio::test]
async fn engineers_and_viewers_reach_no_key_space_and_create_none() {
    let site = site().await;
    let mut admin = Browser::new(&site);
    let admin_csrf = admin.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let ks = admin.create_keyspace(&admin_csrf).await;

    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ENGINEER, ENGINEER_PASSWORD).await;
    let store = SqliteKeyStore::open(site.server.data_dir().join("align.db"))
        .await
        .unwrap();
    for role in [Role::Engineer, Role::Viewer] {
        store.set_user_role(site.engineer, role).await.unwrap();
        let keys = b.get("/console/keys").await;
        assert!(keys.testid("whoami").unwrap().contains(&role.to_string()));
        assert!(!keys.body.contains("nav-keyspaces"), "{role}");
        assert_eq!(b.get("/console/keyspaces").await.status, 404, "{role}");
        assert_eq!(b.get(&format!("/console/keyspaces/{ks}")).await.status, 404);
        let made = b
            .post(
                "/console/keyspaces",
                &[("csrf", &csrf), ("name", "Mine"), ("prefix", "mine")],
            )
            .await;
        assert_eq!(made.status, 404, "{role}: {}", made.body);
        let minted = b.mint_key(&csrf, &ks, &[("name", "mine")]).await;
        assert_eq!(minted.status, 404, "{role}");
    }
    let spaces = site
        .server
        .get("/api/v1/keyspaces", &site.server.admin_key)
        .await;
    assert_eq!(spaces.body["data"].as_array().unwrap().len(), 1);
    let keys = site
        .server
        .get(
            &format!("/api/v1/keyspaces/{ks}/keys"),
            &site.server.admin_key,
        )
        .await;
    assert_eq!(keys.body["data"], json!([]));
    site.server.stop().await;
}
