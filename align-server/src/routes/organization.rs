//! `GET/PATCH /api/v1/organization`: the caller's organisation, its security contact and
//! what happens to its keys when they leak (`leakedKeyAction`, `leakedSandboxKeyAction`).

use align_keys::{LeakedKeyAction, Organization, Permission, Target};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::state::AppState;

pub(crate) fn view(o: &Organization) -> Value {
    json!({
        "id": o.id,
        "name": o.name,
        "securityContact": o.security_contact,
        "leakedKeyAction": o.leak_policy.live,
        "leakedSandboxKeyAction": o.leak_policy.sandbox,
        "privacyContact": o.privacy_contact,
        "createdAt": h::timestamp(o.created_at),
    })
}

/// Checks that the calling key may use `permission` on its whole organisation (`403` if not):
/// the organisation's own settings, and what is created at its level (projects).
pub(super) fn check(req: &Request, permission: Permission) -> Result<(), ApiError> {
    let me = req.auth.key.record();
    let target = Target {
        organization_id: me.organization_id,
        project_id: None,
        environment: None,
    };
    req.auth
        .caller()
        .authorize(permission, target)
        .map_err(|d| ApiError::forbidden(d.to_string()))
}

async fn load(state: &AppState, req: &Request) -> Result<Organization, ApiError> {
    state
        .store()
        .get_organization(req.auth.key.record().organization_id)
        .await?
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn get(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    check(req, Permission::OrganizationRead)?;
    Ok(h::json(StatusCode::OK, &view(&load(state, req).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    #[serde(default, with = "super::double_option")]
    name: Option<Option<String>>,
    /// `null` removes the contact.
    #[serde(default, with = "super::double_option")]
    security_contact: Option<Option<String>>,
    /// What happens to a leaked live key: `revoke` (default) or `notify`.
    #[serde(default, deserialize_with = "h::non_null")]
    leaked_key_action: Option<LeakedKeyAction>,
    /// What happens to a leaked sandbox key: `notify` (default) or `revoke`.
    #[serde(default, deserialize_with = "h::non_null")]
    leaked_sandbox_key_action: Option<LeakedKeyAction>,
    /// Where privacy requests go; `null` removes it.
    #[serde(default, with = "super::double_option")]
    privacy_contact: Option<Option<String>>,
}

pub(super) async fn update(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let body: UpdateBody = h::read_json(&req.parts.headers, &req.body)?;
    check(req, Permission::OrganizationWrite)?;
    let mut org = load(state, req).await?;
    if let Some(name) = body.name {
        let Some(name) = name else {
            return Err(ApiError::invalid_request("name cannot be null"));
        };
        org.name = super::users::checked_name(&name)?;
    }
    if let Some(contact) = body.security_contact {
        org.security_contact = contact
            .map(|c| super::users::checked_email("securityContact", &c))
            .transpose()?;
    }
    if let Some(contact) = body.privacy_contact {
        org.privacy_contact = contact
            .map(|c| super::users::checked_email("privacyContact", &c))
            .transpose()?;
    }
    if let Some(action) = body.leaked_key_action {
        org.leak_policy.live = action;
    }
    if let Some(action) = body.leaked_sandbox_key_action {
        org.leak_policy.sandbox = action;
    }
    state.store().update_organization(&org).await?;
    let target = org.id.to_string();
    req.audit(
        state,
        "organization.updated",
        &target,
        StatusCode::OK,
        view(&org),
    )
    .await;
    Ok(h::json(StatusCode::OK, &view(&org)))
}

/// Sets what happens to the organisation's leaked keys (`live`, `sandbox`: `None` keeps the
/// current answer) for `acting`, who needs `organization:write`; records
/// `organization.updated`. The console's Security page uses it.
pub(crate) async fn set_leak_policy(
    state: &AppState,
    acting: &crate::principal::Acting<'_>,
    live: Option<LeakedKeyAction>,
    sandbox: Option<LeakedKeyAction>,
) -> Result<Organization, ApiError> {
    let org_id = acting.who.organization_id();
    let target = Target {
        organization_id: org_id,
        project_id: None,
        environment: None,
    };
    // Its own organisation is never hidden from a user: lacking the permission is 403.
    acting.who.require(Permission::OrganizationWrite)?;
    acting
        .who
        .authorize(Permission::OrganizationWrite, target)?;
    let mut org = state
        .store()
        .get_organization(org_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if let Some(a) = live {
        org.leak_policy.live = a;
    }
    if let Some(a) = sandbox {
        org.leak_policy.sandbox = a;
    }
    state.store().update_organization(&org).await?;
    acting
        .audit(
            state,
            None,
            "organization.updated",
            &org.id.to_string(),
            StatusCode::OK,
            view(&org),
        )
        .await;
    Ok(org)
}

/// `GET /.well-known/security.txt` (RFC 9116, no key needed): the organisation's security
/// contact, an `Expires` half a year ahead (the file is made afresh on every request), and
/// its privacy contact as a comment. `404` until a security contact is set. A deployment of
/// several organisations publishes its first (the bootstrap organisation's).
pub(crate) async fn security_txt(state: &AppState) -> Result<Response, ApiError> {
    let first = align_keys::PageRequest {
        limit: 1,
        cursor: None,
    };
    let org = state
        .store()
        .list_organizations(&first)
        .await?
        .data
        .into_iter()
        .next();
    let Some((org, contact)) = org.and_then(|o| o.security_contact.clone().map(|c| (o, c))) else {
        return Err(ApiError::not_found());
    };
    let expires = chrono::Utc::now() + chrono::TimeDelta::days(182);
    let mut text = format!(
        "# Security contact of {name}, served by Align.\n\
         Contact: mailto:{contact}\n\
         Expires: {expires}\n\
         Preferred-Languages: en\n",
        name = org.name.replace(['\r', '\n'], " "),
        expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Some(p) = &org.privacy_contact {
        text.push_str(&format!("# Privacy requests: mailto:{p}\n"));
    }
    Ok(h::typed("text/plain; charset=utf-8", text))
}
