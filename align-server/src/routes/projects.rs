//! `/api/v1/projects`: create and list. Project keys see only their own project.

use align_keys::store::{KeyFilter, PageRequest};
use align_keys::{Permission, Project, ProjectId, Target};
use chrono::Utc;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::Principal;
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
    super::organization::check(req, Permission::ProjectsWrite)?;
    let name = super::users::checked_name(&body.name)?;
    let project = Project {
        id: ProjectId::new(),
        organization_id: me.organization_id,
        name,
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
    Principal::Key(&req.auth).require(Permission::ProjectsRead)?;
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

/// `DELETE /projects/{id}` → `204`; `409 conflict` while the project has an active key
/// (neither revoked nor expired; suspended keys count, they can be resumed) or an enabled
/// webhook endpoint. Revoked keys stay (their audit trail names the project).
pub(super) async fn delete(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let who = req.acting().who;
    let project_id: ProjectId = id.parse().map_err(|_| ApiError::not_found())?;
    let project = state
        .store()
        .get_project(project_id)
        .await?
        .filter(|p| p.organization_id == who.organization_id())
        .ok_or_else(ApiError::not_found)?;
    who.authorize(
        Permission::ProjectsWrite,
        Target {
            organization_id: project.organization_id,
            project_id: Some(project.id),
            environment: None,
        },
    )?;
    let now = Utc::now();
    let filter = KeyFilter {
        organization_id: project.organization_id,
        project_id: Some(project.id),
        environment: None,
        include_revoked: false,
    };
    let mut page = PageRequest {
        limit: align_keys::store::MAX_PAGE_SIZE,
        cursor: None,
    };
    let mut active = 0usize;
    loop {
        let got = state.store().list_keys(&filter, &page).await?;
        active += got
            .data
            .iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|t| t > now))
            .count();
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let pid = project.id.to_string();
    let endpoints = state
        .webhooks
        .organization_endpoints(&project.organization_id.to_string())
        .await?
        .into_iter()
        .filter(|e| e.enabled && e.owner.project.as_deref() == Some(pid.as_str()))
        .count();
    if active > 0 || endpoints > 0 {
        return Err(ApiError::conflict(format!(
            "the project still has {active} active key(s) and {endpoints} enabled webhook \
             endpoint(s): revoke the keys and disable or delete the endpoints first"
        )));
    }
    state.store().delete_project(project.id).await?;
    req.audit(
        state,
        "project.deleted",
        &pid,
        StatusCode::NO_CONTENT,
        json!({ "name": project.name }),
    )
    .await;
    Ok(h::no_content())
}
