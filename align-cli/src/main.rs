//! The `align` binary: argument parsing and dispatch only. Each command area is one module
//! with its arguments (`Args`) and its `run`; the work lives in the library crates, and every
//! command that opens the stores does it with `align_server::Deployment::open`.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 an integrity check failed
//! (audit chain broken, webhook signature invalid).
//!
//! To add a command area: a module with `Args` (its clap arguments, whose doc comment is the
//! `--help` text) and `run`, and one variant of [`Command`] that dispatches to it.

// The doc comments on the argument types are the `--help` text, whose examples show URLs as a
// user types them; rustdoc's link syntax would print angle brackets there.
#![allow(rustdoc::bare_urls)]

// jemalloc: the server makes many small allocations per request, which it serves with less
// work than the system allocator (docs/performance.md, "Issue 24: jemalloc").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Shared by the command areas.
mod client;
mod common;
mod data_dir;
mod output;
mod progress;

// The command areas, one module each.
mod audit;
mod backup;
mod completions;
mod config;
mod events;
mod init;
mod keys;
mod keyspaces;
mod leaks;
mod me;
mod orgs;
mod privacy;
mod projects;
mod restore;
mod retention;
mod secrets;
mod serve;
mod users;
mod webhooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Failure;

/// Align: API keys, rate limits, webhooks and audit logs for your developer API.
#[derive(Debug, Parser)]
#[command(name = "align", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every command area, in the order `align --help` lists them; each one's help text is its
/// module's `Args` doc comment.
#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::Args),
    Init(init::Args),
    Me(me::Args),
    /// Organisations. Example: align orgs list
    Orgs(orgs::Args),
    /// Users, their roles and console passwords. Example: align users create --email dev@acme.test --role engineer
    Users(users::Args),
    /// Projects. Example: align projects create --name billing
    Projects(projects::Args),
    /// API keys. Example: align keys create --name ci-read --permissions keys:read
    Keys(keys::Args),
    /// Key spaces: keys you issue to your own customers, with your own token prefix,
    /// permissions, credits and named rate limits (DESIGN §12), in the data directory or on a
    /// running server with --api-url. Your API checks them with `align keys verify` or
    /// POST /api/v1/keys/verify.
    ///
    /// Example: align keyspaces create --name "Acme API" --prefix acme --permissions invoices:read,invoices:write
    Keyspaces(keyspaces::Args),
    /// Leaked keys (API only): reports and the organisation's leak policy.
    Leaks(leaks::Args),
    Backup(backup::Args),
    Restore(restore::Args),
    /// Webhook endpoints and deliveries (in the data directory, or on a running server with
    /// --api-url), and receiver tools.
    ///
    /// Example: align webhooks endpoints add --url https://hooks.acme.test/align --events api_key.*
    Webhooks(webhooks::Args),
    /// The server's event log (what webhooks deliver), from a running server.
    ///
    /// Example: ALIGN_API_KEY=… align events list --api-url http://127.0.0.1:8080 --type api_key.revoked
    Events(events::Args),
    Completions(completions::Args),
    Config(config::Args),
    /// The audit and request logs. Example: align audit verify --stream audit
    Audit(audit::Args),
    /// Privacy requests: everything Align holds about a person or a key, exported or erased
    /// (in the data directory, or on a running server with --api-url and a key holding
    /// privacy:read / privacy:write).
    ///
    /// Example: align privacy export dev@acme.test --to dev.jsonl
    Privacy(privacy::Args),
    /// Retention: remove what every store keeps past its retention.* setting (the server also
    /// does it every hour).
    ///
    /// Example: align retention run --json
    Retention(retention::Args),
    /// The key file that seals webhook signing secrets in the database.
    ///
    /// Example: align secrets rotate-key --data-dir ./align-data
    Secrets(secrets::Args),
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
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("align: {e}");
            e.exit_code()
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Init(args) => init::run(args).await,
        Command::Me(args) => me::run(args).await,
        Command::Orgs(args) => orgs::run(args).await,
        Command::Users(args) => users::run(args).await,
        Command::Projects(args) => projects::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Keyspaces(args) => keyspaces::run(args).await,
        Command::Leaks(args) => leaks::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Restore(args) => restore::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Completions(args) => completions::run(args),
        Command::Config(args) => config::run(args),
        Command::Audit(args) => audit::run(args).await,
        Command::Privacy(args) => privacy::run(args).await,
        Command::Retention(args) => retention::run(args).await,
        Command::Secrets(args) => secrets::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and subcommand, with its path (`align webhooks endpoints add`).
    fn commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            out.push((p.clone(), sub.clone()));
            commands(sub, p, out);
        }
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut all = Vec::new();
        commands(&super::Cli::command(), "align".into(), &mut all);
        assert!(all.len() > 30);
        for (path, mut cmd) in all {
            if path.ends_with(" help") {
                continue;
            }
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Example"), "{path} --help has no example");
        }
    }
}
