//! [`RequestLogLayer`]: a request-log entry for every request, as a `tower` layer (feature
//! `tower`), with floods of rejections folded into summary entries ([`crate::fold`]).
//!
//! The entry holds the method, the path (never the query string), status, latency, request id
//! (`align_http::RequestId` from `RequestIdLayer`, outside this layer), user agent and the
//! client address (`align_http::PeerAddr`, or a `SocketAddr`, in the request's extensions).
//! When a layer inside this one puts an `Arc<`[`align_core::KeyIdentity`]`>` into the response's
//! extensions (as `align-keys`' `KeyAuthLayer` does), that key becomes the entry's actor.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use align_core::KeyIdentity;
use align_http::{PeerAddr, RequestId};
use chrono::{DateTime, Utc};
use http::header::HeaderValue;
use http::{Method, Request, Response, Uri};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_layer::Layer;
use tower_service::Service;

use crate::builder::EntryBuilder;
use crate::fold::{self, DEFAULT_FOLD_AFTER, FoldRequest, Folds, Summary, Verdict};
use crate::record::{Actor, Entry};
use crate::sink::AuditSink;

/// How often the sweeper writes finished summaries.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Writes a request-log entry for every request through `sink`, folding floods of
/// rejections.
///
/// Per client (status, verified key, IP address or IPv6 /64) and second, the first
/// [`fold_rejections_after`](Self::fold_rejections_after) requests that may be folded (any
/// without a verified key, and `401`/`429` of keyed requests: [`fold::foldable`]) get their own
/// entries; the rest of that second become one summary entry, the first folded request's with
/// `metadata.folded = {count, lastRequestId, lastAt}`. A summary is written when its client's
/// next second begins, by the sweep ([`start_sweeper`](Self::start_sweeper), or
/// [`sweep`](Self::sweep) on your own schedule), and on shutdown ([`Sweeper::shutdown`] or
/// [`flush_summaries`](Self::flush_summaries)). Requests without a client address count as
/// one client.
///
/// ```
/// use std::sync::Arc;
/// use align_audit::{AuditSink, MemorySink, RequestLogLayer};
/// use align_http::Lifecycle;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let sink: Arc<dyn AuditSink> = Arc::new(MemorySink::new());
/// let log = RequestLogLayer::new(Arc::clone(&sink)); // folds after 100; 0 turns it off
/// let sweeper = log.start_sweeper();
/// // … `ServiceBuilder::new().layer(log)…`, serve; on shutdown the sweeper writes every
/// // summary still open before the sink closes (a lifecycle stops the last added first):
/// let lifecycle = Lifecycle::new()
///     .on_shutdown("request log", move || async move { let _ = sink.close().await; })
///     .on_shutdown("request-log folding", move || sweeper.shutdown());
/// lifecycle.shutdown().await;
/// # });
/// ```
#[derive(Clone)]
pub struct RequestLogLayer {
    shared: Arc<Shared>,
}

/// What the layer and its services share.
struct Shared {
    sink: Arc<dyn AuditSink>,
    folds: Folds<u64, Pending>,
    /// Hashes a verified key's id into the client it folds under (keyed randomly, so no
    /// caller can make two keys collide).
    key_hasher: RandomState,
}

impl std::fmt::Debug for RequestLogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLogLayer")
            .field("fold_rejections_after", &self.shared.folds.after())
            .finish_non_exhaustive()
    }
}

impl RequestLogLayer {
    /// A layer logging to `sink` (entries are queued with [`AuditSink::submit`]), folding
    /// after [`DEFAULT_FOLD_AFTER`] (100) requests of a client and second.
    pub fn new(sink: Arc<dyn AuditSink>) -> Self {
        Self::with_folds(sink, DEFAULT_FOLD_AFTER)
    }

    fn with_folds(sink: Arc<dyn AuditSink>, after: u32) -> Self {
        Self {
            shared: Arc::new(Shared {
                sink,
                folds: Folds::new(after),
                key_hasher: RandomState::new(),
            }),
        }
    }

    /// Gives the first `n` foldable requests of each client and second their own entries and
    /// folds the rest into a summary entry; `0` turns folding off (every request its own
    /// entry). Set it before starting the sweeper or layering: it starts the counts afresh.
    pub fn fold_rejections_after(self, n: u32) -> Self {
        Self::with_folds(Arc::clone(&self.shared.sink), n)
    }

    /// Writes the summaries of seconds that are over (what the sweeper does every second).
    pub async fn sweep(&self) {
        self.shared.write_summaries(false).await;
    }

    /// Writes every summary, finished or not (on shutdown, before the sink closes).
    pub async fn flush_summaries(&self) {
        self.shared.write_summaries(true).await;
    }

    /// Starts the sweep on the current tokio runtime: every second, the summaries of seconds
    /// that are over are written. Stop it with [`Sweeper::shutdown`], which writes the rest
    /// (dropping the [`Sweeper`] stops the sweep without writing them).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn start_sweeper(&self) -> Sweeper {
        let shared = Arc::clone(&self.shared);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Stopped (or its `Sweeper` dropped) between sweeps, never inside one, so no
            // summary taken is lost.
            while tokio::time::timeout(SWEEP_EVERY, &mut stopped)
                .await
                .is_err()
            {
                shared.write_summaries(false).await;
            }
        });
        Sweeper {
            stop,
            task,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The running sweep of a [`RequestLogLayer`] ([`RequestLogLayer::start_sweeper`]).
pub struct Sweeper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sweeper")
    }
}

impl Sweeper {
    /// Stops the sweep and writes every summary still open. Call it before closing the sink
    /// (with `align_http::Lifecycle`, add it after the sink's close).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.shared.write_summaries(true).await;
    }
}

impl Shared {
    async fn write_summaries(&self, all: bool) {
        let summaries = if all {
            self.folds.take_all()
        } else {
            self.folds.take_finished(Utc::now())
        };
        for s in summaries {
            self.write_summary(s).await;
        }
    }

    async fn write_summary(&self, s: Summary<Pending>) {
        let metadata = s.metadata();
        self.submit(s.first.entry().metadata(metadata)).await;
    }

    async fn submit(&self, entry: EntryBuilder) {
        // A queued entry that later fails to commit is reported by the sink's next `flush`;
        // the response is not held back for it.
        if let Ok(e) = entry.build() {
            let _ = self.sink.submit(e).await;
        }
    }

    /// Accounts for a finished request: its own entry, or a count in its client's summary.
    async fn log(&self, request: Pending) {
        let keyed = request.key.is_some();
        if self.folds.after() == 0 || !fold::foldable(request.status, keyed) {
            self.submit(request.entry()).await;
            return;
        }
        let key = request
            .key
            .as_ref()
            .map(|k| self.key_hasher.hash_one(k.key_id.as_str()));
        let ip = request.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match self.folds.judge(request.status, key, ip, request) {
            Verdict::Folded => {}
            Verdict::Log { request, finished } => {
                if let Some(s) = finished {
                    self.write_summary(*s).await;
                }
                self.submit(request.entry()).await;
            }
        }
    }
}

/// A request's id as its entry names it.
#[derive(Clone)]
enum LoggedId {
    None,
    /// The request's `RequestId` (the usual case: no copy).
    Given(RequestId),
    /// The response's `X-Request-Id`, when it names another.
    Named(String),
}

impl AsRef<str> for LoggedId {
    fn as_ref(&self) -> &str {
        match self {
            Self::None => "",
            Self::Given(id) => id.as_str(),
            Self::Named(id) => id,
        }
    }
}

/// What the layer keeps of a finished request until its entry is built (only then are its
/// strings copied, so a folded request copies none).
struct Pending {
    method: Method,
    /// Only its path is logged.
    uri: Uri,
    time: DateTime<Utc>,
    id: LoggedId,
    user_agent: Option<HeaderValue>,
    ip: Option<IpAddr>,
    status: u16,
    latency: Duration,
    key: Option<Arc<KeyIdentity>>,
}

impl FoldRequest for Pending {
    type Id = LoggedId;

    fn started(&self) -> DateTime<Utc> {
        self.time
    }

    fn id(&self) -> LoggedId {
        self.id.clone()
    }

    fn into_id(self) -> LoggedId {
        self.id
    }
}

impl Pending {
    /// The request's entry.
    fn entry(self) -> EntryBuilder {
        let mut entry = Entry::request(self.method.as_str(), self.uri.path())
            .time(self.time)
            .status(self.status)
            .latency(self.latency);
        if let Some(k) = self.key {
            entry = entry
                .organization(k.organization_id.clone())
                .environment(k.environment)
                .actor(Actor::ApiKey {
                    id: k.key_id.clone(),
                    prefix: k.prefix.clone(),
                });
        }
        match self.id {
            LoggedId::None => {}
            LoggedId::Given(id) => entry = entry.request_id(id.as_str()),
            LoggedId::Named(id) => entry = entry.request_id(id),
        }
        if let Some(ua) = self.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            entry = entry.user_agent(ua);
        }
        if let Some(ip) = self.ip {
            entry = entry.ip(ip);
        }
        entry
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`RequestLogLayer`].
#[derive(Clone)]
pub struct RequestLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for RequestLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestLog")
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let started = Instant::now();
        let time = Utc::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let user_agent = req.headers().get(http::header::USER_AGENT).cloned();
        let request_id = req.extensions().get::<RequestId>().cloned();
        let ip = PeerAddr::ip_of(&req);
        Box::pin(async move {
            let response = inner.call(req).await?;
            let latency = started.elapsed();
            // The id the response names (an outer `RequestIdLayer` sets it), else the
            // request's.
            let named = response
                .headers()
                .get(align_http::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok());
            let id = match (named, request_id) {
                (Some(n), Some(given)) if n == given.as_str() => LoggedId::Given(given),
                (Some(n), _) => LoggedId::Named(n.to_owned()),
                (None, Some(given)) => LoggedId::Given(given),
                (None, None) => LoggedId::None,
            };
            let pending = Pending {
                method,
                uri,
                time,
                id,
                user_agent,
                ip,
                status: response.status().as_u16(),
                latency,
                key: response.extensions().get::<Arc<KeyIdentity>>().cloned(),
            };
            shared.log(pending).await;
            Ok(response)
        })
    }
}
