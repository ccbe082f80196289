//! [`Lifecycle`]: a service's background work, stopped in one call.

use std::future::Future;
use std::pin::Pin;

type Stop = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The background work of the crates a service embeds, with how to stop each, stopped in one
/// call in the reverse order of starting (a request log closes after the key tasks flushed).
///
/// With `align-keys` and `align-audit` (see `docs/embedding.md`):
///
/// ```text
/// let tasks = keys.start_tasks(Duration::from_secs(1)).await;
/// let sweeper = request_log_layer.start_sweeper(); // folded summaries, written every second
/// let lifecycle = Lifecycle::new()
///     .on_shutdown("request log", move || async move { let _ = sink.close().await; })
///     .on_shutdown("request-log folding", move || sweeper.shutdown())
///     .on_shutdown("key tasks", move || async move { let _ = tasks.shutdown().await; });
/// // … serve, then on a signal:
/// lifecycle.shutdown().await;
/// ```
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use align_http::Lifecycle;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let order = Arc::new(Mutex::new(Vec::new()));
/// let (a, b) = (Arc::clone(&order), Arc::clone(&order));
/// let lifecycle = Lifecycle::new()
///     .on_shutdown("log", move || async move { a.lock().unwrap().push("log") })
///     .on_shutdown("keys", move || async move { b.lock().unwrap().push("keys") });
/// lifecycle.shutdown().await;
/// assert_eq!(*order.lock().unwrap(), ["keys", "log"]);
/// # });
/// ```
#[derive(Default)]
pub struct Lifecycle {
    stops: Vec<(&'static str, Stop)>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stops.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Lifecycle {
    /// Nothing to stop yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `stop` (named `name` in the log) on [`Lifecycle::shutdown`].
    pub fn on_shutdown<F, Fut>(mut self, name: &'static str, stop: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.stops.push((name, Box::new(move || Box::pin(stop()))));
        self
    }

    /// Stops everything, the last added first.
    pub async fn shutdown(self) {
        for (name, stop) in self.stops.into_iter().rev() {
            tracing::debug!(task = name, "stopping");
            stop().await;
        }
    }
}
