//! One key space key: its page (details, its verifications as usage charts, the latest
//! verifications), the shown-once page of a freshly minted or rotated key, and the revoke,
//! suspend, resume and rotate buttons, each `routes::keyspaces::act_on_key`.

use std::time::Duration;

use align_audit::{Query, Stream};
use align_keys::Permission;
use align_keys::keyspace::{Keyspace, KeyspaceKey, KeyspaceKeyStatus, MintedKeyspaceKey};
use chrono::Utc;
use http::StatusCode;
use maud::{Markup, html};

use super::super::html;
use super::super::usage::{day_and_month, last_day_and_month};
use super::{Ctx, Form, credits_text, keyspace_page, limits_text, may_write, shown_in_form, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::{audit_events, keyspaces as ops};

/// Verifications listed under the charts.
const LATEST: usize = 20;

/// Where a shown-once token waits for key `key`.
fn once_id(key: &KeyspaceKey) -> String {
    format!("keyspace_key:{}", key.id)
}

/// Keeps a minted key's token for the session's next read of its shown-once page, and sends
/// the browser there. The token is never in a URL.
pub(super) fn show_once(
    ctx: &Ctx<'_>,
    ks: &Keyspace,
    minted: MintedKeyspaceKey,
) -> Result<Response, ApiError> {
    let key = minted.key;
    ctx.console
        .once
        .put(ctx.session()?, once_id(&key), minted.token);
    Ok(html::see_other(&format!(
        "/console/keyspaces/{}/keys/{}/created",
        ks.id, key.id
    )))
}

/// Loads key space `id` and its key `key_id` for the signed-in user holding `permission`.
async fn load(
    ctx: &Ctx<'_>,
    id: &str,
    key_id: &str,
    permission: Permission,
) -> Result<(Keyspace, KeyspaceKey), ApiError> {
    let who = ctx.acting()?.who;
    let ks = ops::load_keyspace(ctx.state, who, id, permission).await?;
    let key = ops::load_key(ctx.state, who, &ks, key_id, permission).await?;
    ctx.set_env(key.environment);
    Ok((ks, key))
}

/// `GET /console/keyspaces/{id}/keys/{keyId}/created`: the token once, or a note that it was
/// shown.
pub(in crate::console) async fn created(
    ctx: &Ctx<'_>,
    id: &str,
    key_id: &str,
) -> Result<Response, ApiError> {
    let (ks, key) = load(ctx, id, key_id, Permission::KeyspacesRead).await?;
    let secret = ctx.console.once.take(ctx.session()?, &once_id(&key));
    let back = format!("/console/keyspaces/{}?{}", ks.id, ctx.env_query());
    let body = html! {
        p class="crumbs" { "Settings → Developer → Key spaces → " (ks.name) }
        @match secret {
            Some(token) => {
                dialog open data-testid="key-dialog" class="shown-once" {
                    h2 { "Key " (key.name) " minted" }
                    p class="warning" data-testid="key-warning" { "Copy this key now. It will not be shown again." }
                    div class="secret" {
                        code id="shown-secret" data-testid="key-secret" { (token.expose()) }
                        button type="button" data-testid="copy-key" data-copy="shown-secret" { "Copy" }
                    }
                    p class="hint" data-copied hidden { "Copied to the clipboard." }
                    p { "Prefix " code { (key.prefix) } " · " (key.environment) " · owner " (key.owner_id.as_deref().unwrap_or("—")) }
                    a class="button primary" data-testid="done" href=(back) { "Done" }
                }
            }
            None => {
                div class="shown-once gone" {
                    p data-testid="key-gone" { "This key was shown once and cannot be shown again." }
                    p { "Prefix " code { (key.prefix) } ". If the key was lost, rotate or revoke it and mint a new one." }
                    a class="button" data-testid="done" href=(back) { "Back to the key space" }
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, "Key minted", body))
}

/// `GET /console/keyspaces/{id}/keys/{keyId}`: the key, its verifications as usage (the
/// request log counts each with the key as actor), the latest of them.
pub(in crate::console) async fn show(
    ctx: &Ctx<'_>,
    id: &str,
    key_id: &str,
) -> Result<Response, ApiError> {
    let (ks, key) = load(ctx, id, key_id, Permission::KeyspacesRead).await?;
    let who = ctx.acting()?.who;
    let actor = key.id.to_string();
    let now = crate::audit::now();
    let (day, month) = last_day_and_month(ctx, &actor, now).await?;
    let latest = if audit_events::may_read(who).is_ok() {
        let mut q = Query::new(Stream::Request).actor(actor);
        q.limit = LATEST;
        Some(audit_events::query(ctx.state, who, q).await?.records)
    } else {
        None
    };
    let env = ctx.env_query();
    let status = super::status_name(&key, Utc::now());
    let body = html! {
        p class="crumbs" {
            a href={ "/console/keyspaces?" (env) } { "Settings → Developer → Key spaces" }
            " → " a href={ "/console/keyspaces/" (ks.id) "?" (env) } { (ks.name) }
            " → " (key.name)
        }
        h1 data-testid="key-name" { (key.name) }
        dl class="facts" {
            dt { "Prefix" } dd { code data-testid="key-prefix" { (key.prefix) } }
            dt { "Id" } dd { code { (key.id) } }
            dt { "Owner" } dd data-testid="key-owner" { (key.owner_id.as_deref().unwrap_or("—")) }
            dt { "Environment" } dd { (key.environment) }
            dt { "Status" } dd { span data-testid="key-status" class={ "status " (status) } { (status) } }
            dt { "Permissions" } dd data-testid="key-permissions" { @if key.permissions.is_empty() { "—" } @else { (key.permissions.join(", ")) } }
            dt { "Credits" } dd data-testid="key-credits" { (credits_text(&key, Utc::now())) }
            dt { "Named limits" } dd data-testid="key-limits" { (limits_text(&key)) }
            dt { "Created" } dd { (when(key.created_at)) }
            dt { "Expires" } dd { (key.expires_at.map_or_else(|| "never".to_owned(), when)) }
            @if let Some(t) = key.suspended_at { dt { "Suspended" } dd { (when(t)) } }
            @if let Some(t) = key.revoked_at { dt { "Revoked" } dd { (when(t)) } }
            @if let Some(prev) = key.rotated_from {
                dt { "Replaces" } dd { a href={ "/console/keyspaces/" (ks.id) "/keys/" (prev) "?" (env) } { (prev) } }
            }
        }
        p class="row" { (actions(ctx, &ks, &key, true)) }
        h2 { "Usage" }
        p class="hint" { "Each verification of this key counts as one request: VALID as succeeded, refusals as client errors, RATE_LIMITED and USAGE_EXCEEDED as rate limited." }
        (day_and_month(&day, &month))
        h2 { "Latest verifications" }
        @match &latest {
            None => p class="hint" { "Reading the request log needs the audit:read permission over the whole organisation." },
            Some(records) if records.is_empty() => p class="empty" data-testid="no-verifications" { "This key has not been verified yet." },
            Some(records) => {
                table data-testid="latest-verifications" {
                    thead { tr { th { "Time" } th { "Result" } th { "Status" } th { "Verified by" } th { "Request id" } } }
                    tbody {
                        @for r in records {
                            @let e = r.entry();
                            @let meta = e.metadata();
                            tr {
                                td data-col="time" { (when(e.time())) }
                                td data-col="code" { code { (meta["code"].as_str().unwrap_or("")) } }
                                td data-col="status" { @if let Some(s) = e.status() { (s) } }
                                td data-col="verified-by" { code { (meta["verifiedBy"].as_str().unwrap_or("")) } }
                                td data-col="request-id" { code { (e.request_id().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, &key.name, body))
}

/// The buttons that change `key`, for a user who may: suspend or resume, rotate, revoke.
/// `on_key_page`: the key's own page (rotation asks for a grace period; answers come back
/// there).
pub(super) fn actions(
    ctx: &Ctx<'_>,
    ks: &Keyspace,
    key: &KeyspaceKey,
    on_key_page: bool,
) -> Markup {
    let Ok(acting) = ctx.acting() else {
        return html! {};
    };
    let status = key.status(Utc::now());
    let final_state = matches!(
        status,
        KeyspaceKeyStatus::Revoked | KeyspaceKeyStatus::Expired
    );
    if final_state || !may_write(acting.who, Some(key.environment)) {
        return html! {};
    }
    let action = |name: &str| format!("/console/keyspaces/{}/keys/{}/{name}", ks.id, key.id);
    let back = html! {
        (ctx.hidden_fields())
        @if on_key_page { input type="hidden" name="from" value="key"; }
    };
    html! {
        @if status == KeyspaceKeyStatus::Suspended {
            form method="post" action=(action("resume")) class="inline" {
                (back)
                button type="submit" data-testid="resume-key" { "Resume" }
            }
        } @else {
            form method="post" action=(action("suspend")) class="inline" {
                (back)
                button type="submit" data-testid="suspend-key" { "Suspend" }
            }
        }
        " "
        form method="post" action=(action("rotate")) class="inline" data-confirm="Rotate this key? The new key is shown once; the old one keeps working for the grace period." {
            (back)
            @if on_key_page {
                label { "Grace (s) " input type="number" name="graceSeconds" min="0" max="2592000" value="86400"; }
                " "
            }
            button type="submit" data-testid="rotate-key" { "Rotate" }
        }
        " "
        form method="post" action=(action("revoke")) class="inline" data-confirm="Revoke this key? Its next verification answers REVOKED; this cannot be undone." {
            (back)
            button type="submit" class="danger" data-testid="revoke-key" { "Revoke" }
        }
    }
}

/// `POST /console/keyspaces/{id}/keys/{keyId}/{revoke|suspend|resume|rotate}`.
pub(in crate::console) async fn act(
    ctx: &Ctx<'_>,
    id: &str,
    key_id: &str,
    action: &str,
) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let (ks, key) = load(ctx, id, key_id, Permission::KeyspacesWrite).await?;
    let grace = match action {
        "rotate" => ctx
            .field("graceSeconds")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid_request("graceSeconds must be a whole number of seconds")
                })
            })
            .transpose()
            .and_then(ops::rotation_grace),
        _ => Ok(Duration::ZERO),
    };
    let done = match grace {
        Ok(grace) => ops::act_on_key(ctx.state, &acting, &ks, &key, action, grace).await,
        Err(e) => Err(e),
    };
    match done {
        Ok((_, Some(successor))) => show_once(ctx, &ks, successor),
        Ok((done, None)) => Ok(html::see_other(&match ctx.field("from") {
            Some("key") => format!(
                "/console/keyspaces/{}/keys/{}?env={}",
                ks.id, done.id, done.environment
            ),
            _ => format!("/console/keyspaces/{}?env={}", ks.id, done.environment),
        })),
        Err(e) if shown_in_form(&e) => {
            keyspace_page(ctx, &ks, e.status, Some((Form::Keys, &e))).await
        }
        Err(e) => Err(e),
    }
}
