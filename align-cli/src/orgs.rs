//! `align orgs list`: the organisations in the database.

use align_keys::store::PageRequest;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::common::Area;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// Its help text is the doc comment of `Command::Orgs` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// List them. Example: align orgs list --json
    List,
}

pub(crate) async fn run(
    Args {
        common,
        action: Action::List,
    }: Args,
) -> Result<(), Failure> {
    list(&common.open().await?, &common.out()).await
}

async fn list(d: &DataDir, out: &Out) -> Result<(), Failure> {
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let rows: Vec<Value> = d
        .store
        .list_organizations(&page)
        .await?
        .data
        .iter()
        .map(|o| json!({ "id": o.id, "name": o.name, "securityContact": o.security_contact }))
        .collect();
    out.table(&rows, &["id", "name", "securityContact"])
}
