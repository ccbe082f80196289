//! `align users set-password` and the console of a real `align serve` child: the password is
//! read from stdin (or `ALIGN_USER_PASSWORD`), never echoed or logged, and after signing in
//! and minting a key no password, key or session token is in the server's log (at debug
//! level) or its data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "Plaid-Hummingbird-42-Lantern";
const ITERATIONS: (&str, &str) = ("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "100000");

/// Runs `align ARGS --data-dir DATA` with `stdin` fed in and `env` set, logging at debug.
fn align(data: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ALIGN_LOG", "debug")
        .env_remove("ALIGN_USER_PASSWORD")
        .env(ITERATIONS.0, ITERATIONS.1)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A server child (killed on drop) whose whole log is kept.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("ALIGN_LOG", "debug")
        .env(ITERATIONS.0, ITERATIONS.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(String::new()));
    let addr: SocketAddr = loop {
        let line = lines.next().expect("server exited").unwrap();
        log.lock().unwrap().push_str(&line);
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Server { child, addr, log }
}

/// Stops the server with SIGTERM (a clean shutdown flushes everything) and returns its log.
fn stop(mut server: Server) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    assert!(server.child.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    server.log.lock().unwrap().clone()
}

/// A raw HTTP/1.1 exchange: (status, head, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let origin = format!("http://{addr}");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "origin: {origin}\r\ncontent-type: application/x-www-form-urlencoded\r\n"
        ));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{form}", form.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        head.to_owned(),
        body.to_owned(),
    )
}

fn cookie_of(head: &str, name: &str) -> String {
    let line = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("set-cookie: {name}="))
        })
        .unwrap_or_else(|| panic!("no {name} cookie in {head}"));
    let value = line.split_once('=').unwrap().1;
    value.split(';').next().unwrap().to_owned()
}

fn after<'a>(body: &'a str, marker: &str) -> &'a str {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"));
    let rest = &body[at + marker.len()..];
    &rest[..rest.find(['"', '<']).unwrap()]
}

fn location(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn set_password_takes_the_password_from_stdin_or_the_environment_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(align(&data, &["init"], "", &[]).status.success());

    let ok = align(
        &data,
        &[
            "users",
            "set-password",
            "admin@localhost",
            "--password-stdin",
            "--json",
        ],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let out: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(out["passwordSet"], true);
    assert_eq!(out["email"], "admin@localhost");
    assert!(!text(&ok).contains(PASSWORD), "the password is echoed");

    let short = align(
        &data,
        &[
            "users",
            "set-password",
            "admin@localhost",
            "--password-stdin",
        ],
        "hunter2\n",
        &[],
    );
    assert_eq!(short.status.code(), Some(2));
    assert!(
        text(&short).contains("at least 12 characters"),
        "{}",
        text(&short)
    );
    assert!(!text(&short).contains("hunter2"));

    let none = align(
        &data,
        &["users", "set-password", "admin@localhost"],
        "",
        &[],
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none).contains("ALIGN_USER_PASSWORD"),
        "{}",
        text(&none)
    );

    let empty = align(
        &data,
        &[
            "users",
            "set-password",
            "admin@localhost",
            "--password-stdin",
        ],
        "",
        &[],
    );
    assert_eq!(empty.status.code(), Some(2));

    let unknown = align(
        &data,
        &[
            "users",
            "set-password",
            "nobody@localhost",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert_eq!(unknown.status.code(), Some(3), "{}", text(&unknown));

    let from_env = align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "dev@acme.test",
            "--role",
            "engineer",
        ],
        "",
        &[],
    );
    assert!(from_env.status.success(), "{}", text(&from_env));
    let env_pw = "Another-Long-Passphrase-7";
    let set = align(
        &data,
        &["users", "set-password", "dev@acme.test"],
        "",
        &[("ALIGN_USER_PASSWORD", env_pw)],
    );
    assert!(set.status.success(), "{}", text(&set));
    assert!(!text(&set).contains(env_pw));

    let created = align(
        &data,
        &[
            "users",
            "create",
            "--email",
            "viewer@acme.test",
            "--role",
            "viewer",
            "--password-stdin",
            "--json",
        ],
        "Third-Long-Passphrase-99\r\n",
        &[],
    );
    assert!(created.status.success(), "{}", text(&created));
    let v: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(v["passwordSet"], true);

    // The audit log records that a password was set, and nothing of it.
    let audit = align(
        &data,
        &["audit", "query", "--action", "user.password_set", "--json"],
        "",
        &[],
    );
    assert!(audit.status.success(), "{}", text(&audit));
    let records: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 3, "{records}");

    // Signing in with each password works against a real server; afterwards neither the log
    // nor the data directory holds a password, the minted key or the session token.
    let server = serve(&data);
    let addr = server.addr;
    let (status, head, body) = http(addr, "GET", "/console/login", "", "");
    assert_eq!(status, 200);
    let pre = cookie_of(&head, "align_csrf");
    let csrf = after(&body, "name=\"csrf\" value=\"").to_owned();
    let wrong = format!(
        "csrf={csrf}&email=admin%40localhost&password={}",
        urlencode("not-the-password-123")
    );
    let (status, _, body) = http(
        addr,
        "POST",
        "/console/login",
        &format!("align_csrf={pre}"),
        &wrong,
    );
    assert_eq!(status, 401);
    assert!(body.contains("Wrong email or password"));
    let form = format!(
        "csrf={csrf}&email=admin%40localhost&password={}",
        urlencode(PASSWORD)
    );
    let (status, head, _) = http(
        addr,
        "POST",
        "/console/login",
        &format!("align_csrf={pre}"),
        &form,
    );
    assert_eq!(status, 303, "{head}");
    let session = cookie_of(&head, "align_session");
    let cookie = format!("align_session={session}");
    let (status, _, body) = http(addr, "GET", "/console/keys/new", &cookie, "");
    assert_eq!(status, 200);
    let csrf = after(&body, "name=\"csrf\" value=\"").to_owned();
    let (status, head, _) = http(
        addr,
        "POST",
        "/console/keys",
        &cookie,
        &format!("csrf={csrf}&name=ci-read&scope=organization&environment=live"),
    );
    assert_eq!(status, 303, "{head}");
    let (_, _, body) = http(addr, "GET", &location(&head), &cookie, "");
    let token = after(&body, "data-testid=\"key-secret\">").to_owned();
    assert!(token.starts_with("ako_"), "{body}");

    let log = stop(server);
    assert!(
        log.contains("console") || log.contains("/console/keys"),
        "{log}"
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("bootstrap-admin-key") {
            files.extend(std::fs::read(path).unwrap_or_default());
        }
    }
    let has = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in [PASSWORD, env_pw, &token[13..], session.as_str()] {
        assert!(!log.contains(secret), "a secret is in the server's log");
        assert!(!has(&files, secret), "a secret is in the data directory");
    }
}

#[tokio::test]
async fn set_password_reaches_users_in_a_postgres_database() {
    let Some(base) = std::env::var("ALIGN_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipping PostgreSQL: ALIGN_TEST_POSTGRES_URL is not set");
        return;
    };
    use align_keys::store::Directory;
    let scratch = align_keys::postgres::ScratchSchema::create(&base)
        .await
        .unwrap();
    let store = align_keys::PgKeyStore::open(scratch.pool().unwrap())
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let org = align_keys::Organization {
        id: align_keys::OrganizationId::new(),
        name: "Acme".into(),
        security_contact: None,
        leak_policy: align_keys::LeakPolicy::default(),
        privacy_contact: None,
        created_at: now,
    };
    store.create_organization(&org).await.unwrap();
    let user = align_keys::User {
        id: align_keys::UserId::new(),
        organization_id: org.id,
        email: "pg@acme.test".into(),
        name: None,
        role: align_keys::Role::Admin,
        created_at: now,
    };
    store.create_user(&user).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{}", scratch.name());

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (d, u) = (data.clone(), url.clone());
    let out = tokio::task::spawn_blocking(move || {
        assert!(align(&d, &["init"], "", &[]).status.success());
        align(
            &d,
            &[
                "users",
                "set-password",
                "pg@acme.test",
                "--password-stdin",
                "--database-url",
                &u,
            ],
            &format!("{PASSWORD}\n"),
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    assert!(
        !text(&out).contains("search_path"),
        "the URL is not printed"
    );
    let found = store.user_credentials("pg@acme.test").await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].1.verify(PASSWORD));
}
