//! `GET /api/v1/events`: every event, for callers who cannot (or would rather not) rely on
//! webhooks. Oldest first, cursor-paged, filtered by type (`api_key.revoked`, or a family
//! such as `api_key.*`) and time. A key sees its organisation's events (a project key: its
//! project's) of its own environment; a live key may ask for `environment=sandbox`.

use align_keys::{Environment, Permission};
use align_webhooks::{Message, MessageQuery};
use http::StatusCode;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::Principal;
use crate::state::AppState;

/// Default and largest page.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// An event: its `webhook-id` as `id`, then exactly what deliveries carry.
fn view(m: &Message) -> Value {
    let payload: Value = serde_json::from_str(&m.payload).unwrap_or(Value::Null);
    json!({
        "id": m.id.0,
        "type": m.event_type,
        "timestamp": payload.get("timestamp"),
        "environment": m.environment,
        "data": payload.get("data"),
        "createdAt": h::timestamp(m.created_at),
    })
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let me = req.auth.key.record();
    Principal::Key(&req.auth).require(Permission::WebhooksRead)?;
    let mut q = MessageQuery::new(me.organization_id.to_string(), me.environment);
    q.project = me.scope.project_id().map(|p| p.to_string());
    q.limit = DEFAULT_PAGE;
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        match k.as_str() {
            // Empty filters (`type=`, `cursor=`) are no filter.
            "type" | "cursor" if v.is_empty() => {}
            "type" => {
                if v.len() > 200 {
                    return Err(ApiError::invalid_request(
                        "type must be 1 to 200 characters",
                    ));
                }
                q.event_type = Some(v);
            }
            "since" => q.since = Some(h::time_param(&k, &v)?),
            "until" => q.until = Some(h::time_param(&k, &v)?),
            "environment" => {
                let env = Environment::from_name(&v).ok_or_else(|| {
                    ApiError::invalid_request("environment must be \"live\" or \"sandbox\"")
                })?;
                if me.environment == Environment::Sandbox && env == Environment::Live {
                    return Err(ApiError::forbidden("sandbox keys see only sandbox events"));
                }
                q.environment = env;
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be between 1 and 1000"))?;
            }
            "cursor" => q.after = h::decode_cursor(&v)?,
            _ => {}
        }
    }
    let page = state.webhooks.messages(&q).await?;
    let data: Vec<Value> = page.messages.iter().map(view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next.map(h::encode_cursor) }),
    ))
}
