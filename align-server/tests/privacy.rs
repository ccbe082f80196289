//! Privacy rights over HTTP against the built server (DESIGN §9, issue 23): the admin-only
//! `privacy:*` permissions and the judge, export and erasure (end to end: a user signs in,
//! mints a key, makes requests, is exported, erased, exported again, and both chains still
//! verify; on SQLite and on PostgreSQL), users listed, corrected, re-roled and deleted,
//! projects deleted, `security.txt`, and the retention metrics. Every `403`/`404`/`409` rule
//! of the new routes has its test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::sync::Arc;

use align_audit::{AuditSink, Stream};
use align_keys::store::KeyStore;
use align_keys::{MIN_PBKDF2_ITERATIONS, PasswordHash, Project, ProjectId, Role, User, UserId};
use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "a long enough console password";
const ENGINEER: &str = "dana@acme.test";
const USER_AGENT: &str = "PrivacyProbe/7.1 (dana's laptop)";

/// A user added to the organisation with a console password, through the server's store.
async fn add_user(store: &dyn KeyStore, email: &str, role: Role, name: Option<&str>) -> User {
    let org = store
        .list_organizations(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let user = User {
        id: UserId::new(),
        organization_id: org,
        email: email.into(),
        name: name.map(Into::into),
        role,
        created_at: Utc::now(),
    };
    store.create_user(&user).await.unwrap();
    let hash = PasswordHash::derive(PASSWORD, MIN_PBKDF2_ITERATIONS).unwrap();
    store.set_user_password(user.id, &hash).await.unwrap();
    user
}

async fn add_project(store: &dyn KeyStore) -> ProjectId {
    let org = store
        .list_organizations(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let p = Project {
        id: ProjectId::new(),
        organization_id: org,
        name: "billing".into(),
        created_at: Utc::now(),
    };
    store.create_project(&p).await.unwrap();
    p.id
}

async fn sqlite_store(s: &TestServer) -> Arc<dyn KeyStore> {
    Arc::new(
        align_keys::SqliteKeyStore::open(s.data_dir().join("align.db"))
            .await
            .unwrap(),
    )
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.console.pbkdf2_iterations = MIN_PBKDF2_ITERATIONS;
        c.webhooks.allow_private_targets = true;
    })
    .await
}

/// One raw HTTP/1.1 exchange: (status, headers, body).
async fn raw(
    s: &TestServer,
    method: &str,
    path: &str,
    cookies: &str,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\norigin: http://localhost\r\n"
    );
    if !cookies.is_empty() {
        head.push_str(&format!("cookie: {cookies}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"));
    let rest = &text[at + marker.len()..];
    &rest[..rest.find(['"', '<']).unwrap()]
}

fn cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A console session: signs `email` in through the form; returns its cookie header and the
/// session's CSRF token.
async fn sign_in(s: &TestServer, email: &str) -> (String, String) {
    let (status, headers, body) = raw(s, "GET", "/console/login", "", None, &[]).await;
    assert_eq!(status, 200);
    let csrf = after(&body, "name=\"csrf\" value=\"").to_owned();
    let pre = format!("align_csrf={}", cookie(&headers, "align_csrf").unwrap());
    let form = format!(
        "csrf={}&email={}&password={}",
        urlencode(&csrf),
        urlencode(email),
        urlencode(PASSWORD)
    );
    let (status, headers, body) = raw(
        s,
        "POST",
        "/console/login",
        &pre,
        Some(&form),
        &[("user-agent", USER_AGENT)],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let jar = format!(
        "align_session={}",
        cookie(&headers, "align_session").unwrap()
    );
    let (_, _, keys) = raw(s, "GET", "/console/keys", &jar, None, &[]).await;
    let csrf = after(&keys, "name=\"csrf\" value=\"").to_owned();
    (jar, csrf)
}

/// Mints a live project key in the console as the signed-in user; returns the token.
async fn console_mint(s: &TestServer, jar: &str, csrf: &str, project: ProjectId) -> String {
    let form = format!(
        "csrf={}&name=laptop&scope=project&projectId={project}&environment=live",
        urlencode(csrf)
    );
    let (status, headers, body) = raw(s, "POST", "/console/keys", jar, Some(&form), &[]).await;
    assert_eq!(status, 303, "{body}");
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .unwrap()
        .1
        .clone();
    let (_, _, page) = raw(s, "GET", &location, jar, None, &[]).await;
    after(&page, "data-testid=\"key-secret\">").to_owned()
}

/// `GET /privacy/export?subject=` as NDJSON lines.
async fn export(s: &TestServer, key: &str, subject: &str) -> (StatusCode, Vec<Value>) {
    let r = s
        .get(&format!("/api/v1/privacy/export?subject={subject}"), key)
        .await;
    if r.status != StatusCode::OK {
        return (r.status, vec![r.body]);
    }
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines = std::str::from_utf8(&r.raw)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (r.status, lines)
}

/// The end-to-end journey on any back-end: `store` is the server's key store.
async fn journey(s: &TestServer, store: &dyn KeyStore) {
    let admin = s.admin_key.clone();
    let project = add_project(store).await;
    let dana = add_user(store, ENGINEER, Role::Engineer, Some("Dana Developer")).await;
    let (jar, csrf) = sign_in(s, ENGINEER).await;
    let token = console_mint(s, &jar, &csrf, project).await;
    for _ in 0..3 {
        let r = s
            .send(
                Method::GET,
                "/api/v1/me",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("user-agent", USER_AGENT),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }

    // Exported: the user record, the key, the audit records of the sign-in and the mint,
    // and the key's requests, with the IP and user agent they were made from.
    let (status, lines) = export(s, &admin, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    let text = serde_json::to_string(&lines).unwrap();
    assert_eq!(lines[0]["kind"], "user");
    assert_eq!(lines[0]["email"], ENGINEER);
    assert_eq!(lines[0]["name"], "Dana Developer");
    assert!(lines.iter().any(|l| l["kind"] == "apiKey"));
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["kind"] == "request" && l["path"] == "/api/v1/me")
        .collect();
    assert_eq!(requests.len(), 3, "{text}");
    // Their console requests too: signed in, the user is the request log's actor.
    assert!(
        lines.iter().any(|l| l["kind"] == "request"
            && l["path"] == "/console/keys"
            && l["actor"]["id"] == dana.id.to_string().as_str()),
        "{text}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r["personal"]["ip"] == "127.0.0.1"
                && r["personal"]["userAgent"] == USER_AGENT),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "audit" && l["action"] == "api_key.created"),
        "{text}"
    );
    assert!(!text.contains(&token), "no token in an export");

    // Erased: a second export holds no IP, user agent, e-mail or name.
    let r = s
        .post(
            "/api/v1/privacy/erasure",
            &admin,
            json!({ "subject": dana.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["subject"], dana.id.to_string());
    assert!(r.body["erasedRecords"].as_u64().unwrap() >= 5, "{}", r.body);
    assert!(r.body["completedAt"].as_str().unwrap().ends_with('Z'));
    let (status, again) = export(s, &admin, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let text = serde_json::to_string(&again).unwrap();
    for gone in [ENGINEER, "Dana Developer", USER_AGENT, "127.0.0.1"] {
        assert!(!text.contains(gone), "{gone} is still in {text}");
    }
    assert!(again.iter().any(|l| l["kind"] == "request"), "records stay");
    // The erased user can no longer sign in (their e-mail is gone); their session ended.
    let (status, _, _) = raw(s, "GET", "/console/keys", &jar, None, &[]).await;
    assert_eq!(status, 303);
}

/// Both chains of `sink` verify.
async fn chains_verify(sink: &dyn AuditSink) {
    for stream in [Stream::Audit, Stream::Request] {
        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{stream:?}: {report:?}");
    }
}

#[tokio::test]
async fn a_user_is_exported_erased_and_the_chains_still_verify() {
    let s = server().await;
    let store = sqlite_store(&s).await;
    journey(&s, store.as_ref()).await;
    let dir = s.stop().await;
    let sink = align_audit::SqliteSink::open(
        dir.path().join("align.db"),
        align_audit::SqliteSinkConfig::default(),
    )
    .await
    .unwrap();
    chains_verify(&sink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_exported_erased_and_the_chains_still_verify_on_postgres() {
    let Some((_scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let db = url.clone();
    let s = TestServer::start_with(move |c| {
        c.database = align_server::Database::Postgres(db);
        c.console.pbkdf2_iterations = MIN_PBKDF2_ITERATIONS;
    })
    .await;
    let store = align_keys::PgKeyStore::connect(&url).await.unwrap();
    journey(&s, &store).await;
    s.stop().await;
    let pool = align_keys::postgres::connect(&url).unwrap();
    let sink = align_audit::PgSink::open(pool, align_audit::PgSinkConfig::default())
        .await
        .unwrap();
    chains_verify(&sink).await;
}

#[tokio::test]
async fn privacy_permissions_belong_to_admins_and_go_through_the_judge() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let store = sqlite_store(&s).await;
    let project = add_project(store.as_ref()).await;
    let dana = add_user(store.as_ref(), ENGINEER, Role::Engineer, None).await;

    // An admin's organisation key with `permissions: null` holds them and mints them.
    let (reader, _) = s
        .mint(
            &admin,
            json!({"name": "dpo", "scope": "organization", "permissions": ["privacy:read"]}),
        )
        .await;
    let (status, _) = export(&s, &reader, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    // Reading is not erasing.
    let r = s
        .post(
            "/api/v1/privacy/erasure",
            &reader,
            json!({"subject": dana.id}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    // A key cannot mint a privacy permission it does not hold.
    let r = s
        .post(
            "/api/v1/keys",
            &reader,
            json!({"name": "wider", "scope": "organization", "permissions": ["privacy:write"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let (minter, _) = s
        .mint(
            &admin,
            json!({"name": "minter", "scope": "organization", "permissions": ["keys:write", "keys:read"]}),
        )
        .await;
    let r = s
        .post(
            "/api/v1/keys",
            &minter,
            json!({"name": "wider", "scope": "organization", "permissions": ["privacy:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // An engineer's key has neither, whatever it asks for.
    let (jar, csrf) = sign_in(&s, ENGINEER).await;
    let engineer = console_mint(&s, &jar, &csrf, project).await;
    let (status, body) = export(&s, &engineer, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    let r = s
        .post(
            "/api/v1/privacy/erasure",
            &engineer,
            json!({"subject": dana.id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post(
            "/api/v1/keys",
            &engineer,
            json!({"name": "x", "scope": "project", "projectId": project, "permissions": ["privacy:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Nor does a project key get them from an admin: they reach every person's data.
    let r = s
        .post(
            "/api/v1/keys",
            &admin,
            json!({"name": "x", "scope": "project", "projectId": project, "permissions": ["privacy:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A sandbox key of the admin is refused too.
    let (sandbox, _) = s
        .mint(
            &admin,
            json!({"name": "sb", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let (status, _) = export(&s, &sandbox, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.stop().await;
}

#[tokio::test]
async fn export_and_erasure_answer_400_and_404_for_bad_subjects() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let r = s.get("/api/v1/privacy/export", &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    for subject in ["not-an-id", &uuid::Uuid::new_v4().to_string()] {
        let (status, body) = export(&s, &admin, subject).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
        let r = s
            .post(
                "/api/v1/privacy/erasure",
                &admin,
                json!({ "subject": subject }),
            )
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    }
    let r = s
        .post("/api/v1/privacy/erasure", &admin, json!({"who": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn an_admins_export_holds_the_requests_of_their_keys() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let me = s.get("/api/v1/me", &admin).await;
    let admin_id = me.body["createdByUserId"].as_str().unwrap().to_owned();
    let key_id = me.body["apiKeyId"].as_str().unwrap().to_owned();
    let (status, lines) = export(&s, &admin, &admin_id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "request" && l["actor"]["id"] == key_id.as_str()),
        "{lines:?}"
    );
    // A key is a subject too: its record and its requests.
    let (status, lines) = export(&s, &admin, &key_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lines[0]["kind"], "apiKey");
    assert!(lines.iter().any(|l| l["kind"] == "request"));
    assert!(lines.iter().all(|l| l["kind"] != "user"));
    s.stop().await;
}

#[tokio::test]
async fn users_are_listed_corrected_and_re_roled_by_the_rules() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let store = sqlite_store(&s).await;
    let project = add_project(store.as_ref()).await;
    let dana = add_user(store.as_ref(), ENGINEER, Role::Engineer, None).await;
    let other = add_user(store.as_ref(), "omar@acme.test", Role::Viewer, None).await;
    let me = s.get("/api/v1/me", &admin).await;
    let admin_id = me.body["createdByUserId"].as_str().unwrap().to_owned();

    let r = s.get("/api/v1/users", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);

    let (jar, csrf) = sign_in(&s, ENGINEER).await;
    let engineer = console_mint(&s, &jar, &csrf, project).await;
    // An engineer sees themselves only.
    let r = s.get("/api/v1/users", &engineer).await;
    assert_eq!(r.status, StatusCode::OK);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], dana.id.to_string());

    // Correcting oneself.
    let path = format!("/api/v1/users/{}", dana.id);
    let r = s
        .json(
            Method::PATCH,
            &path,
            &engineer,
            json!({"name": "Dana D.", "email": "dana.d@acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "Dana D.");
    assert_eq!(r.body["email"], "dana.d@acme.test");
    // Not one's role, not someone else's record.
    let r = s
        .json(Method::PATCH, &path, &engineer, json!({"role": "admin"}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/users/{}", other.id),
            &engineer,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Bad input, unknown users.
    let r = s
        .json(Method::PATCH, &path, &admin, json!({"email": "not mail"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = s
        .json(Method::PATCH, &path, &admin, json!({"role": "owner"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
            &admin,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    // Someone else's e-mail is a conflict.
    let r = s
        .json(
            Method::PATCH,
            &path,
            &admin,
            json!({"email": "omar@acme.test"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    // The admin changes roles; the last admin cannot be demoted.
    let r = s
        .json(Method::PATCH, &path, &admin, json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "viewer");
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            &admin,
            json!({"role": "engineer"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    // Corrections and role changes are audited, naming fields, never values.
    let r = s
        .get(&format!("/api/v1/audit-events?target={}", dana.id), &admin)
        .await;
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.updated"), "{actions:?}");
    assert!(actions.contains(&"user.role_changed"), "{actions:?}");
    assert!(!r.body.to_string().contains("dana.d@acme.test"));
    s.stop().await;
}

#[tokio::test]
async fn deleting_a_user_ends_sessions_erases_data_and_revokes_or_transfers_keys() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let store = sqlite_store(&s).await;
    let project = add_project(store.as_ref()).await;
    let dana = add_user(store.as_ref(), ENGINEER, Role::Engineer, Some("Dana")).await;
    let ada = add_user(store.as_ref(), "ada@acme.test", Role::Admin, None).await;
    let (jar, csrf) = sign_in(&s, ENGINEER).await;
    let token = console_mint(&s, &jar, &csrf, project).await;
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);

    // Only admins delete; not the last admin; a transfer goes to another admin.
    let path = format!("/api/v1/users/{}", dana.id);
    let r = s.json(Method::DELETE, &path, &token, json!(null)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .json(
            Method::DELETE,
            &format!("{path}?transferKeysTo={}", dana.id),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // An empty or malformed transferKeysTo is a bad field, never "revoke the keys" (the
    // fuzzer's finding: `?transferKeysTo=` deleted the user).
    for bad in ["", "not-a-user-id"] {
        let r = s
            .json(
                Method::DELETE,
                &format!("{path}?transferKeysTo={bad}"),
                &admin,
                json!(null),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad:?}"
        );
    }
    let r = s
        .json(
            Method::DELETE,
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Deleted: the session ends, the key is revoked, the person is gone from every record.
    let r = s.json(Method::DELETE, &path, &admin, json!(null)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = s.get("/api/v1/me", &token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "key_revoked")
    );
    let (status, _, _) = raw(&s, "GET", "/console/keys", &jar, None, &[]).await;
    assert_eq!(status, 303, "the session ended");
    let r = s.get("/api/v1/users", &admin).await;
    assert!(!r.body.to_string().contains(ENGINEER));
    let (status, _) = export(&s, &admin, &dana.id.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = s
        .get("/api/v1/audit-events?action=user.deleted", &admin)
        .await;
    assert_eq!(r.body["data"][0]["target"], dana.id.to_string());

    // Ada's keys go to the bootstrap admin and keep working; then the last admin stays.
    let (ajar, acsrf) = sign_in(&s, "ada@acme.test").await;
    let ada_key = console_mint(&s, &ajar, &acsrf, project).await;
    let me = s.get("/api/v1/me", &admin).await;
    let admin_id = me.body["createdByUserId"].as_str().unwrap().to_owned();
    let r = s
        .json(
            Method::DELETE,
            &format!("/api/v1/users/{}?transferKeysTo={admin_id}", ada.id),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = s.get("/api/v1/me", &ada_key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["createdByUserId"], admin_id.as_str());
    let r = s
        .json(
            Method::DELETE,
            &format!("/api/v1/users/{admin_id}"),
            &admin,
            json!(null),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    s.stop().await;
}

#[tokio::test]
async fn a_project_is_deleted_only_without_active_keys_or_enabled_endpoints() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let p = s
        .post("/api/v1/projects", &admin, json!({"name": "gone"}))
        .await;
    let id = p.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/projects/{id}");

    let (key, made) = s
        .mint(
            &admin,
            json!({"name": "p", "scope": "project", "projectId": id}),
        )
        .await;
    // A project key may not delete its own project; nor may it reach another.
    let r = s.json(Method::DELETE, &path, &key, json!(null)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.json(Method::DELETE, &path, &admin, json!(null)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    let kid = made["apiKeyId"].as_str().unwrap();
    s.post(&format!("/api/v1/keys/{kid}/revoke"), &admin, json!({}))
        .await;
    let (sandbox, _) = s
        .mint(
            &admin,
            json!({"name": "sb", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let ep = s
        .post(
            "/api/v1/webhook-endpoints",
            &sandbox,
            json!({"url": "http://127.0.0.1:9/hook", "projectId": id}),
        )
        .await;
    assert_eq!(ep.status, StatusCode::CREATED, "{}", ep.body);
    let r = s.json(Method::DELETE, &path, &admin, json!(null)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "conflict"));
    let ep_id = ep.body["id"].as_str().unwrap();
    let r = s
        .json(
            Method::PATCH,
            &format!("/api/v1/webhook-endpoints/{ep_id}"),
            &sandbox,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = s.json(Method::DELETE, &path, &admin, json!(null)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = s.json(Method::DELETE, &path, &admin, json!(null)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = s.get("/api/v1/projects", &admin).await;
    assert!(!r.body.to_string().contains(&id));
    s.stop().await;
}

#[tokio::test]
async fn security_txt_follows_the_security_contact() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let r = s
        .send(Method::GET, "/.well-known/security.txt", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &admin,
            json!({"securityContact": "security@acme.test", "privacyContact": "privacy@acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["privacyContact"], "privacy@acme.test");
    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &admin,
            json!({"privacyContact": "nobody"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = s
        .send(Method::GET, "/.well-known/security.txt", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = std::str::from_utf8(&r.raw).unwrap();
    assert!(
        text.contains("Contact: mailto:security@acme.test\n"),
        "{text}"
    );
    let expires = text
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let ahead = expires.with_timezone(&Utc) - Utc::now();
    assert!(ahead > chrono::TimeDelta::days(30) && ahead < chrono::TimeDelta::days(366));
    let r = s
        .send(Method::POST, "/.well-known/security.txt", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_what_retention_removed() {
    let s = server().await;
    let r = s.get("/metrics", &s.admin_key).await;
    let text = std::str::from_utf8(&r.raw).unwrap();
    for store in [
        "request_log",
        "audit_log",
        "webhook_deliveries",
        "webhook_attempts",
        "events",
        "sessions",
    ] {
        assert!(
            text.contains(&format!(
                "align_retention_removed_total{{store=\"{store}\"}} 0"
            )),
            "{store}: {text}"
        );
    }
    assert!(text.contains("align_retention_runs_total 0"));
    s.stop().await;
}

#[tokio::test]
async fn the_server_runs_retention_by_itself() {
    let s = TestServer::start_with(|c| {
        c.retention.interval = std::time::Duration::from_millis(300);
    })
    .await;
    let started = std::time::Instant::now();
    loop {
        let r = s.get("/metrics", &s.admin_key).await;
        let text = std::str::from_utf8(&r.raw).unwrap().to_owned();
        let runs: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("align_retention_runs_total "))
            .unwrap()
            .parse()
            .unwrap();
        if runs >= 1 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no retention run: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The SQLite server made the checkpoint key that purging needs.
    assert!(s.data_dir().join("audit-checkpoint-key").exists());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_postgres_run_retention_one_at_a_time() {
    let Some(base) = std::env::var("ALIGN_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: ALIGN_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let db = align_server::Database::Postgres(base);
    let a = align_server::retention::RunLock::for_database(&db).unwrap();
    let b = align_server::retention::RunLock::for_database(&db).unwrap();
    let (hold, held) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(async move {
        a.run(async move {
            let _ = hold.send(());
            let _ = released.await;
            Ok(1)
        })
        .await
        .unwrap()
    });
    held.await.unwrap();
    let skipped = b.run(async { Ok(2) }).await.unwrap();
    assert_eq!(
        skipped, None,
        "the second instance skips while the first runs"
    );
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Some(1));
    assert_eq!(b.run(async { Ok(3) }).await.unwrap(), Some(3), "free again");
}

#[tokio::test]
async fn narrowed_sandbox_and_foreign_project_keys_are_refused_on_people_and_projects() {
    let s = server().await;
    let admin = s.admin_key.clone();
    let me = s.get("/api/v1/me", &admin).await;
    let admin_id = me.body["createdByUserId"].as_str().unwrap().to_owned();
    // A key without organization:read lists no users.
    let (narrow, _) = s
        .mint(
            &admin,
            json!({"name": "narrow", "scope": "organization", "permissions": ["keys:read"]}),
        )
        .await;
    let r = s.get("/api/v1/users", &narrow).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    // A sandbox key changes and deletes no one, not even its own creator's record.
    let (sandbox, _) = s
        .mint(
            &admin,
            json!({"name": "sb", "scope": "organization", "environment": "sandbox"}),
        )
        .await;
    let path = format!("/api/v1/users/{admin_id}");
    let r = s
        .json(Method::PATCH, &path, &sandbox, json!({"name": "Sandy"}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let r = s.json(Method::DELETE, &path, &sandbox, json!(null)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post(
            "/api/v1/privacy/erasure",
            &sandbox,
            json!({"subject": admin_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A project key never reaches another project: 404, as for an object that is not there.
    let a = s
        .post("/api/v1/projects", &admin, json!({"name": "a"}))
        .await;
    let b = s
        .post("/api/v1/projects", &admin, json!({"name": "b"}))
        .await;
    let (in_a, _) = s
        .mint(
            &admin,
            json!({"name": "in-a", "scope": "project", "projectId": a.body["id"]}),
        )
        .await;
    let other = format!("/api/v1/projects/{}", b.body["id"].as_str().unwrap());
    let r = s.json(Method::DELETE, &other, &in_a, json!(null)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = s
        .json(
            Method::DELETE,
            "/api/v1/projects/not-a-uuid",
            &admin,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The admin's own correction works through the API, and is in their export.
    let r = s
        .json(Method::PATCH, &path, &admin, json!({"name": "Ada Admin"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "Ada Admin");
    let (_, lines) = export(&s, &admin, &admin_id).await;
    assert_eq!(lines[0]["name"], "Ada Admin");
    // A person may be named by e-mail as well.
    let (status, by_mail) = export(&s, &admin, "admin@localhost").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_mail[0]["id"], admin_id.as_str());
    s.stop().await;
}
