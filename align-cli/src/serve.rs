//! `align serve`: the reference API server, on the back-ends its configuration names
//! ([`align_server::Deployment`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use align_server::{Bootstrap, Config, Overrides, Server};

use crate::output::Failure;

/// Run the reference API server.
///
/// On first start with an empty data directory it creates DIR/align.db, an organisation
/// and its admin user, and writes the first admin key to DIR/bootstrap-admin-key (0600).
///
/// Example: align serve --data-dir ./align-data --listen 127.0.0.1:8080
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Data directory (env ALIGN_DATA_DIR; default ./align-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (env ALIGN_LISTEN; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// TOML configuration file (env ALIGN_CONFIG).
    #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
    config: Option<PathBuf>,
}

pub(crate) async fn run(
    Args {
        data_dir,
        listen,
        config,
    }: Args,
) -> Result<(), Failure> {
    Ok(serve(config, Overrides { listen, data_dir }).await?)
}

async fn serve(config_file: Option<PathBuf>, flags: Overrides) -> Result<(), align_server::Error> {
    let config = Config::load(config_file.as_deref(), std::env::vars(), &flags)?;
    let key_file = config.bootstrap_key_path();
    let server = Server::start(config).await?;
    if let Bootstrap::Created { key_prefix } = server.bootstrap() {
        tracing::info!(
            key_prefix = %key_prefix,
            path = %key_file.display(),
            "created the first organisation and its admin key; the key is in the file (shown nowhere else)"
        );
    }
    let addr = server.local_addr()?;
    tracing::info!(%addr, "listening");
    server.run(align_server::shutdown_signal()).await
}
