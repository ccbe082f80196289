//! The signed-in user's profile (correct their name and e-mail, download everything Align
//! holds about them) and, for admins, the Users page (change roles, delete users). Every
//! action is `routes::users`' or `routes::privacy`' own, acting as the signed-in user.

use align_keys::{Role, User};
use http::StatusCode;

use maud::html;

use super::html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::users::{self as ops, UserChange};

/// The signed-in user.
fn me<'a>(ctx: &'a Ctx<'_>) -> Result<&'a User, ApiError> {
    ctx.signed
        .as_ref()
        .map(|s| &s.user)
        .ok_or_else(ApiError::not_found)
}

/// `GET /console/profile`.
pub(super) async fn profile(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let user = me(ctx)?.clone();
    let saved = ctx.query("saved").is_some();
    Ok(profile_page(ctx, &user, StatusCode::OK, saved, None))
}

fn profile_page(
    ctx: &Ctx<'_>,
    user: &User,
    status: StatusCode,
    saved: bool,
    error: Option<&ApiError>,
) -> Response {
    let body = html! {
        p class="crumbs" { "Settings → Profile" }
        h1 { "Your profile" }
        @if saved {
            p class="notice" data-testid="saved" { "Your profile was saved." }
        }
        @if let Some(e) = error {
            p class="error" data-testid="error" { (e.message) }
        }
        form method="post" action="/console/profile" data-testid="profile-form" {
            (ctx.hidden_fields())
            label { "Name " input name="name" data-testid="profile-name" value=(user.name.as_deref().unwrap_or("")) maxlength="200"; }
            label { "Email " input type="email" name="email" data-testid="profile-email" value=(user.email) required; }
            p { "Role: " span data-testid="profile-role" { (user.role) } }
            button type="submit" class="primary" data-testid="profile-save" { "Save" }
        }
        h2 { "Your data" }
        p { "Download everything Align holds about you (your user record, the keys you created, and every audit and request-log record of you or your keys) as a JSON Lines file." }
        a class="button" data-testid="export-data" href="/console/profile/export" download { "Download my data" }
    };
    ctx.page(status, "Profile", body)
}

/// `POST /console/profile`: corrects the user's own name and e-mail.
pub(super) async fn save_profile(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let user = me(ctx)?.clone();
    let name = ctx.field("name").unwrap_or("").trim().to_owned();
    let change = UserChange {
        email: ctx.field("email").map(str::to_owned),
        name: Some((!name.is_empty()).then_some(name)),
        role: None,
    };
    let acting = ctx.acting()?;
    match ops::update(ctx.state, &acting, &user.id.to_string(), change).await {
        Ok(_) => Ok(html::see_other("/console/profile?saved=1")),
        Err(e) if e.status.is_client_error() => {
            Ok(profile_page(ctx, &user, e.status, false, Some(&e)))
        }
        Err(e) => Err(e),
    }
}

/// `GET /console/profile/export`: the user's own export, as a file.
pub(super) async fn export(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let user = me(ctx)?.clone();
    let acting = ctx.acting()?;
    let body = crate::routes::privacy::export_for(ctx.state, &acting, &user.id.to_string()).await?;
    let mut r = crate::http::typed(crate::routes::privacy::NDJSON, body);
    r.headers_mut().insert(
        http::header::CONTENT_DISPOSITION,
        http::HeaderValue::from_static("attachment; filename=\"align-my-data.jsonl\""),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// Whether the signed-in user administers people (admins).
pub(super) fn is_admin(ctx: &Ctx<'_>) -> bool {
    ctx.signed
        .as_ref()
        .is_some_and(|s| s.user.role == Role::Admin)
}

/// `GET /console/users` (admins).
pub(super) async fn users(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    users_page(ctx, StatusCode::OK, None).await
}

async fn users_page(
    ctx: &Ctx<'_>,
    status: StatusCode,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    if !is_admin(ctx) {
        return Err(ApiError::forbidden("only admins manage users"));
    }
    let acting = ctx.acting()?;
    let people = ops::visible(ctx.state, acting.who).await?;
    let my_id = acting.who.user_id();
    let body = html! {
        p class="crumbs" { "Settings → Users" }
        h1 { "Users" }
        @if let Some(e) = error {
            p class="error" data-testid="error" { (e.message) }
        }
        table data-testid="users-table" {
            thead { tr { th { "Email" } th { "Name" } th { "Role" } th { "Created" } th {} } }
            tbody {
                @for u in &people {
                    tr data-user-id=(u.id) {
                        td data-col="email" { (u.email) }
                        td data-col="name" { (u.name.as_deref().unwrap_or("—")) }
                        td data-col="role" {
                            form method="post" action={ "/console/users/" (u.id) "/role" } class="inline" {
                                (ctx.hidden_fields())
                                select name="role" data-testid="role-select" {
                                    @for r in Role::ALL {
                                        option value=(r) selected[r == u.role] { (r) }
                                    }
                                }
                                " "
                                button type="submit" data-testid="role-save" { "Change role" }
                            }
                        }
                        td data-col="created" { (when(u.created_at)) }
                        td class="actions" {
                            @if u.id != my_id {
                                form method="post" action={ "/console/users/" (u.id) "/delete" } class="inline" data-confirm="Delete this user? Their sessions end, their personal data is erased and the keys they created are revoked." {
                                    (ctx.hidden_fields())
                                    button type="submit" class="danger" data-testid="delete-user" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
        p class="hint" { "Deleting a user revokes the keys they created. To keep them working, hand them to another admin first: " code { "align users delete ID --transfer-keys-to ADMIN_ID" } "." }
    };
    Ok(ctx.page(status, "Users", body))
}

/// `POST /console/users/{id}/role`.
pub(super) async fn set_role(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let change = UserChange {
        role: ctx.field("role").map(str::to_owned),
        ..UserChange::default()
    };
    let acting = ctx.acting()?;
    back_to_users(ctx, ops::update(ctx.state, &acting, id, change).await).await
}

/// `POST /console/users/{id}/delete`.
pub(super) async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    back_to_users(ctx, ops::delete(ctx.state, &acting, id, None).await).await
}

/// Back to the users page after a change to a user that `done` tells of; a conflict (such as
/// the organisation's last admin) is shown on the page itself.
async fn back_to_users<T>(ctx: &Ctx<'_>, done: Result<T, ApiError>) -> Result<Response, ApiError> {
    match done {
        Ok(_) => Ok(html::see_other("/console/users")),
        Err(e) if e.status == StatusCode::CONFLICT => {
            users_page(ctx, StatusCode::CONFLICT, Some(&e)).await
        }
        Err(e) => Err(e),
    }
}
