//! The router: `/api/v1/...` path segments and method → handler. Anything else is
//! `404 not_found` (as for an unknown object: the route table is public in `docs/openapi.yaml`).
//! Browser pages outside the API (`/docs`) are listed in [`PAGES`] and answered before
//! authentication.

pub(crate) mod audit_events;
mod events;
pub(crate) mod keys;
pub(crate) mod leaks;
mod me;
pub(crate) mod organization;
pub(crate) mod privacy;
mod projects;
pub(crate) mod users;
pub(crate) mod webhooks;

pub(crate) use keys::view as key_view;

use http::Method;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::Response;
use crate::state::AppState;

/// Every route, for the OpenAPI consistency test: (method, path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys"),
    ("GET", "/api/v1/keys/{id}"),
    ("PATCH", "/api/v1/keys/{id}"),
    ("POST", "/api/v1/keys/{id}/revoke"),
    ("POST", "/api/v1/keys/{id}/rotate"),
    ("POST", "/api/v1/keys/{id}/suspend"),
    ("POST", "/api/v1/keys/{id}/resume"),
    ("POST", "/api/v1/keys/{id}/report-compromise"),
    ("GET", "/api/v1/leaks"),
    ("POST", "/api/v1/secret-scanning/github"),
    ("POST", "/api/v1/projects"),
    ("GET", "/api/v1/projects"),
    ("DELETE", "/api/v1/projects/{id}"),
    ("GET", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{id}"),
    ("DELETE", "/api/v1/users/{id}"),
    ("GET", "/api/v1/privacy/export"),
    ("POST", "/api/v1/privacy/erasure"),
    ("GET", "/api/v1/organization"),
    ("PATCH", "/api/v1/organization"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/webhook-endpoints"),
    ("GET", "/api/v1/webhook-endpoints"),
    ("GET", "/api/v1/webhook-endpoints/{id}"),
    ("PATCH", "/api/v1/webhook-endpoints/{id}"),
    ("DELETE", "/api/v1/webhook-endpoints/{id}"),
    ("POST", "/api/v1/webhook-endpoints/{id}/rotate-secret"),
    ("POST", "/api/v1/webhook-endpoints/{id}/test"),
    ("POST", "/api/v1/webhook-endpoints/{id}/recover"),
    ("GET", "/api/v1/webhook-endpoints/{id}/deliveries"),
    ("POST", "/api/v1/webhook-deliveries/{id}/retry"),
    ("GET", "/api/v1/webhook-deliveries/{id}/attempts"),
    ("GET", "/api/v1/audit-events"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/security.txt"),
];

/// Browser pages and their files, served without an API key and not part of the HTTP API (so
/// not in `docs/openapi.yaml`): (method, path template). Listed for metrics labels and `405`s.
pub const PAGES: &[(&str, &str)] = &[
    ("GET", "/docs"),
    ("GET", "/docs/init.js"),
    ("GET", "/docs/docs.css"),
    ("GET", "/docs/openapi.yaml"),
    ("GET", "/docs/swagger-ui-bundle.js"),
    ("GET", "/docs/swagger-ui.css"),
    ("GET", "/docs/licenses.txt"),
];

/// Every route and page.
fn all_routes() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    ROUTES.iter().chain(PAGES)
}

/// Whether `path` fits `template` (`{id}` matches one segment).
fn fits(template: &str, path: &str) -> bool {
    // One pass over both (it runs for every route on every request, for the metrics label).
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "{id}" || a == b => {}
            _ => return false,
        }
    }
}

/// The route template a request matches, for metrics labels.
pub(crate) fn route_of(method: &Method, path: &str) -> &'static str {
    all_routes()
        .find(|(m, template)| *m == method.as_str() && fits(template, path))
        .map_or("unmatched", |(_, template)| template)
}

/// The error for a request no route answers: `405` with `Allow` when the path exists with
/// other methods, `404` otherwise.
pub(crate) fn unrouted(method: &Method, path: &str) -> ApiError {
    let allowed: Vec<&str> = all_routes()
        .filter(|(m, template)| *m != method.as_str() && fits(template, path))
        .map(|(m, _)| *m)
        .collect();
    if allowed.is_empty() {
        ApiError::not_found()
    } else {
        ApiError::method_not_allowed(allowed.join(", "))
    }
}

/// Runs the handler for an authenticated request.
pub(crate) async fn dispatch(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.parts.uri.path();
    if path == "/metrics" && req.parts.method == Method::GET {
        return metrics(state, &req).await;
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(unrouted(&req.parts.method, path));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.parts.method.clone();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["me"]) => me::get(&req),
        (Method::POST, ["keys"]) => keys::create(state, &req).await,
        (Method::GET, ["keys"]) => keys::list(state, &req).await,
        (Method::GET, ["keys", id]) => keys::get(state, &req, id).await,
        (Method::PATCH, ["keys", id]) => keys::update(state, &req, id).await,
        (Method::POST, ["keys", id, "report-compromise"]) => {
            leaks::report_compromise(state, &req, id).await
        }
        (Method::POST, ["keys", id, action]) => keys::act(state, &req, id, action).await,
        (Method::GET, ["leaks"]) => leaks::list(state, &req).await,
        (Method::POST, ["projects"]) => projects::create(state, &req).await,
        (Method::GET, ["projects"]) => projects::list(state, &req).await,
        (Method::DELETE, ["projects", id]) => projects::delete(state, &req, id).await,
        (Method::GET, ["users"]) => users::list(state, &req).await,
        (Method::PATCH, ["users", id]) => users::patch(state, &req, id).await,
        (Method::DELETE, ["users", id]) => users::remove(state, &req, id).await,
        (Method::GET, ["privacy", "export"]) => privacy::export(state, &req).await,
        (Method::POST, ["privacy", "erasure"]) => privacy::erasure(state, &req).await,
        (Method::GET, ["organization"]) => organization::get(state, &req).await,
        (Method::PATCH, ["organization"]) => organization::update(state, &req).await,
        (Method::GET, ["audit-events"]) => audit_events::list(state, &req).await,
        (Method::GET, ["events"]) => events::list(state, &req).await,
        (Method::POST, ["webhook-endpoints"]) => webhooks::create(state, &req).await,
        (Method::GET, ["webhook-endpoints"]) => webhooks::list(state, &req).await,
        (Method::GET, ["webhook-endpoints", id]) => webhooks::get(state, &req, id).await,
        (Method::PATCH, ["webhook-endpoints", id]) => webhooks::update(state, &req, id).await,
        (Method::DELETE, ["webhook-endpoints", id]) => webhooks::delete(state, &req, id).await,
        (Method::GET, ["webhook-endpoints", id, "deliveries"]) => {
            webhooks::deliveries(state, &req, id).await
        }
        (Method::POST, ["webhook-endpoints", id, action]) => {
            webhooks::act(state, &req, id, action).await
        }
        (Method::POST, ["webhook-deliveries", id, "retry"]) => {
            webhooks::retry(state, &req, id).await
        }
        (Method::GET, ["webhook-deliveries", id, "attempts"]) => {
            webhooks::attempts(state, &req, id).await
        }
        _ => Err(unrouted(&method, path)),
    }
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in PATCH bodies.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Whether `headers` carry the operator's `metrics.token` as a bearer token (compared in
/// constant time). Scrapers use it instead of an API key.
pub(crate) fn is_metrics_operator(state: &AppState, headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = state.config.metrics.token.as_deref() else {
        return false;
    };
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(presented) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return false;
    };
    // Hash both first, so the comparison's length is fixed and leaks nothing.
    let a = ring::digest::digest(&ring::digest::SHA256, presented.trim().as_bytes());
    let b = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

/// `GET /metrics` with an API key. Metrics cover the whole deployment, so a key reads them
/// only when it holds everything an operator could: an admin's organisation-scoped live key
/// with every permission, in a deployment of one organisation. Otherwise the operator's
/// `metrics.token` is the way.
async fn metrics(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let me = req.auth.key.record();
    let everything = req.auth.creator_role == align_keys::Role::Admin
        && me.scope == align_keys::Scope::Organization
        && me.environment == align_keys::Environment::Live
        && req.auth.caller().effective_permissions() == align_keys::PermissionSet::ALL;
    if !everything {
        return Err(ApiError::forbidden(
            "metrics need the operator's metrics.token, or an organization-scoped live key with every permission created by an admin",
        ));
    }
    let first_two = align_keys::PageRequest {
        limit: 2,
        cursor: None,
    };
    if state
        .store()
        .list_organizations(&first_two)
        .await?
        .data
        .len()
        > 1
    {
        return Err(ApiError::forbidden(
            "metrics cover every organization of this deployment: use the operator's metrics.token",
        ));
    }
    metrics_text(state).await
}

/// The Prometheus text of `GET /metrics`.
pub(crate) async fn metrics_text(state: &AppState) -> Result<Response, ApiError> {
    let verifier = state.keys.verifier();
    let gauges = [
        (
            "align_verifier_cached_keys",
            "Keys held in the verification cache.",
            verifier.cached_keys() as u64,
        ),
        (
            "align_last_used_pending",
            "Keys whose lastUsedAt waits for the next batch write.",
            verifier.pending_last_used() as u64,
        ),
        (
            "align_ratelimit_tracked_keys",
            "Keys with rate-limit state in memory.",
            state.limits.tracked_keys() as u64,
        ),
        (
            "align_connections_open",
            "Client connections open now.",
            state.connections.open_count() as u64,
        ),
        (
            "align_connections_max",
            "The cap on open client connections (limits.max_connections).",
            state.connections.max() as u64,
        ),
    ];
    let outbox = state.webhooks.outbox_stats().await?;
    let mut gauges = gauges.to_vec();
    gauges.push((
        "align_webhook_queue_depth",
        "Webhook deliveries waiting for an attempt (pending).",
        outbox.pending,
    ));
    gauges.push((
        "align_audit_queue_depth",
        "Request-log entries queued for the audit writer.",
        state.audit.queued() as u64,
    ));
    gauges.push((
        "align_idempotency_bytes",
        "Bytes held by the idempotency table (replies kept for replay, keys, bookkeeping).",
        state.idempotency.bytes() as u64,
    ));
    gauges.extend(state.disk.gauges());
    let mut text = state.metrics.render(&gauges);
    text.push_str(
        "# HELP align_webhook_deliveries Webhook deliveries by outcome (pending, succeeded, failed).\n\
         # TYPE align_webhook_deliveries gauge\n",
    );
    for (status, n) in [
        ("pending", outbox.pending),
        ("succeeded", outbox.succeeded),
        ("failed", outbox.failed),
    ] {
        text.push_str(&format!(
            "align_webhook_deliveries{{status=\"{status}\"}} {n}\n"
        ));
    }
    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_matches_whole_templates_only() {
        let get = Method::GET;
        assert_eq!(route_of(&get, "/api/v1/me"), "/api/v1/me");
        assert_eq!(route_of(&get, "/api/v1/keys/k1"), "/api/v1/keys/{id}");
        assert_eq!(
            route_of(&Method::POST, "/api/v1/keys/k1/revoke"),
            "/api/v1/keys/{id}/revoke"
        );
        for unmatched in [
            "/api/v1/keys/k1/x",
            "/api/v1",
            "/api/v1/me/",
            "/api/v1/mex",
            "",
        ] {
            assert_eq!(route_of(&get, unmatched), "unmatched", "{unmatched}");
        }
        assert_eq!(route_of(&Method::DELETE, "/api/v1/me"), "unmatched");
    }
}
