//! Open connections: how many may be open at once (`limits.max_connections`), how long one may
//! sit without a request (`limits.idle_timeout_secs`), and serving one connection until it
//! ends, idles out, is closed to make room, or the server shuts down.
//!
//! - Every connection counts its requests in flight, from the moment hyper hands a request to
//!   the service until its response body has been sent ([`InFlight`] rides in the body). One
//!   with none for the idle timeout is closed: one that never sent a byte (hyper's protocol
//!   detection has no timeout of its own), an HTTP/2 connection after its preface or between
//!   streams, a keep-alive connection between requests. It is closed gracefully (HTTP/2 gets
//!   a `GOAWAY`) and dropped after [`CLOSE_GRACE`] if the client does not finish it.
//! - At the cap, the accept loop still takes the new connection and closes the connection
//!   that has been idle longest, which had nothing in flight, so a health check or a real
//!   client gets in while idle connections hold every slot. When every connection has a
//!   request in flight, the new one waits until one of them has answered (and is closed) or
//!   ends, and those after it wait in the kernel's accept backlog: descriptors never run
//!   out. One warning a minute says so.
//! - `accept` failures (such as running out of descriptors anyway) back off from 10 ms to 1 s
//!   instead of spinning, and running out of descriptors also closes the longest-idle
//!   connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Hard limit on a request head; the pipeline refuses heads over 16 KiB with an envelope first.
const HYPER_MAX_BUF: usize = 128 * 1024;
/// A client must send its request headers (and finish a TLS handshake) within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2: a silent connection is pinged this often, and closed when a ping is not answered
/// within [`H2_PING_TIMEOUT`] (a peer gone without a word, even with a stream open).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection closed for idleness, or at shutdown with nothing in flight, gets to
/// finish its goodbye (an HTTP/2 `GOAWAY`) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Without a descriptor limit to size it by, at most this many connections.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors the default cap leaves for the database, files and webhook deliveries (at most
/// half the limit).
const RESERVED_DESCRIPTORS: u64 = 256;
/// At the cap with every connection busy, how often to look for one that has gone idle.
const AT_CAP_RECHECK: Duration = Duration::from_millis(20);
/// At most one "connection cap reached" warning per this long.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);
/// `accept` failures wait this long first, doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one "accept failed" warning per this long.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The hyper connection builder: HTTP/1.1 and HTTP/2 (prior knowledge or ALPN), with the
/// header read timeout and HTTP/2 keep-alive pings.
pub(crate) fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HYPER_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(HYPER_MAX_BUF).unwrap_or(u32::MAX));
    builder
}

/// The server's open connections.
pub(crate) struct Connections {
    max: usize,
    idle_timeout: Duration,
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    /// Every open connection's activity, to find the longest idle.
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    /// Times are kept as milliseconds since this instant.
    epoch: Instant,
    warned_at_cap: Mutex<Warning>,
    /// Set once, when the server starts shutting down.
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("max", &self.max)
            .field("open", &self.open_count())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A rate-limited warning: when it was last logged, and how often it happened since.
#[derive(Debug, Default)]
struct Warning {
    last: Option<Instant>,
    since: u64,
}

impl Warning {
    /// Counts one occurrence; returns how many there were since the last warning when one is
    /// due now.
    fn due(&mut self, every: Duration) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

impl Connections {
    /// The cap and timeout `config` sets (the cap sized to the descriptor limit by default).
    pub(crate) fn new(config: &Config) -> Self {
        let limit = descriptor_limit();
        let max = config
            .max_connections
            .unwrap_or_else(|| limit.map_or(FALLBACK_MAX_CONNECTIONS, default_cap))
            .clamp(1, u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        if let Some(limit) = limit.filter(|l| max as u64 >= *l) {
            tracing::warn!(
                max_connections = max,
                descriptor_limit = limit,
                "limits.max_connections is not below the process's descriptor limit: the \
                 server may run out of descriptors before it reaches the cap (raise the \
                 limit, e.g. LimitNOFILE= in the systemd unit, or lower the cap)"
            );
        }
        Self {
            max,
            idle_timeout: config.idle_timeout,
            slots: Arc::new(Semaphore::new(max)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            warned_at_cap: Mutex::new(Warning::default()),
            shutdown: watch::Sender::new(false),
        }
    }

    /// The cap on open connections.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections open now (accepted and not yet closed).
    pub(crate) fn open_count(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection just accepted: at once below the cap; at the cap, once the
    /// longest-idle connection has been closed, or (when every connection has a request in
    /// flight) once one of them has answered and been closed, or has ended. `None` only if
    /// the slots were closed.
    pub(crate) async fn slot(&self, metrics: &Metrics) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(slot);
        }
        metrics.connection_at_cap();
        let due = self
            .warned_at_cap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due(CAP_WARNING_EVERY);
        if let Some(times) = due {
            tracing::warn!(
                max_connections = self.max,
                times_since_last_warning = times,
                "connection cap reached (limits.max_connections): each new connection closes \
                 the longest-idle one; while every connection has a request in flight, new \
                 ones wait in the accept backlog"
            );
        }
        // When every connection has a request in flight, look again now and then: one that
        // has answered its request and stays open is as good to close as one that ends.
        let mut asked = self.close_longest_idle(metrics);
        let slot = Arc::clone(&self.slots).acquire_owned();
        let mut slot = std::pin::pin!(slot);
        loop {
            tokio::select! {
                slot = &mut slot => return slot.ok(),
                () = tokio::time::sleep(AT_CAP_RECHECK), if !asked => {
                    asked = self.close_longest_idle(metrics);
                }
            }
        }
    }

    /// Asks the connection idle for longest to close; false when none is idle.
    fn close_longest_idle(&self, metrics: &Metrics) -> bool {
        let oldest = self
            .registry()
            .values()
            .filter(|a| !a.closing.load(Ordering::Acquire) && a.in_flight() == 0)
            .min_by_key(|a| a.idle_since_ms.load(Ordering::Acquire))
            .cloned();
        let Some(activity) = oldest else {
            return false;
        };
        activity.closing.store(true, Ordering::Release);
        activity.close.notify_one();
        metrics.connection_closed("evicted");
        true
    }

    /// Tells every connection to finish: each closes once its requests in flight are
    /// answered (at once if it has none).
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once every connection is closed.
    pub(crate) async fn closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }

    fn register(&self) -> Registered<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Release);
        self.registry().insert(id, Arc::clone(&activity));
        Registered {
            connections: self,
            id,
            activity,
        }
    }
}

/// The process's soft limit on open descriptors, if it has one this can read.
fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The default cap for a descriptor limit of `limit`: all but [`RESERVED_DESCRIPTORS`], and at
/// least half.
fn default_cap(limit: u64) -> usize {
    let cap = limit.saturating_sub(RESERVED_DESCRIPTORS).max(limit / 2);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// What one connection is doing: requests in flight, and since when it has had none.
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// When the last request in flight ended (or the connection was accepted), in ms since
    /// `epoch`.
    idle_since_ms: AtomicU64,
    /// Set when the connection has been asked to close.
    closing: AtomicBool,
    close: Notify,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// How long the connection has had no request in flight; `None` while it has one.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight() > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight on a connection, from the service call until its response body has
/// been sent (or dropped).
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // The time first, so that whoever sees the count at zero sees when it got there.
        activity
            .idle_since_ms
            .store(activity.now_ms(), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's entry in the registry, removed when the connection ends.
struct Registered<'a> {
    connections: &'a Connections,
    id: u64,
    activity: Arc<Activity>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.connections.registry().remove(&self.id);
    }
}

/// A response body that holds its request's [`InFlight`] until it has been sent.
pub(crate) struct Tracked {
    body: crate::http::Body,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The service hyper calls for each request on one connection.
struct Service {
    state: Arc<AppState>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for Service {
    type Response = http::Response<Tracked>;
    type Error = Infallible;
    type Future = Tracking;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        // The request's future (about a kilobyte of state) is boxed where it is made, and
        // only this small wrapper moves through hyper: a future wrapped in an `async` block
        // instead would be copied twice more per request.
        let answer = Box::pin(crate::app::handle(Arc::clone(&self.state), req, self.peer));
        Tracking {
            answer,
            in_flight: Some(in_flight),
        }
    }
}

/// The future of one request on a connection: the boxed answer, then its body wrapped in a
/// [`Tracked`] that holds the request's [`InFlight`].
pub(crate) struct Tracking {
    answer: Pin<Box<dyn Future<Output = crate::http::Response> + Send>>,
    in_flight: Option<InFlight>,
}

impl Future for Tracking {
    type Output = Result<http::Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Tracking` is `Unpin` (a box and an `Arc`).
        let this = self.get_mut();
        let response = std::task::ready!(this.answer.as_mut().poll(cx));
        let Some(in_flight) = this.in_flight.take() else {
            // Polled again after completion: hyper never does; answer as a dropped request would.
            return Poll::Pending;
        };
        Poll::Ready(Ok(response.map(|body| Tracked {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// Serves one accepted connection (after a TLS handshake when `tls` is set) until it ends,
/// holding `slot` meanwhile.
pub(crate) async fn serve(
    state: Arc<AppState>,
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = slot;
    let connections = &state.connections;
    let shutdown = connections.shutdown.subscribe();
    let registered = connections.register();
    let activity = &registered.activity;
    let service = Service {
        state: Arc::clone(&state),
        peer,
        activity: Arc::clone(activity),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None => drive(&builder, TokioIo::new(stream), service, shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
            let mut stopped = shutdown.clone();
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
                () = activity.close.notified() => return,
                _ = stopped.wait_for(|stop| *stop) => return,
            };
            drive(&builder, TokioIo::new(stream), service, shutdown).await;
        }
    }
}

/// Serves `io` with `service` to its end, closing the connection when it has had no request
/// in flight for the idle timeout, when it is asked to make room (its activity's `close`), or
/// when the server shuts down.
async fn drive<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: Service,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (state, activity) = (Arc::clone(&service.state), Arc::clone(&service.activity));
    let (idle_timeout, metrics) = (state.connections.idle_timeout, &state.metrics);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    loop {
        let wait = activity
            .idle_for()
            .map_or(idle_timeout, |idle| idle_timeout.saturating_sub(idle));
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep(wait) => {
                if activity.idle_for().is_some_and(|idle| idle >= idle_timeout) {
                    metrics.connection_closed("idle_timeout");
                    // Closing already: not one to choose to make room.
                    activity.closing.store(true, Ordering::Release);
                    break;
                }
            }
            () = activity.close.notified() => {
                // Made room for a new connection: nothing in flight, nothing to finish.
                // (A request that arrived meanwhile is answered first.)
                if activity.in_flight() == 0 {
                    return;
                }
                break;
            }
            // (`wait_for` also sees a shutdown that began before this task first ran.)
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    conn.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep(CLOSE_GRACE) => {
                if activity.in_flight() == 0 {
                    return;
                }
            }
        }
    }
}

/// Backing off after `accept` failures, with a warning at most every 10 s.
#[derive(Debug, Default)]
pub(crate) struct AcceptErrors {
    delay: Option<Duration>,
    warning: Warning,
}

impl AcceptErrors {
    /// After a successful `accept`: the next failure starts from the shortest wait again.
    pub(crate) fn reset(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!("accepting connections again");
        }
    }

    /// Waits before the next `accept` after `error`. A connection the client gave up on
    /// before it was accepted needs no wait; running out of descriptors also closes the
    /// longest-idle connection.
    pub(crate) async fn failed(
        &mut self,
        error: &std::io::Error,
        connections: &Connections,
        metrics: &Metrics,
    ) {
        use std::io::ErrorKind as K;
        if matches!(
            error.kind(),
            K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
        ) {
            return;
        }
        let delay = self
            .delay
            .map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX));
        self.delay = Some(delay);
        if let Some(times) = self.warning.due(ACCEPT_WARNING_EVERY) {
            tracing::warn!(
                error = %error,
                failures_since_last_warning = times,
                retry_in_ms = delay.as_millis() as u64,
                "accept failed; backing off"
            );
        }
        if out_of_descriptors(error) {
            connections.close_longest_idle(metrics);
        }
        tokio::time::sleep(delay).await;
    }
}

/// Whether `error` is the process (`EMFILE`) or the system (`ENFILE`) out of descriptors.
fn out_of_descriptors(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        error
            .raw_os_error()
            .is_some_and(|c| c == Errno::MFILE.raw_os_error() || c == Errno::NFILE.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(default_cap(1024), 768);
        assert_eq!(default_cap(20_000), 19_744);
        assert_eq!(default_cap(256), 128);
        assert_eq!(default_cap(0), 0);
    }

    #[test]
    fn a_warning_is_due_once_per_period_with_the_count_since() {
        let mut w = Warning::default();
        assert_eq!(w.due(Duration::from_secs(60)), Some(1));
        assert_eq!(w.due(Duration::from_secs(60)), None);
        assert_eq!(w.due(Duration::from_secs(60)), None);
        assert_eq!(w.due(Duration::ZERO), Some(3));
    }

    #[tokio::test]
    async fn the_longest_idle_connection_is_chosen_and_never_one_with_a_request() {
        let config = Config {
            max_connections: Some(3),
            ..Config::default()
        };
        let connections = Connections::new(&config);
        let metrics = Metrics::default();
        let busy = connections.register();
        let oldest = connections.register();
        let newer = connections.register();
        busy.activity.idle_since_ms.store(0, Ordering::Release);
        oldest.activity.idle_since_ms.store(1, Ordering::Release);
        newer.activity.idle_since_ms.store(2, Ordering::Release);
        let request = busy.activity.begin();
        assert!(connections.close_longest_idle(&metrics));
        assert!(oldest.activity.closing.load(Ordering::Acquire));
        assert!(!busy.activity.closing.load(Ordering::Acquire));
        // Asked once, a connection is not chosen again.
        assert!(connections.close_longest_idle(&metrics));
        assert!(newer.activity.closing.load(Ordering::Acquire));
        assert!(
            !connections.close_longest_idle(&metrics),
            "only the busy one is left"
        );
        drop(request);
        assert!(busy.activity.idle_for().is_some());
        drop((busy, oldest, newer));
        assert!(connections.registry().is_empty());
    }
}
