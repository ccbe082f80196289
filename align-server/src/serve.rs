//! Opening the data directory, binding, accepting connections (each served by
//! [`crate::connections`]: HTTP/1.1 and HTTP/2, the idle timeout, the connection cap), and
//! shutting down gracefully: stop accepting, drain in-flight requests, flush `lastUsedAt`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use align_audit::AuditSink;
use align_keys::LeakStore;
use align_keys::store::KeyStore;
use align_keys::{KeyManager, KeyVerifier, Sha256Hasher, VerifierConfig};
use align_webhooks::{Dispatcher, DispatcherConfig, WebhookStore};
use tokio::net::TcpListener;

use crate::anchor::Anchorer;
use crate::at_rest::prepare_data_dir;
use crate::bootstrap::{Bootstrap, bootstrap};
use crate::config::{Config, Database};
use crate::connections::AcceptErrors;
use crate::deployment::Deployment;
use crate::error::Error;
use crate::state::AppState;
use align_http::ReplyStore;

/// How often the key store's change log is read at the latest for changes made by other
/// processes (PostgreSQL also wakes the reader at once through LISTEN/NOTIFY).
const CHANGE_POLL: Duration = Duration::from_millis(250);
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The stores a server runs on.
pub struct Backends {
    /// Organisations, users, projects and keys.
    pub keys: Arc<dyn KeyStore>,
    /// Leak reports (every key store is also a [`LeakStore`], over its own database).
    pub leaks: Arc<dyn LeakStore>,
    /// Key spaces and their keys (every key store is also a
    /// [`KeyspaceStore`](align_keys::KeyspaceStore), over its own database).
    pub keyspaces: Arc<dyn align_keys::KeyspaceStore>,
    /// Audit and request logs.
    pub audit: Arc<dyn AuditSink>,
    /// Webhook endpoints and the outbox (the event log).
    pub webhooks: Arc<dyn WebhookStore>,
    /// The replies kept for `Idempotency-Key` (this instance's memory by default; the shared
    /// database when several instances serve one).
    pub idempotency: ReplyStore,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

impl Backends {
    /// The back-ends `database.url` names, as [`Deployment::open`] opens them and
    /// [`Deployment::into_backends`] hands them to the server.
    pub async fn from_config(config: &Config) -> Result<Self, Error> {
        Deployment::open(config).await?.into_backends().await
    }

    /// The embedded default: everything in `DIR/align.db` (created `0600` in a `0700`
    /// directory), whatever `database.url` says (see [`Backends::from_config`]).
    pub async fn sqlite(config: &Config) -> Result<Self, Error> {
        let config = Config {
            database: Database::Sqlite,
            ..config.clone()
        };
        Self::from_config(&config).await
    }

    /// Keys, the webhook outbox, `Idempotency-Key` replies and the audit and request logs in
    /// the PostgreSQL database at `url`, shared with any number of other instances: key
    /// changes and their events commit in one PostgreSQL transaction, every instance's
    /// verifier hears of a change through LISTEN/NOTIFY, dispatchers share the outbox (`FOR
    /// UPDATE SKIP LOCKED`), and every instance extends the same two hash chains. The data
    /// directory keeps only the bootstrap key, the audit checkpoint key (which every instance
    /// needs a copy of to purge) and the secrets key file (which every instance needs a copy
    /// of, or `secrets.key_file` pointing at a shared one: the first instance to start records
    /// its key in the database, and an instance holding another key is refused).
    pub async fn postgres(config: &Config, url: &str) -> Result<Self, Error> {
        let config = Config {
            database: Database::Postgres(url.to_owned()),
            ..config.clone()
        };
        Self::from_config(&config).await
    }
}

/// A bound, bootstrapped server, ready to [`Server::run`].
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    bootstrap: Bootstrap,
    anchorer: Arc<Anchorer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Prepares the data directory and database (bootstrapping an empty one) and binds.
    /// The database is the one `database.url` names (see [`Deployment::open`]).
    pub async fn start(config: Config) -> Result<Self, Error> {
        let backends = Deployment::open(&config).await?.into_backends().await?;
        Self::with_backends(config, backends).await
    }

    /// Like [`Server::start`], over stores the caller chose (an embedder's own back-ends, or
    /// instrumented ones in tests). The data directory still holds the bootstrap key file,
    /// and the audit anchor key and anchor file.
    pub async fn with_backends(config: Config, backends: Backends) -> Result<Self, Error> {
        let Backends {
            keys: store,
            leaks,
            keyspaces,
            audit,
            webhooks,
            idempotency,
        } = backends;
        prepare_data_dir(&config.data_dir)?;
        let anchorer = Arc::new(Anchorer::open(&config.data_dir)?);
        let verifier = KeyVerifier::with_config(
            Arc::clone(&store).into_lookup(),
            Arc::new(Sha256Hasher),
            VerifierConfig {
                capacity: config.key_cache_capacity,
                ..VerifierConfig::default()
            },
        );
        let keys = KeyManager::with_verifier(store, Arc::new(verifier))
            .with_default_rate_limit(config.rate_limit_per_minute);
        let bootstrap = bootstrap(&config, &keys).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => None,
        };
        let state = Arc::new(
            AppState::new(config, keys, audit, webhooks, idempotency)?
                .with_leaks(leaks)
                .with_keyspaces(keyspaces),
        );
        // Audit records of key changes that committed just before a crash, still staged.
        state.commit_staged_audit().await;
        state
            .limits
            .announce(&align_keys::KeyId(uuid::Uuid::nil()))
            .await;
        Ok(Self {
            state,
            listener,
            tls,
            bootstrap,
            anchorer,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(|source| Error::Bind {
            addr: self.state.config.listen,
            source,
        })
    }

    /// Whether the server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What start-up did to the data directory.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// Serves until `shutdown` completes, then drains, flushes and anchors the logs.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let state = self.state;
        let anchorer = self.anchorer;
        let flusher = state
            .keys
            .verifier()
            .spawn_last_used_flusher(state.config.last_used_flush);
        // Key changes made by other processes (the operator CLI) reach the cache this fast.
        // Started before serving, so that its first read of the change log empties a cache
        // no request has filled yet.
        let watcher = state
            .keys
            .verifier()
            .start_change_watcher(CHANGE_POLL)
            .await;
        // Memory follows the keys in use: idle limiter state and idle cached keys go; audit
        // records left staged are moved into the chain.
        // The logs' disk budget: measured every few seconds, the oldest request-log entries
        // purged while over it (see crate::disk).
        let disk_watch = every(crate::disk::CHECK_INTERVAL, &state, |state| async move {
            state.disk.check(&state).await;
        });
        let sweeper = every(crate::config::SWEEP_INTERVAL, &state, |state| async move {
            state.evict_idle();
            state.idempotency.sweep().await;
            // Records another instance sharing the database left staged when it died.
            state.commit_staged_audit().await;
        });
        // Summaries of folded rejections are written once their client's second is over. The
        // task is stopped between sweeps, never inside one, so no summary taken is lost.
        let (stop_folder, folder_stopped) = tokio::sync::oneshot::channel::<()>();
        let folder = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut stopped = std::pin::pin!(folder_stopped);
                loop {
                    tokio::select! {
                        _ = tick.tick() => state.log_folded(false).await,
                        _ = &mut stopped => break,
                    }
                }
            })
        };
        // The heads of both logs leave the database (anchor file, `audit.checkpoint` event)
        // at the first tick and then every interval when they moved. Stopped between
        // anchors, never inside one.
        tracing::info!(
            path = %anchorer.path().display(),
            every_secs = state.config.audit_anchor_interval.as_secs(),
            key_id = %anchorer.public_key().id(),
            public_key = %anchorer.public_key().to_hex(),
            "anchoring the audit and request logs"
        );
        let (stop_anchoring, anchoring_stopped) = tokio::sync::oneshot::channel::<()>();
        let anchoring = {
            let state = Arc::clone(&state);
            let anchorer = Arc::clone(&anchorer);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(state.config.audit_anchor_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut stopped = std::pin::pin!(anchoring_stopped);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            anchorer.anchor(&state).await;
                            // The usage index catches up here, off the request path, so a
                            // usage query finds little left to add.
                            if let Err(e) = state.audit.refresh_usage().await {
                                tracing::warn!(error = %e, "the usage index could not be refreshed");
                            }
                        }
                        _ = &mut stopped => break,
                    }
                }
            })
        };
        // Retention runs itself (DESIGN §9): hourly, jittered, one instance at a time.
        let (stop_retention, retention_stopped) = tokio::sync::oneshot::channel::<()>();
        let retention = if state.config.retention.enabled {
            match crate::retention::RunLock::for_database(&state.config.database) {
                Ok(lock) => Some(tokio::spawn(crate::retention::scheduled(
                    Arc::clone(&state),
                    lock,
                    retention_stopped,
                ))),
                Err(e) => {
                    tracing::error!(error = %e, "retention cannot run inside the server");
                    None
                }
            }
        } else {
            None
        };
        let (stop_dispatch, dispatch_stopped) = tokio::sync::oneshot::channel::<()>();
        let dispatcher = if state.config.webhooks.dispatcher {
            let dispatcher = Dispatcher::new(
                Arc::clone(&state.webhooks),
                dispatcher_config(&state.config),
            )?;
            Some(tokio::spawn(async move {
                let stopped = async {
                    let _ = dispatch_stopped.await;
                };
                if let Err(e) = dispatcher.run(stopped).await {
                    tracing::error!(error = %e, "the webhook dispatcher stopped");
                }
            }))
        } else {
            None
        };
        let connections = &state.connections;
        tracing::info!(
            max_connections = connections.max(),
            idle_timeout_secs = state.config.idle_timeout.as_secs(),
            "accepting connections"
        );
        let builder = crate::connections::builder();
        let mut accept_errors = AcceptErrors::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => {
                        accept_errors.reset();
                        a
                    }
                    Err(e) => {
                        accept_errors.failed(&e, connections, &state.metrics).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // At the cap this closes the longest-idle connection, or waits for one to end
            // (the connections after this one wait in the kernel's backlog meanwhile).
            let slot = tokio::select! {
                slot = connections.slot(&state.metrics) => slot,
                () = &mut shutdown => break,
            };
            let Some(slot) = slot else { break };
            tokio::spawn(crate::connections::serve(
                Arc::clone(&state),
                builder.clone(),
                stream,
                peer,
                self.tls.clone(),
                slot,
            ));
        }
        drop(self.listener);
        tracing::info!("shutting down: draining in-flight requests");
        connections.shut_down();
        if tokio::time::timeout(DRAIN_TIMEOUT, connections.closed())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the drain timeout");
        }
        flusher.abort();
        watcher.abort();
        sweeper.abort();
        disk_watch.abort();
        let _ = stop_folder.send(());
        let _ = folder.await;
        // A run in progress finishes (it is a few store transactions); none starts.
        let _ = stop_retention.send(());
        if let Some(task) = retention {
            let _ = task.await;
        }
        // In-flight deliveries finish (each within the attempt timeout); the rest stay in
        // the outbox for the next start.
        let _ = stop_dispatch.send(());
        if let Some(task) = dispatcher {
            let _ = task.await;
        }
        if let Err(e) = state.keys.verifier().flush_last_used().await {
            tracing::error!(error = %e, "could not flush last-used times");
        }
        state.log_folded(true).await;
        // The last anchor covers every record written before the shutdown. Its event waits
        // in the outbox for the next start (the dispatcher has stopped).
        let _ = stop_anchoring.send(());
        let _ = anchoring.await;
        if let Err(e) = state.audit.flush().await {
            tracing::error!(error = %e, "could not flush the audit and request logs");
        }
        let anchors = anchorer.anchor(&state).await;
        tracing::info!(
            anchors = anchors.len(),
            "anchored the audit and request logs"
        );
        if let Err(e) = state.audit.close().await {
            tracing::error!(error = %e, "could not flush the audit and request logs");
        }
        Ok(())
    }
}

/// The dispatcher's settings from the server's `webhooks.*` settings.
fn dispatcher_config(config: &Config) -> DispatcherConfig {
    let w = &config.webhooks;
    DispatcherConfig {
        concurrency: w.concurrency,
        attempt_timeout: w.attempt_timeout,
        retry_schedule: w.retry_schedule.clone(),
        disable_after: w.disable_after,
        poll_interval: w.poll_interval,
        // Above the attempt timeout plus the longest in-memory throttle wait (1 s), so a slow
        // attempt is never sent twice; short enough that a crashed instance's claims return soon.
        lease: w.attempt_timeout * 2 + Duration::from_secs(2),
        url_policy: align_webhooks::UrlPolicy::new()
            .allow_private_targets(w.allow_private_targets)
            .allow_http_targets(w.allow_http_targets),
        ..DispatcherConfig::default()
    }
}

/// Spawns a task that runs `work` every `period` until it is aborted (a late tick is not
/// caught up).
fn every<F, Fut>(period: Duration, state: &Arc<AppState>, work: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<AppState>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            work(Arc::clone(&state)).await;
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
