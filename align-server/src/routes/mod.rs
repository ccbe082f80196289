//! The router: one table, [`ROUTE_TABLE`], lists every route (method, path template, who may
//! call it, whether it is an API operation or a browser page) and, for the routes an API key
//! calls, its handler. Dispatch, the metrics label ([`route_of`]), the `405 Allow` answer
//! ([`unrouted`]) and the route tests all read it. Anything it does not list is `404 not_found`
//! (as for an unknown object: the route table is public in `docs/openapi.yaml`).
//!
//! Routes that need no key (`/healthz`, `/.well-known/security.txt`, the `/docs` pages, GitHub's
//! secret-scanning intake) are answered in `app.rs` before authentication; they are listed here
//! with [`Access::None`] so their metrics labels and `405`s come from the same table. The
//! `/console` pages are the console's own (cookie sessions, forms) and are not listed.

pub(crate) mod audit_events;
mod events;
pub(crate) mod keys;
pub(crate) mod keyspaces;
pub(crate) mod leaks;
mod me;
pub(crate) mod organization;
pub(crate) mod privacy;
mod projects;
mod usage;
pub(crate) mod users;
pub(crate) mod webhooks;

pub(crate) use keys::view as key_view;

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use http::Method;

use crate::app::Request;
use crate::error::ApiError;
use crate::http::Response;
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An API key (or, for `GET /metrics`, the operator's `metrics.token`): authenticated,
    /// rate-limited, dispatched from this table.
    Key,
    /// No key: answered before authentication (health, `security.txt`, the `/docs` pages,
    /// GitHub's signed secret-scanning reports).
    None,
}

/// Where a route is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// An HTTP API operation: in `docs/openapi.yaml`.
    Api,
    /// A browser page or one of its files (`/docs`): not part of the HTTP API, so not in the
    /// OpenAPI document.
    Page,
}

/// The future a handler returns.
type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// A handler: the state, the authenticated request and the path's `{id}` (empty when the
/// template has none; `id/keyId` for a template with both).
type Handler = for<'a> fn(&'a AppState, &'a Request, &'a str) -> Reply<'a>;

/// One route: a method on a path template.
#[derive(Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template; `{id}` matches one segment.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Whether it is an API operation or a browser page.
    pub listing: Listing,
    /// The handler, for the routes dispatched from this table (`None` for those answered in
    /// `app.rs` before authentication).
    handler: Option<Handler>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("access", &self.access)
            .field("listing", &self.listing)
            .field("dispatched", &self.handler.is_some())
            .finish()
    }
}

/// A handler from an async expression over `state`, `req` and `id`.
macro_rules! handler {
    (|$state:pat_param, $req:pat_param, $id:pat_param| $body:expr) => {{
        fn handler<'a>($state: &'a AppState, $req: &'a Request, $id: &'a str) -> Reply<'a> {
            Box::pin(async move { $body })
        }
        Some(handler as Handler)
    }};
}

/// An API operation an API key calls.
const fn api(method: Method, path: &'static str, handler: Option<Handler>) -> Route {
    Route {
        method,
        path,
        access: Access::Key,
        listing: Listing::Api,
        handler,
    }
}

/// A route answered before authentication.
const fn open(method: Method, path: &'static str, listing: Listing) -> Route {
    Route {
        method,
        path,
        access: Access::None,
        listing,
        handler: None,
    }
}

/// Every route and page, in the order `Allow` lists methods.
pub static ROUTE_TABLE: &[Route] = &[
    open(Method::GET, "/healthz", Listing::Api),
    api(Method::GET, "/api/v1/me", handler!(|_, r, _| me::get(r))),
    api(
        Method::POST,
        "/api/v1/keys",
        handler!(|s, r, _| keys::create(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/keys",
        handler!(|s, r, _| keys::list(s, r).await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/verify",
        handler!(|s, r, _| keyspaces::verify(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/keys/{id}",
        handler!(|s, r, id| keys::get(s, r, id).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/keys/{id}",
        handler!(|s, r, id| keys::update(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/{id}/revoke",
        handler!(|s, r, id| keys::act(s, r, id, "revoke").await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/{id}/rotate",
        handler!(|s, r, id| keys::act(s, r, id, "rotate").await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/{id}/suspend",
        handler!(|s, r, id| keys::act(s, r, id, "suspend").await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/{id}/resume",
        handler!(|s, r, id| keys::act(s, r, id, "resume").await),
    ),
    api(
        Method::GET,
        "/api/v1/keys/{id}/usage",
        handler!(|s, r, id| usage::key_usage(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/keys/{id}/report-compromise",
        handler!(|s, r, id| leaks::report_compromise(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/leaks",
        handler!(|s, r, _| leaks::list(s, r).await),
    ),
    open(Method::POST, crate::leaks::github::PATH, Listing::Api),
    api(
        Method::POST,
        "/api/v1/keyspaces",
        handler!(|s, r, _| keyspaces::create(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/keyspaces",
        handler!(|s, r, _| keyspaces::list(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/keyspaces/{id}",
        handler!(|s, r, id| keyspaces::get(s, r, id).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/keyspaces/{id}",
        handler!(|s, r, id| keyspaces::update(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/keyspaces/{id}/keys",
        handler!(|s, r, id| keyspaces::create_key(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/keyspaces/{id}/keys",
        handler!(|s, r, id| keyspaces::list_keys(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/keyspaces/{id}/keys/{keyId}",
        handler!(|s, r, id| keyspaces::get_key(s, r, id).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/keyspaces/{id}/keys/{keyId}",
        handler!(|s, r, id| keyspaces::update_key(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/keyspaces/{id}/keys/{keyId}/revoke",
        handler!(|s, r, id| keyspaces::act(s, r, id, "revoke").await),
    ),
    api(
        Method::POST,
        "/api/v1/keyspaces/{id}/keys/{keyId}/rotate",
        handler!(|s, r, id| keyspaces::act(s, r, id, "rotate").await),
    ),
    api(
        Method::POST,
        "/api/v1/keyspaces/{id}/keys/{keyId}/suspend",
        handler!(|s, r, id| keyspaces::act(s, r, id, "suspend").await),
    ),
    api(
        Method::POST,
        "/api/v1/keyspaces/{id}/keys/{keyId}/resume",
        handler!(|s, r, id| keyspaces::act(s, r, id, "resume").await),
    ),
    api(
        Method::GET,
        "/api/v1/keyspaces/{id}/keys/{keyId}/usage",
        handler!(|s, r, id| keyspaces::key_usage(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/projects",
        handler!(|s, r, _| projects::create(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/projects",
        handler!(|s, r, _| projects::list(s, r).await),
    ),
    api(
        Method::DELETE,
        "/api/v1/projects/{id}",
        handler!(|s, r, id| projects::delete(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/users",
        handler!(|s, r, _| users::list(s, r).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/users/{id}",
        handler!(|s, r, id| users::patch(s, r, id).await),
    ),
    api(
        Method::DELETE,
        "/api/v1/users/{id}",
        handler!(|s, r, id| users::remove(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/privacy/export",
        handler!(|s, r, _| privacy::export(s, r).await),
    ),
    api(
        Method::POST,
        "/api/v1/privacy/erasure",
        handler!(|s, r, _| privacy::erasure(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/organization",
        handler!(|s, r, _| organization::get(s, r).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/organization",
        handler!(|s, r, _| organization::update(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/events",
        handler!(|s, r, _| events::list(s, r).await),
    ),
    api(
        Method::POST,
        "/api/v1/webhook-endpoints",
        handler!(|s, r, _| webhooks::create(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/webhook-endpoints",
        handler!(|s, r, _| webhooks::list(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/webhook-endpoints/{id}",
        handler!(|s, r, id| webhooks::get(s, r, id).await),
    ),
    api(
        Method::PATCH,
        "/api/v1/webhook-endpoints/{id}",
        handler!(|s, r, id| webhooks::update(s, r, id).await),
    ),
    api(
        Method::DELETE,
        "/api/v1/webhook-endpoints/{id}",
        handler!(|s, r, id| webhooks::delete(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/webhook-endpoints/{id}/rotate-secret",
        handler!(|s, r, id| webhooks::act(s, r, id, "rotate-secret").await),
    ),
    api(
        Method::POST,
        "/api/v1/webhook-endpoints/{id}/test",
        handler!(|s, r, id| webhooks::act(s, r, id, "test").await),
    ),
    api(
        Method::POST,
        "/api/v1/webhook-endpoints/{id}/recover",
        handler!(|s, r, id| webhooks::act(s, r, id, "recover").await),
    ),
    api(
        Method::GET,
        "/api/v1/webhook-endpoints/{id}/deliveries",
        handler!(|s, r, id| webhooks::deliveries(s, r, id).await),
    ),
    api(
        Method::POST,
        "/api/v1/webhook-deliveries/{id}/retry",
        handler!(|s, r, id| webhooks::retry(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/webhook-deliveries/{id}/attempts",
        handler!(|s, r, id| webhooks::attempts(s, r, id).await),
    ),
    api(
        Method::GET,
        "/api/v1/audit-events",
        handler!(|s, r, _| audit_events::list(s, r).await),
    ),
    api(
        Method::GET,
        "/api/v1/request-logs",
        handler!(|s, r, _| audit_events::request_logs(s, r).await),
    ),
    // With the operator's `metrics.token` it is answered before authentication (`app.rs`).
    api(
        Method::GET,
        "/metrics",
        handler!(|s, r, _| metrics(s, r).await),
    ),
    open(Method::GET, "/.well-known/security.txt", Listing::Api),
    open(Method::GET, "/docs", Listing::Page),
    open(Method::GET, "/docs/init.js", Listing::Page),
    open(Method::GET, "/docs/docs.css", Listing::Page),
    open(Method::GET, "/docs/openapi.yaml", Listing::Page),
    open(Method::GET, "/docs/swagger-ui-bundle.js", Listing::Page),
    open(Method::GET, "/docs/swagger-ui.css", Listing::Page),
    open(Method::GET, "/docs/licenses.txt", Listing::Page),
];

/// A path template and its routes, in table order.
struct Resource {
    template: &'static str,
    routes: Vec<&'static Route>,
}

/// [`ROUTE_TABLE`] indexed by path template.
struct Router {
    by_path: matchit::Router<usize>,
    resources: Vec<Resource>,
}

/// Stands for an empty path segment during lookup: a template's `{id}` matches one segment,
/// also an empty one (`/api/v1/keys/` is `GET /api/v1/keys/{id}` with an empty id, answered
/// `404` by the handler), which the router would not match. A decoded URI path never holds a
/// NUL byte, so the stand-in matches no static segment.
const EMPTY_SEGMENT: &str = "\0";

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let mut by_path = matchit::Router::new();
    let mut resources: Vec<Resource> = Vec::new();
    for route in ROUTE_TABLE {
        match resources.iter_mut().find(|r| r.template == route.path) {
            Some(r) => r.routes.push(route),
            None => {
                // A template that does not insert is caught by the table's tests (every route
                // is found by its own path).
                if by_path.insert(route.path, resources.len()).is_ok() {
                    resources.push(Resource {
                        template: route.path,
                        routes: vec![route],
                    });
                }
            }
        }
    }
    Router { by_path, resources }
});

/// The path with each empty segment (after the first `/`) replaced by [`EMPTY_SEGMENT`].
fn lookup_path(path: &str) -> std::borrow::Cow<'_, str> {
    let has_empty_segment = path.contains("//") || (path.len() > 1 && path.ends_with('/'));
    if !has_empty_segment {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut segments = path.split('/');
    let mut out = String::with_capacity(path.len() + 4);
    out.push_str(segments.next().unwrap_or_default());
    for s in segments {
        out.push('/');
        out.push_str(if s.is_empty() { EMPTY_SEGMENT } else { s });
    }
    std::borrow::Cow::Owned(out)
}

/// The routes of the template `path` fits, and the `{id}` it carries (empty when none).
fn find(path: &str) -> Option<(&'static Resource, String)> {
    let router = &*ROUTER;
    let key = lookup_path(path);
    let found = router.by_path.at(&key).ok()?;
    let resource = router.resources.get(*found.value)?;
    let segment = |name| match found.params.get(name) {
        Some(EMPTY_SEGMENT) | None => "",
        Some(id) => id,
    };
    // A template with a second id (`/keyspaces/{id}/keys/{keyId}`) hands both as `id/keyId`
    // (a decoded segment may hold no `/`, so the split is unambiguous).
    let id = match found.params.get("keyId") {
        Some(_) => format!("{}/{}", segment("id"), segment("keyId")),
        None => segment("id").to_owned(),
    };
    Some((resource, id))
}

/// The routes of the template `path` fits.
fn resource_of(path: &str) -> Option<&'static Resource> {
    let router = &*ROUTER;
    let key = lookup_path(path);
    let index = *router.by_path.at(&key).ok()?.value;
    router.resources.get(index)
}

/// The route template a request matches, for metrics labels.
///
/// Each thread remembers the last path it looked up and that path's routes: a client sends
/// runs of the same path (a flood of refusals most of all, whose requests reach no handler
/// and cost little else), and comparing the path is cheaper than routing it again.
pub(crate) fn route_of(method: &Method, path: &str) -> &'static str {
    thread_local! {
        static LAST: std::cell::RefCell<(String, Option<&'static Resource>)> =
            const { std::cell::RefCell::new((String::new(), None)) };
    }
    let resource = LAST.with(|last| match last.try_borrow_mut() {
        Ok(mut last) => {
            if last.0 != path || last.0.is_empty() {
                last.0.clear();
                last.0.push_str(path);
                last.1 = resource_of(path);
            }
            last.1
        }
        Err(_) => resource_of(path),
    });
    resource
        .filter(|r| r.routes.iter().any(|r| r.method == *method))
        .map_or("unmatched", |r| r.template)
}

/// The error for a request no route answers: `405` with `Allow` when the path exists with
/// other methods, `404` otherwise.
pub(crate) fn unrouted(method: &Method, path: &str) -> ApiError {
    let allowed: Vec<&str> = resource_of(path).map_or_else(Vec::new, |r| {
        r.routes
            .iter()
            .filter(|r| r.method != *method)
            .map(|r| r.method.as_str())
            .collect()
    });
    if allowed.is_empty() {
        ApiError::not_found()
    } else {
        ApiError::method_not_allowed(allowed.join(", "))
    }
}

/// Runs the handler for an authenticated request.
pub(crate) async fn dispatch(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.parts.uri.path();
    let found = find(path).and_then(|(resource, id)| {
        let route = resource
            .routes
            .iter()
            .find(|r| r.method == req.parts.method)?;
        Some((route.handler?, id))
    });
    let Some((handler, id)) = found else {
        return Err(unrouted(&req.parts.method, path));
    };
    handler(state, &req, &id).await
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
    use proptest::prelude::*;

    /// The linear scan the table replaced: whether `path` fits `template` segment by segment.
    fn is_param(segment: &str) -> bool {
        segment.starts_with('{') && segment.ends_with('}')
    }

    fn fits(template: &str, path: &str) -> bool {
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if is_param(a) || a == b => {}
                _ => return false,
            }
        }
    }

    /// Whether template `a` is more specific than `b` (both fitting one path): at the first
    /// segment where one has a literal and the other a parameter, `a` has the literal.
    fn more_specific(a: &str, b: &str) -> bool {
        for (x, y) in a.split('/').zip(b.split('/')) {
            if is_param(x) != is_param(y) {
                return !is_param(x);
            }
        }
        false
    }

    /// The template a path fits, by a linear scan: literal segments win over parameters.
    fn scanned_template(path: &str) -> Option<&'static str> {
        let mut best: Option<&'static str> = None;
        for r in ROUTE_TABLE.iter().filter(|r| fits(r.path, path)) {
            best = match best {
                Some(b) if !more_specific(r.path, b) => Some(b),
                _ => Some(r.path),
            };
        }
        best
    }

    /// `route_of` as a linear scan over the table.
    fn scanned_route_of(method: &Method, path: &str) -> &'static str {
        let Some(template) = scanned_template(path) else {
            return "unmatched";
        };
        ROUTE_TABLE
            .iter()
            .find(|r| r.method == *method && r.path == template)
            .map_or("unmatched", |r| r.path)
    }

    /// `unrouted`'s `Allow` as a linear scan over the table.
    fn scanned_allow(method: &Method, path: &str) -> Option<String> {
        let template = scanned_template(path)?;
        let allowed: Vec<&str> = ROUTE_TABLE
            .iter()
            .filter(|r| r.method != *method && r.path == template)
            .map(|r| r.method.as_str())
            .collect();
        (!allowed.is_empty()).then(|| allowed.join(", "))
    }

    fn concrete(template: &str, id: &str) -> String {
        template.replace("{id}", id)
    }

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
            "/",
            "api/v1/me",
        ] {
            assert_eq!(route_of(&get, unmatched), "unmatched", "{unmatched}");
        }
        assert_eq!(route_of(&Method::DELETE, "/api/v1/me"), "unmatched");
    }

    /// `route_of` remembers each thread's last path: repeating, alternating and prefix-sharing
    /// paths each get their own template, for every method.
    #[test]
    fn the_remembered_path_answers_only_for_itself() {
        let paths = [
            ("/api/v1/me", "/api/v1/me"),
            ("/api/v1/me", "/api/v1/me"),
            ("/api/v1/mex", "unmatched"),
            ("/api/v1/keys/k1", "/api/v1/keys/{id}"),
            ("/api/v1/keys/k2", "/api/v1/keys/{id}"),
            ("/api/v1/keys/k2/x", "unmatched"),
            ("/api/v1/me", "/api/v1/me"),
        ];
        for _ in 0..2 {
            for (path, template) in paths {
                assert_eq!(route_of(&Method::GET, path), template, "{path}");
                assert_eq!(route_of(&Method::PUT, path), "unmatched", "{path}");
            }
        }
        // The same path answers by method.
        assert_eq!(
            route_of(&Method::POST, "/api/v1/keys/k1/revoke"),
            "/api/v1/keys/{id}/revoke"
        );
        assert_eq!(
            route_of(&Method::GET, "/api/v1/keys/k1/revoke"),
            "unmatched"
        );
    }

    #[test]
    fn every_route_is_found_by_its_own_path_with_any_id() {
        for r in ROUTE_TABLE {
            for id in ["k1", "00000000-0000-4000-8000-000000000000", "%2F", ""] {
                let path = concrete(r.path, id);
                assert_eq!(route_of(&r.method, &path), r.path, "{} {path}", r.method);
            }
        }
    }

    #[test]
    fn the_key_routes_have_handlers_and_the_open_ones_are_answered_before_authentication() {
        for r in ROUTE_TABLE {
            match r.access {
                Access::Key => assert!(r.handler.is_some(), "{} {}", r.method, r.path),
                Access::None => assert!(r.handler.is_none(), "{} {}", r.method, r.path),
            }
            if r.listing == Listing::Page {
                assert_eq!(r.access, Access::None, "{}", r.path);
            }
        }
        let open: Vec<_> = ROUTE_TABLE
            .iter()
            .filter(|r| r.access == Access::None && r.listing == Listing::Api)
            .map(|r| r.path)
            .collect();
        assert_eq!(
            open,
            [
                "/healthz",
                crate::leaks::github::PATH,
                "/.well-known/security.txt"
            ]
        );
    }

    #[test]
    fn an_empty_id_segment_still_fits_the_template_as_before() {
        assert_eq!(route_of(&Method::GET, "/api/v1/keys/"), "/api/v1/keys/{id}");
        assert_eq!(
            route_of(&Method::POST, "/api/v1/keys//revoke"),
            "/api/v1/keys/{id}/revoke"
        );
        let e = unrouted(&Method::PUT, "/api/v1/keys/");
        assert_eq!(e.status, http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("GET, PATCH"));
    }

    #[test]
    fn a_path_with_other_methods_is_405_with_allow_in_table_order_and_an_unknown_one_404() {
        let e = unrouted(&Method::PUT, "/api/v1/webhook-endpoints/x");
        assert_eq!(e.status, http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.code, "method_not_allowed");
        assert_eq!(e.allow.as_deref(), Some("GET, PATCH, DELETE"));
        let e = unrouted(&Method::POST, "/healthz");
        assert_eq!(e.allow.as_deref(), Some("GET"));
        let e = unrouted(&Method::GET, "/api/v1/nothing");
        assert_eq!(e.status, http::StatusCode::NOT_FOUND);
        assert_eq!(e.code, "not_found");
        assert_eq!(e.allow, None);
    }

    /// Paths made of the table's own words, ids and oddities.
    fn path() -> impl Strategy<Value = String> {
        let words: Vec<String> = ROUTE_TABLE
            .iter()
            .flat_map(|r| r.path.split('/'))
            .map(str::to_owned)
            .chain(["x", "", "%00", "{id}", "API", "é"].map(str::to_owned))
            .collect();
        prop_oneof![
            prop::collection::vec(prop::sample::select(words), 0..7)
                .prop_map(|segments| format!("/{}", segments.join("/"))),
            (
                prop::sample::select(ROUTE_TABLE.to_vec()),
                "[a-z0-9%-]{0,12}"
            )
                .prop_map(|(r, id)| concrete(r.path, &id)),
            "[ -~]{0,40}",
        ]
    }

    fn method() -> impl Strategy<Value = Method> {
        prop::sample::select(vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
    }

    proptest! {
        #[test]
        fn the_table_routes_exactly_as_a_linear_scan_of_it(method in method(), path in path()) {
            prop_assert_eq!(route_of(&method, &path), scanned_route_of(&method, &path));
            let e = unrouted(&method, &path);
            let expected = scanned_allow(&method, &path);
            prop_assert_eq!(e.status == http::StatusCode::METHOD_NOT_ALLOWED, expected.is_some());
            prop_assert_eq!(e.allow, expected);
        }
    }

    /// Routing every request of the table (and a miss) through the router and through the
    /// linear scan it replaced. `cargo test --release -p align-server --lib -- --ignored
    /// routing_is_not_slower --nocapture` prints the figures.
    #[test]
    #[ignore = "a timing, run on demand in release"]
    fn routing_is_not_slower_than_the_linear_scan() {
        use std::hint::black_box;
        use std::time::Instant;
        let mut requests: Vec<(Method, String)> = ROUTE_TABLE
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    concrete(r.path, "00000000-0000-4000-8000-000000000000"),
                )
            })
            .collect();
        requests.push((Method::GET, "/api/v1/nothing/here".to_owned()));
        let rounds = 20_000;
        let time = |f: &dyn Fn(&Method, &str) -> &'static str| {
            let started = Instant::now();
            for _ in 0..rounds {
                for (m, p) in &requests {
                    black_box(f(black_box(m), black_box(p)));
                }
            }
            started.elapsed().as_nanos() as f64 / (rounds * requests.len()) as f64
        };
        // Warm both (and build the router) before timing.
        time(&route_of);
        time(&scanned_route_of);
        let table = time(&route_of);
        let scan = time(&scanned_route_of);
        println!(
            "route lookup over {} requests: router {table:.1} ns, linear scan {scan:.1} ns",
            requests.len()
        );
        assert!(
            table <= scan * 1.1,
            "router {table:.1} ns vs scan {scan:.1} ns"
        );
    }
}
