//! `/api/v1/users`: the organisation's people. Everyone may read and correct their own record
//! (`name`, `email`); admins (`privacy:read` / `privacy:write`) see and correct everyone's,
//! and only admins change roles (`organization:write`) or delete users. Deleting a user ends
//! their sessions, erases their personal data, and revokes the keys they created unless
//! `transferKeysTo` names another admin; every step is audited. The organisation's last
//! admin can be neither demoted nor deleted (`409 conflict`).
//!
//! The console's profile and Users pages call the same operations through an [`Acting`].

use align_keys::store::{LAST_ADMIN, PageRequest, takes_last_admin};
use align_keys::{Environment, Permission, Role, User, UserId};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::Request;
use crate::error::ApiError;
use crate::http::{self as h, Response};
use crate::principal::{Acting, Principal};
use crate::privacy::{self, Subject};
use crate::routes::keys::{StateChange, change_state};
use crate::state::AppState;

/// Every user of the organisation, oldest first.
pub(crate) async fn all_users(state: &AppState, who: Principal<'_>) -> Result<Vec<User>, ApiError> {
    let mut page = PageRequest {
        limit: align_keys::store::MAX_PAGE_SIZE,
        cursor: None,
    };
    let mut out = Vec::new();
    loop {
        let got = state
            .store()
            .list_users(who.organization_id(), &page)
            .await?;
        out.extend(got.data);
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Whether `who` sees and manages every person's record (an admin, or an admin's
/// organisation-scoped key holding the permission).
fn oversees_people(who: Principal<'_>, permission: Permission) -> bool {
    who.effective_permissions().contains(permission) && who.oversees_organization()
}

/// Sandbox keys change no organisation-wide object (DESIGN §3), people included.
fn refuse_sandbox(who: Principal<'_>) -> Result<(), ApiError> {
    if who.environment() == Some(Environment::Sandbox) {
        return Err(ApiError::forbidden(
            align_keys::Denial::SandboxOrganizationChange.to_string(),
        ));
    }
    Ok(())
}

/// The user `id` of `who`'s organisation; `404` for anyone else's or no one.
pub(crate) async fn load(state: &AppState, who: Principal<'_>, id: &str) -> Result<User, ApiError> {
    let id: UserId = id.parse().map_err(|_| ApiError::not_found())?;
    state
        .store()
        .get_user(id)
        .await?
        .filter(|u| u.organization_id == who.organization_id())
        .ok_or_else(ApiError::not_found)
}

/// The users `who` may see: everyone for those who oversee people, else themselves.
pub(crate) async fn visible(state: &AppState, who: Principal<'_>) -> Result<Vec<User>, ApiError> {
    who.require(Permission::OrganizationRead)?;
    if oversees_people(who, Permission::PrivacyRead) {
        return all_users(state, who).await;
    }
    let me = state.store().get_user(who.user_id()).await?;
    Ok(me.into_iter().collect())
}

/// `GET /users`.
pub(super) async fn list(state: &AppState, req: &Request) -> Result<Response, ApiError> {
    let users = visible(state, req.acting().who).await?;
    let data: Vec<Value> = users.iter().map(privacy::user_view).collect();
    Ok(h::json(
        StatusCode::OK,
        &json!({ "data": data, "nextCursor": null }),
    ))
}

/// A correction or role change (`PATCH /users/{id}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct UserChange {
    /// A new e-mail (`null` is refused: an e-mail cannot be removed).
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub(crate) email: Option<String>,
    /// A new display name; `null` removes it.
    #[serde(default, with = "super::double_option")]
    pub(crate) name: Option<Option<String>>,
    /// A new role (admins only; `null` is refused).
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub(crate) role: Option<String>,
}

/// `value` if it looks like an e-mail address that reaches someone outside (trimmed, at most
/// 254 characters, a dotted domain): contacts the organisation publishes.
pub(crate) fn checked_email(field: &str, value: &str) -> Result<String, ApiError> {
    let c = login_email(field, value)?;
    if c.split_once('@').is_some_and(|(_, d)| d.contains('.')) {
        Ok(c)
    } else {
        Err(ApiError::invalid_request(format!(
            "{field} must be an e-mail address"
        )))
    }
}

/// `value` if it has the shape of a user's sign-in e-mail: `local@domain`, trimmed, at most
/// 254 characters, no spaces (a domain without a dot, such as the bootstrap admin's
/// `admin@localhost`, is allowed).
fn login_email(field: &str, value: &str) -> Result<String, ApiError> {
    let c = value.trim();
    let plausible = c.len() <= 254
        && c.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !c.chars().any(|ch| ch.is_whitespace() || ch.is_control());
    if plausible {
        Ok(c.to_owned())
    } else {
        Err(ApiError::invalid_request(format!(
            "{field} must be an e-mail address"
        )))
    }
}

/// A project's, user's or organisation's name by the one rule ([`align_core::name`]), trimmed.
pub(crate) fn checked_name(value: &str) -> Result<String, ApiError> {
    align_core::name::checked_name(value)
        .map(str::to_owned)
        .map_err(|defect| ApiError::invalid_request(defect.to_string()))
}

/// Applies `change` to user `id` for `acting` and records it.
pub(crate) async fn update(
    state: &AppState,
    acting: &Acting<'_>,
    id: &str,
    change: UserChange,
) -> Result<User, ApiError> {
    let who = acting.who;
    let user = load(state, who, id).await?;
    refuse_sandbox(who)?;
    let own = user.id == who.user_id();
    if own {
        who.require(Permission::OrganizationRead)?;
    } else if !oversees_people(who, Permission::PrivacyWrite) {
        return Err(ApiError::forbidden(
            "only admins may change another user's record (privacy:write)",
        ));
    }
    let role = change
        .role
        .as_deref()
        .map(|r| {
            Role::from_name(r)
                .ok_or_else(|| ApiError::invalid_request("role must be admin, engineer or viewer"))
        })
        .transpose()?;
    if role.is_some_and(|r| r != user.role) {
        if !oversees_people(who, Permission::OrganizationWrite) {
            return Err(ApiError::forbidden(
                "only admins may change roles (organization:write)",
            ));
        }
        if takes_last_admin(&**state.store(), &user, role).await? {
            return Err(ApiError::conflict(LAST_ADMIN));
        }
    }
    let email = change
        .email
        .as_deref()
        .map(|e| login_email("email", e))
        .transpose()?;
    let name = match change.name {
        None => user.name.clone(),
        Some(None) => None,
        Some(Some(n)) => Some(checked_name(&n)?),
    };
    let email = email.unwrap_or_else(|| user.email.clone());
    let mut changed = Vec::new();
    if email != user.email {
        changed.push("email");
    }
    if name != user.name {
        changed.push("name");
    }
    if !changed.is_empty() {
        match state
            .store()
            .update_user_profile(user.id, &email, name.as_deref())
            .await
        {
            Err(align_keys::Error::AlreadyExists(_)) => {
                return Err(ApiError::conflict(
                    "another user of the organisation has this e-mail",
                ));
            }
            other => other?,
        }
        // The values are personal: the record names the fields, never what they hold.
        acting
            .audit(
                state,
                None,
                "user.updated",
                &user.id.to_string(),
                StatusCode::OK,
                json!({ "fields": changed }),
            )
            .await;
    }
    let mut after = User {
        email,
        name,
        ..user.clone()
    };
    if let Some(role) = role.filter(|r| *r != user.role) {
        state.store().set_user_role(user.id, role).await?;
        acting
            .audit(
                state,
                None,
                "user.role_changed",
                &user.id.to_string(),
                StatusCode::OK,
                json!({ "from": user.role, "to": role }),
            )
            .await;
        after.role = role;
    }
    Ok(after)
}

/// `PATCH /users/{id}`.
pub(super) async fn patch(state: &AppState, req: &Request, id: &str) -> Result<Response, ApiError> {
    let acting = req.acting();
    // Out of reach is 404 before a bad body is 400.
    load(state, acting.who, id).await?;
    let change: UserChange = h::read_json(&req.parts.headers, &req.body)?;
    let user = update(state, &acting, id, change).await?;
    Ok(h::json(StatusCode::OK, &privacy::user_view(&user)))
}

/// What deleting a user did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deletion {
    /// Keys revoked.
    pub(crate) revoked: u64,
    /// Keys handed to the other admin.
    pub(crate) transferred: u64,
}

/// Deletes user `id` for `acting`: their keys go to `transfer_to` (another admin) or are
/// revoked, their personal data is erased everywhere, their sessions end, their record goes.
pub(crate) async fn delete(
    state: &AppState,
    acting: &Acting<'_>,
    id: &str,
    transfer_to: Option<&str>,
) -> Result<Deletion, ApiError> {
    let who = acting.who;
    let user = load(state, who, id).await?;
    refuse_sandbox(who)?;
    if !(oversees_people(who, Permission::PrivacyWrite)
        && who
            .effective_permissions()
            .contains(Permission::OrganizationWrite))
    {
        return Err(ApiError::forbidden(
            "only admins may delete users (privacy:write and organization:write)",
        ));
    }
    let heir = match transfer_to {
        None => None,
        Some(t) => {
            if t == user.id.to_string() {
                return Err(ApiError::invalid_request(
                    "transferKeysTo must name another admin of the organisation, not the user deleted",
                ));
            }
            // No such admin in the organisation (now): the request is well-formed, the
            // organisation's state refuses it.
            let heir = load(state, who, t).await.map_err(|_| {
                ApiError::conflict("transferKeysTo must name another admin of the organisation")
            })?;
            if heir.role != Role::Admin {
                return Err(ApiError::conflict(
                    "transferKeysTo must name another admin of the organisation",
                ));
            }
            Some(heir)
        }
    };
    if takes_last_admin(&**state.store(), &user, None).await? {
        return Err(ApiError::conflict(LAST_ADMIN));
    }
    let target = user.id.to_string();
    let mut done = Deletion::default();
    if let Some(heir) = &heir {
        done.transferred = state.store().transfer_keys(user.id, heir.id).await?;
        acting
            .audit(
                state,
                None,
                "user.keys_transferred",
                &target,
                StatusCode::OK,
                json!({ "to": heir.id, "keys": done.transferred }),
            )
            .await;
    } else {
        let keys = privacy::keys_created_by(state.store().as_ref(), user.organization_id, user.id)
            .await
            .map_err(server_error)?;
        for k in keys.iter().filter(|k| k.revoked_at.is_none()) {
            change_state(state, acting, &k.id.to_string(), StateChange::Revoke).await?;
            done.revoked += 1;
        }
    }
    let subject = Subject::User(user.clone());
    let erased = super::privacy::erase(state, &subject).await?;
    state.store().delete_user(user.id).await?;
    acting
        .audit(
            state,
            None,
            "user.deleted",
            &target,
            StatusCode::NO_CONTENT,
            json!({
                "keysRevoked": done.revoked,
                "keysTransferred": done.transferred,
                "erasedRecords": erased.erased_records,
            }),
        )
        .await;
    Ok(done)
}

/// `DELETE /users/{id}[?transferKeysTo=ADMIN_ID]`.
pub(super) async fn remove(
    state: &AppState,
    req: &Request,
    id: &str,
) -> Result<Response, ApiError> {
    let mut transfer = None;
    for (k, v) in h::query_pairs(req.parts.uri.query())? {
        if k == "transferKeysTo" {
            // A user id or nothing: an empty or malformed value is a bad field (400), not a
            // request to revoke the keys (the spec's `format: uuid`).
            if v.parse::<UserId>().is_err() {
                return Err(ApiError::invalid_request(
                    "transferKeysTo must be a user id (a UUID)",
                ));
            }
            transfer = Some(v);
        }
    }
    delete(state, &req.acting(), id, transfer.as_deref()).await?;
    Ok(h::no_content())
}

/// A store failure in a privacy operation, as an answer.
pub(crate) fn server_error(e: crate::Error) -> ApiError {
    match e {
        crate::Error::Keys(k) => k.into(),
        crate::Error::Webhooks(w) => w.into(),
        other => {
            tracing::error!(error = %other, "privacy operation failed");
            ApiError::unavailable()
        }
    }
}
