//! `/api/v1/projects`: create and list. Project keys see only their own project.

use align_keys::{Permission, Project, ProjectId, Target};
use chrono::Utc;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::state::AppState;

fn view(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "organizationId": p.organization_id,
        "createdAt": h::timestamp(p.created_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
}

pub(super) async fn create(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: CreateBody = h::read_json(&req.parts.headers, &req.body)?;
    let me = req.auth.key.record();
    let target = Target {
        organization_id: me.organization_id,
        project_id: None,
        environment: None,
    };
    req.auth
        .caller()
        .authorize(Permission::ProjectsWrite, target)
        .map_err(|d| ApiError::forbidden(d.to_string()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(
            "name must be 1 to 200 characters without control characters",
        ));
    }
    let project = Project {
        id: ProjectId::new(),
        organization_id: me.organization_id,
        name: name.to_owned(),
        created_at: Utc::now(),
    };
    state.store().create_project(&project).await?;
    let target = project.id.to_string();
    req.audit(
        state,
        "project.created",
        &target,
        StatusCode::CREATED,
        json!({ "name": project.name }),
    )
    .await;
    Ok(h::json(StatusCode::CREATED, &view(&project)))
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let me = req.auth.key.record();
    if !req
        .auth
        .caller()
        .effective_permissions()
        .contains(Permission::ProjectsRead)
    {
        return Err(ApiError::forbidden(
            align_keys::Denial::MissingPermission(Permission::ProjectsRead).to_string(),
        ));
    }
    let page = h::page_request(req.parts.uri.query())?;
    let (data, next): (Vec<Value>, Option<String>) = match me.scope.project_id() {
        Some(own) => {
            let p = state.store().get_project(own).await?;
            (p.iter().map(view).collect(), None)
        }
        None => {
            let page = state
                .store()
                .list_projects(me.organization_id, &page)
                .await?;
            (page.data.iter().map(view).collect(), page.next_cursor)
        }
    };
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": next }),
    ))
}
