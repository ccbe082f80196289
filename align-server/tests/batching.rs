//! Requests never cause one database write each: `lastUsedAt` is coalesced and flushed in
//! batches, request-log entries are queued for group commit, and a cached key is verified
//! without a store round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use align_audit::{
    AuditSink, Entry, Head, Page, Progress, Query, Receipt, SqliteSink, SqliteSinkConfig, Stream,
    VerifyReport,
};
use align_keys::SqliteKeyStore;
use align_keys::store::{Directory, Instrumented, KeyFilter, KeyManagement, PageRequest};
use align_server::{Backends, Config, Server};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts durable appends and queued submits, delegating everything.
struct CountingSink {
    inner: SqliteSink,
    appends: AtomicU64,
    submits: AtomicU64,
    /// When set, flushes fail as a full disk or a read-only file would make them.
    broken: AtomicBool,
}

#[async_trait]
impl AuditSink for CountingSink {
    async fn submit(&self, entry: Entry) -> align_audit::Result<()> {
        self.submits.fetch_add(1, Ordering::SeqCst);
        self.inner.submit(entry).await
    }
    async fn append(&self, entry: Entry) -> align_audit::Result<Receipt> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(entry).await
    }
    async fn flush(&self) -> align_audit::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(align_audit::Error::WriteFailed {
                records: 1,
                cause: "database or disk is full".into(),
            });
        }
        self.inner.flush().await
    }
    async fn close(&self) -> align_audit::Result<()> {
        self.inner.close().await
    }
    async fn query(&self, q: &Query) -> align_audit::Result<Page> {
        self.inner.query(q).await
    }
    async fn head(&self, s: Stream) -> align_audit::Result<Head> {
        self.inner.head(s).await
    }
    async fn verify_against(
        &self,
        s: Stream,
        a: Option<&align_audit::AnchorCheck>,
        p: &mut (dyn FnMut(Progress) + Send),
    ) -> align_audit::Result<VerifyReport> {
        self.inner.verify_against(s, a, p).await
    }
    async fn purge(&self, s: Stream, cutoff: DateTime<Utc>) -> align_audit::Result<u64> {
        self.inner.purge(s, cutoff).await
    }
    async fn anonymise(&self, s: Stream, cutoff: DateTime<Utc>) -> align_audit::Result<u64> {
        self.inner.anonymise(s, cutoff).await
    }
    async fn erase_subject(&self, subject: &str) -> align_audit::Result<u64> {
        self.inner.erase_subject(subject).await
    }
}

async fn get_me(addr: std::net::SocketAddr, key: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/me HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn three_hundred_requests_cost_a_handful_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let store = Arc::new(Instrumented::new(SqliteKeyStore::open(&db).await.unwrap()));
    let sink = Arc::new(CountingSink {
        inner: SqliteSink::open(&db, SqliteSinkConfig::default())
            .await
            .unwrap(),
        appends: AtomicU64::new(0),
        submits: AtomicU64::new(0),
        broken: AtomicBool::new(false),
    });
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        last_used_flush: Duration::from_millis(200),
        ..Config::default()
    };
    let webhooks = Arc::new(
        align_server::open_sealed(&config.secrets_key_path(), |sealer| {
            align_webhooks::SqliteWebhookStore::open(&db, sealer)
        })
        .await
        .unwrap(),
    );
    let backends = Backends {
        keys: store.clone(),
        leaks: store.clone(),
        keyspaces: store.clone(),
        audit: sink.clone(),
        webhooks,
        idempotency: align_server::ReplyStore::memory(),
    };
    let server = Server::with_backends(config, backends).await.unwrap();
    let addr = server.local_addr().unwrap();
    let key = std::fs::read_to_string(dir.path().join("bootstrap-admin-key")).unwrap();
    let key = key.trim().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let before = store.counts().snapshot();
    for _ in 0..300 {
        let reply = get_me(addr, &key).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = store.counts().snapshot();
    let lookups = after.0 - before.0;
    let last_used_writes = after.1 - before.1;
    let other_writes = after.2 - before.2;
    assert!(
        lookups <= 1,
        "the key is verified from the cache: {lookups} lookups"
    );
    assert!(
        (1..=5).contains(&last_used_writes),
        "lastUsedAt is flushed in batches: {last_used_writes} writes for 300 requests"
    );
    assert_eq!(other_writes, 0, "reads cause no other key-store writes");
    assert_eq!(
        sink.appends.load(Ordering::SeqCst),
        0,
        "no durable audit write for reads"
    );
    assert_eq!(
        sink.submits.load(Ordering::SeqCst),
        300,
        "one queued request-log entry each"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let orgs = store
        .inner()
        .list_organizations(&PageRequest::default())
        .await
        .unwrap();
    let filter = KeyFilter {
        organization_id: orgs.data[0].id,
        project_id: None,
        environment: None,
        include_revoked: true,
    };
    let keys = store
        .inner()
        .list_keys(&filter, &PageRequest::default())
        .await
        .unwrap();
    assert!(keys.data[0].last_used_at.is_some(), "flushed on shutdown");
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn healthz_reports_an_audit_writer_that_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("align.db");
    let sink = Arc::new(CountingSink {
        inner: SqliteSink::open(&db, SqliteSinkConfig::default())
            .await
            .unwrap(),
        appends: AtomicU64::new(0),
        submits: AtomicU64::new(0),
        broken: AtomicBool::new(false),
    });
    let keys = Arc::new(SqliteKeyStore::open(&db).await.unwrap());
    let backends = Backends {
        keys: keys.clone(),
        leaks: keys.clone(),
        keyspaces: keys,
        audit: sink.clone(),
        webhooks: Arc::new(
            align_server::open_sealed(&dir.path().join("secrets-key"), |sealer| {
                align_webhooks::SqliteWebhookStore::open(&db, sealer)
            })
            .await
            .unwrap(),
        ),
        idempotency: align_server::ReplyStore::memory(),
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let server = Server::with_backends(config, backends).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let ok = get(addr, "/healthz").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with(r#"{"status":"ok"}"#), "{ok}");
    sink.broken.store(true, Ordering::SeqCst);
    let bad = get(addr, "/healthz").await;
    assert!(bad.starts_with("HTTP/1.1 503"), "{bad}");
    assert!(bad.contains(r#""failing":["audit"]"#), "{bad}");
    sink.broken.store(false, Ordering::SeqCst);
    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
