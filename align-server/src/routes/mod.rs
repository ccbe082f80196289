//! The router: `/api/v1/...` path segments and method → handler. Anything else is
//! `404 not_found` (as for an unknown object: the route table is public in `docs/openapi.yaml`).

mod audit_events;
mod keys;
mod me;
mod organization;
mod projects;

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
    ("POST", "/api/v1/projects"),
    ("GET", "/api/v1/projects"),
    ("GET", "/api/v1/organization"),
    ("PATCH", "/api/v1/organization"),
    ("GET", "/api/v1/audit-events"),
];

/// Runs the handler for an authenticated request.
pub(crate) async fn dispatch(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.parts.uri.path().to_owned();
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Err(ApiError::not_found());
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = req.parts.method.clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["me"]) => me::get(&req),
        (Method::POST, ["keys"]) => keys::create(state, &req).await,
        (Method::GET, ["keys"]) => keys::list(state, &req).await,
        (Method::GET, ["keys", id]) => keys::get(state, &req, id).await,
        (Method::PATCH, ["keys", id]) => keys::update(state, &req, id).await,
        (Method::POST, ["keys", id, action]) => keys::act(state, &req, id, action).await,
        (Method::POST, ["projects"]) => projects::create(state, &req).await,
        (Method::GET, ["projects"]) => projects::list(state, &req).await,
        (Method::GET, ["organization"]) => organization::get(state, &req).await,
        (Method::PATCH, ["organization"]) => organization::update(state, &req).await,
        (Method::GET, ["audit-events"]) => audit_events::list(state, &req).await,
        _ => Err(ApiError::not_found()),
    }
}
