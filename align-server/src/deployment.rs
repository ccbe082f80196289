//! One deployment's back-ends, opened from its [`Config`]: the only place that chooses between
//! SQLite (`DIR/align.db`) and PostgreSQL (`database.url`). `align serve` runs on them
//! ([`Deployment::into_backends`]); every operator command of the `align` CLI opens the same
//! stores the same way, so a change made there behaves like one made over HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use align_audit::{AuditSink, PgSink, PgSinkConfig, SqliteSink};
use align_http::ReplyStore;
use align_keys::store::KeyStore;
use align_keys::{KeyspaceStore, LeakStore, PgKeyStore, SqliteKeyStore};
use align_webhooks::{PgWebhookStore, Sealer, SqliteWebhookStore, WebhookStore};

use crate::at_rest::{open_sealed_keeping, prepare_data_dir};
use crate::bootstrap::audit_sink_config;
use crate::config::{Config, Database};
use crate::error::Error;
use crate::events::OutboxHook;
use crate::retention::RunLock;
use crate::serve::Backends;

/// The stores of one deployment: its key store, webhook store and sealer, open on the database
/// its [`Config`] names (SQLite in the data directory, or PostgreSQL), and the audit sink,
/// `Idempotency-Key` reply store and retention lock over the same database on demand.
///
/// ```no_run
/// # async fn f() -> Result<(), align_server::Error> {
/// use align_server::{Config, Deployment};
/// let config = Config { data_dir: "./align-data".into(), ..Config::default() };
/// let deployment = Deployment::open(&config).await?;
/// let orgs = deployment.keys().list_organizations(&Default::default()).await?;
/// let audit = deployment.audit_sink(false).await?;
/// # drop((orgs, audit)); Ok(()) }
/// ```
pub struct Deployment {
    keys: Arc<dyn KeyStore>,
    leaks: Arc<dyn LeakStore>,
    keyspaces: Arc<dyn KeyspaceStore>,
    webhooks: Arc<dyn WebhookStore>,
    sealer: Sealer,
    data_dir: PathBuf,
    /// Whether the server makes the audit checkpoint key on first start (`retention.enabled`).
    retention: bool,
    place: Place,
}

/// Where the records are, with what only that back-end needs.
enum Place {
    /// `DIR/align.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its pool, the settings a listener connects with, and the key
    /// store (which `align serve` has listen for other instances' changes).
    Postgres {
        pool: align_keys::postgres::Pool,
        settings: Box<tokio_postgres::Config>,
        keys: PgKeyStore,
    },
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the database URL: it may hold a password.
        let database = match self.place {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres { .. } => "postgres",
        };
        f.debug_struct("Deployment")
            .field("data_dir", &self.data_dir)
            .field("database", &database)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Opens the deployment `config` describes: prepares the data directory (`0700`, files
    /// `0600`), then opens the webhook store first (so the outbox tables exist), sealing with
    /// the secrets key file (see [`open_sealed`](crate::open_sealed)), then the key store with
    /// the outbox hook, so a key change commits with its `api_key.*` event. With SQLite the
    /// database `DIR/align.db` is created when missing (see [`Deployment::missing_database`]);
    /// with PostgreSQL (`database.url`) the tables are created or migrated.
    pub async fn open(config: &Config) -> Result<Self, Error> {
        prepare_data_dir(&config.data_dir)?;
        let key_file = config.secrets_key_path();
        #[allow(
            clippy::type_complexity,
            reason = "the stores as the trait objects both back-ends coerce to, named once here"
        )]
        let (keys, leaks, keyspaces, webhooks, sealer, place): (
            Arc<dyn KeyStore>,
            Arc<dyn LeakStore>,
            Arc<dyn KeyspaceStore>,
            _,
            _,
            _,
        ) = match &config.database {
            Database::Sqlite => {
                let path = config.database_path();
                let (webhooks, sealer) = open_sealed_keeping(&key_file, |sealer| {
                    SqliteWebhookStore::open(&path, sealer)
                })
                .await?;
                let keys = Arc::new(
                    SqliteKeyStore::open(&path)
                        .await?
                        .with_event_hook(Arc::new(OutboxHook)),
                );
                let webhooks: Arc<dyn WebhookStore> = Arc::new(webhooks);
                (
                    keys.clone(),
                    keys.clone(),
                    keys,
                    webhooks,
                    sealer,
                    Place::Sqlite(path),
                )
            }
            Database::Postgres(url) => {
                let settings =
                    align_keys::postgres::parse_url(url).map_err(align_keys::Error::from)?;
                let pool = align_keys::postgres::pool(settings.clone())
                    .map_err(align_keys::Error::from)?;
                let (webhooks, sealer) = open_sealed_keeping(&key_file, |sealer| {
                    PgWebhookStore::open(pool.clone(), sealer)
                })
                .await?;
                let store = PgKeyStore::open(pool.clone())
                    .await?
                    .with_event_hook(Arc::new(OutboxHook));
                let keys = Arc::new(store.clone());
                let webhooks: Arc<dyn WebhookStore> = Arc::new(webhooks);
                let place = Place::Postgres {
                    pool,
                    settings: Box::new(settings),
                    keys: store,
                };
                (keys.clone(), keys.clone(), keys, webhooks, sealer, place)
            }
        };
        Ok(Self {
            keys,
            leaks,
            keyspaces,
            webhooks,
            sealer,
            data_dir: config.data_dir.clone(),
            retention: config.retention.enabled,
            place,
        })
    }

    /// The SQLite file `config` names when it does not exist yet, so that a command meant for
    /// an initialised deployment can refuse instead of creating an empty one; `None` when it
    /// exists, and for PostgreSQL (whose database its administrator creates).
    pub fn missing_database(config: &Config) -> Option<PathBuf> {
        match &config.database {
            Database::Sqlite => Some(config.database_path()).filter(|p| !p.exists()),
            Database::Postgres(_) => None,
        }
    }

    /// The SQLite file that holds every record of the deployment (what `align backup`
    /// copies), or `None` when the records are in PostgreSQL (copied with its own tools).
    pub fn sqlite_file(config: &Config) -> Option<PathBuf> {
        match &config.database {
            Database::Sqlite => Some(config.database_path()),
            Database::Postgres(_) => None,
        }
    }

    /// Where the records are, for messages: the SQLite file's path, or "the PostgreSQL
    /// database" (never its URL, which may hold a password).
    pub fn place(config: &Config) -> String {
        match Self::sqlite_file(config) {
            Some(path) => path.display().to_string(),
            None => "the PostgreSQL database".to_owned(),
        }
    }

    /// Organisations, users, projects and keys.
    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Leak reports (the key store again, over the same database).
    pub fn leaks(&self) -> &Arc<dyn LeakStore> {
        &self.leaks
    }

    /// Key spaces and their keys (the key store again, over the same database).
    pub fn keyspaces(&self) -> &Arc<dyn KeyspaceStore> {
        &self.keyspaces
    }

    /// Webhook endpoints, deliveries and the outbox (the event log).
    pub fn webhooks(&self) -> &Arc<dyn WebhookStore> {
        &self.webhooks
    }

    /// What seals the webhook signing secrets: the keys of the secrets key file.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Opens the audit and request logs in the deployment's database. The audit checkpoint key
    /// (`DIR/audit-checkpoint-key`, which signs the checkpoint a purge leaves) is used when it
    /// exists, and made first when `create_checkpoint_key` is set (purging needs it).
    pub async fn audit_sink(
        &self,
        create_checkpoint_key: bool,
    ) -> Result<Arc<dyn AuditSink>, Error> {
        let config = audit_sink_config(&self.data_dir, create_checkpoint_key)?;
        Ok(match &self.place {
            Place::Sqlite(path) => Arc::new(SqliteSink::open(path, config).await?),
            Place::Postgres { pool, .. } => {
                let mut pg = PgSinkConfig::default();
                pg.checkpoint_key = config.checkpoint_key;
                Arc::new(PgSink::open(pool.clone(), pg).await?)
            }
        })
    }

    /// Where replies kept for `Idempotency-Key` go: this process's memory with SQLite, the
    /// shared database (sealed like webhook secrets) with PostgreSQL, so every instance answers
    /// a replay the same way.
    pub async fn reply_store(&self) -> Result<ReplyStore, Error> {
        Ok(match &self.place {
            Place::Sqlite(_) => ReplyStore::memory(),
            Place::Postgres { pool, .. } => {
                ReplyStore::postgres(pool.clone(), Arc::new(self.sealer.clone())).await?
            }
        })
    }

    /// The lock that keeps retention runs from overlapping across instances (a PostgreSQL
    /// advisory lock on a pool of its own; nothing to hold with SQLite).
    pub fn retention_lock(&self) -> Result<RunLock, Error> {
        Ok(RunLock::new(match &self.place {
            Place::Sqlite(_) => None,
            Place::Postgres { settings, .. } => Some(
                align_keys::postgres::pool(settings.as_ref().clone())
                    .map_err(align_keys::Error::from)?,
            ),
        }))
    }

    /// What [`Server::with_backends`](crate::Server::with_backends) runs on: these stores, the
    /// audit sink (making its checkpoint key on first start when `retention.enabled`, with
    /// SQLite; with PostgreSQL every instance needs a copy of one key, so none is made here),
    /// the reply store, and with PostgreSQL a key store that hears of other instances' key
    /// changes at once (LISTEN/NOTIFY).
    pub async fn into_backends(self) -> Result<Backends, Error> {
        let create_checkpoint_key = matches!(self.place, Place::Sqlite(_)) && self.retention;
        let audit = self.audit_sink(create_checkpoint_key).await?;
        let idempotency = self.reply_store().await?;
        let (keys, leaks, keyspaces) = match self.place {
            Place::Sqlite(_) => (self.keys, self.leaks, self.keyspaces),
            Place::Postgres { settings, keys, .. } => {
                let keys = Arc::new(keys.listen_for_changes(*settings)?);
                (
                    keys.clone() as Arc<dyn KeyStore>,
                    keys.clone() as Arc<dyn LeakStore>,
                    keys as Arc<dyn KeyspaceStore>,
                )
            }
        };
        Ok(Backends {
            keys,
            leaks,
            keyspaces,
            audit,
            webhooks: self.webhooks,
            idempotency,
        })
    }
}

/// The retention lock's pool for `database` (see [`RunLock::for_database`]).
pub(crate) fn lock_pool(database: &Database) -> Result<Option<align_keys::postgres::Pool>, Error> {
    Ok(match database {
        Database::Sqlite => None,
        Database::Postgres(url) => {
            let settings = align_keys::postgres::parse_url(url)?;
            Some(align_keys::postgres::pool(settings)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, database: Database) -> Config {
        Config {
            data_dir: dir.to_owned(),
            database,
            ..Config::default()
        }
    }

    const PG: &str = "postgres://align:s3cret@db.internal/align";

    #[test]
    fn a_missing_sqlite_file_is_named_and_postgres_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = config(dir.path(), Database::Sqlite);
        assert_eq!(
            Deployment::missing_database(&sqlite),
            Some(dir.path().join("align.db"))
        );
        let postgres = config(dir.path(), Database::Postgres(PG.into()));
        assert_eq!(Deployment::missing_database(&postgres), None);
        assert_eq!(Deployment::sqlite_file(&postgres), None);
        assert_eq!(
            Deployment::sqlite_file(&sqlite),
            Some(dir.path().join("align.db"))
        );
    }

    #[test]
    fn the_place_of_a_postgres_deployment_never_shows_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let place = Deployment::place(&config(dir.path(), Database::Postgres(PG.into())));
        assert_eq!(place, "the PostgreSQL database");
        assert!(!place.contains("s3cret"));
    }

    #[tokio::test]
    async fn a_sqlite_deployment_opens_its_stores_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir.path().join("data"), Database::Sqlite);
        let deployment = Deployment::open(&config).await.unwrap();
        assert_eq!(Deployment::missing_database(&config), None);
        assert!(config.secrets_key_path().exists());
        assert!(
            !crate::is_initialised(deployment.keys().as_ref())
                .await
                .unwrap()
        );
        assert!(format!("{deployment:?}").contains("sqlite"));
        // An operator's sink makes no checkpoint key unless asked to.
        let key = config.data_dir.join("audit-checkpoint-key");
        deployment
            .audit_sink(false)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        assert!(!key.exists());
        deployment
            .audit_sink(true)
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        assert!(key.exists());
        assert!(deployment.retention_lock().is_ok());
    }

    #[tokio::test]
    async fn the_server_makes_the_checkpoint_key_when_retention_runs() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), Database::Sqlite);
        assert!(config.retention.enabled);
        let backends = Deployment::open(&config)
            .await
            .unwrap()
            .into_backends()
            .await
            .unwrap();
        assert!(dir.path().join("audit-checkpoint-key").exists());
        backends.audit.close().await.unwrap();
    }
}
