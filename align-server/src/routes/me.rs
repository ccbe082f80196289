//! `GET /api/v1/me`: exactly the seed's shape, plus `environment`.

use http::StatusCode;
use serde_json::json;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};

pub(super) fn get(req: &Request) -> Result<Response, ApiError> {
    let k = req.auth.key.record();
    Ok(h::json(
        StatusCode::OK,
        &json!({
            "apiKeyId": k.id,
            "keyName": k.name,
            "keyPrefix": k.prefix,
            "organizationId": k.organization_id,
            "scope": k.scope.kind(),
            "scopedProjectId": k.scope.project_id(),
            "permissions": k.permissions,
            "createdByUserId": k.created_by,
            "lastUsedAt": h::timestamp(req.auth.key.last_used_at()),
            "environment": k.environment,
        }),
    ))
}
