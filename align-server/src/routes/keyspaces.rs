//! `/api/v1/keyspaces` and `POST /api/v1/keys/verify` (DESIGN §12): an organisation's own key
//! spaces, the keys it mints in them for its customers, and their verification.
//!
//! Who may do what is the one policy's answer ([`Principal::authorize`]): `keyspaces:read` to
//! see, `keyspaces:write` to create and change key spaces and to mint, rotate, resume and
//! change their keys, `keys:verify` to verify; all on organisation-level objects, so a
//! project-scoped key reaches none of them. A key space key lives in an environment: a sandbox
//! caller sees, mints and verifies only sandbox keys, and changes no key space itself.

use std::time::Duration;

use align_audit::{Actor, Entry};
use align_keys::keyspace::{
    Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyChanges, KeyspaceKeyFilter, NamedLimit,
    NewKeyspaceKey, Refill, RefillInterval, VerifyCode, VerifyOutcome, VerifyRequest,
};
use align_keys::{Environment, KeyId, Meta, Permission, Target};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::{Acting, Principal};
use crate::state::AppState;

/// Default and longest grace period of a rotation (as for Align keys).
const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// A key space as the API answers it (`GET /api/v1/keyspaces/{id}`), also what `align
/// keyspaces` prints from the data directory.
pub fn keyspace_view(k: &Keyspace) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "permissions": k.permissions,
        "organizationId": k.organization_id,
        "createdByUserId": k.created_by,
        "createdAt": h::timestamp(k.created_at),
    })
}

fn credits_view(c: Option<&Credits>) -> Value {
    match c {
        None => Value::Null,
        Some(c) => json!({
            "remaining": c.remaining,
            "refill": c.refill.map(|r| json!({"amount": r.amount, "interval": r.interval})),
        }),
    }
}

/// A key space key as the API answers it (never the token), also what `align keyspaces keys`
/// prints from the data directory.
pub fn key_view(k: &KeyspaceKey) -> Value {
    json!({
        "id": k.id,
        "keyId": k.id,
        "keyspaceId": k.keyspace_id,
        "organizationId": k.organization_id,
        "name": k.name,
        "keyPrefix": k.prefix,
        "environment": k.environment,
        "ownerId": k.owner_id,
        "meta": k.meta,
        "permissions": k.permissions,
        "createdByUserId": k.created_by,
        "createdAt": h::timestamp(k.created_at),
        "expiresAt": h::opt_timestamp(k.expires_at),
        "revokedAt": h::opt_timestamp(k.revoked_at),
        "suspendedAt": h::opt_timestamp(k.suspended_at),
        "rotatedFromKeyId": k.rotated_from,
        "credits": credits_view(k.credits.as_ref()),
        "ratelimits": k.ratelimits,
    })
}

/// What an audit record says about a key space key: never the token.
fn key_summary(k: &KeyspaceKey) -> Value {
    json!({
        "keyspaceId": k.keyspace_id,
        "keyPrefix": k.prefix,
        "keyName": k.name,
        "environment": k.environment,
        "ownerId": k.owner_id,
    })
}

fn org_target(who: &Principal<'_>, environment: Option<Environment>) -> Target {
    Target {
        organization_id: who.organization_id(),
        project_id: None,
        environment,
    }
}

/// Key spaces are organisation-wide objects: a sandbox key changes none.
fn refuse_sandbox_change(who: &Principal<'_>) -> Result<(), ApiError> {
    if who.environment() == Some(Environment::Sandbox) {
        return Err(ApiError::forbidden(
            "a sandbox key changes no key space (an organisation-wide object)",
        ));
    }
    Ok(())
}

/// Loads key space `id` for `who` holding `permission`; another organisation's is `404`.
pub(crate) async fn load_keyspace(
    state: &AppState,
    who: Principal<'_>,
    id: &str,
    permission: Permission,
) -> Result<Keyspace, ApiError> {
    let id: KeyspaceId = id.parse().map_err(|_| ApiError::not_found())?;
    let ks = state
        .keyspaces
        .store()
        .get_keyspace(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    who.authorize(permission, org_target(&who, None))?;
    if ks.organization_id != who.organization_id() {
        return Err(ApiError::not_found());
    }
    Ok(ks)
}

/// Loads key `key_id` of key space `ks` for `who` holding `permission` on its environment; a
/// key of another space, or live for a sandbox caller, is `404`.
pub(crate) async fn load_key(
    state: &AppState,
    who: Principal<'_>,
    ks: &Keyspace,
    key_id: &str,
    permission: Permission,
) -> Result<KeyspaceKey, ApiError> {
    let id: KeyId = key_id.parse().map_err(|_| ApiError::not_found())?;
    let key = state
        .keyspaces
        .get(id)
        .await?
        .filter(|k| k.keyspace_id == ks.id)
        .ok_or_else(ApiError::not_found)?;
    who.authorize(permission, org_target(&who, Some(key.environment)))?;
    Ok(key)
}

/// Splits the router's `{id}/{keyId}`.
fn two_ids(ids: &str) -> Result<(&str, &str), ApiError> {
    ids.split_once('/').ok_or_else(ApiError::not_found)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyspaceBody {
    name: String,
    prefix: String,
    #[serde(default, deserialize_with = "h::non_null")]
    permissions: Option<Vec<String>>,
}

/// Creates a key space for `acting` (the API and the console).
pub(crate) async fn create_keyspace(
    state: &AppState,
    acting: &Acting<'_>,
    name: &str,
    prefix: &str,
    permissions: Vec<String>,
) -> Result<Keyspace, ApiError> {
    let who = acting.who;
    who.authorize(Permission::KeyspacesWrite, org_target(&who, None))?;
    refuse_sandbox_change(&who)?;
    let ks = state
        .keyspaces
        .create_keyspace(
            who.organization_id(),
            name,
            prefix,
            permissions,
            who.user_id(),
            Utc::now(),
        )
        .await
        .map_err(|e| match e {
            align_keys::Error::AlreadyExists(_) => {
                ApiError::conflict("the organisation already has a key space with this prefix")
            }
            other => ApiError::from(other),
        })?;
    acting
        .audit(
            state,
            None,
            "keyspace.created",
            &ks.id.to_string(),
            StatusCode::CREATED,
            json!({"name": ks.name, "prefix": ks.prefix, "permissions": ks.permissions}),
        )
        .await;
    Ok(ks)
}

pub(super) async fn create(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: CreateKeyspaceBody = h::read_json(&req.parts.headers, &req.body)?;
    let ks = create_keyspace(
        state,
        &req.acting(),
        &body.name,
        &body.prefix,
        body.permissions.unwrap_or_default(),
    )
    .await?;
    Ok(h::json(StatusCode::CREATED, &keyspace_view(&ks)))
}

pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let who = req.acting().who;
    who.authorize(Permission::KeyspacesRead, org_target(&who, None))?;
    let page = h::page_request(req.parts.uri.query())?;
    let page = state
        .keyspaces
        .store()
        .list_keyspaces(who.organization_id(), &page)
        .await?;
    let data: Vec<Value> = page.data.iter().map(keyspace_view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next_cursor }),
    ))
}

pub(super) async fn get(state: &AppState, req: &Request, id: &str) -> Result<Response, ApiError> {
    let ks = load_keyspace(state, req.acting().who, id, Permission::KeyspacesRead).await?;
    Ok(h::json(StatusCode::OK, &keyspace_view(&ks)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKeyspaceBody {
    #[serde(default, deserialize_with = "h::non_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "h::non_null")]
    permissions: Option<Vec<String>>,
}

/// Renames key space `ks` and/or replaces its permission vocabulary for `acting` (the API and
/// the console); `ks` was loaded with `keyspaces:write`. A sandbox caller changes none.
pub(crate) async fn update_keyspace(
    state: &AppState,
    acting: &Acting<'_>,
    ks: Keyspace,
    name: Option<String>,
    permissions: Option<Vec<String>>,
) -> Result<Keyspace, ApiError> {
    refuse_sandbox_change(&acting.who)?;
    let fields: Vec<&str> = [
        ("name", name.is_some()),
        ("permissions", permissions.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    let ks = state
        .keyspaces
        .update_keyspace(ks, name, permissions)
        .await?;
    acting
        .audit(
            state,
            None,
            "keyspace.updated",
            &ks.id.to_string(),
            StatusCode::OK,
            json!({ "fields": fields }),
        )
        .await;
    Ok(ks)
}

pub(super) async fn update(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let body: UpdateKeyspaceBody = h::read_json(&req.parts.headers, &req.body)?;
    let acting = req.acting();
    let ks = load_keyspace(state, acting.who, id, Permission::KeyspacesWrite).await?;
    let ks = update_keyspace(state, &acting, ks, body.name, body.permissions).await?;
    Ok(h::json(StatusCode::OK, &keyspace_view(&ks)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefillBody {
    amount: h::Whole<u64>,
    interval: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreditsBody {
    remaining: h::Whole<u64>,
    #[serde(default, deserialize_with = "h::non_null")]
    refill: Option<RefillBody>,
}

impl CreditsBody {
    fn into_credits(self, now: DateTime<Utc>) -> Result<Credits, ApiError> {
        let refill = self
            .refill
            .map(|r| {
                let interval = RefillInterval::from_name(&r.interval).ok_or_else(|| {
                    ApiError::invalid_request(
                        "credits.refill.interval must be \"day\" or \"month\"",
                    )
                })?;
                Ok::<_, ApiError>(Refill {
                    amount: r.amount.0,
                    interval,
                })
            })
            .transpose()?;
        Ok(Credits::new(self.remaining.0, refill, now))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LimitBody {
    name: String,
    limit: h::Whole<u64>,
    duration_seconds: h::Whole<u64>,
}

fn limits(body: Vec<LimitBody>) -> Vec<NamedLimit> {
    body.into_iter()
        .map(|l| NamedLimit {
            name: l.name,
            limit: l.limit.0,
            duration_seconds: l.duration_seconds.0,
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MintBody {
    name: String,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    credits: Option<CreditsBody>,
    #[serde(default)]
    ratelimits: Option<Vec<LimitBody>>,
    #[serde(default, deserialize_with = "h::non_null")]
    environment: Option<Environment>,
}

/// What to mint in a key space, as the API body and the console form give it.
#[derive(Debug)]
pub(crate) struct KeyspaceKeyRequest {
    pub(crate) name: String,
    pub(crate) owner_id: Option<String>,
    pub(crate) meta: Option<Meta>,
    pub(crate) permissions: Vec<String>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) credits: Option<Credits>,
    pub(crate) ratelimits: Vec<NamedLimit>,
    pub(crate) environment: Option<Environment>,
}

/// Mints a key in `ks` for `acting`: it needs `keyspaces:write` on the key's environment (a
/// sandbox caller mints sandbox keys only).
pub(crate) async fn mint(
    state: &AppState,
    acting: &Acting<'_>,
    ks: &Keyspace,
    body: KeyspaceKeyRequest,
) -> Result<align_keys::keyspace::MintedKeyspaceKey, ApiError> {
    let who = acting.who;
    let environment = body
        .environment
        .or(who.environment())
        .unwrap_or(Environment::Live);
    if who.environment() == Some(Environment::Sandbox) && environment == Environment::Live {
        return Err(ApiError::forbidden("a sandbox key mints sandbox keys only"));
    }
    who.authorize(
        Permission::KeyspacesWrite,
        org_target(&who, Some(environment)),
    )?;
    let minted = state
        .keyspaces
        .mint(
            ks,
            NewKeyspaceKey {
                name: body.name,
                environment,
                owner_id: body.owner_id,
                meta: body.meta,
                permissions: body.permissions,
                expires_at: body.expires_at,
                credits: body.credits,
                ratelimits: body.ratelimits,
                created_by: who.user_id(),
            },
            Utc::now(),
        )
        .await?;
    acting
        .audit(
            state,
            Some(environment),
            "keyspace_key.created",
            &minted.key.id.to_string(),
            StatusCode::CREATED,
            key_summary(&minted.key),
        )
        .await;
    Ok(minted)
}

fn minted_view(m: &align_keys::keyspace::MintedKeyspaceKey) -> Value {
    let mut v = key_view(&m.key);
    if let Value::Object(map) = &mut v {
        map.insert("key".into(), Value::String(m.token.expose().to_owned()));
    }
    v
}

pub(super) async fn create_key(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let body: MintBody = h::read_json(&req.parts.headers, &req.body)?;
    let acting = req.acting();
    let ks = load_keyspace(state, acting.who, id, Permission::KeyspacesWrite).await?;
    let now = Utc::now();
    let request = KeyspaceKeyRequest {
        name: body.name,
        owner_id: body.owner_id,
        meta: body.meta,
        permissions: body.permissions.unwrap_or_default(),
        expires_at: body.expires_at,
        credits: body.credits.map(|c| c.into_credits(now)).transpose()?,
        ratelimits: body.ratelimits.map(limits).unwrap_or_default(),
        environment: body.environment,
    };
    let minted = mint(state, &acting, &ks, request).await?;
    Ok(h::json(StatusCode::CREATED, &minted_view(&minted)))
}

pub(super) async fn list_keys(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let who = req.acting().who;
    let ks = load_keyspace(state, who, id, Permission::KeyspacesRead).await?;
    let page = h::page_request(req.parts.uri.query())?;
    let mut filter = KeyspaceKeyFilter {
        keyspace_id: ks.id,
        owner_id: None,
        environment: None,
        include_revoked: false,
    };
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        match k.as_str() {
            "ownerId" => filter.owner_id = Some(v),
            "environment" => {
                filter.environment = Some(match v.as_str() {
                    "live" => Environment::Live,
                    "sandbox" => Environment::Sandbox,
                    _ => {
                        return Err(ApiError::invalid_request(
                            "environment must be live or sandbox",
                        ));
                    }
                });
            }
            "includeRevoked" => {
                filter.include_revoked = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid_request(
                            "includeRevoked must be true or false",
                        ));
                    }
                };
            }
            _ => {}
        }
    }
    // A sandbox caller sees sandbox keys only.
    if who.environment() == Some(Environment::Sandbox) {
        if filter.environment == Some(Environment::Live) {
            return Ok(h::json(
                StatusCode::OK,
                &json!({ "data": [], "nextCursor": null }),
            ));
        }
        filter.environment = Some(Environment::Sandbox);
    }
    let page = state
        .keyspaces
        .store()
        .list_keyspace_keys(&filter, &page)
        .await?;
    let data: Vec<Value> = page.data.iter().map(key_view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": page.next_cursor }),
    ))
}

pub(super) async fn get_key(
    state: &AppState,
    req: &Request,
    ids: &str,
) -> Result<Response, ApiError> {
    let (id, key_id) = two_ids(ids)?;
    let who = req.acting().who;
    let ks = load_keyspace(state, who, id, Permission::KeyspacesRead).await?;
    let key = load_key(state, who, &ks, key_id, Permission::KeyspacesRead).await?;
    Ok(h::json(StatusCode::OK, &key_view(&key)))
}

pub(super) async fn key_usage(
    state: &AppState,
    req: &Request,
    ids: &str,
) -> Result<Response, ApiError> {
    let (id, key_id) = two_ids(ids)?;
    let who = req.acting().who;
    let ks = load_keyspace(state, who, id, Permission::KeyspacesRead).await?;
    let key = load_key(state, who, &ks, key_id, Permission::KeyspacesRead).await?;
    super::usage::answer(state, req, key.id.to_string()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateKeyBody {
    #[serde(default, deserialize_with = "h::non_null")]
    name: Option<String>,
    #[serde(default, with = "super::double_option")]
    owner_id: Option<Option<String>>,
    #[serde(default, with = "super::double_option")]
    meta: Option<Option<Meta>>,
    #[serde(default, deserialize_with = "h::non_null")]
    permissions: Option<Vec<String>>,
    #[serde(default, with = "super::double_option")]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, with = "super::double_option")]
    credits: Option<Option<CreditsBody>>,
    #[serde(default, deserialize_with = "h::non_null")]
    ratelimits: Option<Vec<LimitBody>>,
}

/// Changes a key space key for `acting`. Every change needs `keyspaces:write` on the key's
/// environment; revoked and expired keys are final (`409 key_not_active`).
pub(crate) async fn change_key(
    state: &AppState,
    acting: &Acting<'_>,
    ks: &Keyspace,
    key: &KeyspaceKey,
    changes: KeyspaceKeyChanges,
) -> Result<KeyspaceKey, ApiError> {
    // The one judge, here where every door passes (API, console), not only at the loads.
    let who = acting.who;
    who.authorize(
        Permission::KeyspacesWrite,
        org_target(&who, Some(key.environment)),
    )?;
    let fields = changes.fields();
    let key = state
        .keyspaces
        .change(ks, key.id, changes, Utc::now())
        .await?;
    acting
        .audit(
            state,
            Some(key.environment),
            "keyspace_key.updated",
            &key.id.to_string(),
            StatusCode::OK,
            json!({ "key": key_summary(&key), "fields": fields }),
        )
        .await;
    Ok(key)
}

pub(super) async fn update_key(
    state: &AppState,
    req: &Request,
    ids: &str,
) -> Result<Response, ApiError> {
    let body: UpdateKeyBody = h::read_json(&req.parts.headers, &req.body)?;
    let (id, key_id) = two_ids(ids)?;
    let acting = req.acting();
    let ks = load_keyspace(state, acting.who, id, Permission::KeyspacesWrite).await?;
    let key = load_key(state, acting.who, &ks, key_id, Permission::KeyspacesWrite).await?;
    let now = Utc::now();
    let changes = KeyspaceKeyChanges {
        name: body.name,
        owner_id: body.owner_id,
        meta: body.meta,
        permissions: body.permissions,
        expires_at: body.expires_at,
        credits: body
            .credits
            .map(|c| c.map(|c| c.into_credits(now)).transpose())
            .transpose()?,
        ratelimits: body.ratelimits.map(limits),
    };
    let key = change_key(state, &acting, &ks, &key, changes).await?;
    Ok(h::json(StatusCode::OK, &key_view(&key)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RotateBody {
    #[serde(default)]
    grace_seconds: Option<h::Whole<u64>>,
}

/// Revokes, suspends, resumes or rotates a key space key for `acting` (the API and the
/// console). Rotation answers the successor (with its token) and the old key.
pub(crate) async fn act_on_key(
    state: &AppState,
    acting: &Acting<'_>,
    ks: &Keyspace,
    key: &KeyspaceKey,
    action: &str,
    grace: Duration,
) -> Result<(KeyspaceKey, Option<align_keys::keyspace::MintedKeyspaceKey>), ApiError> {
    let who = acting.who;
    who.authorize(
        Permission::KeyspacesWrite,
        org_target(&who, Some(key.environment)),
    )?;
    let now = Utc::now();
    let ks_keys = &state.keyspaces;
    let (done, successor, audit) = match action {
        "revoke" => (
            ks_keys.revoke(key.id, now).await?,
            None,
            "keyspace_key.revoked",
        ),
        "suspend" => (
            ks_keys.suspend(key.id, now).await?,
            None,
            "keyspace_key.suspended",
        ),
        "resume" => (
            ks_keys.resume(key.id, now).await?,
            None,
            "keyspace_key.resumed",
        ),
        "rotate" => {
            let (successor, old) = ks_keys
                .rotate(ks, key.id, grace, acting.who.user_id(), now)
                .await?;
            (old, Some(successor), "keyspace_key.rotated")
        }
        _ => return Err(ApiError::not_found()),
    };
    let mut metadata = json!({ "key": key_summary(&done) });
    if let (Some(s), Value::Object(map)) = (&successor, &mut metadata) {
        map.insert("successorKeyId".into(), json!(s.key.id));
    }
    acting
        .audit(
            state,
            Some(done.environment),
            audit,
            &done.id.to_string(),
            StatusCode::OK,
            metadata,
        )
        .await;
    Ok((done, successor))
}

/// A rotation's grace period: `secs` (default a day), at most 30 days.
pub(crate) fn rotation_grace(secs: Option<u64>) -> Result<Duration, ApiError> {
    let secs = secs.unwrap_or(DEFAULT_GRACE_SECS);
    if secs > MAX_GRACE_SECS {
        return Err(ApiError::invalid_request(
            "graceSeconds is at most 2592000 (30 days)",
        ));
    }
    Ok(Duration::from_secs(secs))
}

pub(super) async fn act(
    state: &AppState,
    req: &Request,
    ids: &str,
    action: &str,
) -> Result<Response, ApiError> {
    let grace = if action == "rotate" {
        let body: RotateBody = if req.body.is_empty() {
            RotateBody::default()
        } else {
            h::read_json(&req.parts.headers, &req.body)?
        };
        rotation_grace(body.grace_seconds.map(|w| w.0))?
    } else {
        Duration::ZERO
    };
    let (id, key_id) = two_ids(ids)?;
    let acting = req.acting();
    let ks = load_keyspace(state, acting.who, id, Permission::KeyspacesWrite).await?;
    let key = load_key(state, acting.who, &ks, key_id, Permission::KeyspacesWrite).await?;
    let (done, successor) = act_on_key(state, &acting, &ks, &key, action, grace).await?;
    Ok(match successor {
        // As for Align keys: the successor, its token in `key` (shown once); and, for
        // clients that want both halves by name, `successor` and `previous`.
        Some(s) => {
            let mut v = minted_view(&s);
            if let Value::Object(map) = &mut v {
                map.insert("successor".into(), minted_view(&s));
                map.insert("previous".into(), key_view(&done));
            }
            h::json(StatusCode::CREATED, &v)
        }
        None => h::json(StatusCode::OK, &key_view(&done)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyCredits {
    #[serde(default)]
    cost: Option<h::Whole<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyLimit {
    name: String,
    #[serde(default)]
    cost: Option<h::Whole<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    key: String,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    credits: Option<VerifyCredits>,
    #[serde(default)]
    ratelimits: Option<Vec<VerifyLimit>>,
}

/// The status a verification counts as in the verified key's usage: `VALID` a success,
/// limits and credits `429`, refusals the `401`/`403` a request would get.
fn usage_status(code: VerifyCode) -> u16 {
    match code {
        VerifyCode::Valid => 200,
        VerifyCode::RateLimited | VerifyCode::UsageExceeded => 429,
        VerifyCode::InsufficientPermissions => 403,
        VerifyCode::NotFound
        | VerifyCode::Revoked
        | VerifyCode::Expired
        | VerifyCode::Suspended => 401,
    }
}

/// The verification answer (DESIGN §12), serialized as it is (no intermediate JSON tree: it
/// is the hot path of the organisation's own API).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VerifyAnswer<'a> {
    valid: bool,
    code: &'static str,
    key_id: Option<KeyId>,
    keyspace_id: Option<KeyspaceId>,
    owner_id: Option<&'a str>,
    meta: Option<&'a Meta>,
    permissions: Option<&'a [String]>,
    expires_at: Option<String>,
    environment: Option<Environment>,
    credits: Option<CreditsLeft>,
    ratelimits: &'a [align_keys::keyspace::LimitState],
}

/// `{"remaining": n}`.
#[derive(serde::Serialize)]
struct CreditsLeft {
    remaining: u64,
}

/// The answer for `o`.
pub(crate) fn verify_view(o: &VerifyOutcome) -> VerifyAnswer<'_> {
    let key = o.key.as_deref().filter(|_| o.code != VerifyCode::NotFound);
    VerifyAnswer {
        valid: o.valid(),
        code: o.code.as_str(),
        key_id: key.map(|k| k.id),
        keyspace_id: key.map(|k| k.keyspace_id),
        owner_id: key.and_then(|k| k.owner_id.as_deref()),
        meta: key.and_then(|k| k.meta.as_ref()),
        permissions: key.map(|k| k.permissions.as_slice()),
        expires_at: key.and_then(|k| h::opt_timestamp(k.expires_at)),
        environment: key.map(|k| k.environment),
        credits: o
            .credits_remaining
            .map(|remaining| CreditsLeft { remaining }),
        ratelimits: &o.ratelimits,
    }
}

/// Largest cost one verification may spend on credits or a limit.
const MAX_COST: u64 = align_keys::keyspace::MAX_CREDITS;

pub(super) async fn verify(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: VerifyBody = h::read_json(&req.parts.headers, &req.body)?;
    let who = req.acting().who;
    // Verification reads the organisation's key spaces: an organisation-level object, out of
    // a project key's reach. Refused as a request (`403`): no key was looked at.
    who.authorize(Permission::KeysVerify, org_target(&who, None))
        .map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                ApiError::forbidden(
                    "verifying keys needs an organisation-scoped key with keys:verify",
                )
            } else {
                e
            }
        })?;
    let query = body
        .permissions
        .as_deref()
        .map(|q| state.keyspaces.query(q))
        .transpose()
        .map_err(|e| ApiError::invalid_request(format!("permissions: {e}")))?;
    let credit_cost = body.credits.and_then(|c| c.cost).map(|w| w.0);
    let limit_costs: Vec<(String, u64)> = body
        .ratelimits
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.name, l.cost.map_or(1, |w| w.0)))
        .collect();
    if credit_cost.is_some_and(|c| c > MAX_COST) || limit_costs.iter().any(|(_, c)| *c > MAX_COST) {
        return Err(ApiError::invalid_request("a cost is at most 1000000000000"));
    }
    let costs: Vec<(&str, u64)> = limit_costs.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let now = Utc::now();
    let outcome = state
        .keyspaces
        .verify(VerifyRequest {
            token: &body.key,
            organization_id: who.organization_id(),
            environment: who.environment(),
            permissions: query.as_deref(),
            credit_cost,
            limit_costs: &costs,
            now,
        })
        .await?;
    if let Some(key) = outcome
        .key
        .as_deref()
        .filter(|_| outcome.code != VerifyCode::NotFound)
    {
        count_verification(state, req, key, outcome.code, now).await;
    }
    Ok(h::json(StatusCode::OK, &verify_view(&outcome)))
}

/// Counts a verification in the verified key's usage and request log: an entry with that key
/// as actor, the code in its metadata, and the verifying key named.
async fn count_verification(
    state: &AppState,
    req: &Request,
    key: &KeyspaceKey,
    code: VerifyCode,
    now: DateTime<Utc>,
) {
    let caller = req.auth.key.record();
    let entry = Entry::request("POST", "/api/v1/keys/verify")
        .time(now)
        .status(usage_status(code))
        .organization(key.organization_id.to_string())
        .environment(key.environment)
        .actor(Actor::ApiKey {
            id: key.id.to_string(),
            prefix: key.prefix.clone(),
        })
        .target(key.keyspace_id.to_string())
        .request_id(req.meta.request_id.as_str())
        .metadata(json!({ "code": code.as_str(), "verifiedBy": caller.prefix }));
    if let Ok(entry) = entry.build() {
        let _ = state.audit.submit(entry).await;
    }
}
