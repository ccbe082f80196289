//! `GET /api/v1/privacy/export?subject=ID` and `POST /api/v1/privacy/erasure`: a person's (or
//! a key's) data handed over as JSON Lines, and erased (DESIGN §9). Both need the admin-only
//! permissions (`privacy:read`, `privacy:write`) on an organisation-scoped live key; a subject
//! outside the caller's organisation is `404`. Signed-in users export their own data from
//! the console's profile page through [`export_for`].

use align_keys::Permission;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::{Acting, Principal};
use crate::privacy::{self, Subject};
use crate::routes::users::server_error;
use crate::state::AppState;

/// The media type of an export.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// Checks that `who` may use `permission` over every person of the organisation: an admin,
/// or an admin's organisation-scoped live key that holds it.
fn may(who: Principal<'_>, permission: Permission) -> Result<(), ApiError> {
    who.require(permission)?;
    if !who.oversees_organization() {
        return Err(ApiError::forbidden(
            "privacy requests need an organization-scoped live key",
        ));
    }
    Ok(())
}

/// The subject `id` of `who`'s organisation, or `404`.
async fn subject(state: &AppState, who: Principal<'_>, id: &str) -> Result<Subject, ApiError> {
    privacy::find_subject(state.store().as_ref(), who.organization_id(), id)
        .await
        .map_err(server_error)?
        .ok_or_else(ApiError::not_found)
}

/// Erases `subject` from the server's key store, audit log and webhook store (the caller
/// has checked who may).
pub(crate) async fn erase(
    state: &AppState,
    subject: &Subject,
) -> Result<privacy::Erasure, ApiError> {
    privacy::erase(
        state.store().as_ref(),
        state.audit.as_ref(),
        state.webhooks.as_ref(),
        subject,
    )
    .await
    .map_err(server_error)
}

/// The export of subject `id` for `acting`: anyone with `privacy:read` over the
/// organisation, or a signed-in user asking for themselves. Audited (`privacy.exported`).
pub(crate) async fn export_for(
    state: &AppState,
    acting: &Acting<'_>,
    id: &str,
) -> Result<Vec<u8>, ApiError> {
    let who = acting.who;
    let own =
        matches!(who, Principal::User(u) if u.id.to_string() == id.trim() || u.email == id.trim());
    if !own {
        may(who, Permission::PrivacyRead)?;
    }
    let subject = subject(state, who, id).await?;
    let mut out = Vec::new();
    let lines = privacy::export(
        state.store().as_ref(),
        state.audit.as_ref(),
        &subject,
        &mut out,
    )
    .await
    .map_err(server_error)?;
    acting
        .audit(
            state,
            None,
            "privacy.exported",
            &subject.id(),
            StatusCode::OK,
            json!({ "lines": lines }),
        )
        .await;
    Ok(out)
}

/// `GET /privacy/export?subject=ID`.
pub(super) async fn export(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let mut id = None;
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        if k == "subject" {
            id = Some(v);
        }
    }
    may(req.acting().who, Permission::PrivacyRead)?;
    let id = id
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_request("subject is required: a user id or a key id"))?;
    let body = export_for(state, &req.acting(), &id).await?;
    Ok(h::typed(NDJSON, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureBody {
    subject: String,
}

/// `POST /privacy/erasure` `{"subject":"ID"}`.
pub(super) async fn erasure(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let acting = req.acting();
    let body: ErasureBody = h::read_json(&req.parts.headers, &req.body)?;
    may(acting.who, Permission::PrivacyWrite)?;
    if acting.who.environment() == Some(align_keys::Environment::Sandbox) {
        return Err(ApiError::forbidden(
            align_keys::Denial::SandboxOrganizationChange.to_string(),
        ));
    }
    let subject = subject(state, acting.who, &body.subject).await?;
    let done = erase(state, &subject).await?;
    acting
        .audit(
            state,
            None,
            "privacy.erased",
            &subject.id(),
            StatusCode::OK,
            json!({ "erasedRecords": done.erased_records }),
        )
        .await;
    Ok(h::json(StatusCode::OK, &done.view()))
}
