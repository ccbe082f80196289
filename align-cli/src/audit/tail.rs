//! `align audit tail`: the last records of a log, oldest first, and with `--follow` every
//! record committed after them (by the server or any other process), until interrupted.

use std::io::Write;
use std::time::Duration;

use align_audit::{AuditSink, ExportRecord, MAX_LIMIT, Query, Record, Stream};

use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// What `audit tail` was asked for.
pub(crate) struct TailArgs {
    pub(crate) stream: Stream,
    /// How many existing records to print first.
    pub(crate) lines: usize,
    /// Keep printing new records.
    pub(crate) follow: bool,
    /// How often to look for new records.
    pub(crate) interval: Duration,
}

pub(crate) async fn tail(d: &DataDir, a: &TailArgs, out: &Out) -> Result<(), Failure> {
    let sink = d.audit().await?;
    let result = run(sink.as_ref(), a, out).await;
    let _ = sink.close().await;
    match result {
        // `align audit tail -f | head` ends when the reader goes away: not a failure.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

async fn run(sink: &dyn AuditSink, a: &TailArgs, out: &Out) -> Result<(), Failure> {
    let start = sink.head(a.stream).await?.sequence;
    let recent = newer_than(sink, a.stream, 0, a.lines).await?;
    print(&recent, out)?;
    if !a.follow {
        return Ok(());
    }
    let mut last = recent.last().map_or(start, Record::sequence).max(start);
    let mut shutdown = std::pin::pin!(align_server::shutdown_signal());
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(a.interval) => {}
        }
        // The head is one indexed row: cheap to poll, and most polls find nothing new.
        if sink.head(a.stream).await?.sequence <= last {
            continue;
        }
        let new = newer_than(sink, a.stream, last, usize::MAX).await?;
        print(&new, out)?;
        if let Some(r) = new.last() {
            last = r.sequence();
        }
    }
}

/// The records of `stream` after sequence `after`, oldest first; at most `cap` of them (the
/// newest).
async fn newer_than(
    sink: &dyn AuditSink,
    stream: Stream,
    after: u64,
    cap: usize,
) -> Result<Vec<Record>, Failure> {
    let mut found = Vec::new();
    if cap == 0 {
        return Ok(found);
    }
    // Queries page newest first: walk back until `after` or `cap` is reached.
    let mut query = Query::new(stream).limit(cap.min(MAX_LIMIT));
    'pages: loop {
        let page = sink.query(&query).await?;
        for record in page.records {
            if record.sequence() <= after {
                break 'pages;
            }
            found.push(record);
            if found.len() >= cap {
                break 'pages;
            }
        }
        match page.next_cursor {
            Some(c) => query = query.after(c),
            None => break,
        }
    }
    found.reverse();
    Ok(found)
}

/// One line per record: JSON (the export view) with `--json`, else a readable line.
fn print(records: &[Record], out: &Out) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    for r in records {
        if out.json {
            let line = serde_json::to_string(&ExportRecord::of(r))
                .map_err(|e| Failure::Output(e.into()))?;
            writeln!(stdout, "{line}")?;
        } else {
            writeln!(stdout, "{}", human(r))?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn human(r: &Record) -> String {
    let e = r.entry();
    let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let actor = match e.actor() {
        align_audit::Actor::ApiKey { prefix, .. } => prefix.clone(),
        align_audit::Actor::User { id } => format!("user:{id}"),
        align_audit::Actor::System => "system".to_owned(),
    };
    let time = e
        .time()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut line = [
        format!("#{}", r.sequence()),
        time,
        e.action().to_owned(),
        actor,
        dash(e.target()),
        e.status().map_or_else(|| "-".to_owned(), |s| s.to_string()),
        dash(e.method()),
        dash(e.path()),
    ]
    .join("  ");
    // A summary of folded rejections stands for that many requests.
    let n = super::requests_of(e);
    if n > 1 {
        line.push_str(&format!("  (x{n}, folded)"));
    }
    line
}
