//! `POST /api/v1/keys/{id}/report-compromise` (a customer reports one of its keys as leaked)
//! and `GET /api/v1/leaks` (the organisation's leak reports). The work is in
//! [`crate::leaks`], shared with GitHub's intake.

use align_keys::store::{Page, PageRequest};
use align_keys::{LeakReport, Permission, Reporter, Target};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::leaks::{Finding, ReportedBy, view};
use crate::principal::Principal;
use crate::state::AppState;

/// Longest `reason` accepted.
const MAX_REASON: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CompromiseBody {
    #[serde(default, deserialize_with = "h::non_null")]
    reason: Option<String>,
}

/// Reports `id` as compromised for `who` (who must be allowed to revoke it): the key is
/// revoked at once whatever the organisation's leak policy, with the `api_key.leaked` record,
/// event and notice. A second report of the same key changes nothing and answers the first.
pub(crate) async fn compromise(
    state: &AppState,
    acting: &crate::principal::Acting<'_>,
    id: &str,
    reason: Option<String>,
) -> Result<(LeakReport, align_keys::KeyRecord), ApiError> {
    let key = super::keys::load(state, acting.who, id, Permission::KeysWrite).await?;
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON)
    {
        return Err(ApiError::invalid_request(
            "reason must be at most 1000 characters",
        ));
    }
    let actor = acting.who.actor();
    let by = ReportedBy {
        reporter: Reporter::Customer,
        actor: &actor,
        meta: acting.meta,
    };
    let finding = Finding {
        reason,
        ..Finding::default()
    };
    let (report, _) = state.key_leaked(by, &key, finding, true).await?;
    let key = state
        .store()
        .get_key(key.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok((report, key))
}

pub(super) async fn report_compromise(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    // Out of reach is 404 before a bad body is 400, as for the other key actions.
    super::keys::load(state, req.acting().who, id, Permission::KeysWrite).await?;
    let body: CompromiseBody = h::read_json(&req.parts.headers, &req.body)?;
    let (report, key) = compromise(state, &req.acting(), id, body.reason).await?;
    let mut answer = view(&report);
    answer["key"] = super::key_view(&key);
    Ok(h::json(StatusCode::OK, &answer))
}

/// The leak reports `who` may read, oldest first: those of keys it could read.
pub(crate) async fn visible(
    state: &AppState,
    who: Principal<'_>,
    page: &PageRequest,
) -> Result<Page<LeakReport>, ApiError> {
    who.require(Permission::KeysRead)?;
    let org = who.organization_id();
    let mut page = state.leaks.list_leaks(org, page).await?;
    page.data.retain(|r| {
        let target = Target {
            organization_id: org,
            project_id: r.project_id,
            environment: Some(r.environment),
        };
        who.authorize(Permission::KeysRead, target).is_ok()
    });
    Ok(page)
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let page = h::page_request(req.parts.uri.query())?;
    let page = visible(state, req.acting().who, &page).await?;
    let data: Vec<Value> = page.data.iter().map(view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next_cursor }),
    ))
}
