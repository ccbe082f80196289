//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use align_core::Environment;
use align_webhooks::{
    Endpoint, EndpointKey, EndpointSecrets, MemoryWebhookStore, Sealer, SealingKey, SigningSecret,
    WebhookStore,
};

/// Every back-end, each over an empty store; PostgreSQL (in a scratch schema dropped when the
/// loop ends) when `ALIGN_TEST_POSTGRES_URL` is set, skipped with a printed reason otherwise.
/// Yields each store once: `for (name, store) in Stores::every().await { … }`.
pub struct Stores {
    stores: std::vec::IntoIter<(&'static str, Arc<dyn WebhookStore>)>,
    #[cfg(feature = "postgres")]
    _scratch: Option<align_core::postgres::ScratchSchema>,
}

impl Stores {
    pub async fn every() -> Self {
        #[allow(unused_mut)]
        let mut stores: Vec<(&'static str, Arc<dyn WebhookStore>)> =
            vec![("memory", Arc::new(MemoryWebhookStore::new()))];
        #[cfg(feature = "sqlite")]
        stores.push((
            "sqlite",
            Arc::new(
                align_webhooks::SqliteWebhookStore::open_in_memory()
                    .await
                    .unwrap(),
            ),
        ));
        #[cfg(feature = "postgres")]
        let scratch = match postgres_url() {
            Some(url) => {
                let scratch = align_core::postgres::ScratchSchema::create(&url)
                    .await
                    .unwrap();
                let store = align_webhooks::PgWebhookStore::open(scratch.pool().unwrap(), sealer())
                    .await
                    .unwrap();
                stores.push(("postgres", Arc::new(store)));
                Some(scratch)
            }
            None => None,
        };
        Self {
            stores: stores.into_iter(),
            #[cfg(feature = "postgres")]
            _scratch: scratch,
        }
    }
}

impl Iterator for Stores {
    type Item = (&'static str, Arc<dyn WebhookStore>);

    fn next(&mut self) -> Option<Self::Item> {
        self.stores.next()
    }
}

/// The PostgreSQL database to test against (`ALIGN_TEST_POSTGRES_URL`), or `None` after
/// printing why PostgreSQL is skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ALIGN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipping_postgres();
            None
        }
    }
}

/// A sealer with a fresh key, kept in memory.
pub fn sealer() -> Sealer {
    Sealer::new(SealingKey::generate().unwrap())
}

/// The sealer of the key file `secrets-key` beside the database `db` (created when missing),
/// so every process opening `db` seals with the same key.
pub fn sealer_beside(db: &std::path::Path) -> Sealer {
    Sealer::load_or_create(&db.with_file_name("secrets-key"))
        .unwrap()
        .0
}

pub fn endpoint(environment: Environment, url: &str) -> Endpoint {
    let secrets = EndpointSecrets::new(EndpointKey::Symmetric(SigningSecret::generate().unwrap()));
    Endpoint::new(environment, url.to_owned(), secrets)
}

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A request the test receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }
}

/// What the test receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }
}

type Script = Box<dyn FnMut(usize, &Received) -> Reply + Send>;

/// A real hyper HTTP/1 server on 127.0.0.1 that logs requests and answers from a script.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Received>>>,
}

impl TestReceiver {
    pub async fn start(script: impl FnMut(usize, &Received) -> Reply + Send + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let server_log = Arc::clone(&log);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&server_log);
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        let script = Arc::clone(&script);
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            let received = Received {
                                at: Instant::now(),
                                path,
                                headers,
                                body,
                            };
                            let reply = {
                                let mut log = log.lock().unwrap();
                                let n = log.len();
                                log.push(received.clone());
                                (script.lock().unwrap())(n, &received)
                            };
                            tokio::time::sleep(reply.delay).await;
                            let mut resp = http::Response::builder().status(reply.status);
                            for (k, v) in &reply.headers {
                                resp = resp.header(*k, v);
                            }
                            Ok::<_, hyper::Error>(
                                resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().await
}

/// Says once per test binary, past the test harness's output capture, why PostgreSQL is not
/// tested.
pub fn skipping_postgres() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: ALIGN_TEST_POSTGRES_URL is not set"
        );
    });
}
