//! `align events list`: the server's event log (`GET /api/v1/events`), oldest first, and with
//! `--follow` every event stored after it, until interrupted. It is the same log webhook
//! deliveries come from, for callers who poll instead of receiving webhooks.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Api, query_value};
use crate::common::Area;
use crate::output::{Failure, Out};

/// Its help text is the doc comment of `Command::Events` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Events, oldest first (at most --limit); with --follow, then each new one as it is
    /// stored, until Ctrl-C. Needs --api-url and a key with webhooks:read.
    ///
    /// --json prints a JSON array, or with --follow one JSON object per line.
    ///
    /// Example: align events list --api-url http://127.0.0.1:8080 --type api_key.* --since 1h --json
    List {
        /// Only this event type, or a family such as api_key.*.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// live or sandbox (default: the key's environment; a live key may ask for sandbox).
        #[arg(long)]
        environment: Option<String>,
        /// Only events stored at or after this RFC 3339 time or age (30m, 12h, 7d). With
        /// --follow the default is now.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events stored before this RFC 3339 time or age.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many (without --follow).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep running and print events as they are stored.
        #[arg(short = 'f', long)]
        follow: bool,
        /// With --follow, how often to ask for new events.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
    },
}

pub(crate) async fn run(
    Args {
        common,
        action:
            Action::List {
                event_type,
                environment,
                since,
                until,
                limit,
                follow,
                interval_ms,
            },
    }: Args,
) -> Result<(), Failure> {
    let time = |flag: &str, t: Option<String>| t.map(|t| parse_time(flag, &t)).transpose();
    let args = EventArgs {
        event_type,
        environment,
        since: time("--since", since)?,
        until: time("--until", until)?,
        limit: limit.max(1),
        follow,
        interval: std::time::Duration::from_millis(interval_ms.max(50)),
    };
    list(&common.api("align events")?, &args, &common.out()).await
}

/// How far before the newest event seen each poll looks again. An event's time is taken
/// before its transaction commits, so one committed a little later may carry an earlier
/// time than one already printed; looking back (and skipping ids already printed) finds it.
const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// What `events list` was asked for.
struct EventArgs {
    /// Only this type, or a family such as `api_key.*`.
    event_type: Option<String>,
    /// live or sandbox (default: the calling key's; sandbox keys see only sandbox events).
    environment: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// At most this many (without `--follow`).
    limit: usize,
    follow: bool,
    interval: Duration,
}

/// A time in the API's form: RFC 3339, UTC, milliseconds.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `--since`/`--until`: an RFC 3339 time (`2026-05-14T10:00:00Z`) or an age such as `90s`,
/// `30m`, `12h` or `7d` (that long before now).
pub(crate) fn parse_time(flag: &str, text: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        Failure::usage(format!(
            "{flag} must be an RFC 3339 time (2026-05-14T10:00:00Z) or an age like 30m, 12h, 7d"
        ))
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => chrono::TimeDelta::try_seconds(n),
        "m" => chrono::TimeDelta::try_minutes(n),
        "h" => chrono::TimeDelta::try_hours(n),
        "d" => chrono::TimeDelta::try_days(n),
        _ => None,
    }
    .filter(|d| *d >= chrono::TimeDelta::zero())
    .ok_or_else(bad)?;
    Utc::now().checked_sub_signed(age).ok_or_else(bad)
}

/// The query for events stored at or after `since`.
fn query(a: &EventArgs, since: Option<DateTime<Utc>>) -> String {
    let mut q = String::from("/api/v1/events?limit=1000");
    if let Some(t) = &a.event_type {
        q.push_str(&format!("&type={}", query_value(t)));
    }
    if let Some(e) = &a.environment {
        q.push_str(&format!("&environment={}", query_value(e)));
    }
    if let Some(t) = since {
        q.push_str(&format!("&since={}", query_value(&rfc3339(t))));
    }
    if let Some(t) = a.until {
        q.push_str(&format!("&until={}", query_value(&rfc3339(t))));
    }
    q
}

async fn list(api: &Api, a: &EventArgs, out: &Out) -> Result<(), Failure> {
    if !a.follow {
        let rows = api.list(&query(a, a.since), a.limit).await?;
        return out.table(
            &rows,
            &["id", "type", "environment", "timestamp", "createdAt"],
        );
    }
    if a.until.is_some() {
        return Err(Failure::usage("--follow and --until do not go together"));
    }
    match follow(api, a, out).await {
        // `align events list --follow | head` ends when the reader goes away: not a failure.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints the events since `--since` (default: now), then each new one as it is stored,
/// until SIGTERM or Ctrl-C.
async fn follow(api: &Api, a: &EventArgs, out: &Out) -> Result<(), Failure> {
    let start = a.since.unwrap_or_else(Utc::now);
    // Ids printed, with their times: those within LOOK_BACK of the newest may come again.
    let mut printed: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut newest = start;
    let mut shutdown = std::pin::pin!(align_server::shutdown_signal());
    loop {
        let from = newest
            .checked_sub_signed(LOOK_BACK)
            .unwrap_or(start)
            .max(start);
        let rows = api.list(&query(a, Some(from)), usize::MAX).await?;
        let mut stdout = std::io::stdout().lock();
        for row in rows {
            let id = row["id"].as_str().unwrap_or_default().to_owned();
            if printed.contains_key(&id) {
                continue;
            }
            let at = row["createdAt"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(newest, |t| t.with_timezone(&Utc));
            newest = newest.max(at);
            writeln!(stdout, "{}", line(&row, out))?;
            printed.insert(id, at);
        }
        stdout.flush()?;
        drop(stdout);
        let horizon = newest.checked_sub_signed(LOOK_BACK).unwrap_or(start);
        printed.retain(|_, at| *at >= horizon);
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(a.interval) => {}
        }
    }
}

/// One event on one line: JSON with `--json`, else `CREATED  TYPE  ID  DATA`.
fn line(row: &Value, out: &Out) -> String {
    if out.json {
        return row.to_string();
    }
    let text = |k: &str| row[k].as_str().unwrap_or("-").to_owned();
    [
        text("createdAt"),
        text("type"),
        text("id"),
        row["data"].to_string(),
    ]
    .join("  ")
}
