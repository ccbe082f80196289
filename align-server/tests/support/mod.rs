//! A real server on an ephemeral loopback port with a temporary data dir, and a tiny HTTP/1.1
//! client for it.

#![allow(dead_code, unreachable_pub)]

pub mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;

use align_server::{Config, Server};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub admin_key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        adjust(&mut config);
        let key_file = config.bootstrap_key_path();
        let server = Server::start(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        // A second instance on an existing data directory finds no new key to read.
        let admin_key = std::fs::read_to_string(key_file)
            .map(|k| k.trim().to_owned())
            .unwrap_or_default();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            dir,
            admin_key,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Another instance on this one's data directory (same `align.db`), on a port of its own.
    pub async fn start_another_instance(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = self.data_dir();
        let mut other = Self::start_with(|c| {
            adjust(c);
            c.data_dir = data_dir;
        })
        .await;
        other.admin_key.clone_from(&self.admin_key);
        other
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        let auth = format!("Bearer {key}");
        self.send(Method::GET, path, &[("authorization", &auth)], None)
            .await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.json(Method::POST, path, key, body).await
    }

    pub async fn json(&self, method: Method, path: &str, key: &str, body: Value) -> Reply {
        let auth = format!("Bearer {key}");
        self.send(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Mints a key with the admin key; returns (token, resource).
    pub async fn mint(&self, with: &str, body: Value) -> (String, Value) {
        let r = self.post("/api/v1/keys", with, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (r.body["key"].as_str().unwrap().to_owned(), r.body)
    }

    /// Stops the server gracefully; returns its data dir (deleted when dropped).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self.dir
    }
}

/// A scratch schema of its own on the test database (`ALIGN_TEST_POSTGRES_URL`) and a URL
/// whose connections use it; `None`, with the reason printed past the test harness's output
/// capture, when the variable is not set.
pub async fn scratch_postgres() -> Option<(align_keys::postgres::ScratchSchema, String)> {
    let Some(base) = std::env::var("ALIGN_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: ALIGN_TEST_POSTGRES_URL is not set"
        );
        return None;
    };
    let scratch = align_keys::postgres::ScratchSchema::create(&base)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{}", scratch.name());
    Some((scratch, url))
}
