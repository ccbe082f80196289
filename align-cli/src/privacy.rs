//! `align privacy export|erase`: the privacy rights of DESIGN §9, on the data directory (the
//! same functions the server runs, `align_server::privacy`) or, with `--api-url`, through a
//! running server's routes.

use std::io::Write;
use std::path::{Path, PathBuf};

use align_server::privacy::{self, Subject};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Api, query_value, resolve_user};
use crate::common::Area;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// Its help text is the doc comment of `Command::Privacy` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Everything Align holds about a person (user id or e-mail: their user record, the keys
    /// they created, every audit and request-log record of them or their keys) or about one
    /// key (its id), as JSON Lines on stdout or into a new file (created 0600).
    ///
    /// Example: align privacy export dev@acme.test --to dev.jsonl
    Export {
        /// A user id or e-mail, or an API key id.
        subject: String,
        /// Write to this new file instead of stdout.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// Erase a person's (or a key's) personal values everywhere Align holds them: IPs and
    /// user agents in the audit and request logs (the chains still verify), their e-mail and
    /// name in webhook messages, attempts and their user record; their sessions end.
    ///
    /// Example: align privacy erase dev@acme.test
    Erase {
        /// A user id or e-mail, or an API key id.
        subject: String,
    },
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    let o = common.out();
    if common.api_url.is_some() {
        let a = common.api("align privacy")?;
        return match action {
            Action::Export { subject, to } => export_api(&a, &subject, to.as_deref()).await,
            Action::Erase { subject } => erase_api(&a, &subject, &o).await,
        };
    }
    let d = common.open().await?;
    let org = common.org.as_deref();
    match action {
        Action::Export { subject, to } => export_local(&d, org, &subject, to.as_deref()).await,
        Action::Erase { subject } => erase_local(&d, org, &subject, &o).await,
    }
}

/// Writes `body` to the new file `to` (created `0600`: it holds personal data) or stdout.
fn deliver(body: &[u8], to: Option<&Path>) -> Result<(), Failure> {
    match to {
        Some(path) => {
            let mut f = align_keys::files::private_options()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", path.display())))?;
            f.write_all(body)?;
            f.sync_all()?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body)?;
            out.flush()?;
        }
    }
    eprintln!(
        "exported {} records",
        body.iter().filter(|b| **b == b'\n').count()
    );
    Ok(())
}

/// The subject `id` (a user id or e-mail, or a key id) of `org`.
async fn subject(d: &DataDir, org: Option<&str>, id: &str) -> Result<Subject, Failure> {
    let org = d.org(org).await?;
    if let Ok(user) = d.user(&org, Some(id)).await {
        return Ok(Subject::User(user));
    }
    privacy::find_subject(d.store.as_ref(), org.id, id)
        .await?
        .ok_or(Failure::NotFound("subject"))
}

/// `align privacy export SUBJECT [--to FILE]` on the data directory.
async fn export_local(
    d: &DataDir,
    org: Option<&str>,
    id: &str,
    to: Option<&Path>,
) -> Result<(), Failure> {
    let s = subject(d, org, id).await?;
    let sink = d.audit().await?;
    let mut body = Vec::new();
    privacy::export(d.store.as_ref(), sink.as_ref(), &s, &mut body).await?;
    let _ = sink.close().await;
    d.record(
        "privacy.exported",
        s.organization_id(),
        s.id(),
        json!({ "lines": body.iter().filter(|b| **b == b'\n').count() }),
    )
    .await?;
    deliver(&body, to)
}

/// `align privacy export SUBJECT --api-url …`.
async fn export_api(api: &Api, id: &str, to: Option<&Path>) -> Result<(), Failure> {
    let id = resolve_user(api, id).await?;
    let body = api
        .call_raw(
            "GET",
            &format!("/api/v1/privacy/export?subject={}", query_value(&id)),
            None,
        )
        .await?;
    deliver(&body, to)
}

/// `align privacy erase SUBJECT` on the data directory.
async fn erase_local(d: &DataDir, org: Option<&str>, id: &str, out: &Out) -> Result<(), Failure> {
    let s = subject(d, org, id).await?;
    let sink = d.audit().await?;
    let done = privacy::erase(d.store.as_ref(), sink.as_ref(), d.webhooks.as_ref(), &s).await?;
    let _ = sink.close().await;
    d.record(
        "privacy.erased",
        s.organization_id(),
        s.id(),
        json!({ "erasedRecords": done.erased_records }),
    )
    .await?;
    out.object(&done.view())
}

/// `align privacy erase SUBJECT --api-url …`.
async fn erase_api(api: &Api, id: &str, out: &Out) -> Result<(), Failure> {
    let id = resolve_user(api, id).await?;
    let v = api
        .call(
            "POST",
            "/api/v1/privacy/erasure",
            Some(json!({ "subject": id })),
        )
        .await?;
    out.object(&v)
}
