#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Delivering to a loopback receiver: the dispatcher (outbox claim, signing, recording every
//! attempt) against a bare hyper client POSTing the same body to the same receiver, at the
//! same concurrency.
//!
//! The dispatcher is driven by `Dispatcher::run`, the loop a server runs: a batch is timed
//! from the start of `run` until the receiver has seen every message and `run` has shut
//! down, which it does only after every attempt is recorded.
//!
//! Fair both ways: one receiver; the bare loop's client lives for the whole run, as the
//! dispatcher's does, so both reuse kept-alive connections; the bare requests carry the same
//! body and the same headers (a fixed signature of the same length, computed once); the bare
//! loop is `concurrency` tasks each sending one request after the other (no task or permit
//! per request), the shape of the dispatcher's attempt loops; the receiver wakes whoever
//! waits for a batch once, when its last request arrives.
//!
//! `DELIVER_BATCH` (default 200) sets the messages per batch.
//!
//! Every timed batch runs right after a batch of its counterpart, and each pair's two times
//! are kept: criterion reports each case on its own, but measures the cases one after the
//! other, seconds apart, while the load on a shared machine moves by more than the effect.
//! After each group the bench prints the median of the per-pair rate ratios (`paired:`
//! lines), the figure to compare with the target.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use align_core::Environment;
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
use tokio::sync::Notify;

const BATCH: usize = 200;

fn batch() -> usize {
    std::env::var("DELIVER_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BATCH)
}

/// Requests the receiver has answered (both cases'; they never run at the same time).
static RECEIVED: AtomicUsize = AtomicUsize::new(0);
/// The count at which the receiver wakes [`received`]: once per batch, not per request (a
/// wake-up per request would cost the dispatcher's side time the bare loop does not spend).
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static ANSWERED: Notify = Notify::const_new();

/// Waits until the receiver has answered `target` requests in all.
async fn received(target: usize) {
    TARGET.store(target, Ordering::Release);
    loop {
        let answered = ANSWERED.notified();
        if RECEIVED.load(Ordering::Acquire) >= target {
            return;
        }
        answered.await;
    }
}

async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    if RECEIVED.fetch_add(1, Ordering::AcqRel) + 1 == TARGET.load(Ordering::Acquire)
                    {
                        ANSWERED.notify_waiters();
                    }
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

type BareClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The bare loop: `BATCH` POSTs through one long-lived client, `concurrency` at a time.
async fn bare(client: &BareClient, url: &str, concurrency: usize) -> Duration {
    let body = Bytes::from(payload());
    // The dispatcher's headers, with values of the same lengths, made once.
    let id = align_webhooks::MessageId::new().0;
    let timestamp = Utc::now().timestamp().to_string();
    let signature = SigningSecret::generate()
        .unwrap()
        .sign(&id, 0, &body)
        .to_string();
    // `concurrency` loops, each POSTing one request after the other: the tightest plain
    // client loop, and the same shape as the dispatcher's attempt loops (a task and a
    // semaphore permit per request would cost the baseline time the dispatcher does not
    // spend, and flatter the ratio).
    let left = Arc::new(AtomicUsize::new(batch()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, left) = (client.clone(), url.to_owned(), Arc::clone(&left));
        let (body, id, timestamp, signature) = (
            body.clone(),
            id.clone(),
            timestamp.clone(),
            signature.clone(),
        );
        tasks.spawn(async move {
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                let req = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .header(
                        "user-agent",
                        concat!("align-webhooks/", env!("CARGO_PKG_VERSION")),
                    )
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", &timestamp)
                    .header("webhook-signature", &signature)
                    .body(Full::new(body.clone()))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let _ = resp.into_body().collect().await;
            }
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
                let sealer =
                    align_webhooks::Sealer::new(align_webhooks::SealingKey::generate().unwrap());
                Arc::new(
                    align_webhooks::SqliteWebhookStore::open(path, sealer)
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

    /// Enqueues `BATCH` messages (untimed), then times delivering them with `run`.
    async fn deliver_batch(&mut self) -> Duration {
        self.deliver(batch()).await
    }

    /// Delivers `n` messages untimed, so the HTTP client's pool holds its connections.
    async fn warm_up(&mut self, n: usize) {
        self.deliver(n).await;
    }

    async fn deliver(&mut self, n: usize) -> Duration {
        self.enqueue(n).await;
        let target = RECEIVED.load(Ordering::Acquire) + n;
        let start = Instant::now();
        self.dispatcher.run(received(target)).await.unwrap();
        start.elapsed()
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
    client: BareClient,
    sqlite: Outbox,
}

impl Cases {
    async fn run(&mut self, case: Case) -> Duration {
        match case {
            Case::Bare => bare(&self.client, &self.url, self.concurrency).await,
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

/// (bare loop, dispatcher) times of batches run back to back.
type Pairs = RefCell<Vec<(Duration, Duration)>>;

/// Median and quartiles of the dispatcher's rate as a share of the bare loop's.
fn report(group: &str, name: &str, pairs: &Pairs) {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mut ratios = Vec::new();
    let mut bare = Vec::new();
    let mut ours = Vec::new();
    for (b, o) in pairs.borrow().iter() {
        ratios.push(ms(b) / ms(o) * 100.0);
        bare.push(ms(b));
        ours.push(ms(o));
    }
    if ratios.is_empty() {
        return;
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    println!(
        "{group}/{name} paired: {:.1} % of the bare loop's rate (median of {} batch pairs; \
         quartiles {:.1}–{:.1} %; medians {:.2} ms vs {:.2} ms a batch)",
        q(&mut ratios, 0.5),
        ratios.len(),
        q(&mut ratios, 0.25),
        q(&mut ratios, 0.75),
        q(&mut ours, 0.5),
        q(&mut bare, 0.5),
    );
    pairs.borrow_mut().clear();
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let url = rt.block_on(receiver());
    let dir = tempfile::tempdir().unwrap();
    // Each timed batch follows an untimed batch of its counterpart (the bare loop for the
    // dispatchers, the SQLite dispatcher for the bare loop); every pair is recorded.
    let cases_run = [
        ("bare_hyper_post", Case::Bare, Case::Sqlite),
        ("dispatcher_memory", Case::Memory, Case::Bare),
        ("dispatcher_sqlite", Case::Sqlite, Case::Bare),
    ];
    let sqlite_pairs = Pairs::default();
    let memory_pairs = Pairs::default();
    for concurrency in [1_usize, 16] {
        let mut cases = rt.block_on(async {
            let client: BareClient =
                Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let mut cases = Cases {
                url: url.clone(),
                concurrency,
                client,
                sqlite: Outbox::new(&url, concurrency, Some(dir.path())).await,
            };
            // Open both sides' connections before anything is timed.
            cases.sqlite.warm_up(concurrency).await;
            cases.run(Case::Bare).await;
            cases
        });
        let group = format!("deliver_{}_c{concurrency}", batch());
        let mut g = c.benchmark_group(&group);
        g.throughput(Throughput::Elements(batch() as u64));
        g.sample_size(10);
        for (name, timed, partner) in cases_run {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let first = cases.run(partner).await;
                            let second = cases.run(timed).await;
                            total += second;
                            match (timed, partner) {
                                (Case::Bare, Case::Sqlite) => {
                                    sqlite_pairs.borrow_mut().push((second, first));
                                }
                                (Case::Sqlite, Case::Bare) => {
                                    sqlite_pairs.borrow_mut().push((first, second));
                                }
                                (Case::Memory, Case::Bare) => {
                                    memory_pairs.borrow_mut().push((first, second));
                                }
                                _ => {}
                            }
                        }
                        total
                    })
                });
            });
        }
        report(&group, "dispatcher_memory", &memory_pairs);
        report(&group, "dispatcher_sqlite", &sqlite_pairs);
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
