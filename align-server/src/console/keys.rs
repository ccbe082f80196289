//! Settings → Developer → API Keys: the list (search by prefix or name), Create Key, the
//! shown-once dialog, revoke and rotate with confirmation. Every action is
//! `routes::keys`' own, acting as the signed-in user.

use std::collections::HashMap;

use align_keys::store::PageRequest;
use align_keys::{KeyRecord, KeyStatus, Permission, ProjectId, Role};
use chrono::Utc;
use http::StatusCode;

use super::html::{self, Html};
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

    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → API Keys</p>")
        .raw("<div class=\"title\"><h1>API Keys</h1>");
    if may_write {
        h.put(
            "<a class=\"button primary\" data-testid=\"create-key\" href=\"/console/keys/new?{}\">Create Key</a>",
            &[&ctx.env_query()],
        );
    }
    h.raw("</div><form class=\"search\" method=\"get\" action=\"/console/keys\">")
        .put("<input type=\"hidden\" name=\"env\" value=\"{}\">", &[&ctx.env()])
        .put(
            "<input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Find a key by prefix or name\" aria-label=\"Find a key by prefix or name\">",
            &[&q],
        )
        .raw("<button type=\"submit\">Search</button></form>")
        .raw("<table data-testid=\"keys-table\"><thead><tr><th>Name</th><th>Prefix</th><th>Scope</th><th>Project</th><th>Environment</th><th>Owner</th><th>Meta</th><th>Created</th><th>Last used</th><th>Status</th><th></th></tr></thead><tbody>");
    for k in &keys {
        let project = k
            .scope
            .project_id()
            .map(|p| names.get(&p).cloned().unwrap_or_else(|| p.to_string()))
            .unwrap_or_else(|| "—".into());
        let last_used = k.last_used_at.map_or_else(|| "never".to_owned(), when);
        let status = status_name(k);
        h.put("<tr data-key-id=\"{}\">", &[&k.id])
            .put("<td data-col=\"name\">{}</td>", &[&k.name])
            .put("<td data-col=\"prefix\"><code>{}</code></td>", &[&k.prefix])
            .put("<td data-col=\"scope\">{}</td>", &[&k.scope.kind()])
            .put("<td data-col=\"project\">{}</td>", &[&project])
            .put("<td data-col=\"environment\">{}</td>", &[&k.environment])
            .put(
                "<td data-col=\"owner\">{}</td>",
                &[&k.owner_id.as_deref().unwrap_or("—")],
            )
            .put(
                "<td data-col=\"meta\"><code>{}</code></td>",
                &[&meta_text(k.meta.as_ref())],
            )
            .put("<td data-col=\"created\">{}</td>", &[&when(k.created_at)])
            .put("<td data-col=\"last-used\">{}</td>", &[&last_used])
            .put(
                "<td data-col=\"status\"><span class=\"status {}\">{}</span></td><td class=\"actions\">",
                &[&status, &status],
            );
        let writable = who.authorize(Permission::KeysWrite, target(k)).is_ok();
        if writable && k.revoked_at.is_none() && status != "expired" {
            h.put(
                "<a class=\"button\" data-testid=\"rotate-key\" href=\"/console/keys/{}/rotate?{}\">Rotate</a> ",
                &[&k.id, &ctx.env_query()],
            )
            .put(
                "<a class=\"button danger\" data-testid=\"revoke-key\" href=\"/console/keys/{}/revoke?{}\">Revoke</a>",
                &[&k.id, &ctx.env_query()],
            );
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if keys.is_empty() {
        let what = if needle.is_empty() {
            "No keys in this environment yet."
        } else {
            "No key matches that prefix or name."
        };
        h.put("<p class=\"empty\">{}</p>", &[&what]);
    }
    Ok(ctx.page(StatusCode::OK, "API Keys", h))
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
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → API Keys → Create Key</p>")
        .raw("<h1>Create Key</h1>")
        .raw("<form id=\"create-key\" class=\"stacked\" method=\"post\" action=\"/console/keys\">");
    ctx.hidden_fields(&mut h);
    h.raw("<label>Name <input name=\"name\" required maxlength=\"200\" placeholder=\"prod-sync\"></label>")
        .raw("<label>Scope <select name=\"scope\">");
    if admin {
        h.raw("<option value=\"organization\">Organization: every project (admins only)</option>");
    }
    h.raw("<option value=\"project\">Project: one project only</option></select></label>")
        .raw("<label>Project <select name=\"projectId\">");
    for p in &projects {
        h.put("<option value=\"{}\">{}</option>", &[&p.id, &p.name]);
    }
    h.raw("</select></label>");
    if projects.is_empty() {
        h.raw("<p class=\"hint\">This organisation has no project yet; create one with <code>align projects create --name NAME</code> or <code>POST /api/v1/projects</code>.</p>");
    }
    h.raw("<label>Environment <select name=\"environment\">");
    for env in [
        align_keys::Environment::Live,
        align_keys::Environment::Sandbox,
    ] {
        let selected = if env == ctx.env() { " selected" } else { "" };
        let label = match env {
            align_keys::Environment::Live => "Live (ako_)",
            align_keys::Environment::Sandbox => "Sandbox (akt_)",
        };
        h.put(
            "<option value=\"{}\"{}>{}</option>",
            &[&env, &selected, &label],
        );
    }
    h.raw("</select></label>")
        .raw("<p class=\"hint\">The key is shown once, right after you create it. Only its hash is kept.</p>")
        .raw("<div class=\"row\"><button type=\"submit\" class=\"primary\" data-testid=\"create-key-submit\">Create</button>")
        .put(
            "<a href=\"/console/keys?{}\">Cancel</a></div></form>",
            &[&ctx.env_query()],
        );
    Ok(ctx.page(StatusCode::OK, "Create Key", h))
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
        owner_id: None,
        meta: None,
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
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → API Keys</p>");
    match secret {
        Some(token) => {
            h.raw("<dialog open data-testid=\"key-dialog\" class=\"shown-once\">")
                .put("<h2>API key {} created</h2>", &[&key.name])
                .raw("<p class=\"warning\" data-testid=\"key-warning\">Copy this key now. It will not be shown again.</p>")
                .put(
                    "<div class=\"secret\"><code id=\"shown-secret\" data-testid=\"key-secret\">{}</code>",
                    &[&token.expose()],
                )
                .raw("<button type=\"button\" data-testid=\"copy-key\" data-copy=\"shown-secret\">Copy</button></div>")
                .raw("<p class=\"hint\" data-copied hidden>Copied to the clipboard.</p>")
                .put(
                    "<p>Prefix <code>{}</code> · {} · {}</p>",
                    &[&key.prefix, &key.scope.kind(), &key.environment],
                )
                .put(
                    "<a class=\"button primary\" data-testid=\"done\" href=\"/console/keys?{}\">Done</a></dialog>",
                    &[&ctx.env_query()],
                );
        }
        None => {
            h.raw("<div class=\"shown-once gone\">")
                .raw("<p data-testid=\"key-gone\">This key was shown once and cannot be shown again.</p>")
                .put(
                    "<p>Prefix <code>{}</code>. If the key was lost, rotate or revoke it and create a new one.</p>",
                    &[&key.prefix],
                )
                .put(
                    "<a class=\"button\" data-testid=\"done\" href=\"/console/keys?{}\">Back to API keys</a></div>",
                    &[&ctx.env_query()],
                );
        }
    }
    Ok(ctx.page(StatusCode::OK, "API key created", h))
}

/// `GET /console/keys/{id}/revoke|rotate`: the confirmation, naming the key.
pub(super) async fn confirm(ctx: &Ctx<'_>, id: &str, what: Confirm) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let key = ops::load(ctx.state, acting.who, id, Permission::KeysWrite).await?;
    ctx.set_env(key.environment);
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → API Keys</p>");
    let (title, action) = match what {
        Confirm::Revoke => ("Revoke key", "revoke"),
        Confirm::Rotate => ("Rotate key", "rotate"),
    };
    h.put("<h1>{}</h1>", &[&title])
        .put(
            "<p>Key <strong data-testid=\"confirm-name\">{}</strong> with prefix <code data-testid=\"confirm-prefix\">{}</code> ({}, {}).</p>",
            &[&key.name, &key.prefix, &key.scope.kind(), &key.environment],
        )
        .put(
            "<form id=\"{}-key\" class=\"stacked\" method=\"post\" action=\"/console/keys/{}/{}\">",
            &[&action, &key.id, &action],
        );
    ctx.hidden_fields(&mut h);
    match what {
        Confirm::Revoke => {
            h.raw("<p class=\"warning\">Revoking is immediate and final: the next request with this key gets <code>401 key_revoked</code>.</p>")
                .raw("<div class=\"row\"><button type=\"submit\" class=\"danger\" data-testid=\"confirm-revoke\">Revoke key</button>");
        }
        Confirm::Rotate => {
            h.put(
                "<label>Grace period (seconds the old key keeps working) <input type=\"number\" name=\"graceSeconds\" min=\"0\" max=\"2592000\" value=\"{}\"></label>",
                &[&DEFAULT_GRACE_SECS],
            )
            .raw("<p class=\"hint\">A new key with the same name, scope and permissions is created and shown once.</p>")
            .raw("<div class=\"row\"><button type=\"submit\" class=\"primary\" data-testid=\"confirm-rotate\">Rotate key</button>");
        }
    }
    h.put(
        "<a href=\"/console/keys?{}\">Cancel</a></div></form>",
        &[&ctx.env_query()],
    );
    Ok(ctx.page(StatusCode::OK, title, h))
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
