//! `align leaks …` (API only): the organisation's leak reports and its leak policy.

use clap::Subcommand;

use crate::client;
use crate::common::Area;
use crate::output::Failure;

/// Its help text is the doc comment of `Command::Leaks` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Leak reports (GitHub secret scanning, report-compromise): where, when, what was done.
    /// Example: align leaks list --api-url URL
    List,
    /// Show or set what happens to a leaked key. Example: align leaks policy --live notify --api-url URL
    Policy {
        /// For live keys: revoke (default) or notify.
        #[arg(long, value_parser = ["revoke", "notify"])]
        live: Option<String>,
        /// For sandbox keys: notify (default) or revoke.
        #[arg(long, value_parser = ["revoke", "notify"])]
        sandbox: Option<String>,
    },
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    let api = common.api("align leaks")?;
    let o = common.out();
    match action {
        Action::List => {
            let v = api.call("GET", "/api/v1/leaks?limit=200", None).await?;
            let columns = [
                "reportedAt",
                "keyPrefix",
                "environment",
                "reporter",
                "action",
                "url",
            ];
            client::print(&v, &columns, &o)
        }
        Action::Policy { live, sandbox } => {
            let v = if live.is_none() && sandbox.is_none() {
                api.call("GET", "/api/v1/organization", None).await?
            } else {
                let mut body = serde_json::json!({});
                if let Some(a) = live {
                    body["leakedKeyAction"] = serde_json::json!(a);
                }
                if let Some(a) = sandbox {
                    body["leakedSandboxKeyAction"] = serde_json::json!(a);
                }
                api.call("PATCH", "/api/v1/organization", Some(body))
                    .await?
            };
            o.object(&serde_json::json!({
                "leakedKeyAction": v.get("leakedKeyAction"),
                "leakedSandboxKeyAction": v.get("leakedSandboxKeyAction"),
                "securityContact": v.get("securityContact"),
            }))
        }
    }
}
