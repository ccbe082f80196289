//! `/api/v1/keys`: mint (token shown once), list, get, update, revoke, rotate, suspend,
//! resume. Every object is checked against the caller's scope, permissions, role and
//! environment; objects outside its reach answer 404.

use std::time::Duration;

use align_keys::store::{KeyFilter, Page, PageRequest};
use align_keys::{
    Environment, IpNet, KeyChanges, KeyId, KeyRecord, Meta, MintedKey, NewKey, Permission,
    PermissionSet, ProjectId, Scope, Target, Vocabulary,
};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::{Acting, Principal};
use crate::state::AppState;

/// Default and longest grace period of a rotation.
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// The key resource: the `/me` names plus lifecycle times, owner and meta.
pub(crate) fn view(k: &KeyRecord) -> Value {
    json!({
        "ownerId": k.owner_id,
        "meta": k.meta,
        "apiKeyId": k.id,
        "keyName": k.name,
        "keyPrefix": k.prefix,
        "organizationId": k.organization_id,
        "scope": k.scope.kind(),
        "scopedProjectId": k.scope.project_id(),
        "permissions": k.permission_names(),
        "createdByUserId": k.created_by,
        "lastUsedAt": h::opt_timestamp(k.last_used_at),
        "environment": k.environment,
        "createdAt": h::timestamp(k.created_at),
        "expiresAt": h::opt_timestamp(k.expires_at),
        "revokedAt": h::opt_timestamp(k.revoked_at),
        "suspendedAt": h::opt_timestamp(k.suspended_at),
        "rotatedFromKeyId": k.rotated_from,
        "rateLimitPerMinute": k.rate_limit_per_minute,
        "allowedCidrs": k.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn minted_view(m: &align_keys::MintedKey) -> Value {
    let mut v = view(&m.record);
    if let Value::Object(map) = &mut v {
        map.insert("key".into(), Value::String(m.token.expose().to_owned()));
    }
    v
}

/// What an audit record says about a key: never the token.
pub(crate) fn summary(k: &KeyRecord) -> Value {
    json!({
        "keyPrefix": k.prefix,
        "keyName": k.name,
        "scope": k.scope.kind(),
        "scopedProjectId": k.scope.project_id(),
        "environment": k.environment,
        "permissions": k.permission_names(),
    })
}

fn target(k: &KeyRecord) -> Target {
    Target {
        organization_id: k.organization_id,
        project_id: k.scope.project_id(),
        environment: Some(k.environment),
    }
}

fn parse_id(id: &str) -> Result<KeyId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

/// Loads a key `who` may use `permission` on, or answers as the policy says.
pub(crate) async fn load(
    state: &AppState,
    who: Principal<'_>,
    id: &str,
    permission: Permission,
) -> Result<KeyRecord, ApiError> {
    let id = parse_id(id)?;
    let key = state
        .store()
        .get_key(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    who.authorize(permission, target(&key))?;
    Ok(key)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    scope: String,
    #[serde(default, deserialize_with = "h::non_null")]
    project_id: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "h::non_null")]
    environment: Option<Environment>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
}

/// The set named by a request's `permissions` list in the server's vocabulary (`resource:*`
/// expanded now); an unknown name is `400 invalid_request`.
pub(crate) fn parse_permissions(
    names: Option<Vec<String>>,
) -> Result<Option<PermissionSet>, ApiError> {
    names
        .map(|n| {
            Vocabulary::SERVER
                .parse(&n)
                .map_err(|e| ApiError::invalid_request(e.to_string()))
        })
        .transpose()
}

/// What to mint, as the API body and the console form both give it.
#[derive(Debug)]
pub(crate) struct KeyRequest {
    /// Human name.
    pub(crate) name: String,
    /// `organization` or `project`.
    pub(crate) scope: String,
    /// The project of a project-scoped key.
    pub(crate) project_id: Option<String>,
    /// `None` for every permission the scope allows.
    pub(crate) permissions: Option<PermissionSet>,
    /// Default: the calling key's environment (live for a user).
    pub(crate) environment: Option<Environment>,
    /// Optional expiry.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// The embedder's owner id.
    pub(crate) owner_id: Option<String>,
    /// The embedder's metadata.
    pub(crate) meta: Option<Meta>,
}

/// Mints a key for `acting` through the policy (least privilege for keys, the role rules for
/// users); the store's outbox hook emits the event and stages the `api_key.created` audit
/// record in the mint's transaction.
pub(crate) async fn mint(
    state: &AppState,
    acting: &Acting<'_>,
    body: KeyRequest,
) -> Result<MintedKey, ApiError> {
    let who = acting.who;
    let org = who.organization_id();
    let scope = match (body.scope.as_str(), body.project_id.as_deref()) {
        ("organization", None) => Scope::Organization,
        ("organization", Some(_)) => {
            return Err(ApiError::invalid_request(
                "projectId is only allowed with scope \"project\"",
            ));
        }
        ("project", Some(p)) => {
            let id: ProjectId = p.parse().map_err(|_| ApiError::not_found())?;
            let project = state.store().get_project(id).await?;
            match project {
                Some(p) if p.organization_id == org => Scope::Project(id),
                _ => return Err(ApiError::not_found()),
            }
        }
        ("project", None) => {
            return Err(ApiError::invalid_request(
                "scope \"project\" needs a projectId",
            ));
        }
        _ => {
            return Err(ApiError::invalid_request(
                "scope must be \"organization\" or \"project\"",
            ));
        }
    };
    let new = NewKey {
        name: body.name,
        organization_id: org,
        scope,
        permissions: body.permissions,
        environment: body
            .environment
            .or(who.environment())
            .unwrap_or(Environment::Live),
        created_by: who.user_id(),
        expires_at: body.expires_at,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: body.owner_id,
        meta: body.meta,
    };
    let note = acting.note("api_key.created", StatusCode::CREATED, |r| {
        (Some(r.environment), r.id.to_string(), summary(r))
    });
    let minted = state
        .keys
        .with_attachment(note.attachment())
        .mint_as(&who.producer(), new, Utc::now())
        .await?;
    note.settle(state, &minted.record).await;
    Ok(minted)
}

pub(super) async fn create(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: CreateBody = h::read_json(&req.parts.headers, &req.body)?;
    let body = KeyRequest {
        name: body.name,
        scope: body.scope,
        project_id: body.project_id,
        permissions: parse_permissions(body.permissions)?,
        environment: body.environment,
        expires_at: body.expires_at,
        owner_id: body.owner_id,
        meta: body.meta,
    };
    let minted = mint(state, &req.acting(), body).await?;
    Ok(h::json(StatusCode::CREATED, &minted_view(&minted)))
}

/// The keys `who` may read, oldest first: a key sees its project's (and, if sandbox, only
/// sandbox) keys; a user sees what their role reaches. `environment` narrows further.
pub(crate) async fn visible(
    state: &AppState,
    who: Principal<'_>,
    environment: Option<Environment>,
    page: &PageRequest,
) -> Result<Page<KeyRecord>, ApiError> {
    who.require(Permission::KeysRead)?;
    let environment = match who.environment() {
        Some(Environment::Sandbox) => Some(Environment::Sandbox),
        _ => environment,
    };
    let filter = KeyFilter {
        organization_id: who.organization_id(),
        project_id: who.scoped_project(),
        environment,
        include_revoked: true,
    };
    let mut page = state.store().list_keys(&filter, page).await?;
    page.data
        .retain(|k| who.authorize(Permission::KeysRead, target(k)).is_ok());
    Ok(page)
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let page = h::page_request(req.parts.uri.query())?;
    let page = visible(state, req.acting().who, None, &page).await?;
    let data: Vec<Value> = page.data.iter().map(view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next_cursor }),
    ))
}

pub(super) async fn get(state: &AppState, req: &Request, id: &str) -> Result<Response, ApiError> {
    let key = load(state, req.acting().who, id, Permission::KeysRead).await?;
    Ok(h::json(StatusCode::OK, &view(&key)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default, deserialize_with = "h::non_null")]
    name: Option<String>,
    #[serde(default, with = "super::double_option")]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, with = "super::double_option")]
    rate_limit_per_minute: Option<Option<h::Whole<u32>>>,
    #[serde(default, deserialize_with = "h::non_null")]
    allowed_cidrs: Option<Vec<String>>,
    #[serde(default, with = "super::double_option")]
    owner_id: Option<Option<String>>,
    #[serde(default, with = "super::double_option")]
    meta: Option<Option<Meta>>,
}

pub(super) async fn update(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let mut body: UpdateBody = h::read_json(&req.parts.headers, &req.body)?;
    let rate_limit_per_minute = body.rate_limit_per_minute.take().map(|o| o.map(|w| w.0));
    let who = req.acting().who;
    let key = load(state, who, id, Permission::KeysWrite).await?;
    let allowed_cidrs = body
        .allowed_cidrs
        .map(|list| {
            list.iter()
                .map(|c| {
                    align_keys::parse_network(c).ok_or_else(|| {
                        ApiError::invalid_request(
                            "allowedCidrs must hold CIDRs such as 203.0.113.0/24",
                        )
                    })
                })
                .collect::<Result<Vec<IpNet>, ApiError>>()
        })
        .transpose()?;
    let changes = KeyChanges {
        name: body.name,
        expires_at: body.expires_at,
        rate_limit_per_minute,
        allowed_cidrs,
        owner_id: body.owner_id,
        meta: body.meta,
    };
    let changed = changes.changed_fields();
    let note = req
        .acting()
        .note("api_key.updated", StatusCode::OK, move |updated| {
            let mut meta = summary(updated);
            meta["changed"] = json!(changed);
            meta["rateLimitPerMinute"] = json!(updated.rate_limit_per_minute);
            meta["allowedCidrs"] = json!(
                updated
                    .allowed_cidrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
            (Some(updated.environment), updated.id.to_string(), meta)
        });
    let updated = state
        .keys
        .with_attachment(note.attachment())
        .update_as(&who.producer(), key.id, changes, Utc::now())
        .await?;
    note.settle(state, &updated).await;
    Ok(h::json(StatusCode::OK, &view(&updated)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RotateBody {
    #[serde(default, deserialize_with = "h::non_null")]
    grace_seconds: Option<h::Whole<u64>>,
}

/// Rotates a key for `acting`: a successor with the same shape, the old key working for
/// `grace_secs` more; records `api_key.rotated` (the store emits the event).
pub(crate) async fn rotate(
    state: &AppState,
    acting: &Acting<'_>,
    id: &str,
    grace_secs: u64,
) -> Result<align_keys::Rotation, ApiError> {
    let key = load(state, acting.who, id, Permission::KeysWrite).await?;
    if grace_secs > MAX_GRACE_SECS {
        return Err(ApiError::invalid_request(
            "graceSeconds must be at most 2592000 (30 days)",
        ));
    }
    // The record commits with the successor's insert (the rotation's event); it names the
    // old key, as it was, and the successor the hook is handed.
    let old = key.clone();
    let note = acting.note("api_key.rotated", StatusCode::CREATED, move |next| {
        let mut meta = summary(&old);
        meta["successorKeyId"] = json!(next.id);
        meta["successorKeyPrefix"] = json!(next.prefix);
        meta["graceSeconds"] = json!(grace_secs);
        (Some(old.environment), old.id.to_string(), meta)
    });
    let rotation = state
        .keys
        .with_attachment(note.attachment())
        .rotate_as(
            &acting.who.producer(),
            key.id,
            Duration::from_secs(grace_secs),
            Utc::now(),
        )
        .await?;
    note.settle(state, &rotation.successor.record).await;
    Ok(rotation)
}

/// A change of a key's state that `POST /keys/{id}/…` and the console make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateChange {
    /// For good.
    Revoke,
    /// Until resumed.
    Suspend,
    /// Lift a suspension.
    Resume,
}

/// Revokes, suspends or resumes a key for `acting` and records it (the store emits the
/// event).
pub(crate) async fn change_state(
    state: &AppState,
    acting: &Acting<'_>,
    id: &str,
    change: StateChange,
) -> Result<KeyRecord, ApiError> {
    let key = load(state, acting.who, id, Permission::KeysWrite).await?;
    let now = Utc::now();
    let action = match change {
        StateChange::Revoke => "api_key.revoked",
        StateChange::Suspend => "api_key.suspended",
        StateChange::Resume => "api_key.resumed",
    };
    let note = acting.note(action, StatusCode::OK, |r| {
        (Some(r.environment), r.id.to_string(), summary(r))
    });
    let keys = state.keys.with_attachment(note.attachment());
    let record = match change {
        StateChange::Revoke => keys.revoke(key.id, now).await?,
        StateChange::Suspend => keys.suspend(key.id, now).await?,
        StateChange::Resume => keys.resume_as(&acting.who.producer(), key.id, now).await?,
    };
    note.settle(state, &record).await;
    Ok(record)
}

/// `POST /keys/{id}/revoke|rotate|suspend|resume`.
pub(super) async fn act(
    state: &AppState,
    req: &Request,
    id: &str,
    action: &str,
) -> Result<Response, ApiError> {
    let change = match action {
        "revoke" => StateChange::Revoke,
        "suspend" => StateChange::Suspend,
        "resume" => StateChange::Resume,
        "rotate" => {
            // Out of reach is 404 before a bad body is 400, as for the other actions.
            load(state, req.acting().who, id, Permission::KeysWrite).await?;
            let body: RotateBody = h::read_json(&req.parts.headers, &req.body)?;
            let grace = body.grace_seconds.map_or(DEFAULT_GRACE_SECS, |w| w.0);
            let rotation = rotate(state, &req.acting(), id, grace).await?;
            return Ok(h::json(
                StatusCode::CREATED,
                &minted_view(&rotation.successor),
            ));
        }
        _ => return Err(ApiError::not_found()),
    };
    let record = change_state(state, &req.acting(), id, change).await?;
    Ok(h::json(StatusCode::OK, &view(&record)))
}
