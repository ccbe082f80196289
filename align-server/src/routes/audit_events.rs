//! `GET /api/v1/audit-events` and `GET /api/v1/request-logs`: the organisation's audit log
//! and request log, newest first, with filters (audit: actor, action, target; requests:
//! keyId, status; both: since, until) and cursor paging. Both need `audit:read` and an
//! organisation-scoped live key: project and sandbox keys would otherwise see other
//! projects' or live activity. The request log shows addresses coarsened (DESIGN §11).

use align_audit::{Actor, Cursor, Query, Record, Stream};
use align_keys::Permission;
use http::StatusCode;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::Principal;
use crate::state::AppState;

fn view(r: &Record) -> Value {
    let e = r.entry();
    let ip = match e.stream() {
        Stream::Request => e.ip().map(align_audit::coarsen_ip),
        Stream::Audit => e.ip(),
    };
    let actor = match e.actor() {
        Actor::ApiKey { id, prefix } => json!({ "type": "api_key", "id": id, "keyPrefix": prefix }),
        Actor::User { id } => json!({ "type": "user", "id": id }),
        _ => json!({ "type": "system" }),
    };
    json!({
        "id": e.id(),
        "sequence": r.sequence(),
        "time": h::timestamp(e.time()),
        "organizationId": e.organization(),
        "environment": e.environment(),
        "actor": actor,
        "action": e.action(),
        "target": e.target(),
        "requestId": e.request_id(),
        "method": e.method(),
        "path": e.path(),
        "status": e.status(),
        "ip": ip.map(|ip| ip.to_string()),
        "userAgent": e.user_agent(),
        "metadata": e.metadata(),
    })
}

/// Checks that `who` may read the organisation's audit log: `audit:read` and the whole
/// organisation's live activity in reach (an organisation-scoped live key, or an admin).
pub(crate) fn may_read(who: Principal<'_>) -> Result<(), ApiError> {
    who.require(Permission::AuditRead)?;
    if !who.oversees_organization() {
        return Err(ApiError::forbidden(
            "audit events can be read with organization-scoped live keys only",
        ));
    }
    Ok(())
}

/// A page of `who`'s organisation's audit records matching `q`, newest first.
pub(crate) async fn query(
    state: &AppState,
    who: Principal<'_>,
    mut q: Query,
) -> Result<align_audit::Page, ApiError> {
    may_read(who)?;
    q.organization = Some(who.organization_id().to_string());
    state.audit.query(&q).await.map_err(|e| {
        tracing::error!(error = %e, "audit query failed");
        ApiError::unavailable()
    })
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    list_stream(state, req, Stream::Audit).await
}

/// `GET /api/v1/request-logs`.
pub(super) async fn request_logs(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    list_stream(state, req, Stream::Request).await
}

async fn list_stream(
    state: &AppState,
    req: &Request,
    stream: Stream,
) -> Result<Response, ApiError> {
    let who = req.acting().who;
    may_read(who)?;
    let mut q = Query::new(stream);
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        match (stream, k.as_str()) {
            // Empty text filters (`actor=`, `cursor=`) are no filter; an empty `status=` is not
            // an integer, and is refused below like any other.
            (_, "actor" | "action" | "target" | "keyId" | "cursor") if v.is_empty() => {}
            (Stream::Audit, "actor") | (Stream::Request, "keyId") => q.actor = Some(v),
            (Stream::Audit, "action") => q.action = Some(v),
            (Stream::Audit, "target") => q.target = Some(v),
            (Stream::Request, "status") => {
                q.status = Some(
                    v.parse()
                        .ok()
                        .filter(|s| (100..=599).contains(s))
                        .ok_or_else(|| {
                            ApiError::invalid_request("status must be an HTTP status (100 to 599)")
                        })?,
                );
            }
            (_, "since" | "until") => {
                let t = h::time_param(&k, &v)?;
                if k == "since" {
                    q.since = Some(t);
                } else {
                    q.until = Some(t);
                }
            }
            (_, "limit") => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be between 1 and 200"))?;
            }
            (_, "cursor") => {
                let c: Cursor = v
                    .parse()
                    .map_err(|_| ApiError::invalid_request("cursor is not valid"))?;
                q.cursor = Some(c);
            }
            _ => {}
        }
    }
    let page = query(state, who, q).await?;
    let data: Vec<Value> = page.records.iter().map(view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next_cursor.map(|c| c.to_string()) }),
    ))
}
