//! The `align` binary: argument parsing and output only; the work lives in the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use align_server::{Bootstrap, Config, Overrides, Server};
use clap::{Parser, Subcommand};

/// Align: API keys, rate limits, webhooks and audit logs for your developer API.
#[derive(Debug, Parser)]
#[command(name = "align", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference API server.
    ///
    /// On first start with an empty data directory it creates DIR/align.db, an organisation
    /// and its admin user, and writes the first admin key to DIR/bootstrap-admin-key (0600).
    ///
    /// Example: align serve --data-dir ./align-data --listen 127.0.0.1:8080
    Serve {
        /// Data directory (env ALIGN_DATA_DIR; default ./align-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on (env ALIGN_LISTEN; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// TOML configuration file (env ALIGN_CONFIG).
        #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("align: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                data_dir,
                listen,
                config,
            } => serve(config, Overrides { listen, data_dir }).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("align: {e}");
            ExitCode::from(1)
        }
    }
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
