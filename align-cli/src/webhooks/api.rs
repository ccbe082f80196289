//! `align webhooks …` against a running server (`--api-url`): the same commands as on the
//! data directory, plus `endpoints show|update|test` and `recover`, through the server's
//! `/api/v1/webhook-endpoints` and `/api/v1/webhook-deliveries` routes. The server decides
//! who may see and change what, and checks URLs against its own delivery policy.

use align_webhooks::{DeliveryId, EndpointId};
use serde_json::{Value, json};

use super::endpoints::SECRET_SHOWN_ONCE;
use super::{Action, EndpointAction};
use crate::client::Api;
use crate::events::parse_time;
use crate::output::{Failure, Out};

const ENDPOINTS: &str = "/api/v1/webhook-endpoints";

const ENDPOINT_COLUMNS: &[&str] = &[
    "id",
    "environment",
    "enabled",
    "url",
    "eventTypes",
    "projectId",
    "createdAt",
];

/// The endpoint's path, from its UUID (an `ep_` prefix is accepted).
fn endpoint(id: &str) -> Result<String, Failure> {
    Ok(format!("{ENDPOINTS}/{}", endpoint_id(id)?.0))
}

/// The endpoint's id, from its UUID (an `ep_` prefix is accepted).
fn endpoint_id(id: &str) -> Result<EndpointId, Failure> {
    EndpointId::parse(id).ok_or_else(|| Failure::usage("the endpoint id must be a UUID"))
}

/// `--events a,b` as the API's `eventTypes`.
fn event_types(list: &str) -> Result<Value, Failure> {
    let types: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return Err(Failure::usage("--events needs at least one event type"));
    }
    Ok(json!(types))
}

/// Runs a webhook endpoint or delivery command against the server. `listen` and `verify`
/// never get here: they need no server.
pub(crate) async fn run(api: &Api, action: Action, out: &Out) -> Result<(), Failure> {
    match action {
        Action::Endpoints { action } => endpoints(api, action, out).await,
        Action::Deliveries {
            endpoint: id,
            limit,
        } => {
            let path = format!(
                "{}/deliveries?limit={}",
                endpoint(&id)?,
                limit.clamp(1, 200)
            );
            let mut rows = api.call("GET", &path, None).await?["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !out.json {
                // The table shows the latest attempt's answer; --json keeps every attempt.
                for row in &mut rows {
                    let last = row["attempts"]
                        .as_array()
                        .and_then(|a| a.last())
                        .map_or(Value::Null, |a| a["status"].clone());
                    row["lastStatus"] = last;
                }
            }
            let columns = [
                "id",
                "eventType",
                "status",
                "attemptCount",
                "lastStatus",
                "nextAttemptAt",
                "createdAt",
            ];
            out.table(&rows, &columns)
        }
        Action::Attempts {
            delivery,
            limit,
            cursor,
        } => {
            let id = DeliveryId::parse(&delivery)
                .ok_or_else(|| Failure::usage("the delivery id must be a UUID"))?;
            let mut path = format!(
                "/api/v1/webhook-deliveries/{}/attempts?limit={}",
                id.0,
                super::endpoints::attempt_limit(limit)?
            );
            if let Some(c) = cursor {
                super::endpoints::cursor_position(&c)?;
                path.push_str(&format!("&cursor={c}"));
            }
            let page = api.call("GET", &path, None).await?;
            super::endpoints::print_attempts(&page, out)
        }
        Action::Retry { delivery } => {
            let id = DeliveryId::parse(&delivery)
                .ok_or_else(|| Failure::usage("the delivery id must be a UUID"))?;
            let path = format!("/api/v1/webhook-deliveries/{}/retry", id.0);
            out.object(&api.call("POST", &path, Some(json!({}))).await?)
        }
        Action::Recover {
            endpoint: id,
            since,
        } => {
            let since = parse_time("--since", &since)?;
            let body = json!({ "since": crate::events::rfc3339(since) });
            let path = format!("{}/recover", endpoint(&id)?);
            out.object(&api.call("POST", &path, Some(body)).await?)
        }
        Action::Verify { .. } | Action::Listen { .. } => Err(Failure::usage(
            "webhooks verify and listen run locally; they take no --api-url",
        )),
    }
}

async fn endpoints(api: &Api, action: EndpointAction, out: &Out) -> Result<(), Failure> {
    match action {
        EndpointAction::Add(a) => {
            let mut body = json!({ "url": a.url });
            if let Some(p) = a.project {
                body["projectId"] = json!(p);
            }
            if let Some(e) = a.environment {
                body["environment"] = json!(e);
            }
            if let Some(list) = a.events {
                body["eventTypes"] = event_types(&list)?;
            }
            let v = api.call("POST", ENDPOINTS, Some(body)).await?;
            out.secret_object(&v, SECRET_SHOWN_ONCE)
        }
        EndpointAction::List => {
            let rows = api
                .list(&format!("{ENDPOINTS}?limit=200"), usize::MAX)
                .await?;
            out.table(&rows, ENDPOINT_COLUMNS)
        }
        EndpointAction::Show { id } => out.object(&api.call("GET", &endpoint(&id)?, None).await?),
        EndpointAction::Update {
            id,
            url,
            events,
            enable,
            disable,
            max_per_second,
        } => {
            let mut body = json!({});
            if let Some(u) = url {
                body["url"] = json!(u);
            }
            if let Some(list) = events {
                body["eventTypes"] = event_types(&list)?;
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            if let Some(n) = max_per_second {
                body["maxPerSecond"] = json!(n);
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                return Err(Failure::usage(
                    "nothing to change: pass --url, --events, --enable, --disable or \
                     --max-per-second",
                ));
            }
            out.object(&api.call("PATCH", &endpoint(&id)?, Some(body)).await?)
        }
        EndpointAction::Remove { id } => {
            let path = endpoint(&id)?;
            api.client()?
                .delete_webhook_endpoint(endpoint_id(&id)?.0)
                .await
                .map_err(|e| api.failure(e, &path))?;
            out.object(&json!({ "id": id, "deleted": true }))
        }
        EndpointAction::RotateSecret { id, grace_seconds } => {
            let body = json!({ "graceSeconds": grace_seconds });
            let path = format!("{}/rotate-secret", endpoint(&id)?);
            let v = api.call("POST", &path, Some(body)).await?;
            out.secret_object(&v, SECRET_SHOWN_ONCE)
        }
        EndpointAction::Test { id } => {
            let path = format!("{}/test", endpoint(&id)?);
            out.object(&api.call("POST", &path, Some(json!({}))).await?)
        }
    }
}
