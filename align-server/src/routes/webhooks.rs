//! `/api/v1/webhook-endpoints` and `/api/v1/webhook-deliveries`: register endpoints (the
//! signing secret shown once), list, get, update, delete, rotate the secret with a grace
//! period, send a test event, list deliveries with their latest attempts, page through one
//! delivery's attempts, retry one delivery and recover every failed one since a time.
//!
//! Endpoints belong to the caller's organisation (and project, for project keys or when a
//! `projectId` is given) and environment; the same policy as for keys decides who sees them,
//! and anything out of reach answers 404.

use std::time::Duration;

use align_keys::{Environment, OrganizationId, Permission, ProjectId, Target};
use align_webhooks::{
    Attempt, Delivery, DeliveryId, Endpoint, EndpointId, EndpointKey, EndpointSecrets, EventFilter,
    NewMessage, Owner, SigningKey, SigningSecret, UrlDefect,
};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::events::{self, EVENT_TYPES, WEBHOOK_TEST};
use crate::http::{self as h, Response};
use crate::principal::{Acting, Principal};
use crate::state::AppState;

/// Default and longest grace period of a secret rotation.
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Longest endpoint URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Most event types one endpoint may filter on.
const MAX_EVENT_TYPES: usize = 100;
/// Default and largest page of deliveries.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;
/// Default and largest page of one delivery's attempts.
const DEFAULT_ATTEMPT_PAGE: usize = 20;
const MAX_ATTEMPT_PAGE: usize = 100;

/// The endpoint resource. Never holds a secret; `secret` (or `publicKey`) is added once by
/// create and rotate-secret.
fn view(ep: &Endpoint) -> Value {
    let event_types = match &ep.filter {
        EventFilter::All => Value::Null,
        EventFilter::Only(types) => json!(types),
    };
    json!({
        "id": ep.id.0,
        "url": ep.url,
        "eventTypes": event_types,
        "environment": ep.environment,
        "enabled": ep.enabled,
        "disabledReason": ep.disabled_reason,
        "organizationId": ep.owner.organization,
        "projectId": ep.owner.project,
        "signatureScheme": scheme(ep.secrets.current()),
        "maxPerSecond": ep.max_per_second,
        "failingSince": h::opt_timestamp(ep.failing_since),
        "createdAt": h::timestamp(ep.created_at),
    })
}

fn scheme(key: &EndpointKey) -> &'static str {
    match key {
        EndpointKey::Symmetric(_) => "v1",
        EndpointKey::Asymmetric(_) => "v1a",
    }
}

/// `view` plus what the owner needs to verify signatures, shown once: the `whsec_` secret
/// for v1, the `whpk_` public key for v1a.
fn view_with_key(ep: &Endpoint) -> Value {
    let mut v = view(ep);
    if let Value::Object(map) = &mut v {
        let field = match ep.secrets.current() {
            EndpointKey::Symmetric(_) => "secret",
            EndpointKey::Asymmetric(_) => "publicKey",
        };
        map.insert(field.into(), Value::String(verification_key(ep)));
    }
    v
}

/// What an audit record says about an endpoint: the host, never the path or query (which
/// some receivers use as a capability).
fn summary(ep: &Endpoint) -> Value {
    let host = url::Url::parse(&ep.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    json!({
        "host": host,
        "environment": ep.environment,
        "projectId": ep.owner.project,
        "enabled": ep.enabled,
    })
}

/// Attempts a delivery's view shows: its latest, oldest first (`attemptCount` counts all).
/// A delivery retried hundreds of times would otherwise make every page of deliveries huge
/// (issue 21: `limit=1` answered 447,833 bytes after 400 retries).
const ATTEMPTS_SHOWN: usize = 10;

fn delivery_view(d: &Delivery, event_type: Option<&str>, attempts: &[Attempt]) -> Value {
    json!({
        "id": d.id.0,
        "endpointId": d.endpoint_id.0,
        "webhookId": d.message_id.0,
        "eventType": event_type,
        "status": d.status.as_str(),
        "attemptCount": d.attempts,
        "nextAttemptAt": h::opt_timestamp(d.next_attempt_at),
        "createdAt": h::timestamp(d.created_at),
        "attempts": attempts.iter().map(attempt_view).collect::<Vec<_>>(),
    })
}

/// One attempt: when, the answer (status and the start of the body, at most 1 KiB) or what
/// went wrong without one, and how long it took.
fn attempt_view(a: &Attempt) -> Value {
    json!({
        "at": h::timestamp(a.at),
        "status": a.status,
        "latencyMs": a.latency_ms,
        "responseBody": a.response_body,
        "error": a.error,
    })
}

/// The policy's view of an endpoint.
fn target(ep: &Endpoint) -> Result<Target, ApiError> {
    let organization_id: OrganizationId = ep
        .owner
        .organization
        .parse()
        .map_err(|_| ApiError::not_found())?;
    let project_id = ep
        .owner
        .project
        .as_deref()
        .map(str::parse::<ProjectId>)
        .transpose()
        .map_err(|_| ApiError::not_found())?;
    Ok(Target {
        organization_id,
        project_id,
        environment: Some(ep.environment),
    })
}

fn authorize(who: Principal<'_>, permission: Permission, ep: &Endpoint) -> Result<(), ApiError> {
    who.authorize(permission, target(ep)?)
}

fn parse_endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).ok_or_else(ApiError::not_found)
}

/// Loads an endpoint `who` may use `permission` on.
pub(crate) async fn load(
    state: &AppState,
    who: Principal<'_>,
    id: &str,
    permission: Permission,
) -> Result<Endpoint, ApiError> {
    let ep = state.webhooks.endpoint(parse_endpoint_id(id)?).await?;
    authorize(who, permission, &ep)?;
    Ok(ep)
}

/// How long creating or changing an endpoint waits for its host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a URL against the endpoint policy: `400 invalid_request` naming the defect (never
/// quoting the URL). A host that does not resolve now (or not within [`RESOLVE_TIMEOUT`]) is
/// accepted; every delivery resolves and checks again.
async fn check_url(state: &AppState, url: &str, env: Environment) -> Result<(), ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid_request(
            "url must be at most 2048 characters",
        ));
    }
    let parsed = match state.url_policy.check_url(url, env) {
        Ok(parsed) => parsed,
        Err(align_webhooks::Error::UrlRefused(defect)) => {
            return Err(ApiError::invalid_request(format!("url refused: {defect}")));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(url::Host::Domain(name)) = parsed.host() else {
        return Ok(());
    };
    // A resolver that does not answer must not hold the request: past the limit the host
    // counts as not resolving now, which is accepted (every delivery checks again).
    let resolved = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        state
            .url_policy
            .check_resolved(name, state.resolver.as_ref()),
    )
    .await;
    match resolved {
        Err(_)
        | Ok(Ok(_))
        | Ok(Err(align_webhooks::Error::UrlRefused(UrlDefect::Unresolvable))) => Ok(()),
        Ok(Err(align_webhooks::Error::UrlRefused(defect))) => {
            Err(ApiError::invalid_request(format!("url refused: {defect}")))
        }
        Ok(Err(e)) => Err(e.into()),
    }
}

/// Validates an event-type filter: known types, or families such as `api_key.*`.
fn event_filter(types: Option<Vec<String>>) -> Result<EventFilter, ApiError> {
    let Some(types) = types else {
        return Ok(EventFilter::All);
    };
    if types.is_empty() || types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid_request(
            "eventTypes must hold 1 to 100 event types, or be null for every event",
        ));
    }
    for t in &types {
        let known = match t.strip_suffix('*') {
            Some(prefix) => {
                t == "*"
                    || (prefix.ends_with('.') && EVENT_TYPES.iter().any(|e| e.starts_with(prefix)))
            }
            None => EVENT_TYPES.contains(&t.as_str()),
        };
        if !known {
            return Err(ApiError::invalid_request(format!(
                "unknown event type in eventTypes; known types: {}",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    if types.iter().any(|t| t == "*") {
        return Ok(EventFilter::All);
    }
    Ok(EventFilter::Only(types))
}

fn new_key(scheme: Option<&str>) -> Result<EndpointKey, ApiError> {
    match scheme.unwrap_or("v1") {
        "v1" => Ok(EndpointKey::Symmetric(SigningSecret::generate()?)),
        "v1a" => Ok(EndpointKey::Asymmetric(SigningKey::generate()?)),
        _ => Err(ApiError::invalid_request(
            "signatureScheme must be \"v1\" (HMAC-SHA256) or \"v1a\" (ed25519)",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    url: String,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "h::non_null")]
    environment: Option<Environment>,
    #[serde(default, deserialize_with = "h::non_null")]
    project_id: Option<String>,
    #[serde(default, deserialize_with = "h::non_null")]
    signature_scheme: Option<String>,
    #[serde(default)]
    max_per_second: Option<h::Whole<u32>>,
}

/// An endpoint to register, as the API body and the console form both give it.
#[derive(Debug)]
pub(crate) struct EndpointRequest {
    /// Where deliveries go.
    pub(crate) url: String,
    /// Event types, or `None` for every event.
    pub(crate) event_types: Option<Vec<String>>,
    /// Default: the calling key's environment (live for a user).
    pub(crate) environment: Option<Environment>,
    /// Only this project's events.
    pub(crate) project_id: Option<String>,
    /// `v1` (default) or `v1a`.
    pub(crate) signature_scheme: Option<String>,
    /// Deliveries per second at most.
    pub(crate) max_per_second: Option<u32>,
}

/// Registers an endpoint for `acting` and records `webhook_endpoint.created`. The result
/// holds the new signing secret: show it once.
pub(crate) async fn register(
    state: &AppState,
    acting: &Acting<'_>,
    body: EndpointRequest,
) -> Result<Endpoint, ApiError> {
    let who = acting.who;
    let org = who.organization_id();
    let project = match (who.scoped_project(), body.project_id.as_deref()) {
        (Some(p), None) => Some(p),
        (Some(p), Some(given)) => {
            // A project key names its own project or nothing; anything else is out of reach.
            let id: ProjectId = given.parse().map_err(|_| ApiError::not_found())?;
            if id != p {
                return Err(ApiError::not_found());
            }
            Some(p)
        }
        (None, None) => None,
        (None, Some(given)) => {
            let id: ProjectId = given.parse().map_err(|_| ApiError::not_found())?;
            match state.store().get_project(id).await? {
                Some(p) if p.organization_id == org => Some(id),
                _ => return Err(ApiError::not_found()),
            }
        }
    };
    let environment = body
        .environment
        .or(who.environment())
        .unwrap_or(Environment::Live);
    who.authorize(
        Permission::WebhooksWrite,
        Target {
            organization_id: org,
            project_id: project,
            environment: Some(environment),
        },
    )?;
    let filter = event_filter(body.event_types)?;
    if body.max_per_second == Some(0) {
        return Err(ApiError::invalid_request("maxPerSecond must be at least 1"));
    }
    // Before the URL check, which may resolve a name.
    let cap = state.config.webhooks.max_endpoints_per_organization;
    let existing = state
        .webhooks
        .organization_endpoint_count(&org.to_string())
        .await?;
    if existing >= u64::try_from(cap).unwrap_or(u64::MAX) {
        return Err(ApiError::endpoint_limit(cap));
    }
    check_url(state, &body.url, environment).await?;
    let key = new_key(body.signature_scheme.as_deref())?;
    let mut ep = Endpoint::new(environment, body.url, EndpointSecrets::new(key)).owned_by(Owner {
        organization: org.to_string(),
        project: project.map(|p| p.to_string()),
    });
    ep.filter = filter;
    ep.max_per_second = body.max_per_second;
    state.webhooks.create_endpoint(&ep).await?;
    acting
        .audit(
            state,
            Some(ep.environment),
            "webhook_endpoint.created",
            &ep.id.0.to_string(),
            StatusCode::CREATED,
            summary(&ep),
        )
        .await;
    Ok(ep)
}

/// What the owner of `ep` needs to verify its signatures, to be shown once: the `whsec_`
/// secret (v1) or the `whpk_` public key (v1a).
pub(crate) fn verification_key(ep: &Endpoint) -> String {
    match ep.secrets.current() {
        EndpointKey::Symmetric(s) => s.expose().expose().to_owned(),
        EndpointKey::Asymmetric(k) => k.verifying_key().to_text(),
    }
}

/// `POST /webhook-endpoints`.
pub(super) async fn create(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: CreateBody = h::read_json(&req.parts.headers, &req.body)?;
    let body = EndpointRequest {
        url: body.url,
        event_types: body.event_types,
        environment: body.environment,
        project_id: body.project_id,
        signature_scheme: body.signature_scheme,
        max_per_second: body.max_per_second.map(|w| w.0),
    };
    let ep = register(state, &req.acting(), body).await?;
    Ok(h::json(StatusCode::CREATED, &view_with_key(&ep)))
}

/// The endpoints `who` may use `permission` on, oldest first.
pub(crate) async fn visible(
    state: &AppState,
    who: Principal<'_>,
    permission: Permission,
) -> Result<Vec<Endpoint>, ApiError> {
    who.require(permission)?;
    Ok(state
        .webhooks
        .organization_endpoints(&who.organization_id().to_string())
        .await?
        .into_iter()
        .filter(|ep| authorize(who, permission, ep).is_ok())
        .collect())
}

/// `GET /webhook-endpoints`: the endpoints the caller can see, oldest first.
pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let who = req.acting().who;
    who.require(Permission::WebhooksRead)?;
    let (limit, after) = paging(req.parts.uri.query())?;
    let visible = visible(state, who, Permission::WebhooksRead).await?;
    let start = after.map_or(0, |a| usize::try_from(a).unwrap_or(usize::MAX));
    let page: Vec<Value> = visible.iter().skip(start).take(limit).map(view).collect();
    let next = (start.saturating_add(limit) < visible.len())
        .then(|| h::encode_cursor((start + limit) as u64));
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": page, "nextCursor": next }),
    ))
}

/// `GET /webhook-endpoints/{id}`.
pub(super) async fn get(state: &AppState, req: &Request, id: &str) -> Result<Response, ApiError> {
    let ep = load(state, req.acting().who, id, Permission::WebhooksRead).await?;
    Ok(h::json(StatusCode::OK, &view(&ep)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default, deserialize_with = "h::non_null")]
    url: Option<String>,
    #[serde(default, with = "super::double_option")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "h::non_null")]
    enabled: Option<bool>,
    #[serde(default, with = "super::double_option")]
    max_per_second: Option<Option<h::Whole<u32>>>,
}

/// `PATCH /webhook-endpoints/{id}`: url, eventTypes, enabled, maxPerSecond.
pub(super) async fn update(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let body: UpdateBody = h::read_json(&req.parts.headers, &req.body)?;
    let mut ep = load(state, req.acting().who, id, Permission::WebhooksWrite).await?;
    let mut changed = Vec::new();
    if let Some(url) = body.url {
        check_url(state, &url, ep.environment).await?;
        ep.url = url;
        changed.push("url");
    }
    if let Some(types) = body.event_types {
        ep.filter = event_filter(types)?;
        changed.push("eventTypes");
    }
    if let Some(enabled) = body.enabled {
        if enabled && !ep.enabled {
            ep.disabled_reason = None;
        }
        if !enabled && ep.enabled {
            ep.disabled_reason = Some("disabled through the API".into());
        }
        ep.enabled = enabled;
        changed.push("enabled");
    }
    if let Some(cap) = body.max_per_second.map(|o| o.map(|w| w.0)) {
        if cap == Some(0) {
            return Err(ApiError::invalid_request("maxPerSecond must be at least 1"));
        }
        ep.max_per_second = cap;
        changed.push("maxPerSecond");
    }
    state.webhooks.update_endpoint(&ep).await?;
    let ep = state.webhooks.endpoint(ep.id).await?;
    let mut meta = summary(&ep);
    meta["changed"] = json!(changed);
    req.audit(
        state,
        "webhook_endpoint.updated",
        &ep.id.0.to_string(),
        StatusCode::OK,
        meta,
    )
    .await;
    Ok(h::json(StatusCode::OK, &view(&ep)))
}

/// `DELETE /webhook-endpoints/{id}`: the endpoint, its deliveries and their attempts. The
/// events stay in `GET /events`.
pub(super) async fn delete(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let ep = load(state, req.acting().who, id, Permission::WebhooksWrite).await?;
    state.webhooks.delete_endpoint(ep.id).await?;
    req.audit(
        state,
        "webhook_endpoint.deleted",
        &ep.id.0.to_string(),
        StatusCode::NO_CONTENT,
        summary(&ep),
    )
    .await;
    let mut r = h::raw_json(StatusCode::NO_CONTENT, bytes::Bytes::new());
    r.headers_mut().remove(http::header::CONTENT_TYPE);
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RotateBody {
    #[serde(default, deserialize_with = "h::non_null")]
    grace_seconds: Option<h::Whole<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecoverBody {
    since: DateTime<Utc>,
}

/// `POST /webhook-endpoints/{id}/rotate-secret|test|recover`.
pub(super) async fn act(
    state: &AppState,
    req: &Request,
    id: &str,
    action: &str,
) -> Result<Response, ApiError> {
    if !matches!(action, "rotate-secret" | "test" | "recover") {
        return Err(ApiError::not_found());
    }
    let mut ep = load(state, req.acting().who, id, Permission::WebhooksWrite).await?;
    let target = ep.id.0.to_string();
    match action {
        "rotate-secret" => {
            let body: RotateBody = h::read_json(&req.parts.headers, &req.body)?;
            let grace = body.grace_seconds.map_or(DEFAULT_GRACE_SECS, |w| w.0);
            if grace > MAX_GRACE_SECS {
                return Err(ApiError::invalid_request(
                    "graceSeconds must be at most 2592000 (30 days)",
                ));
            }
            let next = new_key(Some(scheme(ep.secrets.current())))?;
            ep.secrets
                .rotate(next, Utc::now(), Duration::from_secs(grace));
            state.webhooks.update_endpoint(&ep).await?;
            let mut meta = summary(&ep);
            meta["graceSeconds"] = json!(grace);
            req.audit(
                state,
                "webhook_endpoint.secret_rotated",
                &target,
                StatusCode::OK,
                meta,
            )
            .await;
            let mut v = view_with_key(&ep);
            v["previousSecretValidUntil"] = json!(h::timestamp(
                Utc::now() + chrono::Duration::seconds(i64::try_from(grace).unwrap_or(0))
            ));
            Ok(h::json(StatusCode::OK, &v))
        }
        "test" => {
            let sent = send_test(state, &req.acting(), &ep).await?;
            Ok(h::json(
                StatusCode::ACCEPTED,
                &json!({
                    "webhookId": sent.message.id.0,
                    "type": WEBHOOK_TEST,
                    "deliveryIds": sent.deliveries.iter().map(|d| d.0).collect::<Vec<_>>(),
                }),
            ))
        }
        _ => {
            let body: RecoverBody = h::read_json(&req.parts.headers, &req.body)?;
            let n = state
                .webhooks
                .recover_failed_since(ep.id, body.since, Utc::now())
                .await?;
            let mut meta = summary(&ep);
            meta["since"] = json!(h::timestamp(body.since));
            meta["recovered"] = json!(n);
            req.audit(
                state,
                "webhook_endpoint.recovered",
                &target,
                StatusCode::ACCEPTED,
                meta,
            )
            .await;
            Ok(h::json(StatusCode::ACCEPTED, &json!({ "recovered": n })))
        }
    }
}

/// Sends `ep` (already loaded with `webhooks:write` for `acting`) a signed `webhook.test`
/// event now and records `webhook_endpoint.tested`.
pub(crate) async fn send_test(
    state: &AppState,
    acting: &Acting<'_>,
    ep: &Endpoint,
) -> Result<align_webhooks::Enqueued, ApiError> {
    if !ep.enabled {
        return Err(ApiError::endpoint_disabled());
    }
    let data = json!({
        "endpointId": ep.id.0,
        "message": "A test event sent from Align on request.",
    });
    let message = NewMessage::new(events::event_id(), WEBHOOK_TEST, ep.environment, data)
        .owned_by(ep.owner.clone())
        .only_to(ep.id);
    let out = state.webhooks.enqueue(message, Utc::now()).await?;
    acting
        .audit(
            state,
            Some(ep.environment),
            "webhook_endpoint.tested",
            &ep.id.0.to_string(),
            StatusCode::ACCEPTED,
            summary(ep),
        )
        .await;
    Ok(out)
}

/// `limit` and `cursor` query parameters for the lists of endpoints and deliveries.
fn paging(query: Option<&str>) -> Result<(usize, Option<u64>), ApiError> {
    paging_within(query, DEFAULT_PAGE, MAX_PAGE)
}

/// `limit` (default `default`, at most `max`) and `cursor` query parameters.
fn paging_within(
    query: Option<&str>,
    default: usize,
    max: usize,
) -> Result<(usize, Option<u64>), ApiError> {
    let mut limit = default;
    let mut after = None;
    for (k, v) in h::query_pairs(query)? {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_request(format!("limit must be between 1 and {max}"))
                    })?;
            }
            "cursor" if v.is_empty() => {}
            "cursor" => after = Some(h::decode_cursor(&v)?),
            _ => {}
        }
    }
    Ok((limit, after))
}

/// A delivery with its event type and attempts.
pub(crate) type DeliveryRow = (Delivery, Option<String>, Vec<Attempt>);

/// A page of `ep`'s deliveries (already loaded with `webhooks:read`), newest first, before
/// position `before`, and the position of the next page.
pub(crate) async fn delivery_page(
    state: &AppState,
    ep: &Endpoint,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<DeliveryRow>, Option<u64>), ApiError> {
    let (page, next) = state.webhooks.delivery_page(ep.id, before, limit).await?;
    let mut rows = Vec::with_capacity(page.len());
    for d in page {
        let attempts = state.webhooks.latest_attempts(d.id, ATTEMPTS_SHOWN).await?;
        let message = state.webhooks.message(&d.message_id).await.ok();
        rows.push((d, message.map(|m| m.event_type), attempts));
    }
    Ok((rows, next))
}

/// `GET /webhook-endpoints/{id}/deliveries`: newest first, each with its attempts.
pub(super) async fn deliveries(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let ep = load(state, req.acting().who, id, Permission::WebhooksRead).await?;
    let (limit, before) = paging(req.parts.uri.query())?;
    let (rows, next) = delivery_page(state, &ep, before, limit).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(d, event_type, attempts)| delivery_view(d, event_type.as_deref(), attempts))
        .collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": next.map(h::encode_cursor) }),
    ))
}

/// Loads a delivery (`dlv_` prefix optional) whose endpoint `who` may use `permission` on;
/// anything else answers 404.
async fn load_delivery(
    state: &AppState,
    who: Principal<'_>,
    id: &str,
    permission: Permission,
) -> Result<(Delivery, Endpoint), ApiError> {
    let id = uuid::Uuid::parse_str(id.strip_prefix("dlv_").unwrap_or(id))
        .map(DeliveryId)
        .map_err(|_| ApiError::not_found())?;
    let delivery = state.webhooks.delivery(id).await?;
    let ep = state.webhooks.endpoint(delivery.endpoint_id).await?;
    authorize(who, permission, &ep)?;
    Ok((delivery, ep))
}

/// `GET /webhook-deliveries/{id}/attempts`: the delivery's attempts, newest first, a page
/// at a time (`limit` 1–100, default 20; `cursor` from the previous page's `nextCursor`).
/// Each page is read with a LIMIT: a delivery retried hundreds of times answers a small
/// page (issue 21: `limit=1` once answered 447,833 bytes).
pub(super) async fn attempts(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let (delivery, _) =
        load_delivery(state, req.acting().who, id, Permission::WebhooksRead).await?;
    let (limit, before) = paging_within(
        req.parts.uri.query(),
        DEFAULT_ATTEMPT_PAGE,
        MAX_ATTEMPT_PAGE,
    )?;
    let (page, next) = state
        .webhooks
        .attempt_page(delivery.id, before, limit)
        .await?;
    let data: Vec<Value> = page.iter().map(attempt_view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": next.map(h::encode_cursor) }),
    ))
}

/// `POST /webhook-deliveries/{id}/retry`: due again now, whatever its status.
pub(super) async fn retry(state: &AppState, req: &Request, id: &str) -> Result<Response, ApiError> {
    let (delivery, ep) =
        load_delivery(state, req.acting().who, id, Permission::WebhooksWrite).await?;
    let id = delivery.id;
    state.webhooks.retry(id, Utc::now()).await?;
    let delivery = state.webhooks.delivery(id).await?;
    let attempts = state.webhooks.latest_attempts(id, ATTEMPTS_SHOWN).await?;
    req.audit(
        state,
        "webhook_delivery.retried",
        &id.0.to_string(),
        StatusCode::ACCEPTED,
        json!({ "endpointId": ep.id.0, "webhookId": delivery.message_id.0 }),
    )
    .await;
    Ok(h::json(
        StatusCode::ACCEPTED,
        &delivery_view(&delivery, None, &attempts),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use align_keys::{Environment, KeyManager, MemoryKeyStore, Sha256Hasher};
    use align_webhooks::MemoryWebhookStore;

    use crate::config::Config;
    use crate::state::AppState;

    /// A resolver that never answers, like DNS on a machine without a network.
    struct Hangs;

    #[async_trait::async_trait]
    impl align_webhooks::Resolver for Hangs {
        async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_resolver_that_never_answers_does_not_hold_an_endpoint_change() {
        let config = Config::default();
        let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
        let mut state = AppState::new(
            config,
            keys,
            Arc::new(align_audit::MemorySink::new()),
            Arc::new(MemoryWebhookStore::new()),
            align_http::ReplyStore::memory(),
        )
        .unwrap();
        state.resolver = Arc::new(Hangs);
        let start = Instant::now();
        let checked = super::check_url(&state, "https://0.example/hook", Environment::Live).await;
        assert!(checked.is_ok(), "{checked:?}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        // Syntax is still checked first, without waiting for the resolver.
        let refused = super::check_url(&state, "http://0.example/hook", Environment::Live).await;
        assert!(refused.is_err());
    }
}
