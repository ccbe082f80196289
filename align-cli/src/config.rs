//! `align config`: the settings `align serve` would run with (`print`), each with its source.

use std::net::SocketAddr;
use std::path::PathBuf;

use align_server::{Config, Overrides};
use clap::Subcommand;
use serde_json::json;

use crate::output::{Failure, Out};

/// The server's settings: each one's effective value and where it came from.
///
/// Example: align config print --config align.toml
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: ConfigAction,
}

/// `align config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Print every setting's effective value and where it came from.
    ///
    /// The source is default, file PATH, env ALIGN_X or flag; the settings are read as
    /// `align serve` reads them, with its flags. Secrets (passwords in URLs, tokens) show as
    /// ***. An ALIGN_ variable that is no setting is warned about on stderr, naming the
    /// closest one.
    ///
    /// Example: align config print --config /etc/align/align.toml --json
    Print {
        /// Data directory, as `align serve --data-dir` (env ALIGN_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on, as `align serve --listen` (env ALIGN_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// TOML configuration file (env ALIGN_CONFIG).
        #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `align config ACTION`.
pub(crate) fn run(Args { action }: Args) -> Result<(), Failure> {
    match action {
        ConfigAction::Print {
            data_dir,
            listen,
            config,
            json,
        } => {
            let flags = Overrides { listen, data_dir };
            let (_, effective) =
                Config::load_explained(config.as_deref(), std::env::vars(), &flags)?;
            let rows: Vec<serde_json::Value> = effective
                .iter()
                .map(|e| {
                    json!({
                        "key": e.setting.key(),
                        "env": e.setting.env(),
                        "value": e.value,
                        "source": e.source.to_string(),
                    })
                })
                .collect();
            Out { json }.table(&rows, &["key", "value", "source"])
        }
    }
}
