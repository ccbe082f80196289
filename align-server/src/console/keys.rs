//! Settings → Developer → API Keys: the list (search by prefix or name), Create Key, the
//! shown-once dialog, revoke and rotate with confirmation. Every action is
//! `routes::keys`' own, acting as the signed-in user.

use std::collections::HashMap;

use align_keys::store::PageRequest;
use align_keys::{KeyRecord, KeyStatus, Permission, ProjectId, Role};
use chrono::Utc;
use http::StatusCode;

use maud::html;

use super::html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::keys::{self as ops, KeyRequest, StateChange};

/// Most keys one list page reads (in store pages of 200).
const MAX_LISTED: usize = 5_000;
/// Rotation's grace period offered by default.
const DEFAULT_GRACE_SECS: u64 = 3600;

/// Which confirmation page to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirm {
    Revoke,
    Rotate,
}

/// The organisation's projects by id, for names and the project menu.
async fn projects(ctx: &Ctx<'_>) -> Result<Vec<align_keys::Project>, ApiError> {
    let org = ctx.acting()?.who.organization_id();
    let mut out = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = ctx.state.store().list_projects(org, &page).await?;
        out.extend(p.data);
        match p.next_cursor {
            Some(c) if out.len() < MAX_LISTED => page.cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

fn status_name(k: &KeyRecord) -> &'static str {
    match k.status_at(Utc::now()) {
        KeyStatus::Active => "active",
        KeyStatus::Suspended => "suspended",
        KeyStatus::Expired => "expired",
        KeyStatus::Revoked => "revoked",
    }
}

/// A key's meta as compact JSON (escaped by the page like any text), `—` without one.
fn meta_text(meta: Option<&align_keys::Meta>) -> String {
    meta.map_or_else(
        || "—".to_owned(),
        |m| serde_json::Value::Object(m.clone()).to_string(),
    )
}

fn target(k: &KeyRecord) -> align_keys::Target {
    align_keys::Target {
        organization_id: k.organization_id,
        project_id: k.scope.project_id(),
        environment: Some(k.environment),
    }
}

/// `GET /console/keys?env=&q=`.
pub(super) async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let who = acting.who;
    let q = ctx.query("q").unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let mut keys = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = ops::visible(ctx.state, who, Some(ctx.env()), &page).await?;
        keys.extend(p.data.into_iter().filter(|k| {
            needle.is_empty()
                || k.prefix.to_lowercase().contains(&needle)
                || k.name.to_lowercase().contains(&needle)
        }));
        match p.next_cursor {
            Some(c) if keys.len() < MAX_LISTED => page.cursor = Some(c),
            _ => break,
        }
    }
    keys.reverse();
    let names: HashMap<ProjectId, String> = projects(ctx)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    let may_write = who.effective_permissions().contains(Permission::KeysWrite);

    let env = ctx.env_query();
    let project_of = |k: &KeyRecord| {
        k.scope
            .project_id()
            .map(|p| names.get(&p).cloned().unwrap_or_else(|| p.to_string()))
            .unwrap_or_else(|| "—".into())
    };
    let empty = if needle.is_empty() {
        "No keys in this environment yet."
    } else {
        "No key matches that prefix or name."
    };
    let body = html! {
        p class="crumbs" { "Settings → Developer → API Keys" }
        div class="title" {
            h1 { "API Keys" }
            @if may_write {
                a class="button primary" data-testid="create-key" href={ "/console/keys/new?" (env) } { "Create Key" }
            }
        }
        form class="search" method="get" action="/console/keys" {
            input type="hidden" name="env" value=(ctx.env());
            input type="search" name="q" value=(q) placeholder="Find a key by prefix or name" aria-label="Find a key by prefix or name";
            button type="submit" { "Search" }
        }
        table data-testid="keys-table" {
            thead { tr { th { "Name" } th { "Prefix" } th { "Scope" } th { "Project" } th { "Environment" } th { "Owner" } th { "Meta" } th { "Created" } th { "Last used" } th { "Status" } th {} } }
            tbody {
                @for k in &keys {
                    @let status = status_name(k);
                    tr data-key-id=(k.id) {
                        td data-col="name" { a href={ "/console/keys/" (k.id) "?" (env) } { (k.name) } }
                        td data-col="prefix" { code { (k.prefix) } }
                        td data-col="scope" { (k.scope.kind()) }
                        td data-col="project" { (project_of(k)) }
                        td data-col="environment" { (k.environment) }
                        td data-col="owner" { (k.owner_id.as_deref().unwrap_or("—")) }
                        td data-col="meta" { code { (meta_text(k.meta.as_ref())) } }
                        td data-col="created" { (when(k.created_at)) }
                        td data-col="last-used" { (k.last_used_at.map_or_else(|| "never".to_owned(), when)) }
                        td data-col="status" { span class={ "status " (status) } { (status) } }
                        td class="actions" {
                            @if who.authorize(Permission::KeysWrite, target(k)).is_ok()
                                && k.revoked_at.is_none()
                                && status != "expired"
                            {
                                a class="button" data-testid="rotate-key" href={ "/console/keys/" (k.id) "/rotate?" (env) } { "Rotate" }
                                " "
                                a class="button danger" data-testid="revoke-key" href={ "/console/keys/" (k.id) "/revoke?" (env) } { "Revoke" }
                            }
                        }
                    }
                }
            }
        }
        @if keys.is_empty() {
            p class="empty" { (empty) }
        }
    };
    Ok(ctx.page(StatusCode::OK, "API Keys", body))
}

/// `GET /console/keys/new`: Create Key. Organisation scope is offered to admins only.
pub(super) async fn new_form(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let Some(signed) = ctx.signed.as_ref() else {
        return Err(ApiError::not_found());
    };
    if signed.user.role == Role::Viewer {
        return Err(ApiError::forbidden("viewers may not create API keys"));
    }
    acting.who.require(Permission::KeysWrite)?;
    let projects = projects(ctx).await?;
    let admin = signed.user.role == Role::Admin;
    let body = html! {
        p class="crumbs" { "Settings → Developer → API Keys → Create Key" }
        h1 { "Create Key" }
        form id="create-key" class="stacked" method="post" action="/console/keys" {
            (ctx.hidden_fields())
            label { "Name " input name="name" required maxlength="200" placeholder="prod-sync"; }
            label {
                "Scope "
                select name="scope" {
                    @if admin {
                        option value="organization" { "Organization: every project (admins only)" }
                    }
                    option value="project" { "Project: one project only" }
                }
            }
            label {
                "Project "
                select name="projectId" {
                    @for p in &projects {
                        option value=(p.id) { (p.name) }
                    }
                }
            }
            @if projects.is_empty() {
                p class="hint" { "This organisation has no project yet; create one with " code { "align projects create --name NAME" } " or " code { "POST /api/v1/projects" } "." }
            }
            label {
                "Environment "
                select name="environment" {
                    @for env in [align_keys::Environment::Live, align_keys::Environment::Sandbox] {
                        option value=(env) selected[env == ctx.env()] {
                            @match env {
                                align_keys::Environment::Live => "Live (ako_)",
                                align_keys::Environment::Sandbox => "Sandbox (akt_)",
                            }
                        }
                    }
                }
            }
            label { "Owner id (optional) " input name="ownerId" maxlength="256" placeholder="your customer's or user's id"; }
            label { "Metadata (optional) " textarea name="meta" rows="3" placeholder=r#"a JSON object, e.g. {"plan":"pro"}"# {} }
            p class="hint" { "The key is shown once, right after you create it. Only its hash is kept." }
            div class="row" {
                button type="submit" class="primary" data-testid="create-key-submit" { "Create" }
                a href={ "/console/keys?" (ctx.env_query()) } { "Cancel" }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, "Create Key", body))
}

/// `POST /console/keys`: mints through `routes::keys::mint` as the user.
pub(super) async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let scope = ctx.field("scope").unwrap_or("").to_owned();
    let project_id = match scope.as_str() {
        // The project menu is always sent; it only means something for project scope.
        "project" => ctx
            .field("projectId")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        _ => None,
    };
    let environment = match ctx.field("environment") {
        None => Some(ctx.env()),
        Some(e) => Some(
            align_keys::Environment::from_name(e)
                .ok_or_else(|| ApiError::invalid_request("environment must be live or sandbox"))?,
        ),
    };
    let request = KeyRequest {
        name: ctx.field("name").unwrap_or("").to_owned(),
        scope,
        project_id,
        permissions: None,
        environment,
        expires_at: None,
        owner_id: ctx
            .field("ownerId")
            .filter(|o| !o.is_empty())
            .map(str::to_owned),
        meta: ctx
            .field("meta")
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                serde_json::from_str::<align_keys::Meta>(m)
                    .map_err(|_| ApiError::invalid_request("meta must be a JSON object"))
            })
            .transpose()?,
    };
    let minted = ops::mint(ctx.state, &acting, request).await?;
    let id = minted.record.id;
    ctx.console
        .once
        .put(ctx.session()?, format!("key:{id}"), minted.token);
    Ok(html::see_other(&format!("/console/keys/{id}/created")))
}

/// `GET /console/keys/{id}/created`: the shown-once dialog, or a note that it was shown.
pub(super) async fn created(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let key = ops::load(ctx.state, acting.who, id, Permission::KeysRead).await?;
    ctx.set_env(key.environment);
    let secret = ctx
        .console
        .once
        .take(ctx.session()?, &format!("key:{}", key.id));
    let env = ctx.env_query();
    let body = html! {
        p class="crumbs" { "Settings → Developer → API Keys" }
        @match secret {
            Some(token) => {
                dialog open data-testid="key-dialog" class="shown-once" {
                    h2 { "API key " (key.name) " created" }
                    p class="warning" data-testid="key-warning" { "Copy this key now. It will not be shown again." }
                    div class="secret" {
                        code id="shown-secret" data-testid="key-secret" { (token.expose()) }
                        button type="button" data-testid="copy-key" data-copy="shown-secret" { "Copy" }
                    }
                    p class="hint" data-copied hidden { "Copied to the clipboard." }
                    p { "Prefix " code { (key.prefix) } " · " (key.scope.kind()) " · " (key.environment) }
                    @if key.rotated_from.is_some() {
                        p { a data-testid="watch-rotation" href={ "/console/keys/" (key.id) "?" (env) } { "Watch traffic move from the old key to this one" } }
                    }
                    a class="button primary" data-testid="done" href={ "/console/keys?" (env) } { "Done" }
                }
            }
            None => {
                div class="shown-once gone" {
                    p data-testid="key-gone" { "This key was shown once and cannot be shown again." }
                    p { "Prefix " code { (key.prefix) } ". If the key was lost, rotate or revoke it and create a new one." }
                    a class="button" data-testid="done" href={ "/console/keys?" (env) } { "Back to API keys" }
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, "API key created", body))
}

/// `GET /console/keys/{id}/revoke|rotate`: the confirmation, naming the key.
pub(super) async fn confirm(ctx: &Ctx<'_>, id: &str, what: Confirm) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let key = ops::load(ctx.state, acting.who, id, Permission::KeysWrite).await?;
    ctx.set_env(key.environment);
    let (title, action) = match what {
        Confirm::Revoke => ("Revoke key", "revoke"),
        Confirm::Rotate => ("Rotate key", "rotate"),
    };
    let body = html! {
        p class="crumbs" { "Settings → Developer → API Keys" }
        h1 { (title) }
        p {
            "Key " strong data-testid="confirm-name" { (key.name) }
            " with prefix " code data-testid="confirm-prefix" { (key.prefix) }
            " (" (key.scope.kind()) ", " (key.environment) ")."
        }
        form id={ (action) "-key" } class="stacked" method="post" action={ "/console/keys/" (key.id) "/" (action) } {
            (ctx.hidden_fields())
            @match what {
                Confirm::Revoke => {
                    p class="warning" { "Revoking is immediate and final: the next request with this key gets " code { "401 key_revoked" } "." }
                }
                Confirm::Rotate => {
                    label { "Grace period (seconds the old key keeps working) " input type="number" name="graceSeconds" min="0" max="2592000" value=(DEFAULT_GRACE_SECS); }
                    p class="hint" { "A new key with the same name, scope and permissions is created and shown once." }
                }
            }
            div class="row" {
                @match what {
                    Confirm::Revoke => {
                        button type="submit" class="danger" data-testid="confirm-revoke" { "Revoke key" }
                    }
                    Confirm::Rotate => {
                        button type="submit" class="primary" data-testid="confirm-rotate" { "Rotate key" }
                    }
                }
                a href={ "/console/keys?" (ctx.env_query()) } { "Cancel" }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, title, body))
}

/// `POST /console/keys/{id}/revoke`.
pub(super) async fn revoke(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let key = ops::change_state(ctx.state, &acting, id, StateChange::Revoke).await?;
    Ok(html::see_other(&format!(
        "/console/keys?env={}",
        key.environment
    )))
}

/// `POST /console/keys/{id}/rotate`: the successor is shown once, like a new key.
pub(super) async fn rotate(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let grace = match ctx.field("graceSeconds").map(str::trim) {
        None | Some("") => DEFAULT_GRACE_SECS,
        Some(v) => v.parse().map_err(|_| {
            ApiError::invalid_request("graceSeconds must be a whole number of seconds")
        })?,
    };
    let rotation = ops::rotate(ctx.state, &acting, id, grace).await?;
    let next = rotation.successor.record.id;
    ctx.console.once.put(
        ctx.session()?,
        format!("key:{next}"),
        rotation.successor.token,
    );
    Ok(html::see_other(&format!("/console/keys/{next}/created")))
}
