//! Key spaces (DESIGN §12): the organisation's own key spaces, the keys it mints in them for
//! its customers (each token shown once), their revocation, suspension and rotation, and a
//! key's verifications as usage. Every action is `routes::keyspaces`' own, acting as the
//! signed-in user, so the one policy decides: key spaces are organisation-level objects,
//! reached by admins (as by organisation-scoped keys through the API); for engineers and
//! viewers they are out of reach (`404`, as any object outside a caller's scope).

mod form;
mod key;

pub(super) use key::{act, created, show as show_key};

use align_keys::keyspace::{Keyspace, KeyspaceKey, KeyspaceKeyFilter, KeyspaceKeyStatus};
use align_keys::store::PageRequest;
use align_keys::{Environment, Permission, Target};
use chrono::{DateTime, Utc};
use http::StatusCode;
use maud::html;

use super::html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::principal::Principal;
use crate::routes::keyspaces as ops;

/// Most key spaces, or keys of one, a page reads (in store pages of 200).
const MAX_LISTED: usize = 5_000;

/// Whether `who` reaches key spaces at all (the navigation links the page only then).
pub(super) fn reachable(who: Principal<'_>) -> bool {
    who.authorize(Permission::KeyspacesRead, org(who, None))
        .is_ok()
}

/// The organisation as the target of a key space permission (in `environment`, for a key).
fn org(who: Principal<'_>, environment: Option<Environment>) -> Target {
    Target {
        organization_id: who.organization_id(),
        project_id: None,
        environment,
    }
}

/// Whether `who` may create and change key spaces and their keys (in `environment`).
fn may_write(who: Principal<'_>, environment: Option<Environment>) -> bool {
    who.authorize(Permission::KeyspacesWrite, org(who, environment))
        .is_ok()
}

/// Whether an error belongs beside the form that caused it (bad input, a conflict) rather
/// than on an error page.
fn shown_in_form(e: &ApiError) -> bool {
    matches!(e.status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT)
}

/// The words of a comma or space separated list.
fn words(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split([',', ' ', '\n', '\r', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which form of a key space's page an error is about (and which one keeps what was typed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Settings,
    Mint,
    Keys,
}

/// `GET /console/keyspaces`.
pub(super) async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    list_page(ctx, StatusCode::OK, None).await
}

async fn list_page(
    ctx: &Ctx<'_>,
    status: StatusCode,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    who.authorize(Permission::KeyspacesRead, org(who, None))?;
    let mut spaces = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = ctx
            .state
            .keyspaces
            .store()
            .list_keyspaces(who.organization_id(), &page)
            .await?;
        spaces.extend(p.data);
        match p.next_cursor {
            Some(c) if spaces.len() < MAX_LISTED => page.cursor = Some(c),
            _ => break,
        }
    }
    let env = ctx.env_query();
    // What was typed stays after an error.
    let typed = |name: &str| error.and(ctx.field(name)).unwrap_or("").to_owned();
    let body = html! {
        p class="crumbs" { "Settings → Developer → Key spaces" }
        h1 { "Key spaces" }
        p class="hint" {
            "Keys your organisation issues to its own customers, checked with "
            code { "POST /api/v1/keys/verify" } " from any language."
        }
        table data-testid="keyspaces-table" {
            thead { tr { th { "Name" } th { "Prefix" } th { "Permissions" } th { "Created" } } }
            tbody {
                @for ks in &spaces {
                    tr data-keyspace-id=(ks.id) {
                        td data-col="name" { a href={ "/console/keyspaces/" (ks.id) "?" (env) } { (ks.name) } }
                        td data-col="prefix" { code { (ks.prefix) "_" } }
                        td data-col="permissions" { (vocabulary_text(ks)) }
                        td data-col="created" { (when(ks.created_at)) }
                    }
                }
            }
        }
        @if spaces.is_empty() {
            p class="empty" { "No key space yet." }
        }
        @if may_write(who, None) {
            h2 { "Create a key space" }
            @if let Some(e) = error {
                p class="error" data-testid="error" { (e.message) }
            }
            form id="create-keyspace" class="stacked" method="post" action="/console/keyspaces" {
                (ctx.hidden_fields())
                label { "Name " input name="name" required maxlength="200" placeholder="Acme API" value=(typed("name")); }
                label { "Prefix " input name="prefix" required maxlength="8" pattern="[a-z]{2,8}" placeholder="acme" value=(typed("prefix")); }
                label { "Permissions " input name="permissions" placeholder="invoices:read, invoices:write" value=(typed("permissions")); }
                p class="hint" { "The prefix starts every token of the space (2–8 lowercase letters, not ako or akt). Permissions are the vocabulary its keys may hold, separated by commas or spaces." }
                button type="submit" class="primary" data-testid="create-keyspace-submit" { "Create key space" }
            }
        }
    };
    Ok(ctx.page(status, "Key spaces", body))
}

/// `POST /console/keyspaces`: creates through `routes::keyspaces::create_keyspace`.
pub(super) async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let name = ctx.field("name").unwrap_or("").trim();
    let prefix = ctx.field("prefix").unwrap_or("").trim();
    let permissions = words(ctx.field("permissions"));
    match ops::create_keyspace(ctx.state, &acting, name, prefix, permissions).await {
        Ok(ks) => Ok(html::see_other(&format!(
            "/console/keyspaces/{}?{}",
            ks.id,
            ctx.env_query()
        ))),
        Err(e) if shown_in_form(&e) => list_page(ctx, e.status, Some(&e)).await,
        Err(e) => Err(e),
    }
}

/// `GET /console/keyspaces/{id}?env=&ownerId=`.
pub(super) async fn show(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let ks = ops::load_keyspace(ctx.state, who, id, Permission::KeyspacesRead).await?;
    keyspace_page(ctx, &ks, StatusCode::OK, None).await
}

/// The key space's page: its settings, its keys of the page's environment (of one owner with
/// `?ownerId=`), and the mint form; `error` shown beside the form it is about.
async fn keyspace_page(
    ctx: &Ctx<'_>,
    ks: &Keyspace,
    status: StatusCode,
    error: Option<(Form, &ApiError)>,
) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let owner = ctx
        .query("ownerId")
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty());
    let keys = keys_of(ctx, ks, owner.clone()).await?;
    let now = Utc::now();
    let env = ctx.env_query();
    let error_of = |form: Form| error.filter(|(f, _)| *f == form).map(|(_, e)| e);
    let settings_error = error_of(Form::Settings);
    let typed = |name: &str, current: String| match settings_error {
        Some(_) => ctx.field(name).unwrap_or("").to_owned(),
        None => current,
    };
    let writes = may_write(who, None);
    let body = html! {
        p class="crumbs" { a href={ "/console/keyspaces?" (env) } { "Settings → Developer → Key spaces" } " → " (ks.name) }
        h1 data-testid="keyspace-name" { (ks.name) }
        p {
            "Tokens start with " code data-testid="keyspace-prefix" { (ks.prefix) "_" }
            " · created " (when(ks.created_at))
        }
        p { "Permissions: " span data-testid="keyspace-permissions" { (vocabulary_text(ks)) } }
        @if writes {
            details data-testid="keyspace-settings" open[settings_error.is_some()] {
                summary { "Rename or change the permissions" }
                @if let Some(e) = settings_error {
                    p class="error" data-testid="error" { (e.message) }
                }
                form id="keyspace-settings" class="stacked" method="post" action={ "/console/keyspaces/" (ks.id) } {
                    (ctx.hidden_fields())
                    label { "Name " input name="name" required maxlength="200" value=(typed("name", ks.name.clone())); }
                    label { "Permissions " input name="permissions" value=(typed("permissions", ks.permissions.join(", "))); }
                    p class="hint" { "Keys keep the permissions they hold; new grants are checked against the new list." }
                    button type="submit" data-testid="keyspace-save" { "Save" }
                }
            }
        }
        h2 { "Keys (" (ctx.env()) ")" }
        form class="search" method="get" action={ "/console/keyspaces/" (ks.id) } {
            input type="hidden" name="env" value=(ctx.env());
            input type="search" name="ownerId" value=(owner.as_deref().unwrap_or("")) placeholder="Owner id" aria-label="Only the keys of this owner";
            button type="submit" data-testid="filter-owner" { "Filter" }
            @if owner.is_some() {
                a href={ "/console/keyspaces/" (ks.id) "?" (env) } { "All owners" }
            }
        }
        @if let Some(e) = error_of(Form::Keys) {
            p class="error" data-testid="error" { (e.message) }
        }
        table data-testid="keyspace-keys-table" {
            thead { tr { th { "Name" } th { "Prefix" } th { "Owner" } th { "Environment" } th { "Status" } th { "Credits" } th { "Limits" } th { "Created" } th {} } }
            tbody {
                @for k in &keys {
                    @let status = status_name(k, now);
                    tr data-key-id=(k.id) {
                        td data-col="name" { a href={ "/console/keyspaces/" (ks.id) "/keys/" (k.id) "?" (env) } { (k.name) } }
                        td data-col="prefix" { code { (k.prefix) } }
                        td data-col="owner" { (k.owner_id.as_deref().unwrap_or("—")) }
                        td data-col="environment" { (k.environment) }
                        td data-col="status" { span class={ "status " (status) } { (status) } }
                        td data-col="credits" { (credits_text(k, now)) }
                        td data-col="limits" { (limits_text(k)) }
                        td data-col="created" { (when(k.created_at)) }
                        td class="actions" { (key::actions(ctx, ks, k, false)) }
                    }
                }
            }
        }
        @if keys.is_empty() {
            p class="empty" {
                @if owner.is_some() { "No key of this owner in this environment." } @else { "No keys in this environment yet." }
            }
        }
        @if may_write(who, Some(ctx.env())) {
            (form::mint_form(ctx, ks, error_of(Form::Mint)))
        }
    };
    Ok(ctx.page(status, &ks.name, body))
}

/// The keys of `ks` in the page's environment (revoked ones too), newest first.
async fn keys_of(
    ctx: &Ctx<'_>,
    ks: &Keyspace,
    owner_id: Option<String>,
) -> Result<Vec<KeyspaceKey>, ApiError> {
    let filter = KeyspaceKeyFilter {
        keyspace_id: ks.id,
        owner_id,
        environment: Some(ctx.env()),
        include_revoked: true,
    };
    let mut keys = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = ctx
            .state
            .keyspaces
            .store()
            .list_keyspace_keys(&filter, &page)
            .await?;
        keys.extend(p.data);
        match p.next_cursor {
            Some(c) if keys.len() < MAX_LISTED => page.cursor = Some(c),
            _ => break,
        }
    }
    keys.reverse();
    Ok(keys)
}

/// `POST /console/keyspaces/{id}`: renames the key space or changes its vocabulary.
pub(super) async fn update(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let ks = ops::load_keyspace(ctx.state, acting.who, id, Permission::KeyspacesWrite).await?;
    let name = ctx.field("name").unwrap_or("").trim().to_owned();
    let permissions = words(ctx.field("permissions"));
    // Only what changed is written (and named in the audit record).
    let name = (name != ks.name).then_some(name);
    let permissions = (permissions != ks.permissions).then_some(permissions);
    match ops::update_keyspace(ctx.state, &acting, ks.clone(), name, permissions).await {
        Ok(ks) => Ok(html::see_other(&format!(
            "/console/keyspaces/{}?{}",
            ks.id,
            ctx.env_query()
        ))),
        Err(e) if shown_in_form(&e) => {
            keyspace_page(ctx, &ks, e.status, Some((Form::Settings, &e))).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /console/keyspaces/{id}/keys`: mints through `routes::keyspaces::mint`; the token
/// waits for the one page that shows it.
pub(super) async fn mint(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let ks = ops::load_keyspace(ctx.state, acting.who, id, Permission::KeyspacesWrite).await?;
    let minted = match form::key_request(ctx, Utc::now()) {
        Ok(request) => ops::mint(ctx.state, &acting, &ks, request).await,
        Err(e) => Err(e),
    };
    match minted {
        Ok(minted) => Ok(key::show_once(ctx, &ks, minted)?),
        Err(e) if shown_in_form(&e) => {
            keyspace_page(ctx, &ks, e.status, Some((Form::Mint, &e))).await
        }
        Err(e) => Err(e),
    }
}

/// A key space's vocabulary as the pages show it.
fn vocabulary_text(ks: &Keyspace) -> String {
    if ks.permissions.is_empty() {
        "—".to_owned()
    } else {
        ks.permissions.join(", ")
    }
}

fn status_name(k: &KeyspaceKey, now: DateTime<Utc>) -> &'static str {
    match k.status(now) {
        KeyspaceKeyStatus::Active => "active",
        KeyspaceKeyStatus::Suspended => "suspended",
        KeyspaceKeyStatus::Expired => "expired",
        KeyspaceKeyStatus::Revoked => "revoked",
    }
}

/// A key's credits as a verification at `now` would see them (refill applied).
fn credits_text(k: &KeyspaceKey, now: DateTime<Utc>) -> String {
    match &k.credits {
        None => "unlimited".to_owned(),
        Some(c) => {
            let (remaining, _) = c.at(now);
            match c.refill {
                None => remaining.to_string(),
                Some(r) => format!("{remaining} (refilled to {} each {})", r.amount, r.interval),
            }
        }
    }
}

/// A key's named limits, e.g. `requests: 100 per 60 s`.
fn limits_text(k: &KeyspaceKey) -> String {
    if k.ratelimits.is_empty() {
        return "—".to_owned();
    }
    k.ratelimits
        .iter()
        .map(|l| format!("{}: {} per {} s", l.name, l.limit, l.duration_seconds))
        .collect::<Vec<_>>()
        .join(", ")
}
