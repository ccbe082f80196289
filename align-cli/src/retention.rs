//! `align retention run`: every store's retention (DESIGN §9), on the data directory, with the
//! same function the server runs every hour (`align_server::retention`).

use std::path::PathBuf;

use align_server::{Config, Overrides};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::common::Area;
use crate::data_dir::DataDir;
use crate::events;
use crate::output::{Failure, Out};
use crate::progress::Progress;

/// Its help text is the doc comment of `Command::Retention` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Remove, in every store, what is older than its retention (request log 30 days, audit
    /// log 400, webhook deliveries and attempts 30, events 30, sessions at expiry; see
    /// retention.* in docs/operations.md), and print what was removed per store. The audit
    /// chain still verifies. With PostgreSQL, one run at a time across instances.
    ///
    /// Example: align retention run --as-of 2027-06-01T00:00:00Z --json
    Run {
        /// Measure ages from this RFC 3339 time instead of now (to see what a later run
        /// removes, or to catch up).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// TOML configuration file for the retention.* settings (env ALIGN_CONFIG).
        #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub(crate) async fn run(
    Args {
        common,
        action: Action::Run { as_of, config },
    }: Args,
) -> Result<(), Failure> {
    if common.api_url.is_some() {
        return Err(Failure::usage(
            "align retention run works on the data directory (the server runs it by itself)",
        ));
    }
    let as_of = as_of
        .map(|t| events::parse_time("--as-of", &t))
        .transpose()?;
    let settings = Config::load(config.as_deref(), std::env::vars(), &Overrides::default())?;
    let d = common.open().await?;
    retention_run(&d, &settings.retention, as_of, &common.out()).await
}

/// `align retention run [--as-of TIME]`: every store's retention as of `as_of` (default
/// now), with a progress line on a terminal and what it removed per store.
async fn retention_run(
    d: &DataDir,
    settings: &align_server::RetentionSettings,
    as_of: Option<DateTime<Utc>>,
    out: &Out,
) -> Result<(), Failure> {
    let as_of = as_of.unwrap_or_else(Utc::now);
    let lock = d.retention_lock()?;
    // Purging a chain leaves a signed checkpoint: the key is made on first use, as
    // `align audit purge` does.
    let sink = d.audit_with_key(true).await?;
    let mut progress = Progress::new("retention");
    let total = align_server::retention::STEPS.len() as u64;
    let mut step = |i: usize, _: &str| progress.set(i as u64, Some(total));
    let work = align_server::retention::run(
        d.store.as_ref(),
        sink.as_ref(),
        d.webhooks.as_ref(),
        settings,
        as_of,
        &mut step,
    );
    let report = lock.run(work).await?;
    progress.set(total, Some(total));
    progress.finish();
    let _ = sink.close().await;
    let Some(report) = report else {
        return Err(Failure::Remote(
            "another instance is running retention now; try again later".into(),
        ));
    };
    if out.json {
        return out.object(&report.to_json());
    }
    let rows: Vec<Value> = report
        .removed()
        .iter()
        .map(|(store, n)| json!({ "store": store, "removed": n }))
        .collect();
    out.table(&rows, &["store", "removed"])?;
    eprintln!(
        "anonymised: request log {}, audit log {}",
        report.request_log_anonymised, report.audit_log_anonymised
    );
    Ok(())
}
