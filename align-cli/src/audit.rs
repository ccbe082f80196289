//! `align audit …`: the audit and request logs of the data directory: verified against their
//! anchors, queried, followed, exported for a data subject, purged and anonymised by age.

mod tail;
mod verify;

use std::path::{Path, PathBuf};

use align_audit::{PrivacyPolicy, Query, Stream};
use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::common::Area;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};
use crate::progress::{self, CountingLines, Progress};

/// Its help text is the doc comment of `Command::Audit` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Check a log's hash chain, and that it still reaches its latest anchor (the highest
    /// sequence anchored in DIR/audit-anchors.jsonl and in --anchor FILE), so newest records
    /// removed with the head rewritten are caught; exits 4 naming the first broken record.
    ///
    /// Example: align audit verify --stream audit --anchor /mnt/offsite/audit-anchors.jsonl
    Verify {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        /// Also check against the anchors in FILE, kept off this machine: a copy of
        /// DIR/audit-anchors.jsonl, or audit.checkpoint events one JSON object a line (as
        /// webhooks deliver them or `align events list --json` prints them).
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
    },
    /// Show recent records, newest first. Example: align audit query --action api_key.revoked
    Query {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Delete records older than the retention period (request 30 days, audit 400), leaving a
    /// signed checkpoint so the log still verifies. Example: align audit purge --stream request
    Purge {
        /// request, audit or both.
        #[arg(long, default_value = "both")]
        stream: String,
        /// Instead of the policy's retention.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<i64>,
    },
    /// Coarsen IPs (/24, /48) and drop user agents of records older than the policy's age
    /// (request 7 days, audit 90); the log still verifies. Example: align audit anonymize
    Anonymize {
        /// request, audit or both.
        #[arg(long, default_value = "both")]
        stream: String,
        /// Instead of the policy's age.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<i64>,
    },
    /// The last records of a log, oldest first; with --follow, then every new record as the
    /// server (or any other process) commits it, until interrupted (Ctrl-C).
    ///
    /// With --json each record is one JSON line (the export view: values, no hashes).
    ///
    /// Example: align audit tail --stream request -n 50 --follow --json
    Tail {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        /// How many existing records to print first.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        lines: usize,
        /// Keep running and print records as they are appended.
        #[arg(short = 'f', long)]
        follow: bool,
        /// With --follow, how often to look for new records.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        interval_ms: u64,
    },
    /// One data subject's records (as subject or actor) as JSON Lines, for access requests,
    /// on stdout or into a new file (created 0600: it holds personal data).
    /// Example: align audit export --subject 3f2a… --to subject.jsonl
    Export {
        /// A user id or API key id.
        #[arg(long)]
        subject: String,
        /// Write to this new file instead of stdout.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    let (d, o) = (common.open().await?, common.out());
    match action {
        Action::Verify { stream, anchor } => {
            verify::audit_verify(&d, &stream, anchor.as_deref(), &o).await
        }
        Action::Export { subject, to } => export(&d, &subject, to.as_deref()).await,
        Action::Purge {
            stream,
            older_than_days,
        } => privacy(&d, true, &stream, older_than_days, &o).await,
        Action::Anonymize {
            stream,
            older_than_days,
        } => privacy(&d, false, &stream, older_than_days, &o).await,
        Action::Query {
            stream,
            action,
            limit,
        } => query(&d, &stream, action.as_deref(), limit, &o).await,
        Action::Tail {
            stream,
            lines,
            follow,
            interval_ms,
        } => {
            let args = tail::TailArgs {
                stream: stream_named(&stream)?,
                lines,
                follow,
                interval: std::time::Duration::from_millis(interval_ms.max(10)),
            };
            tail::tail(&d, &args, &o).await
        }
    }
}

fn stream_named(name: &str) -> Result<Stream, Failure> {
    match name {
        "audit" => Ok(Stream::Audit),
        "request" | "requests" => Ok(Stream::Request),
        _ => Err(Failure::usage("--stream must be audit or request")),
    }
}

async fn query(
    d: &DataDir,
    stream_name: &str,
    action: Option<&str>,
    limit: usize,
    out: &Out,
) -> Result<(), Failure> {
    let sink = d.audit().await?;
    let mut q = Query::new(stream_named(stream_name)?);
    q.action = action.map(str::to_owned);
    q.limit = limit.clamp(1, align_audit::MAX_LIMIT);
    let page = sink.query(&q).await?;
    let _ = sink.close().await;
    let rows: Vec<Value> = page
        .records
        .iter()
        .map(|r| {
            let e = r.entry();
            json!({
                "sequence": r.sequence(), "time": e.time(), "action": e.action(),
                "actor": e.actor().id(), "target": e.target(), "status": e.status(),
                "path": e.path(), "ip": e.ip().map(|i| i.to_string()),
                "requests": requests_of(e),
            })
        })
        .collect();
    out.table(
        &rows,
        &[
            "sequence", "time", "action", "actor", "target", "status", "path", "requests",
        ],
    )
}

/// The requests a record accounts for: 1, or for a request-log summary of folded rejections
/// (`metadata.folded.count`, written by `align serve`), their number.
fn requests_of(e: &align_audit::Entry) -> u64 {
    e.metadata()["folded"]["count"].as_u64().unwrap_or(1)
}

/// `align audit export`: one data subject's records as JSON Lines on stdout, or in a new file
/// `to` (created `0600`: the records hold personal data).
async fn export(d: &DataDir, subject: &str, to: Option<&Path>) -> Result<(), Failure> {
    let file = match to {
        Some(path) => Some(
            align_keys::files::private_options()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let sink = d.audit().await?;
    let mut progress = Progress::new("exporting");
    let n = match file {
        Some(file) => {
            let mut lines = CountingLines::new(std::io::BufWriter::new(file), &mut progress);
            let n = sink.export_subject(subject, &mut lines).await?;
            lines
                .into_inner()
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            n
        }
        None => {
            let mut stdout = CountingLines::new(std::io::stdout(), &mut progress);
            sink.export_subject(subject, &mut stdout).await?
        }
    };
    progress.finish();
    let _ = sink.close().await;
    eprintln!("exported {n} records");
    Ok(())
}

fn streams(name: &str) -> Result<Vec<Stream>, Failure> {
    match name {
        "both" => Ok(vec![Stream::Request, Stream::Audit]),
        other => Ok(vec![stream_named(other)?]),
    }
}

/// `align audit purge|anonymize`: retention and de-identification by age (defaults from the
/// privacy policy: request log kept 30 days, audit 400; anonymised after 7 and 90 days).
async fn privacy(
    d: &DataDir,
    purge: bool,
    stream_name: &str,
    older_than_days: Option<i64>,
    out: &Out,
) -> Result<(), Failure> {
    let policy = PrivacyPolicy::default();
    let sink = d.audit_with_key(purge).await?;
    let mut rows = Vec::new();
    for s in streams(stream_name)? {
        let age = match (older_than_days, purge) {
            (Some(days), _) => chrono::TimeDelta::days(days),
            (None, true) => policy.retention(s),
            (None, false) => policy.anonymise_after(s),
        };
        let cutoff = Utc::now() - age;
        let n = if purge {
            let label = format!("purging the {} log", s.as_str());
            progress::while_running(&label, sink.purge(s, cutoff)).await?
        } else {
            let label = format!("anonymising the {} log", s.as_str());
            progress::while_running(&label, sink.anonymise(s, cutoff)).await?
        };
        rows.push(json!({ "stream": s.as_str(), "olderThanDays": age.num_days(), "records": n }));
    }
    sink.close().await?;
    out.table(&rows, &["stream", "olderThanDays", "records"])
}
