//! `GET /api/v1/keys/{id}/usage` (DESIGN §11): one key's requests per minute, hour or day by
//! outcome, empty steps included, from the request log's usage index. Needs `keys:read` on
//! that key (the same judge as reading the key).

use align_audit::{Granularity, UsageQuery};
use align_keys::Permission;
use chrono::{DateTime, TimeDelta, Utc};
use http::StatusCode;
use serde_json::json;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::state::AppState;

/// The range when the caller names none: the last 24 hours.
const DEFAULT_RANGE: TimeDelta = TimeDelta::hours(24);

pub(super) async fn key_usage(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let key = super::keys::load(state, req.acting().who, id, Permission::KeysRead).await?;
    answer(state, req, key.id.to_string()).await
}

/// The usage of actor `actor` (a key's id) over the request's `from`, `to` and `granularity`.
pub(super) async fn answer(
    state: &AppState,
    req: &Request,
    actor: String,
) -> Result<Response, ApiError> {
    let (mut from, mut to, mut granularity) = (None, None, Granularity::Hour);
    // An empty value is a bad field (400), as the spec's formats say, not "the default".
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        match k.as_str() {
            "from" => from = Some(h::time_param(&k, &v)?),
            "to" => to = Some(h::time_param(&k, &v)?),
            "granularity" => {
                granularity = v.parse().map_err(|_| {
                    ApiError::invalid_request("granularity must be minute, hour or day")
                })?;
            }
            _ => {}
        }
    }
    let (from, to) = range(from, to, crate::audit::now());
    let q = UsageQuery::new(actor, from, to, granularity)
        .map_err(|e| ApiError::invalid_request(format!("{e} (from {from}, to {to})")))?;
    let buckets = state.audit.usage(&q).await.map_err(|e| {
        tracing::error!(error = %e, "usage query failed");
        ApiError::unavailable()
    })?;
    Ok(h::json(StatusCode::OK, &json!({ "data": buckets })))
}

/// `[from, to)` with the defaults: `to` now, `from` a day before `to`.
fn range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = to.unwrap_or(now);
    (from.unwrap_or(to - DEFAULT_RANGE), to)
}
