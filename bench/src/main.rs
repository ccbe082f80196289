//! `align-loadbench`: the load benchmark of issue #9.
//!
//! - `align-loadbench all` starts, in turn on 127.0.0.1, (a) a bare hyper server (the floor),
//!   (b) `align serve` answering `GET /api/v1/me` with a valid key, (c) the same with a key
//!   over its limit (429) and (d) with a well-formed unknown key (401); drives each with
//!   closed-loop keep-alive connections and prints requests/s, latency percentiles, errors
//!   and the ratios against the floor.
//! - `align-loadbench floor` is the floor server on its own.
//! - `align-loadbench memory` measures the server's resident memory after many distinct keys
//!   have each made a request, and after eviction.
//!
//! See `docs/performance.md`.

mod floor;
mod load;
mod memory;
mod proc;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Errors of this tool: reported and turned into exit code 1.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Load benchmark of `align serve` against a bare hyper server.
#[derive(Debug, Parser)]
#[command(name = "align-loadbench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the four cases and print the table (the documented benchmark).
    All {
        /// The `align` binary (default: next to this one).
        #[arg(long, value_name = "PATH")]
        align: Option<PathBuf>,
        /// An earlier `align` binary to measure beside it in every round (its own data
        /// directory and keys): a regression check in one run.
        #[arg(long, value_name = "PATH")]
        baseline: Option<PathBuf>,
        /// Connection counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        connections: Vec<usize>,
        /// Measured seconds per point.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unmeasured warm-up seconds per point.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Rounds over every point (the median round by requests/s is shown).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// `ALIGN_LOG` for the align servers (the default is what a user runs).
        #[arg(long, default_value = "info")]
        server_log: String,
        /// Worker threads of the load generator (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Keep the data directory and server logs (printed at the end).
        #[arg(long)]
        keep: bool,
        /// A setting for the align servers, as an environment variable (repeatable), e.g.
        /// `--server-env ALIGN_LIMITS_FOLD_REJECTIONS_AFTER=0`. The servers otherwise get no
        /// `ALIGN_*` variable from this process's environment.
        #[arg(long = "server-env", value_name = "NAME=VALUE", value_parser = name_value)]
        server_env: Vec<(String, String)>,
        /// Directory for the data and logs (default: a new one under the temp dir).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
    },
    /// Run the floor server alone (what case (a) starts).
    Floor {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// Drive a running server (for profiling): `GET PATH` with the tokens of a file in turn.
    Drive {
        /// Server address.
        #[arg(long)]
        addr: SocketAddr,
        /// Path and query.
        #[arg(long, default_value = "/api/v1/me")]
        path: String,
        /// File with one token per line (sent as `Authorization: Bearer`).
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Expected status.
        #[arg(long, default_value_t = 200)]
        expect: u16,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// File with one JSON body per line, sent with `POST` in turn (case (e):
        /// `verify.bodies` from `setup`, with `--path /api/v1/keys/verify`).
        #[arg(long, value_name = "FILE")]
        bodies: Option<PathBuf>,
    },
    /// Bootstrap a data directory as `all` does and write the tokens of (b), (c) and (d) to
    /// `ok.tokens`, `limited.tokens` and `invalid.tokens` in `--out` (one per line), and (e)'s
    /// `verifiers.tokens` and `verify.bodies`, for
    /// `drive` under a profiler (docs/performance.md, "Counting instructions").
    Setup {
        /// The `align` binary (default: next to this one).
        #[arg(long, value_name = "PATH")]
        align: Option<PathBuf>,
        /// The data directory to create (must not exist yet, or be empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Where to write the token files and the set-up server's log.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Resident memory of `align serve` after many distinct keys each made one request, then
    /// after eviction.
    Memory(memory::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Floor { listen } => floor::run(listen),
        Command::All {
            align,
            baseline,
            connections,
            duration,
            warmup,
            repeat,
            server_log,
            threads,
            keep,
            server_env,
            work_dir,
        } => (|| {
            let settings = run::Settings {
                align: align_binary(align)?,
                baseline,
                me: std::env::current_exe()?,
                connections,
                duration: seconds(duration)?,
                warmup: seconds(warmup)?,
                repeat,
                server_log,
                server_env,
                keep,
                work_dir,
            };
            runtime(threads)?.block_on(run::all(&settings))
        })(),
        Command::Drive {
            addr,
            path,
            tokens,
            expect,
            connections,
            duration,
            bodies,
        } => (|| {
            let mut target = drive_target(addr, &path, tokens.as_deref(), expect)?;
            if let Some(file) = bodies {
                target.method = http::Method::POST;
                target.bodies = std::fs::read_to_string(file)?
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| bytes::Bytes::from(l.to_owned()))
                    .collect();
            }
            let duration = seconds(duration)?;
            let report = runtime(None)?.block_on(load::drive(
                &target,
                connections,
                Duration::ZERO,
                duration,
            ))?;
            println!(
                "{:.0} req/s, p50 {} µs, p99 {} µs, p99.9 {} µs, {} errors {:?} {:?}",
                report.rps(),
                report.quantile_us(0.5),
                report.quantile_us(0.99),
                report.quantile_us(0.999),
                report.errors,
                report.unexpected,
                report.first_error
            );
            Ok(())
        })(),
        Command::Setup {
            align,
            data_dir,
            out,
        } => (|| {
            let align = align_binary(align)?;
            runtime(None)?.block_on(run::setup_files(&align, &data_dir, &out))
        })(),
        Command::Memory(args) => (|| {
            let align = align_binary(args.align.clone())?;
            runtime(None)?.block_on(memory::run(&args, &align))
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("align-loadbench: {e}");
            ExitCode::from(1)
        }
    }
}

fn drive_target(
    addr: SocketAddr,
    path: &str,
    tokens: Option<&std::path::Path>,
    expect: u16,
) -> Result<load::Target, BoxError> {
    let mut authorization = Vec::new();
    if let Some(file) = tokens {
        for line in std::fs::read_to_string(file)?.lines() {
            let t = line.trim();
            if !t.is_empty() {
                authorization.push(http::HeaderValue::try_from(format!("Bearer {t}"))?);
            }
        }
    }
    Ok(load::Target::get(
        addr,
        http::Uri::try_from(path)?,
        authorization,
        http::StatusCode::from_u16(expect)?,
    ))
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, BoxError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    Ok(builder.build()?)
}

fn seconds(s: f64) -> Result<Duration, BoxError> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}").into())
}

/// `--align`, or `align` next to this binary (both are built into the same target directory).
fn align_binary(given: Option<PathBuf>) -> Result<PathBuf, BoxError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let path = me
        .parent()
        .map(|d| d.join(format!("align{}", std::env::consts::EXE_SUFFIX)))
        .ok_or("cannot locate the align binary: pass --align")?;
    if !path.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p align-cli) or pass --align",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// Parses `NAME=VALUE` (for `--server-env`).
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}
