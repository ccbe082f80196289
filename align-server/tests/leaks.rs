//! Leaked keys over HTTP against the built server (DESIGN §10): GitHub secret-scanning
//! reports signed by the test with a real ECDSA P-256 key pair (written in GitHub's
//! public-keys JSON), `report-compromise`, the leak policy, and the security contact's e-mail
//! through an SMTP server the test runs on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use base64::Engine as _;
use http::{Method, StatusCode};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use support::{Reply, TestServer};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

/// Header names and values of one request.
type Headers = Vec<(&'static str, String)>;

const INTAKE: &str = "/api/v1/secret-scanning/github";
const TOKEN_TYPE: &str = "align_live_api_key";

/// A GitHub-like signer: an ECDSA P-256 key pair and its identifier.
struct Signer {
    id: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new(id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            id: id.to_owned(),
            pair,
            rng,
        }
    }

    /// The public key as GitHub publishes it: PEM SubjectPublicKeyInfo.
    fn public_pem(&self) -> String {
        p256::PublicKey::from_sec1_bytes(self.pair.public_key().as_ref())
            .unwrap()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    /// Base64 DER ECDSA P-256/SHA-256 signature over `body`.
    fn sign(&self, body: &[u8]) -> String {
        let sig = self.pair.sign(&self.rng, body).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }
}

/// GitHub's public-keys document listing `signers` (the first is current).
fn keys_json(signers: &[&Signer]) -> String {
    let keys: Vec<Value> = signers
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"key_identifier": s.id, "key": s.public_pem(), "is_current": i == 0}))
        .collect();
    json!({ "public_keys": keys }).to_string()
}

/// A server whose intake trusts `signers`; `smtp` is a `notifications.smtp_url`.
async fn server(signers: &[&Signer], smtp: Option<String>) -> (TestServer, tempfile::TempDir) {
    let keys_dir = tempfile::tempdir().unwrap();
    let path = keys_dir.path().join("github-keys.json");
    std::fs::write(&path, keys_json(signers)).unwrap();
    let s = TestServer::start_with(|c| {
        c.secret_scanning.github_keys_file = Some(path);
        c.notifications.smtp_url = smtp;
    })
    .await;
    (s, keys_dir)
}

fn matches(tokens: &[&str], url: &str) -> Vec<u8> {
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "type": TOKEN_TYPE, "url": url, "source": "content"}))
        .collect();
    serde_json::to_vec(&items).unwrap()
}

/// Posts `body` to the intake with the given key id and signature.
async fn post_report(s: &TestServer, key_id: &str, signature: &str, body: Vec<u8>) -> Reply {
    s.send(
        Method::POST,
        INTAKE,
        &[
            ("content-type", "application/json"),
            ("github-public-key-identifier", key_id),
            ("github-public-key-signature", signature),
        ],
        Some(body),
    )
    .await
}

/// A report of `tokens` found at `url`, signed by `signer`.
async fn report(s: &TestServer, signer: &Signer, tokens: &[&str], url: &str) -> Reply {
    let body = matches(tokens, url);
    let sig = signer.sign(&body);
    post_report(s, &signer.id, &sig, body).await
}

async fn mint(s: &TestServer, name: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "scope": "organization"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (token, view) = s.mint(&s.admin_key, body).await;
    (token, view["apiKeyId"].as_str().unwrap().to_owned())
}

/// How many audit records of `action` the admin sees.
async fn audit_count(s: &TestServer, action: &str) -> usize {
    let r = s
        .get(
            &format!("/api/v1/audit-events?action={action}&limit=200"),
            &s.admin_key,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().len()
}

/// The events of `event_type` the admin sees (live).
async fn events_of(s: &TestServer, key: &str, event_type: &str) -> Vec<Value> {
    let r = s.get("/api/v1/events?limit=200", key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == event_type)
        .cloned()
        .collect()
}

async fn leaks(s: &TestServer) -> Vec<Value> {
    let r = s.get("/api/v1/leaks", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_signed_report_of_a_live_key_revokes_it_and_the_next_request_gets_key_revoked() {
    let github = Signer::new("gh-current");
    let (s, _keys) = server(&[&github], None).await;
    let (token, id) = mint(&s, "prod-sync", json!({})).await;
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);

    let url = "https://github.com/acme/app/blob/abc123/.env";
    let r = report(&s, &github, &[&token], url).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!([{"token_raw": token, "token_type": TOKEN_TYPE, "label": "true_positive"}])
    );

    let me = s.get("/api/v1/me", &token).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.code(), "key_revoked");

    let listed = leaks(&s).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["apiKeyId"], id.as_str());
    assert_eq!(listed[0]["action"], "revoked");
    assert_eq!(listed[0]["url"], url);
    assert_eq!(listed[0]["reporter"], "github_secret_scanning");

    let audit = s
        .get("/api/v1/audit-events?action=api_key.leaked", &s.admin_key)
        .await;
    let records = audit.body["data"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{}", audit.body);
    assert_eq!(records[0]["metadata"]["url"], url);
    assert_eq!(records[0]["target"], id.as_str());
    assert!(
        !audit
            .raw
            .windows(token.len())
            .any(|w| w == token.as_bytes())
    );
    assert_eq!(audit_count(&s, "api_key.revoked").await, 1);

    let leaked = events_of(&s, &s.admin_key, "api_key.leaked").await;
    assert_eq!(leaked.len(), 1);
    assert_eq!(leaked[0]["data"]["apiKeyId"], id.as_str());
    assert_eq!(leaked[0]["data"]["leak"]["url"], url);
    assert_eq!(leaked[0]["data"]["leak"]["action"], "revoked");
    s.stop().await;
}

#[tokio::test]
async fn bad_signatures_unknown_key_ids_and_tampered_bodies_are_refused_and_change_nothing() {
    let github = Signer::new("gh-current");
    let impostor = Signer::new("gh-current");
    let (s, _keys) = server(&[&github], None).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let body = matches(&[&token], "https://github.com/acme/app/blob/1/.env");
    let good = github.sign(&body);
    let other_body = matches(&[&token], "https://github.com/acme/app/blob/2/.env");

    let cases: Vec<(&str, Headers, Vec<u8>)> = vec![
        ("no signature headers", vec![], body.clone()),
        (
            "no signature",
            vec![("github-public-key-identifier", github.id.clone())],
            body.clone(),
        ),
        (
            "unknown key identifier",
            vec![
                ("github-public-key-identifier", "gh-unknown".into()),
                ("github-public-key-signature", good.clone()),
            ],
            body.clone(),
        ),
        (
            "tampered body",
            vec![
                ("github-public-key-identifier", github.id.clone()),
                ("github-public-key-signature", good.clone()),
            ],
            other_body,
        ),
        (
            "signed by another key under the same identifier",
            vec![
                ("github-public-key-identifier", github.id.clone()),
                ("github-public-key-signature", impostor.sign(&body)),
            ],
            body.clone(),
        ),
        (
            "not base64",
            vec![
                ("github-public-key-identifier", github.id.clone()),
                ("github-public-key-signature", "%%%not-base64%%%".into()),
            ],
            body.clone(),
        ),
        (
            "not DER",
            vec![
                ("github-public-key-identifier", github.id.clone()),
                (
                    "github-public-key-signature",
                    base64::engine::general_purpose::STANDARD.encode(b"garbage"),
                ),
            ],
            body.clone(),
        ),
    ];
    for (what, headers, body) in cases {
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let r = s.send(Method::POST, INTAKE, &all, Some(body)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(r.code(), "invalid_signature", "{what}");
        assert!(r.header("x-request-id").is_some(), "{what}");
    }
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    assert!(leaks(&s).await.is_empty());
    assert_eq!(audit_count(&s, "api_key.leaked").await, 0);
    assert!(
        events_of(&s, &s.admin_key, "api_key.leaked")
            .await
            .is_empty()
    );

    // The good signature over the real body is accepted: the cases above failed for their
    // defect alone.
    let r = post_report(&s, &github.id, &good, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn a_rotated_keys_file_accepts_the_old_and_the_new_key() {
    let new = Signer::new("gh-new");
    let old = Signer::new("gh-old");
    let (s, _keys) = server(&[&new, &old], None).await;
    let (a, _) = mint(&s, "a", json!({})).await;
    let (b, _) = mint(&s, "b", json!({})).await;
    let r = report(&s, &old, &[&a], "https://github.com/acme/app/blob/1/a").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = report(&s, &new, &[&b], "https://github.com/acme/app/blob/1/b").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(leaks(&s).await.len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn false_positives_are_labelled_and_change_nothing() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    // Valid checksum, never an Align key of this server.
    let stranger = align_keys::token::generate(align_keys::Environment::Live)
        .unwrap()
        .token
        .expose()
        .to_owned();
    // The real key with one character changed: its checksum no longer matches.
    let mut mistyped = token.clone().into_bytes();
    let i = 20;
    mistyped[i] = if mistyped[i] == b'a' { b'b' } else { b'a' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    let tokens = [stranger.as_str(), mistyped.as_str(), "ako_notatoken"];
    let r = report(&s, &github, &tokens, "https://github.com/acme/app/blob/1/x").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let labels: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["false_positive"; 3]);
    assert_eq!(r.body[1]["token_raw"], mistyped.as_str());
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    assert!(leaks(&s).await.is_empty());
    assert_eq!(audit_count(&s, "api_key.leaked").await, 0);
    s.stop().await;
}

#[tokio::test]
async fn the_same_report_twice_has_one_effect() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let url = "https://github.com/acme/app/commit/abc";
    for _ in 0..2 {
        let r = report(&s, &github, &[&token], url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body[0]["label"], "true_positive");
    }
    assert_eq!(leaks(&s).await.len(), 1);
    assert_eq!(audit_count(&s, "api_key.leaked").await, 1);
    assert_eq!(audit_count(&s, "api_key.revoked").await, 1);
    assert_eq!(events_of(&s, &s.admin_key, "api_key.leaked").await.len(), 1);

    // Found somewhere else too: a new report of a key already revoked.
    let r = report(&s, &github, &[&token], "https://gist.github.com/x/1").await;
    assert_eq!(r.body[0]["label"], "true_positive");
    let listed = leaks(&s).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["action"], "already_inactive");
    assert_eq!(audit_count(&s, "api_key.revoked").await, 1);
    s.stop().await;
}

#[tokio::test]
async fn the_notify_policy_and_sandbox_keys_report_without_revoking() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let org = s.get("/api/v1/organization", &s.admin_key).await;
    assert_eq!(org.body["leakedKeyAction"], "revoke");
    assert_eq!(org.body["leakedSandboxKeyAction"], "notify");

    let (sandbox, _) = mint(&s, "sandbox", json!({"environment": "sandbox"})).await;
    let r = report(&s, &github, &[&sandbox], "https://github.com/a/b/1").await;
    assert_eq!(r.body[0]["label"], "true_positive");
    assert_eq!(s.get("/api/v1/me", &sandbox).await.status, StatusCode::OK);
    assert_eq!(leaks(&s).await[0]["action"], "notified");
    assert_eq!(events_of(&s, &sandbox, "api_key.leaked").await.len(), 1);

    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &s.admin_key,
            json!({"leakedKeyAction": "notify", "leakedSandboxKeyAction": "revoke"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["leakedKeyAction"], "notify");
    let bad = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &s.admin_key,
            json!({"leakedKeyAction": "shrug"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let (live, _) = mint(&s, "live", json!({})).await;
    report(&s, &github, &[&live], "https://github.com/a/b/2").await;
    assert_eq!(s.get("/api/v1/me", &live).await.status, StatusCode::OK);
    report(&s, &github, &[&sandbox], "https://github.com/a/b/3").await;
    let me = s.get("/api/v1/me", &sandbox).await;
    assert_eq!(me.code(), "key_revoked");
    let actions: Vec<Value> = leaks(&s)
        .await
        .iter()
        .map(|l| l["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [json!("notified"), json!("notified"), json!("revoked")]
    );
    s.stop().await;
}

#[tokio::test]
async fn report_compromise_revokes_at_once_for_those_who_may_revoke() {
    let s = TestServer::start().await;
    let (victim, victim_id) = mint(&s, "victim", json!({})).await;
    let (reader, _) = mint(&s, "reader", json!({"permissions": ["keys:read"]})).await;
    let path = format!("/api/v1/keys/{victim_id}/report-compromise");

    let r = s.post(&path, &reader, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .post(
            "/api/v1/keys/00000000-0000-4000-8000-000000000000/report-compromise",
            &s.admin_key,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.post(&path, &s.admin_key, json!({"color": "red"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A project key does not reach an organisation key: 404, as for revoke.
    let p = s
        .post("/api/v1/projects", &s.admin_key, json!({"name": "billing"}))
        .await;
    let project = p.body["id"].as_str().unwrap();
    let (scoped, _) = s
        .mint(
            &s.admin_key,
            json!({"name": "p", "scope": "project", "projectId": project}),
        )
        .await;
    let r = s.post(&path, &scoped, json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/me", &victim).await.status, StatusCode::OK);

    // Notify-only policy does not matter: a customer's own report revokes.
    s.json(
        Method::PATCH,
        "/api/v1/organization",
        &s.admin_key,
        json!({"leakedKeyAction": "notify"}),
    )
    .await;
    let reason = format!("pasted in a chat: {victim}");
    let r = s
        .post(&path, &s.admin_key, json!({ "reason": reason }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["action"], "revoked");
    assert_eq!(r.body["reporter"], "customer");
    assert!(r.body["key"]["revokedAt"].is_string());
    assert!(
        !r.raw.windows(victim.len()).any(|w| w == victim.as_bytes()),
        "the reason's token is masked"
    );
    let me = s.get("/api/v1/me", &victim).await;
    assert_eq!(me.code(), "key_revoked");

    let again = s.post(&path, &s.admin_key, json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], r.body["id"]);
    assert_eq!(audit_count(&s, "api_key.leaked").await, 1);
    assert_eq!(leaks(&s).await.len(), 1);
    // The reader may list reports (keys:read), not make them.
    let listed = s.get("/api/v1/leaks", &reader).await;
    assert_eq!(listed.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn without_a_keys_file_no_report_verifies() {
    let github = Signer::new("gh");
    let s = TestServer::start().await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let r = report(&s, &github, &[&token], "https://github.com/a/b/1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "invalid_signature");
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);
    let r = s.get(INTAKE, &s.admin_key).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

#[tokio::test]
async fn a_keys_file_put_in_place_after_the_start_is_read_at_the_next_report() {
    let github = Signer::new("gh");
    let keys_dir = tempfile::tempdir().unwrap();
    let path = keys_dir.path().join("github-keys.json");
    let configured = path.clone();
    let s = TestServer::start_with(|c| c.secret_scanning.github_keys_file = Some(configured)).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let url = "https://github.com/a/b/1";
    let r = report(&s, &github, &[&token], url).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    std::fs::write(&path, keys_json(&[&github])).unwrap();
    let r = report(&s, &github, &[&token], url).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(s.get("/api/v1/me", &token).await.code(), "key_revoked");
    s.stop().await;
}

#[tokio::test]
async fn a_report_without_a_content_type_is_read_as_json() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let body = matches(&[&token], "https://github.com/a/b/1");
    let sig = github.sign(&body);
    let r = s
        .send(
            Method::POST,
            INTAKE,
            &[
                ("github-public-key-identifier", "gh"),
                ("github-public-key-signature", &sig),
            ],
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .send(
            Method::POST,
            INTAKE,
            &[
                ("content-type", "text/plain"),
                ("github-public-key-identifier", "gh"),
                ("github-public-key-signature", &sig),
            ],
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A body that is not an array of matches, however well signed, is 400.
    let body = br#"{"token":"x"}"#.to_vec();
    let sig = github.sign(&body);
    let r = post_report(&s, "gh", &sig, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// A tiny SMTP server on loopback: accepts every message and hands its DATA to `tx`.
async fn smtp_server() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.to_ascii_uppercase();
                    if verb.starts_with("EHLO") || verb.starts_with("HELO") {
                        write.write_all(b"250 test\r\n").await.unwrap();
                    } else if verb.starts_with("DATA") {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        let _ = tx.send(data);
                        write.write_all(b"250 queued\r\n").await.unwrap();
                    } else if verb.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        write.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (format!("smtp://{addr}"), rx)
}

#[tokio::test]
async fn each_leak_e_mails_the_security_contact_once_without_the_secret() {
    let (smtp, mut mail) = smtp_server().await;
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], Some(smtp)).await;
    let r = s
        .json(
            Method::PATCH,
            "/api/v1/organization",
            &s.admin_key,
            json!({"securityContact": "security@acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (leaked, _) = mint(&s, "prod-sync", json!({})).await;
    let (reported, reported_id) = mint(&s, "ci", json!({})).await;

    let url = "https://github.com/acme/app/blob/abc/.env";
    for _ in 0..2 {
        report(&s, &github, &[&leaked], url).await;
    }
    s.post(
        &format!("/api/v1/keys/{reported_id}/report-compromise"),
        &s.admin_key,
        json!({"reason": "laptop stolen"}),
    )
    .await;

    let wait = Duration::from_secs(10);
    let first = tokio::time::timeout(wait, mail.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(wait, mail.recv())
        .await
        .unwrap()
        .unwrap();
    let mut both = [first, second];
    both.sort_by_key(|m| m.contains("laptop stolen"));
    let [github_mail, customer_mail] = both;
    for (m, token) in [(&github_mail, &leaked), (&customer_mail, &reported)] {
        assert!(m.contains("To: security@acme.test"), "{m}");
        assert!(m.contains(&token[..12]), "the prefix is named: {m}");
        assert!(!m.contains(token.as_str()), "never the token: {m}");
        assert!(!m.contains(&token[13..]), "never the secret: {m}");
        assert!(m.contains("revoked"), "{m}");
    }
    assert!(github_mail.contains(url), "{github_mail}");
    assert!(
        github_mail.contains("GitHub secret scanning"),
        "{github_mail}"
    );
    // The repeated report sent nothing more.
    let more = tokio::time::timeout(Duration::from_secs(1), mail.recv()).await;
    assert!(more.is_err(), "one message per leak: {more:?}");
    s.stop().await;
}

#[tokio::test]
async fn on_postgresql_a_report_to_one_instance_is_refused_by_the_other_within_a_second() {
    let Some((_scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let github = Signer::new("gh");
    let files = tempfile::tempdir().unwrap();
    let keys_file = files.path().join("github-keys.json");
    std::fs::write(&keys_file, keys_json(&[&github])).unwrap();
    let secrets = files.path().join("secrets-key");
    let start = |url: String| {
        let (keys_file, secrets) = (keys_file.clone(), secrets.clone());
        TestServer::start_with(move |c| {
            c.database = align_server::Database::Postgres(url);
            c.secrets_key_file = Some(secrets);
            c.secret_scanning.github_keys_file = Some(keys_file);
        })
    };
    let a = start(url.clone()).await;
    let b = start(url).await;
    let admin = a.admin_key.clone();
    let (token, view) = a
        .mint(&admin, json!({"name": "shared", "scope": "organization"}))
        .await;
    assert_eq!(b.get("/api/v1/me", &token).await.status, StatusCode::OK);

    let r = report(
        &a,
        &github,
        &[&token],
        "https://github.com/acme/app/blob/1/x",
    )
    .await;
    assert_eq!(r.body[0]["label"], "true_positive", "{}", r.body);
    let reported = std::time::Instant::now();
    loop {
        let me = b.get("/api/v1/me", &token).await;
        if me.status == StatusCode::UNAUTHORIZED {
            assert_eq!(me.code(), "key_revoked");
            break;
        }
        assert!(
            reported.elapsed() < Duration::from_secs(1),
            "B still accepts the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The report is in the shared store: B lists it, and a repeat through B changes nothing.
    let listed = b.get("/api/v1/leaks", &admin).await;
    assert_eq!(listed.body["data"][0]["apiKeyId"], view["apiKeyId"]);
    report(
        &b,
        &github,
        &[&token],
        "https://github.com/acme/app/blob/1/x",
    )
    .await;
    let listed = b.get("/api/v1/leaks", &admin).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn a_repeat_finishes_a_revocation_a_crash_left_undone() {
    use align_keys::{
        KeyId, LeakAction, LeakReport, LeakReportId, LeakStore as _, OrganizationId, Reporter,
        SqliteKeyStore,
    };
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let (token, key_id) = mint(&s, "prod-sync", json!({})).await;
    let id: KeyId = key_id.parse().unwrap();
    let org: OrganizationId = s.get("/api/v1/me", &token).await.body["organizationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // What a process that died right after recording the report left behind: the report says
    // "revoked", the key is still active.
    let url = "https://github.com/acme/app/blob/1/.env";
    let store = SqliteKeyStore::open(s.data_dir().join("align.db"))
        .await
        .unwrap();
    let reporter = Reporter::GithubSecretScanning;
    let report = LeakReport {
        id: LeakReportId::new(),
        fingerprint: LeakReport::fingerprint_of(reporter, id, Some(url), Some("content")),
        organization_id: org,
        project_id: None,
        key_id: id,
        key_prefix: token[..12].to_owned(),
        environment: align_keys::Environment::Live,
        reporter,
        token_type: Some(TOKEN_TYPE.into()),
        url: Some(url.into()),
        source: Some("content".into()),
        reason: None,
        reported_at: chrono::Utc::now(),
        action: LeakAction::Revoked,
    };
    assert!(store.record_leak(&report).await.unwrap().1);
    assert_eq!(s.get("/api/v1/me", &token).await.status, StatusCode::OK);

    // GitHub retries the report: the revocation happens, once.
    for _ in 0..2 {
        let r = report_of(&s, &github, &token, url).await;
        assert_eq!(r.body[0]["label"], "true_positive");
    }
    assert_eq!(s.get("/api/v1/me", &token).await.code(), "key_revoked");
    assert_eq!(leaks(&s).await.len(), 1);
    assert_eq!(audit_count(&s, "api_key.revoked").await, 1);
    assert_eq!(audit_count(&s, "api_key.leaked").await, 1);
    s.stop().await;
}

#[tokio::test]
async fn copies_of_one_report_sent_at_once_have_one_effect() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let (token, _) = mint(&s, "prod-sync", json!({})).await;
    let url = "https://github.com/acme/app/blob/1/.env";
    let replies = futures_all(
        (0..8)
            .map(|_| report_of(&s, &github, &token, url))
            .collect(),
    )
    .await;
    for r in replies {
        assert_eq!(r.body[0]["label"], "true_positive", "{}", r.body);
    }
    assert_eq!(leaks(&s).await.len(), 1);
    assert_eq!(audit_count(&s, "api_key.leaked").await, 1);
    assert_eq!(audit_count(&s, "api_key.revoked").await, 1);
    assert_eq!(events_of(&s, &s.admin_key, "api_key.leaked").await.len(), 1);
    assert_eq!(
        events_of(&s, &s.admin_key, "api_key.revoked").await.len(),
        1
    );
    s.stop().await;
}

async fn report_of(s: &TestServer, signer: &Signer, token: &str, url: &str) -> Reply {
    report(s, signer, &[token], url).await
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn a_reported_keyspace_key_is_a_true_positive_and_revoked_and_a_stranger_is_not() {
    let github = Signer::new("gh");
    let (s, _keys) = server(&[&github], None).await;
    let r = s
        .post(
            "/api/v1/keyspaces",
            &s.admin_key,
            json!({"name": "customers", "prefix": "acme", "permissions": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ks = r.body["id"].as_str().unwrap().to_owned();
    let r = s
        .post(
            &format!("/api/v1/keyspaces/{ks}/keys"),
            &s.admin_key,
            json!({"name": "customer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body["key"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    let tag = align_keys::keyspace_token::KeyspaceTag::new("acme").unwrap();
    let stranger = align_keys::keyspace_token::generate_keyspace_token(&tag)
        .unwrap()
        .token
        .expose()
        .to_owned();
    let url = "https://github.com/acme/app/blob/abc123/config.js";
    let r = report(&s, &github, &[&token, &stranger], url).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[0]["label"], "true_positive", "{}", r.body);
    assert_eq!(r.body[1]["label"], "false_positive", "{}", r.body);
    let v = s
        .post("/api/v1/keys/verify", &s.admin_key, json!({"key": token}))
        .await;
    assert_eq!(v.body["code"], "REVOKED", "{}", v.body);
    let audit = s
        .get(
            "/api/v1/audit-events?action=keyspace_key.leaked",
            &s.admin_key,
        )
        .await;
    let records = audit.body["data"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{}", audit.body);
    assert_eq!(records[0]["target"], id.as_str());
    assert_eq!(records[0]["metadata"]["url"], url);
    assert_eq!(records[0]["metadata"]["action"], "revoked");
    s.stop().await;
}
