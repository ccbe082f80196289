//! The developer console over real HTTP (a raw HTTP/1.1 client with a cookie jar, plain or
//! TLS), without a browser: sign-in and its throttling, cookies, CSRF and origin checks, the
//! role rules, the shown-once secret, revocation, audit records and events, webhooks, and
//! that no secret reaches a page after its dialog or the data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

// The Key spaces pages' tests, beside the harness they share (a crate root's `mod` would name
// tests/keyspaces.rs, the API's own test target).
#[path = "console/keyspaces.rs"]
mod keyspaces;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use align_keys::store::Directory;
use align_keys::{
    MIN_PBKDF2_ITERATIONS, PasswordHash, Project, ProjectId, Role, SqliteKeyStore, User, UserId,
};
use chrono::Utc;
use http::StatusCode;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use support::TestServer;
use support::receiver::Receiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const ADMIN: &str = "admin@localhost";
const ADMIN_PASSWORD: &str = "correct horse battery staple";
const ENGINEER: &str = "dev@acme.test";
const ENGINEER_PASSWORD: &str = "engineer's own long password";

/// A server with the console, a project, and passwords for its admin and an engineer.
struct Site {
    server: TestServer,
    origin: String,
    tls: Option<tokio_rustls::TlsConnector>,
    project: ProjectId,
    engineer: UserId,
    admin: UserId,
}

async fn site() -> Site {
    site_with(|_| {}).await
}

async fn site_with(adjust: impl FnOnce(&mut align_server::Config)) -> Site {
    let server = TestServer::start_with(|c| {
        c.console.pbkdf2_iterations = MIN_PBKDF2_ITERATIONS;
        c.webhooks.allow_private_targets = true;
        c.webhooks.poll_interval = Duration::from_millis(50);
        adjust(c);
    })
    .await;
    let (admin, engineer, project) = seed_users(&server).await;
    Site {
        server,
        origin: "http://localhost".into(),
        tls: None,
        project,
        engineer,
        admin,
    }
}

/// Sets the admin's password and adds an engineer with one, and a project, through the same
/// database file the server uses (as `align users set-password` does).
async fn seed_users(server: &TestServer) -> (UserId, UserId, ProjectId) {
    let store = SqliteKeyStore::open(server.data_dir().join("align.db"))
        .await
        .unwrap();
    let org = store
        .list_organizations(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let admin = store
        .list_users(org, &Default::default())
        .await
        .unwrap()
        .data[0]
        .clone();
    let hash = |p: &str| PasswordHash::derive(p, MIN_PBKDF2_ITERATIONS).unwrap();
    store
        .set_user_password(admin.id, &hash(ADMIN_PASSWORD))
        .await
        .unwrap();
    let engineer = User {
        id: UserId::new(),
        organization_id: org,
        email: ENGINEER.into(),
        name: None,
        role: Role::Engineer,
        created_at: Utc::now(),
    };
    store.create_user(&engineer).await.unwrap();
    store
        .set_user_password(engineer.id, &hash(ENGINEER_PASSWORD))
        .await
        .unwrap();
    let project = Project {
        id: ProjectId::new(),
        organization_id: org,
        name: "billing".into(),
        created_at: Utc::now(),
    };
    store.create_project(&project).await.unwrap();
    (admin.id, engineer.id, project.id)
}

/// One HTTP answer.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `csrf` input.
    fn csrf(&self) -> String {
        self.attribute_after("name=\"csrf\" value=\"")
    }

    fn attribute_after(&self, marker: &str) -> String {
        let at = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker} in {}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// The text of the element with `data-testid="{id}"` (up to the next tag).
    fn testid(&self, id: &str) -> Option<String> {
        let marker = format!("data-testid=\"{id}\"");
        let at = self.body.find(&marker)?;
        let rest = &self.body[at..];
        let text = &rest[rest.find('>')? + 1..];
        Some(text[..text.find('<')?].to_owned())
    }

    fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }
}

/// A browser without a browser: a cookie jar and raw HTTP/1.1 requests.
struct Browser<'a> {
    site: &'a Site,
    jar: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(site: &'a Site) -> Self {
        Self {
            site,
            jar: BTreeMap::new(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.request("GET", path, None, None).await
    }

    /// A same-origin form post.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.site.origin.clone();
        self.request("POST", path, Some(form), Some(&origin)).await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        origin: Option<&str>,
    ) -> Page {
        let request = raw_request(method, path, &self.jar, form, origin);
        let raw = exchange(
            self.site.server.addr,
            self.site.tls.as_ref(),
            request.as_bytes(),
        )
        .await;
        let page = parse(&raw);
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        page
    }

    /// Fills and sends the sign-in form.
    async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let login = self.get("/console/login").await;
        assert_eq!(login.status, 200);
        let csrf = login.csrf();
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// Signs in and returns the session's CSRF token (from the key list).
    async fn signed_in(&mut self, email: &str, password: &str) -> String {
        let r = self.sign_in(email, password).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let keys = self.get("/console/keys").await;
        assert_eq!(keys.status, 200);
        keys.csrf()
    }

    /// Creates a key through the form; returns the redirect answer.
    async fn create_key(&mut self, csrf: &str, name: &str, scope: &str, env: &str) -> Page {
        let project = self.site.project.to_string();
        self.post(
            "/console/keys",
            &[
                ("csrf", csrf),
                ("name", name),
                ("scope", scope),
                ("projectId", &project),
                ("environment", env),
            ],
        )
        .await
    }
}

/// An HTTP/1.1 request (closing its connection) with the cookies in `jar`, and `form`
/// URL-encoded as its body.
fn raw_request(
    method: &str,
    path: &str,
    jar: &BTreeMap<String, String>,
    form: Option<&[(&str, &str)]>,
    origin: Option<&str>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    if !jar.is_empty() {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        head.push_str(&format!("cookie: {}\r\n", cookies.join("; ")));
    }
    if let Some(o) = origin {
        head.push_str(&format!("origin: {o}\r\n"));
    }
    let body = form.map(encode_form).unwrap_or_default();
    if form.is_some() {
        head.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    head
}

async fn exchange(
    addr: SocketAddr,
    tls: Option<&tokio_rustls::TlsConnector>,
    request: &[u8],
) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tls {
        None => roundtrip(tcp, request).await,
        Some(connector) => {
            let name = ServerName::try_from("localhost").unwrap();
            roundtrip(connector.connect(name, tcp).await.unwrap(), request).await
        }
    }
}

async fn roundtrip(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

fn parse(raw: &[u8]) -> Page {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Page {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn encode_form(form: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The key id in a `/console/keys/{id}/created` location.
fn created_id(location: &str) -> String {
    let id = location
        .strip_prefix("/console/keys/")
        .and_then(|r| r.strip_suffix("/created"))
        .unwrap_or_else(|| panic!("not a created page: {location}"));
    id.to_owned()
}

/// The organisation's keys as the admin's API key sees them.
async fn api_keys(s: &TestServer) -> Vec<Value> {
    let r = s.get("/api/v1/keys?limit=200", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body["data"].as_array().unwrap().clone()
}

async fn audit_records(s: &TestServer, query: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/audit-events?limit=200{query}"),
            &s.admin_key,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_right_password_opens_a_session_and_a_wrong_one_is_refused() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let start = b.get("/console").await;
    assert_eq!((start.status, start.location()), (303, "/console/login"));
    let keys = b.get("/console/keys").await;
    assert_eq!((keys.status, keys.location()), (303, "/console/login"));

    let wrong = b.sign_in(ADMIN, "not the password at all").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.testid("error").unwrap(), "Wrong email or password");
    assert!(wrong.set_cookie("align_session").is_none());
    let nobody = b.sign_in("nobody@acme.test", ADMIN_PASSWORD).await;
    assert_eq!(nobody.status, 401);
    assert_eq!(nobody.testid("error").unwrap(), "Wrong email or password");

    let ok = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!((ok.status, ok.location()), (303, "/console/keys"));
    let list = b.get("/console/keys").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.testid("whoami").unwrap(), "admin@localhost (admin)");
    for header in [
        "Name",
        "Prefix",
        "Scope",
        "Project",
        "Environment",
        "Created",
        "Last used",
        "Status",
    ] {
        assert!(
            list.body.contains(&format!("<th>{header}</th>")),
            "{header}"
        );
    }
    assert_eq!(
        list.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    assert_eq!(list.header("cache-control"), Some("no-store"));
    assert_eq!(list.header("x-frame-options"), Some("DENY"));
    assert_eq!(list.header("referrer-policy"), Some("same-origin"));
    assert_eq!(
        list.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for asset in ["/console/static/console.js", "/console/static/console.css"] {
        let a = b.get(asset).await;
        assert_eq!(a.status, 200, "{asset}");
    }
    assert!(!list.body.contains("<script>"), "no inline script");
    site.server.stop().await;
}

#[tokio::test]
async fn the_sixth_failure_is_throttled_and_then_even_the_right_password_is_refused() {
    let site = site().await;
    let mut b = Browser::new(&site);
    for attempt in 1..=5 {
        let r = b.sign_in(ADMIN, "a wrong password here").await;
        assert_eq!(r.status, 401, "attempt {attempt}");
    }
    let sixth = b.sign_in(ADMIN, "a wrong password here").await;
    assert_eq!(sixth.status, 429);
    assert!(
        sixth
            .testid("error")
            .unwrap()
            .contains("Too many sign-in attempts")
    );
    let retry: u64 = sixth.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let right = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(right.status, 429);
    assert!(right.set_cookie("align_session").is_none());
    assert!(!b.jar.contains_key("align_session"));
    // Another account is not locked by this one's failures.
    let other = b.sign_in(ENGINEER, ENGINEER_PASSWORD).await;
    assert_eq!(other.status, 303);
    site.server.stop().await;
}

/// Fires one sign-in attempt per `(email, password)` at once, each on its own connection, all
/// with the sign-in form's CSRF token from `browser`; returns the answers' statuses in the
/// order they arrive. When `then` is given, it is sent once the first `429` has arrived (or
/// every attempt has been answered), and its answer is returned too.
async fn parallel_sign_ins(
    browser: &mut Browser<'_>,
    attempts: &[(String, &str)],
    then: Option<(&str, &str)>,
) -> (Vec<u16>, Option<Page>) {
    let login = browser.get("/console/login").await;
    assert_eq!(login.status, 200);
    let csrf = login.csrf();
    let (addr, origin) = (browser.site.server.addr, browser.site.origin.clone());
    let sign_in = |email: &str, password: &str| {
        let form = [
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ];
        let request = raw_request(
            "POST",
            "/console/login",
            &browser.jar,
            Some(&form),
            Some(&origin),
        );
        async move { parse(&exchange(addr, None, request.as_bytes()).await) }
    };
    let mut running = tokio::task::JoinSet::new();
    for (email, password) in attempts {
        running.spawn(sign_in(email, password));
    }
    let mut statuses = Vec::new();
    while let Some(page) = running.join_next().await {
        statuses.push(page.unwrap().status);
        if statuses.last() == Some(&429) {
            break;
        }
    }
    let last = match then {
        Some((email, password)) => Some(sign_in(email, password).await),
        None => None,
    };
    while let Some(page) = running.join_next().await {
        statuses.push(page.unwrap().status);
    }
    (statuses, last)
}

/// Finding 3 of issue 20: the throttle was checked before PBKDF2 and the failure counted after
/// it, so 40 parallel attempts for one e-mail were all checked (and the right password, sent
/// while they ran, signed in), and 300 parallel guesses from one IP cost 144 PBKDF2 runs. Each
/// attempt now takes its slot before any work: at most 5 per e-mail and 20 per IP are ever
/// checked (`401`); the rest are refused at once (`429`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_parallel_sign_ins_cannot_outrun_the_throttle() {
    let one = site().await;
    let mut b = Browser::new(&one);
    let wrong: Vec<(String, &str)> = (0..40)
        .map(|_| (ADMIN.to_owned(), "a wrong password here"))
        .collect();
    let (statuses, right) = parallel_sign_ins(&mut b, &wrong, Some((ADMIN, ADMIN_PASSWORD))).await;
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(statuses.len(), 40);
    // Checked and wrong: 401; refused before any work: 429. (A check that waited too long for
    // a free PBKDF2 slot on a loaded machine is 503, and was not run either.)
    assert_eq!(count(429), 35, "{statuses:?}");
    assert_eq!(count(401) + count(503), 5, "{statuses:?}");
    let right = right.unwrap();
    assert_eq!(
        right.status, 429,
        "the right password does not sign in while throttled"
    );
    assert!(right.set_cookie("align_session").is_none());
    let retry: u64 = right.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    let failed = audit_records(&one.server, "&action=user.sign_in_failed").await;
    assert_eq!(
        failed.len(),
        count(401),
        "only checked attempts are failures"
    );
    one.server.stop().await;

    // Guesses at unknown e-mails from one IP, each costing a PBKDF2 against the decoy.
    let fresh = site().await;
    let mut b = Browser::new(&fresh);
    let guesses: Vec<(String, &str)> = (0..300)
        .map(|i| (format!("guess{i}@nowhere.test"), "some password or other"))
        .collect();
    let (statuses, _) = parallel_sign_ins(&mut b, &guesses, None).await;
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(statuses.len(), 300);
    assert_eq!(count(429), 280, "at most 20 PBKDF2 runs per IP");
    assert_eq!(count(401) + count(503), 20, "{statuses:?}");
    fresh.server.stop().await;
}

#[tokio::test]
async fn cookies_are_http_only_strict_scoped_to_the_console_and_not_secure_over_http() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let login = b.get("/console/login").await;
    let pre = login.set_cookie("align_csrf").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(pre.contains(attribute), "{pre}");
    }
    let ok = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let session = ok.set_cookie("align_session").unwrap();
    for attribute in ["; HttpOnly", "; SameSite=Strict", "; Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    let max_age: u64 = session
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 12 * 3600);
    // Signing in with a session cookie already set (say, planted by someone else) gives a
    // new session and ends the old one: the old token no longer opens anything.
    let old = b.jar.remove("align_session").unwrap();
    let csrf = b.get("/console/login").await.csrf();
    b.jar.insert("align_session".into(), old.clone());
    let again = b
        .post(
            "/console/login",
            &[
                ("csrf", &csrf),
                ("email", ADMIN),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.status, 303);
    assert_ne!(b.jar["align_session"], old);
    let mut replay = Browser::new(&site);
    replay.jar.insert("align_session".into(), old);
    assert_eq!(replay.get("/console/keys").await.status, 303);
    site.server.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_when_the_server_runs_tls() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut site = site_with(move |c| {
        c.tls_cert_file = Some(cert);
        c.tls_key_file = Some(key);
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(generated.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    site.tls = Some(tokio_rustls::TlsConnector::from(Arc::new(config)));
    site.origin = "https://localhost".into();
    let mut b = Browser::new(&site);
    let login = b.get("/console/login").await;
    assert!(
        login
            .set_cookie("align_csrf")
            .unwrap()
            .ends_with("; Secure")
    );
    let ok = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let session = ok.set_cookie("align_session").unwrap();
    assert!(session.ends_with("; Secure"), "{session}");
    // Over TLS, an http:// origin is another origin.
    let csrf = b.get("/console/keys").await.csrf();
    let r = b
        .request(
            "POST",
            "/console/logout",
            Some(&[("csrf", &csrf)]),
            Some("http://localhost"),
        )
        .await;
    assert_eq!(r.status, 403);
    let Site { server, .. } = site;
    server.stop().await;
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_origin_are_refused_and_make_nothing() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let project = site.project.to_string();
    let form = |name: &'static str, token: &'static str| {
        vec![
            ("name", name),
            ("scope", "organization"),
            ("environment", "live"),
            ("csrf", token),
        ]
    };
    let missing = b.post("/console/keys", &form("no-token", "")[..3]).await;
    assert_eq!(missing.status, 403);
    assert!(missing.testid("error").is_some());
    let wrong = b
        .post(
            "/console/keys",
            &form("wrong-token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let cross = b
        .request(
            "POST",
            "/console/keys",
            Some(&[
                ("name", "cross-site"),
                ("scope", "project"),
                ("projectId", &project),
                ("csrf", &csrf),
            ]),
            Some("http://evil.test"),
        )
        .await;
    assert_eq!(cross.status, 403);
    assert!(cross.testid("error").unwrap().contains("another site"));
    // A post with the session but no cookie-bound token at all: not signed in, refused.
    let mut stranger = Browser::new(&site);
    let anonymous = stranger
        .post(
            "/console/keys",
            &[("name", "anon"), ("scope", "organization")],
        )
        .await;
    assert_eq!(anonymous.status, 403);
    // The sign-in form itself needs its double-submitted token.
    let mut fresh = Browser::new(&site);
    let forged_login = fresh
        .post(
            "/console/login",
            &[
                ("email", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("csrf", "x"),
            ],
        )
        .await;
    assert_eq!(forged_login.status, 403);
    let names: Vec<String> = api_keys(&site.server)
        .await
        .iter()
        .map(|k| k["keyName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["bootstrap-admin"]);
    // And the session still works afterwards.
    let ok = b.create_key(&csrf, "after", "organization", "live").await;
    assert_eq!(ok.status, 303);
    site.server.stop().await;
}

#[tokio::test]
async fn an_engineer_is_offered_no_organisation_scope_and_a_forged_request_is_refused() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ENGINEER, ENGINEER_PASSWORD).await;
    let form = b.get("/console/keys/new").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<option value=\"project\">"));
    assert!(!form.body.contains("value=\"organization\""));
    assert!(
        form.body
            .contains(&format!("<option value=\"{}\">billing", site.project))
    );

    let forged = b
        .create_key(&csrf, "forged-org", "organization", "live")
        .await;
    assert_eq!(forged.status, 403);
    assert!(
        forged
            .testid("error")
            .unwrap()
            .contains("only admins may create organization-scoped keys")
    );
    assert!(
        api_keys(&site.server)
            .await
            .iter()
            .all(|k| k["keyName"] != "forged-org")
    );
    let denied = audit_records(&site.server, "&action=permission.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["actor"]["type"], "user");
    assert_eq!(denied[0]["actor"]["id"], site.engineer.to_string());

    let ok = b.create_key(&csrf, "ci-read", "project", "live").await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let id = created_id(ok.location());
    let shown = b.get(ok.location()).await;
    let token = shown.testid("key-secret").unwrap();
    let me = site.server.get("/api/v1/me", &token).await;
    assert_eq!(me.body["scope"], "project");
    assert_eq!(me.body["scopedProjectId"], site.project.to_string());
    assert_eq!(me.body["createdByUserId"], site.engineer.to_string());
    assert_eq!(me.body["apiKeyId"], id);

    // The engineer's list shows project keys only: the admin's organisation key is out of
    // reach, as it would be for a project key of theirs.
    let list = b.get("/console/keys").await;
    assert!(list.body.contains(&id));
    assert!(!list.body.contains("bootstrap-admin"));
    let audit = b.get("/console/audit").await;
    assert_eq!(audit.status, 403);
    site.server.stop().await;
}

#[tokio::test]
async fn a_key_is_shown_once_used_revoked_and_audited_as_the_user_with_its_events() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let made = b
        .create_key(&csrf, "prod-sync", "organization", "live")
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let id = created_id(made.location());

    let dialog = b.get(made.location()).await;
    assert_eq!(dialog.status, 200);
    assert!(
        dialog
            .body
            .contains("<dialog open data-testid=\"key-dialog\"")
    );
    assert_eq!(
        dialog.testid("key-warning").unwrap(),
        "Copy this key now. It will not be shown again."
    );
    assert!(dialog.body.contains("data-testid=\"copy-key\""));
    let token = dialog.testid("key-secret").unwrap();
    assert!(token.starts_with("ako_"), "{token}");

    let me = site.server.get("/api/v1/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["keyName"], "prod-sync");
    assert_eq!(me.body["scope"], "organization");
    assert_eq!(me.body["createdByUserId"], site.admin.to_string());

    let reload = b.get(made.location()).await;
    assert_eq!(reload.status, 200);
    assert_eq!(
        reload.testid("key-gone").unwrap(),
        "This key was shown once and cannot be shown again."
    );
    assert!(!reload.body.contains(&token));
    assert!(!reload.body.contains("key-secret"));

    // Found by prefix, then revoked with confirmation.
    let prefix = me.body["keyPrefix"].as_str().unwrap().to_owned();
    let found = b.get(&format!("/console/keys?q={prefix}")).await;
    assert_eq!(found.body.matches("<tr data-key-id=").count(), 1);
    assert!(found.body.contains(&format!("<tr data-key-id=\"{id}\">")));
    let confirm = b.get(&format!("/console/keys/{id}/revoke")).await;
    assert!(confirm.body.contains("prod-sync") && confirm.body.contains(&prefix));
    assert!(confirm.body.contains("data-testid=\"confirm-revoke\""));
    let revoked = b
        .post(&format!("/console/keys/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, 303);
    assert!(revoked.location().starts_with("/console/keys"));
    let after = site.server.get("/api/v1/me", &token).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "key_revoked");
    let list = b.get("/console/keys").await;
    let row = &list.body[list.body.find(&format!("data-key-id=\"{id}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">revoked</span>"), "{row}");
    assert!(!row.contains("revoke-key"));

    // The audit log names the user as the actor, as the API names the key.
    let user = site.admin.to_string();
    let mine = audit_records(&site.server, &format!("&actor={user}")).await;
    let actions: Vec<&str> = mine.iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in ["user.signed_in", "api_key.created", "api_key.revoked"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let created = mine
        .iter()
        .find(|r| r["action"] == "api_key.created")
        .unwrap();
    assert_eq!(
        created["actor"],
        serde_json::json!({"type": "user", "id": user})
    );
    assert_eq!(created["target"], id);
    assert_eq!(created["metadata"]["keyPrefix"], prefix);
    assert_eq!(created["environment"], "live");
    let page = b.get("/console/audit").await;
    assert!(page.body.contains(&format!("user:{user}")));

    // The same events as the API's.
    let events = site
        .server
        .get("/api/v1/events?limit=100", &site.server.admin_key)
        .await;
    let mine: Vec<&str> = events.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["apiKeyId"] == id)
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(mine, ["api_key.created", "api_key.revoked"]);
    site.server.stop().await;
}

#[tokio::test]
async fn rotation_shows_the_successor_once_and_keeps_the_old_key_for_the_grace_period() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let made = b.create_key(&csrf, "rotating", "project", "sandbox").await;
    let old_id = created_id(made.location());
    let old = b.get(made.location()).await.testid("key-secret").unwrap();
    assert!(old.starts_with("akt_"));
    let confirm = b.get(&format!("/console/keys/{old_id}/rotate")).await;
    assert!(confirm.body.contains("name=\"graceSeconds\""));
    assert!(
        confirm
            .body
            .contains("data-testid=\"env-badge\" class=\"badge env-sandbox\">SANDBOX")
    );
    let rotated = b
        .post(
            &format!("/console/keys/{old_id}/rotate"),
            &[("csrf", &csrf), ("graceSeconds", "600")],
        )
        .await;
    assert_eq!(rotated.status, 303, "{}", rotated.body);
    let new_id = created_id(rotated.location());
    assert_ne!(new_id, old_id);
    let next = b
        .get(rotated.location())
        .await
        .testid("key-secret")
        .unwrap();
    let me = site.server.get("/api/v1/me", &next).await;
    assert_eq!(me.body["keyName"], "rotating");
    assert_eq!(
        site.server.get("/api/v1/me", &old).await.status,
        StatusCode::OK
    );
    let events = site
        .server
        .get(
            "/api/v1/events?environment=sandbox&type=api_key.rotated",
            &site.server.admin_key,
        )
        .await;
    assert_eq!(events.body["data"].as_array().unwrap().len(), 1);
    site.server.stop().await;
}

#[tokio::test]
async fn a_keys_page_charts_its_usage_and_after_a_rotation_old_and_new_traffic() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let made = b.create_key(&csrf, "charted", "organization", "live").await;
    let old_id = created_id(made.location());
    let old = b.get(made.location()).await.testid("key-secret").unwrap();
    for _ in 0..3 {
        assert_eq!(
            site.server.get("/api/v1/me", &old).await.status,
            StatusCode::OK
        );
    }
    // The list links each key to its page.
    assert!(
        b.get("/console/keys")
            .await
            .body
            .contains(&format!("href=\"/console/keys/{old_id}?"))
    );
    let mut page = b.get(&format!("/console/keys/{old_id}")).await;
    for _ in 0..100 {
        if page
            .body
            .contains("aria-label=\"3 requests, last 24 hours\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = b.get(&format!("/console/keys/{old_id}")).await;
    }
    assert_eq!(page.status, 200);
    assert_eq!(page.testid("key-name").as_deref(), Some("charted"));
    assert!(page.body.contains("data-testid=\"usage-24h\""));
    assert!(page.body.contains("data-testid=\"usage-30d\""));
    assert!(
        page.body
            .contains("aria-label=\"3 requests, last 24 hours\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("class=\"succeeded\""));
    assert!(page.body.contains("data-testid=\"latest-requests\""));
    assert!(page.body.contains("/api/v1/me"));
    assert!(!page.body.contains("data-testid=\"rotation-traffic\""));

    let rotated = b
        .post(
            &format!("/console/keys/{old_id}/rotate"),
            &[("csrf", &csrf), ("graceSeconds", "600")],
        )
        .await;
    let new_id = created_id(rotated.location());
    let shown = b.get(rotated.location()).await;
    assert!(shown.body.contains("data-testid=\"watch-rotation\""));
    let next = shown.testid("key-secret").unwrap();
    assert_eq!(
        site.server.get("/api/v1/me", &next).await.status,
        StatusCode::OK
    );
    let mut page = b.get(&format!("/console/keys/{new_id}")).await;
    for _ in 0..100 {
        if page
            .body
            .contains("aria-label=\"1 requests, this key since the rotation\"")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = b.get(&format!("/console/keys/{new_id}")).await;
    }
    assert!(
        page.body.contains("data-testid=\"rotation-traffic\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("aria-label=\"3 requests, old key since the rotation\"")
    );
    assert!(
        page.body
            .contains("aria-label=\"1 requests, this key since the rotation\"")
    );
    // Another organisation's or an unknown key has no page.
    assert_eq!(
        b.get("/console/keys/00000000-0000-4000-8000-000000000000")
            .await
            .status,
        404
    );
    site.server.stop().await;
}

#[tokio::test]
async fn a_key_named_like_a_script_is_rendered_inert() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let evil = "<script>alert(1)</script>";
    let made = b.create_key(&csrf, evil, "organization", "live").await;
    assert_eq!(made.status, 303);
    for page in [
        b.get(made.location()).await,
        b.get("/console/keys").await,
        b.get(&format!(
            "/console/keys/{}/revoke",
            created_id(made.location())
        ))
        .await,
        b.get("/console/audit").await,
    ] {
        assert!(!page.body.contains(evil), "{}", page.body);
        assert!(!page.body.contains("<script>"));
    }
    let list = b.get("/console/keys").await;
    assert!(list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Searching for it is just as inert.
    let search = b.get("/console/keys?q=%22%3E%3Cscript%3E").await;
    assert!(!search.body.contains("\"><script>"));
    site.server.stop().await;
}

#[tokio::test]
async fn no_secret_is_in_any_page_after_its_dialog_nor_in_the_data_directory() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let session = b.jar["align_session"].clone();
    let made = b
        .create_key(&csrf, "secret-scan", "organization", "live")
        .await;
    let id = created_id(made.location());
    let token = b.get(made.location()).await.testid("key-secret").unwrap();
    let receiver = Receiver::ok().await;
    let added = b
        .post(
            "/console/webhooks",
            &[
                ("csrf", &csrf),
                ("env", "sandbox"),
                ("url", &receiver.url()),
                ("projectId", ""),
            ],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let whsec = b
        .get(added.location())
        .await
        .testid("endpoint-secret")
        .unwrap();
    assert!(whsec.starts_with("whsec_"));

    let secrets = [
        token.as_str(),
        &token[13..],
        whsec.as_str(),
        ADMIN_PASSWORD,
        session.as_str(),
    ];
    let ep = added
        .location()
        .trim_start_matches("/console/webhooks/")
        .trim_end_matches("/created")
        .to_owned();
    let pages = [
        "/console/keys".to_owned(),
        "/console/keys?env=sandbox".to_owned(),
        format!("/console/keys/{id}/created"),
        format!("/console/keys/{id}/revoke"),
        format!("/console/keys/{id}/rotate"),
        "/console/keys/new".to_owned(),
        "/console/webhooks".to_owned(),
        "/console/webhooks?env=sandbox".to_owned(),
        format!("/console/webhooks/{ep}"),
        format!("/console/webhooks/{ep}/created"),
        "/console/audit".to_owned(),
        "/console/login".to_owned(),
    ];
    for path in &pages {
        let page = b.get(path).await;
        for s in &secrets {
            assert!(!page.body.contains(s), "{path} holds a secret");
            for (_, v) in &page.headers {
                assert!(!v.contains(s), "{path}'s headers hold a secret");
            }
        }
    }
    let dir = site.server.stop().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("bootstrap-admin-key") {
            continue;
        }
        if let Ok(b) = std::fs::read(&path) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 10_000);
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for s in [&token[13..], ADMIN_PASSWORD, session.as_str()] {
        assert!(!has(s.as_bytes()), "a secret is in the data directory");
    }
    assert!(has(align_keys::SessionHash::of(&session).as_bytes()));
}

#[tokio::test]
async fn sign_out_deletes_the_session_and_what_waits_to_be_shown() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let session = b.jar["align_session"].clone();
    let made = b.create_key(&csrf, "unseen", "organization", "live").await;
    let out = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (303, "/console/login"));
    assert!(
        out.set_cookie("align_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    let store = SqliteKeyStore::open(site.server.data_dir().join("align.db"))
        .await
        .unwrap();
    let hash = align_keys::SessionHash::of(&session);
    assert!(
        store
            .get_session(&hash, Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    let mut replay = Browser::new(&site);
    replay.jar.insert("align_session".into(), session);
    let r = replay.get(made.location()).await;
    assert_eq!((r.status, r.location()), (303, "/console/login"));
    // Signing in again does not bring the unseen secret back.
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    assert!(!csrf.is_empty());
    let gone = b.get(made.location()).await;
    assert!(gone.testid("key-gone").is_some());
    site.server.stop().await;
}

#[tokio::test]
async fn role_changes_apply_to_a_signed_in_user_at_once() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ENGINEER, ENGINEER_PASSWORD).await;
    let store = SqliteKeyStore::open(site.server.data_dir().join("align.db"))
        .await
        .unwrap();
    store
        .set_user_role(site.engineer, Role::Viewer)
        .await
        .unwrap();
    let list = b.get("/console/keys").await;
    assert_eq!(list.testid("whoami").unwrap(), "dev@acme.test (viewer)");
    assert!(!list.body.contains("data-testid=\"create-key\""));
    assert_eq!(b.get("/console/keys/new").await.status, 403);
    let refused = b.create_key(&csrf, "as-viewer", "project", "live").await;
    assert_eq!(refused.status, 403);
    assert!(
        refused
            .testid("error")
            .unwrap()
            .contains("viewers may not create")
    );
    site.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_are_added_tested_and_their_deliveries_shown() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let receiver = Receiver::ok().await;
    let added = b
        .post(
            "/console/webhooks",
            &[
                ("csrf", &csrf),
                ("env", "sandbox"),
                ("url", &receiver.url()),
                ("eventTypes", "webhook.test, api_key.*"),
                ("projectId", ""),
            ],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let shown = b.get(added.location()).await;
    let secret = shown.testid("endpoint-secret").unwrap();
    assert!(shown.body.contains("data-testid=\"endpoint-dialog\""));
    assert!(b.get(added.location()).await.testid("key-gone").is_some());
    let id = added
        .location()
        .trim_start_matches("/console/webhooks/")
        .trim_end_matches("/created")
        .to_owned();

    let list = b.get("/console/webhooks?env=sandbox").await;
    assert!(list.body.contains("data-testid=\"endpoints-table\""));
    assert!(
        list.body
            .contains(&format!("<tr data-endpoint-id=\"{id}\">"))
    );
    assert!(!b.get("/console/webhooks?env=live").await.body.contains(&id));

    let tested = b
        .post(
            &format!("/console/webhooks/{id}/test"),
            &[("csrf", &csrf), ("env", "sandbox")],
        )
        .await;
    assert_eq!(tested.status, 303, "{}", tested.body);
    let got = receiver.wait_for_type("webhook.test").await;
    assert!(got.verify(&secret), "signed with the secret shown once");
    let mut page = b.get(&format!("/console/webhooks/{id}")).await;
    for _ in 0..50 {
        if page.body.contains(">succeeded</span>") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = b.get(&format!("/console/webhooks/{id}")).await;
    }
    assert!(page.body.contains("data-testid=\"deliveries-table\""));
    assert!(page.body.contains("webhook.test"));
    assert!(page.body.contains(">succeeded</span>"), "{}", page.body);

    // A live endpoint must be https, as through the API.
    let refused = b
        .post(
            "/console/webhooks",
            &[("csrf", &csrf), ("env", "live"), ("url", &receiver.url())],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused.testid("error").unwrap().contains("url refused"));

    let user = site.admin.to_string();
    let records = audit_records(&site.server, &format!("&actor={user}")).await;
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"webhook_endpoint.created"), "{actions:?}");
    assert!(actions.contains(&"webhook_endpoint.tested"), "{actions:?}");
    site.server.stop().await;
}

#[tokio::test]
async fn sessions_are_shared_by_instances_on_one_database() {
    let site = site().await;
    let mut b = Browser::new(&site);
    b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let other = site
        .server
        .start_another_instance(|c| {
            c.console.pbkdf2_iterations = MIN_PBKDF2_ITERATIONS;
        })
        .await;
    let other_site = Site {
        server: other,
        origin: site.origin.clone(),
        tls: None,
        project: site.project,
        engineer: site.engineer,
        admin: site.admin,
    };
    let mut there = Browser::new(&other_site);
    there.jar = b.jar.clone();
    let list = there.get("/console/keys").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.testid("whoami").unwrap(), "admin@localhost (admin)");
    other_site.server.stop().await;
    site.server.stop().await;
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let site = site_with(|c| c.console.enabled = false).await;
    let mut b = Browser::new(&site);
    assert_eq!(b.get("/console/login").await.status, 404);
    assert_eq!(b.get("/console").await.status, 404);
    site.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_session_made_on_one_instance_works_on_another_until_signed_out() {
    let Some((scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    // Every instance reads the one secrets key file (as a mounted secret).
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets-key");
    let start = |url: String| {
        let key_file = key_file.clone();
        TestServer::start_with(move |c| {
            c.database = align_server::Database::Postgres(url);
            c.console.pbkdf2_iterations = MIN_PBKDF2_ITERATIONS;
            c.secrets_key_file = Some(key_file);
        })
    };
    let a = start(url.clone()).await;
    let b = start(url.clone()).await;
    let store = align_keys::PgKeyStore::open(scratch.pool().unwrap())
        .await
        .unwrap();
    let org = store
        .list_organizations(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let admin = store
        .list_users(org, &Default::default())
        .await
        .unwrap()
        .data[0]
        .clone();
    let hash = PasswordHash::derive(ADMIN_PASSWORD, MIN_PBKDF2_ITERATIONS).unwrap();
    store.set_user_password(admin.id, &hash).await.unwrap();
    let site = |server: TestServer| Site {
        server,
        origin: "http://localhost".into(),
        tls: None,
        project: ProjectId::new(),
        engineer: UserId::new(),
        admin: admin.id,
    };
    let (a, b) = (site(a), site(b));
    let mut on_a = Browser::new(&a);
    let csrf = on_a.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let mut on_b = Browser::new(&b);
    on_b.jar = on_a.jar.clone();
    let page = on_b.get("/console/keys").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.testid("whoami").unwrap(), "admin@localhost (admin)");
    // A key created through A is revoked through B with the same session and token.
    let made = on_a
        .create_key(&csrf, "pg-console", "organization", "live")
        .await;
    let id = created_id(made.location());
    let revoked = on_b
        .post(&format!("/console/keys/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let out = on_b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let after = on_a.get("/console/keys").await;
    assert_eq!((after.status, after.location()), (303, "/console/login"));
    let Site { server: a, .. } = a;
    let Site { server: b, .. } = b;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn behind_a_tls_proxy_the_configured_origin_is_required_and_cookies_are_secure() {
    let mut site = site_with(|c| c.console.origin = Some("https://align.example.com".into())).await;
    let mut b = Browser::new(&site);
    let refused = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(
        refused.status, 403,
        "the server's own http origin is not the public one"
    );
    site.origin = "https://align.example.com".into();
    let mut b = Browser::new(&site);
    let ok = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(
        ok.set_cookie("align_session")
            .unwrap()
            .ends_with("; Secure")
    );
    let Site { server, .. } = site;
    server.stop().await;
}

#[tokio::test]
async fn the_security_page_lists_leak_reports_and_lets_an_admin_set_the_leak_policy() {
    let site = site().await;
    let s = &site.server;
    let (token, view) = s
        .mint(
            &s.admin_key,
            serde_json::json!({"name": "leaky", "scope": "organization"}),
        )
        .await;
    let id = view["apiKeyId"].as_str().unwrap();
    let r = s
        .post(
            &format!("/api/v1/keys/{id}/report-compromise"),
            &s.admin_key,
            serde_json::json!({"reason": "committed to a public repo"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let mut b = Browser::new(&site);
    b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let page = b.get("/console/security").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-testid=\"nav-security\""));
    assert!(page.body.contains(&token[..12]), "the key's prefix");
    assert!(!page.body.contains(&token[13..]), "never the secret");
    assert!(page.body.contains("committed to a public repo"));
    assert!(page.body.contains("<td data-col=\"action\">revoked</td>"));
    assert!(page.body.contains("<option value=\"revoke\" selected>"));
    assert_eq!(page.testid("security-contact").unwrap(), "not set");

    let csrf = page.csrf();
    let saved = b
        .post(
            "/console/security",
            &[
                ("csrf", &csrf),
                ("leakedKeyAction", "notify"),
                ("leakedSandboxKeyAction", "revoke"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let org = s.get("/api/v1/organization", &s.admin_key).await;
    assert_eq!(org.body["leakedKeyAction"], "notify");
    assert_eq!(org.body["leakedSandboxKeyAction"], "revoke");
    assert_eq!(
        audit_records(s, "&action=organization.updated").await.len(),
        1
    );

    // An engineer sees the page but may not change the policy.
    let mut e = Browser::new(&site);
    e.signed_in(ENGINEER, ENGINEER_PASSWORD).await;
    let page = e.get("/console/security").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let refused = e
        .post(
            "/console/security",
            &[("csrf", &csrf), ("leakedKeyAction", "revoke")],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let org = s.get("/api/v1/organization", &s.admin_key).await;
    assert_eq!(org.body["leakedKeyAction"], "notify");
    site.server.stop().await;
}

#[tokio::test]
async fn the_keys_page_shows_each_keys_owner_and_meta_escaped() {
    let site = site().await;
    let (_, minted) = site
        .server
        .mint(
            &site.server.admin_key,
            serde_json::json!({"name": "acme", "scope": "organization",
                "ownerId": "<b>cus_1</b>", "meta": {"note": "<script>x</script>", "plan": "pro"}}),
        )
        .await;
    let mut b = Browser::new(&site);
    b.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let page = b.get("/console/keys").await;
    assert_eq!(page.status, 200);
    let row = &page.body[page
        .body
        .find(minted["keyPrefix"].as_str().unwrap())
        .unwrap()..];
    assert!(row.contains("&lt;b&gt;cus_1&lt;/b&gt;"), "{row}");
    assert!(row.contains("&lt;script&gt;x&lt;/script&gt;"), "{row}");
    assert!(row.contains("&quot;plan&quot;:&quot;pro&quot;"), "{row}");
    assert!(!page.body.contains("<script>x") && !page.body.contains("<b>cus_1"));
    site.server.stop().await;
}

/// The console's Create Key form takes what the API's mint takes for the embedder: an owner id
/// and a metadata object, checked by the same rules; a malformed object mints nothing.
#[tokio::test]
async fn the_create_key_form_takes_an_owner_id_and_metadata() {
    let site = site().await;
    let mut b = Browser::new(&site);
    let csrf = b.signed_in(ENGINEER, ENGINEER_PASSWORD).await;
    let form = b.get("/console/keys/new").await;
    assert!(form.body.contains("name=\"ownerId\""), "{}", form.body);
    assert!(form.body.contains("name=\"meta\""), "{}", form.body);
    let project = site.project.to_string();
    let ok = b
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("name", "customer-42"),
                ("scope", "project"),
                ("projectId", &project),
                ("environment", "live"),
                ("ownerId", "cust_42"),
                ("meta", r#"{"plan":"pro","seats":5}"#),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let id = created_id(ok.location());
    let key = api_keys(&site.server)
        .await
        .into_iter()
        .find(|k| k["apiKeyId"] == id.as_str())
        .unwrap();
    assert_eq!(key["ownerId"], "cust_42");
    assert_eq!(key["meta"], serde_json::json!({"plan": "pro", "seats": 5}));
    let list = b.get("/console/keys").await;
    assert!(list.body.contains("cust_42"));

    for (name, meta) in [("bad-meta-1", "[1,2]"), ("bad-meta-2", "{not json")] {
        let refused = b
            .post(
                "/console/keys",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("scope", "project"),
                    ("projectId", &project),
                    ("environment", "live"),
                    ("meta", meta),
                ],
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.testid("error").unwrap().contains("meta"));
        assert!(
            api_keys(&site.server)
                .await
                .iter()
                .all(|k| k["keyName"] != name)
        );
    }
    site.server.stop().await;
}
