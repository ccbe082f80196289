//! `align projects …`: an organisation's projects.

use align_keys::store::PageRequest;
use align_keys::{Project, ProjectId};
use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::common::Area;
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// Its help text is the doc comment of `Command::Projects` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Add a project. Example: align projects create --name billing
    Create {
        #[arg(long)]
        name: String,
    },
    /// List projects. Example: align projects list --json
    List,
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    let (d, o, org) = (common.open().await?, common.out(), common.org.as_deref());
    match action {
        Action::Create { name } => create(&d, org, &name, &o).await,
        Action::List => list(&d, org, &o).await,
    }
}

async fn create(d: &DataDir, org: Option<&str>, name: &str, out: &Out) -> Result<(), Failure> {
    let name = align_core::name::checked_name(name)
        .map_err(|defect| Failure::usage(format!("--{defect}")))?;
    let org = d.org(org).await?;
    let p = Project {
        id: ProjectId::new(),
        organization_id: org.id,
        name: name.to_owned(),
        created_at: Utc::now(),
    };
    d.store.create_project(&p).await?;
    d.record(
        "project.created",
        org.id,
        p.id.to_string(),
        json!({ "name": p.name }),
    )
    .await?;
    out.object(&json!({ "id": p.id, "name": p.name, "organizationId": org.id }))
}

async fn list(d: &DataDir, org: Option<&str>, out: &Out) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let rows: Vec<Value> = d
        .store
        .list_projects(org.id, &page)
        .await?
        .data
        .iter()
        .map(|p| json!({ "id": p.id, "name": p.name, "createdAt": p.created_at }))
        .collect();
    out.table(&rows, &["id", "name", "createdAt"])
}
