//! What every operator command shares: the options that name the deployment (`--data-dir`,
//! `--database-url`, `--secrets-key-file`), the output format, and `--api-url` for commands
//! that can also talk to a running server.

use std::path::PathBuf;

use align_server::{Config, Database};
use clap::Args;

use crate::client::Api;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// Options every data-directory command takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Data directory (env ALIGN_DATA_DIR; default ./align-data).
    #[arg(
        long,
        value_name = "DIR",
        env = "ALIGN_DATA_DIR",
        default_value = "./align-data",
        global = true
    )]
    pub(crate) data_dir: PathBuf,
    /// The database several instances share, as the server's `database.url` (env
    /// ALIGN_DATABASE_URL): postgres://user:password@host/db; empty for DIR/align.db.
    #[arg(
        long,
        value_name = "URL",
        env = "ALIGN_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub(crate) database_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Organisation id (needed only when the database holds several).
    #[arg(long, value_name = "ID", global = true)]
    pub(crate) org: Option<String>,
    /// Talk to a running server instead of the data directory (env ALIGN_API_URL), with the
    /// key in ALIGN_API_KEY or --key-file.
    #[arg(long, value_name = "URL", env = "ALIGN_API_URL", global = true)]
    pub(crate) api_url: Option<String>,
    /// File holding the API key for --api-url (instead of ALIGN_API_KEY).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) key_file: Option<PathBuf>,
    /// The key file that seals webhook signing secrets, as the server's `secrets.key_file`
    /// (env ALIGN_SECRETS_KEY_FILE; default DIR/secrets-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "ALIGN_SECRETS_KEY_FILE",
        global = true
    )]
    pub(crate) secrets_key_file: Option<PathBuf>,
}

/// A command area with subcommands: the options every command takes, and the action. Each
/// such area's `Args` is `Area<Action>`; its help text is the doc comment of its variant of
/// `Command` in `main.rs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Area<A: clap::Subcommand> {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) action: A,
}

impl Common {
    /// Where results go.
    pub(crate) fn out(&self) -> Out {
        Out { json: self.json }
    }

    /// The API client for a command that needs a running server.
    pub(crate) fn api(&self, command: &str) -> Result<Api, Failure> {
        let url = self.api_url.as_deref().ok_or_else(|| {
            Failure::usage(format!(
                "{command} works against a running server: pass --api-url URL (or set ALIGN_API_URL)"
            ))
        })?;
        Api::new(url, self.key_file.as_deref())
    }

    /// The deployment these options name, as the server's settings: the data directory, the
    /// database `--database-url` (or ALIGN_DATABASE_URL) names (the data directory's SQLite
    /// file when absent or empty), and the secrets key file `--secrets-key-file` (or
    /// ALIGN_SECRETS_KEY_FILE; else DIR/secrets-key).
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        Ok(Config {
            data_dir: self.data_dir.clone(),
            database: self
                .database_url
                .as_deref()
                .unwrap_or_default()
                .parse::<Database>()?,
            secrets_key_file: self.secrets_key_file.clone(),
            ..Config::default()
        })
    }

    /// The stores of the deployment these options name (which must be initialised).
    pub(crate) async fn open(&self) -> Result<DataDir, Failure> {
        DataDir::open(&self.config()?).await
    }
}
