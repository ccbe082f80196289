//! `GET /api/v1/me`: exactly the seed's shape, plus `environment`.

use align_keys::vocabulary::NamedSet;
use align_keys::{Environment, KeyId, OrganizationId, ProjectId, UserId};
use http::StatusCode;
use serde::Serialize;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};

/// The answer, serialised straight from the cached record (no intermediate `Value`). Fields
/// are in alphabetical order, the order the former `json!` object had, so the bytes are the
/// same.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me<'a> {
    api_key_id: KeyId,
    created_by_user_id: UserId,
    environment: Environment,
    key_name: &'a str,
    key_prefix: &'a str,
    last_used_at: String,
    organization_id: OrganizationId,
    permissions: Option<NamedSet<'a>>,
    scope: &'static str,
    scoped_project_id: Option<ProjectId>,
}

pub(super) fn get(req: &Request) -> Result<Response, ApiError> {
    let k = req.auth.key.record();
    Ok(h::json(
        StatusCode::OK,
        &Me {
            api_key_id: k.id,
            created_by_user_id: k.created_by,
            environment: k.environment,
            key_name: &k.name,
            key_prefix: &k.prefix,
            last_used_at: h::timestamp(req.auth.key.last_used_at()),
            organization_id: k.organization_id,
            permissions: k.permission_names(),
            scope: k.scope.kind(),
            scoped_project_id: k.scope.project_id(),
        },
    ))
}
