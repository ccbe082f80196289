#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Delivering to a loopback receiver: the dispatcher (outbox claim, signing, recording every
//! attempt) against a bare hyper client POSTing the same body to the same receiver, at the
//! same concurrency. Runs are interleaved with their counterpart (see `bench`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use align_keys::Environment;
use align_webhooks::{
    Dispatcher, DispatcherConfig, Endpoint, EndpointKey, EndpointSecrets, MemoryWebhookStore,
    NewMessage, SigningSecret, UrlPolicy, WebhookStore,
};
use bytes::Bytes;
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::runtime::Runtime;

const BATCH: usize = 200;

async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, hyper::Error>(
                        http::Response::builder()
                            .status(204)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/hook")
}

fn payload() -> String {
    NewMessage::new(
        "evt",
        "api_key.revoked",
        Environment::Sandbox,
        serde_json::json!({"keyId": "3f2b6a9e-0d51-4c1e-9d55-3c0f4f1f9b7a", "reason": "rotated"}),
    )
    .payload()
}

async fn bare(url: &str, concurrency: usize) -> Duration {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = Bytes::from(payload());
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BATCH {
        let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
        let client = client.clone();
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        tasks.spawn(async move {
            let resp = client.request(req).await.unwrap();
            let _ = resp.into_body().collect().await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

/// A dispatcher and its outbox, kept for the whole benchmark as a server keeps them, so the
/// outbox grows and SQLite's WAL checkpoints come at their steady-state rate.
struct Outbox {
    store: Arc<dyn WebhookStore>,
    dispatcher: Dispatcher,
    next_event: usize,
}

impl Outbox {
    async fn new(url: &str, concurrency: usize, sqlite: Option<&std::path::Path>) -> Self {
        let store: Arc<dyn WebhookStore> = match sqlite {
            None => Arc::new(MemoryWebhookStore::new()),
            Some(dir) => {
                let path = dir.join(format!("{}.db", uuid::Uuid::new_v4()));
                Arc::new(
                    align_webhooks::SqliteWebhookStore::open(path)
                        .await
                        .unwrap(),
                )
            }
        };
        let secrets =
            EndpointSecrets::new(EndpointKey::Symmetric(SigningSecret::generate().unwrap()));
        let ep = Endpoint::new(Environment::Sandbox, url.to_owned(), secrets);
        store.create_endpoint(&ep).await.unwrap();
        let config = DispatcherConfig {
            concurrency,
            url_policy: UrlPolicy::new().allow_private_targets(true),
            ..DispatcherConfig::default()
        };
        let dispatcher = Dispatcher::new(Arc::clone(&store), config).unwrap();
        Self {
            store,
            dispatcher,
            next_event: 0,
        }
    }

    /// Enqueues `BATCH` messages (untimed), then times draining them.
    async fn deliver_batch(&mut self) -> Duration {
        self.enqueue(BATCH).await;
        let start = Instant::now();
        let mut sent = 0;
        while sent < BATCH {
            sent += self.dispatcher.run_once().await.unwrap();
        }
        start.elapsed()
    }

    /// Delivers `n` messages untimed, so the HTTP client's pool holds its connections.
    async fn warm_up(&mut self, n: usize) {
        self.enqueue(n).await;
        while self.dispatcher.run_once().await.unwrap() > 0 {}
    }

    async fn enqueue(&mut self, n: usize) {
        for _ in 0..n {
            self.next_event += 1;
            let m = NewMessage::new(
                format!("evt_{}", self.next_event),
                "api_key.revoked",
                Environment::Sandbox,
                serde_json::json!({"keyId": "3f2b6a9e-0d51-4c1e-9d55-3c0f4f1f9b7a", "reason": "rotated"}),
            );
            self.store.enqueue(m, Utc::now()).await.unwrap();
        }
    }
}

#[derive(Clone, Copy)]
enum Case {
    Bare,
    Memory,
    Sqlite,
}

struct Cases {
    url: String,
    concurrency: usize,
    sqlite: Outbox,
}

impl Cases {
    async fn run(&mut self, case: Case) -> Duration {
        match case {
            Case::Bare => bare(&self.url, self.concurrency).await,
            // The memory store scans its vectors on every call (it is the test back-end), so
            // it starts empty each time instead of growing like the SQLite outbox; a warm-up
            // opens its connections, as the long-lived SQLite dispatcher's already are.
            Case::Memory => {
                let mut fresh = Outbox::new(&self.url, self.concurrency, None).await;
                fresh.warm_up(self.concurrency).await;
                fresh.deliver_batch().await
            }
            Case::Sqlite => self.sqlite.deliver_batch().await,
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let url = rt.block_on(receiver());
    let dir = tempfile::tempdir().unwrap();
    // Each timed run follows an untimed run of its counterpart (the bare loop for the
    // dispatchers, the SQLite dispatcher for the bare loop), so both sides of a ratio see the
    // same machine load; on a shared machine sequential runs differ by more than the effect.
    let pairs = [
        ("bare_hyper_post", Case::Bare, Case::Sqlite),
        ("dispatcher_memory", Case::Memory, Case::Bare),
        ("dispatcher_sqlite", Case::Sqlite, Case::Bare),
    ];
    for concurrency in [1_usize, 16] {
        let mut cases = rt.block_on(async {
            Cases {
                url: url.clone(),
                concurrency,
                sqlite: Outbox::new(&url, concurrency, Some(dir.path())).await,
            }
        });
        let mut g = c.benchmark_group(format!("deliver_{BATCH}_c{concurrency}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.sample_size(10);
        for (name, timed, partner) in pairs {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            cases.run(partner).await;
                            total += cases.run(timed).await;
                        }
                        total
                    })
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
