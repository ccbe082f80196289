//! [`KeyTasks`]: the background work a service verifying keys needs, started together and
//! stopped together.

use std::sync::Arc;
use std::time::Duration;

use crate::verifier::KeyVerifier;

/// The verifier's two background tasks: the **change watcher** (revocations and other changes
/// made by another process reach this one's cache within the interval) and the **last-used
/// flusher** (`lastUsedAt` written in batches). Made by [`crate::KeyManager::start_tasks`];
/// [`KeyTasks::shutdown`] stops both and writes the last-used times still pending.
#[derive(Debug)]
pub struct KeyTasks {
    verifier: Arc<KeyVerifier>,
    watcher: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
}

impl KeyTasks {
    /// Starts both tasks for `verifier`; the change log's end is read before this returns (see
    /// [`KeyVerifier::start_change_watcher`]).
    pub async fn start(verifier: &Arc<KeyVerifier>, every: Duration) -> Self {
        Self {
            watcher: verifier.start_change_watcher(every).await,
            flusher: verifier.spawn_last_used_flusher(every),
            verifier: Arc::clone(verifier),
        }
    }

    /// Stops both tasks and flushes what is pending; returns how many keys' `lastUsedAt` were
    /// written.
    pub async fn shutdown(self) -> crate::Result<usize> {
        self.watcher.abort();
        self.flusher.abort();
        self.verifier.flush_last_used().await
    }
}

impl Drop for KeyTasks {
    fn drop(&mut self) {
        // Not shut down: at least stop the tasks (a last flush needs `shutdown`).
        self.watcher.abort();
        self.flusher.abort();
    }
}
