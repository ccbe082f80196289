//! `align audit verify`: a log's hash chain, held to its latest anchor.
//!
//! The chain and its stored head live in the database, so someone who can write there can
//! remove the newest records and rewrite the head to match; the chain alone then verifies.
//! Anchors (signed heads that `align serve` writes to `DIR/audit-anchors.jsonl` and sends as
//! `audit.checkpoint` events) are kept outside it: the chain must still reach the highest
//! anchored sequence, with the anchored record there.

use std::path::{Path, PathBuf};

use align_audit::{Anchor, AnchorCheck, AnchorLog, Break, BreakReason, Stream};
use chrono::SecondsFormat;
use serde_json::json;

use super::stream_named;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};
use crate::progress::Progress;

/// An anchor and the file it was read from.
struct Found {
    anchor: Anchor,
    file: PathBuf,
}

impl Found {
    /// "the anchor of TIME in FILE".
    fn describe(&self) -> String {
        format!(
            "the anchor of {} in {}",
            self.anchor
                .created_at()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            self.file.display()
        )
    }
}

pub(crate) async fn audit_verify(
    d: &DataDir,
    stream_name: &str,
    anchor_file: Option<&Path>,
    out: &Out,
) -> Result<(), Failure> {
    let s = stream_named(stream_name)?;
    let found = latest_anchor(d.dir(), anchor_file, s)?;
    let check = match &found {
        None => None,
        Some(f) => {
            let key = align_server::audit_anchor_key(d.dir(), false)?.ok_or_else(|| {
                Failure::tampered(format!(
                    "the {stream_name} log has {} (record {}), but {} is missing, so it cannot \
                     be checked: put back the key file from your copy of it",
                    f.describe(),
                    f.anchor.head().sequence,
                    d.dir().join(align_server::ANCHOR_KEY_FILE).display()
                ))
            })?;
            Some(AnchorCheck::new(f.anchor.clone(), *key.public_key()))
        }
    };
    let sink = d.audit().await?;
    let mut progress = Progress::new(format!("verifying the {} log", s.as_str()));
    let report = sink
        .verify_against(s, check.as_ref(), &mut |p| {
            progress.set(p.checked, Some(p.total));
        })
        .await?;
    progress.finish();
    let _ = sink.close().await;
    match &report.broken {
        None => out.object(&json!({
            "stream": stream_name,
            "checked": report.checked,
            "intact": true,
            "anchor": found.map(|f| json!({
                "sequence": f.anchor.head().sequence,
                "createdAt": f.anchor.created_at(),
                "keyId": f.anchor.key_id(),
                "file": f.file.display().to_string(),
            })),
        })),
        Some(b) => Err(Failure::tampered(broken(stream_name, b, found.as_ref()))),
    }
}

/// What went wrong, for the operator: the stream, where, and against which anchor.
fn broken(stream_name: &str, b: &Break, found: Option<&Found>) -> String {
    match (&b.reason, found) {
        (BreakReason::TruncatedBelowAnchor { anchored, head }, Some(f)) => {
            let removed = if head + 1 == *anchored {
                format!("record {anchored} was")
            } else {
                format!("records {} to {anchored} were", head + 1)
            };
            format!(
                "the {stream_name} log was cut short: {} records sequence {anchored}, but the \
                 chain ends at sequence {head} (its head): {removed} removed and the head \
                 rewritten",
                f.describe(),
            )
        }
        (BreakReason::AnchorMismatch | BreakReason::BadAnchorSignature, Some(f)) => format!(
            "the {stream_name} log is broken at record {}: {} ({})",
            b.sequence,
            b.reason,
            f.describe()
        ),
        _ => format!(
            "the {stream_name} log is broken at record {}: {}",
            b.sequence, b.reason
        ),
    }
}

/// The anchor of `stream` with the highest sequence in the data directory's anchor file (if
/// there is one) and in `given`.
fn latest_anchor(
    dir: &Path,
    given: Option<&Path>,
    stream: Stream,
) -> Result<Option<Found>, Failure> {
    let mut files = Vec::new();
    let local = align_server::audit_anchor_log_path(dir);
    if local.exists() {
        files.push(local);
    }
    if let Some(file) = given {
        if !file.is_file() {
            return Err(Failure::usage(format!(
                "--anchor: no anchor file at {}",
                file.display()
            )));
        }
        files.push(file.to_owned());
    }
    let mut best: Option<Found> = None;
    for file in files {
        let latest = AnchorLog::latest(&file).map_err(|e| match e {
            align_audit::Error::InvalidAnchorLine { .. } => {
                Failure::tampered(format!("{}: {e}", file.display()))
            }
            other => Failure::usage(format!("cannot read {}: {other}", file.display())),
        })?;
        let Some(anchor) = latest.get(&stream) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|b| anchor.head().sequence > b.anchor.head().sequence)
        {
            best = Some(Found {
                anchor: anchor.clone(),
                file,
            });
        }
    }
    Ok(best)
}
