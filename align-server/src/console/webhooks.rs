//! Webhook endpoints: the list, adding one (its signing secret shown once), sending a test
//! event, and an endpoint's recent deliveries. Every action is `routes::webhooks`' own,
//! acting as the signed-in user.

use align_keys::{Permission, ProjectId, Role};
use align_webhooks::{Endpoint, EventFilter};
use http::StatusCode;

use maud::{Markup, html};

use super::html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::webhooks::{self as ops, EndpointRequest};

/// Deliveries per page on an endpoint's page.
const DELIVERIES_PER_PAGE: usize = 25;

fn events_text(ep: &Endpoint) -> String {
    match &ep.filter {
        EventFilter::All => "all events".to_owned(),
        EventFilter::Only(types) => types.join(", "),
    }
}

fn project_text(ep: &Endpoint, names: &[align_keys::Project]) -> String {
    match ep.owner.project.as_deref() {
        None => "whole organization".to_owned(),
        Some(p) => names
            .iter()
            .find(|x| x.id.to_string() == p)
            .map_or_else(|| p.to_owned(), |x| x.name.clone()),
    }
}

async fn projects(ctx: &Ctx<'_>) -> Result<Vec<align_keys::Project>, ApiError> {
    let org = ctx.acting()?.who.organization_id();
    let page = align_keys::PageRequest {
        limit: 200,
        cursor: None,
    };
    Ok(ctx.state.store().list_projects(org, &page).await?.data)
}

/// `GET /console/webhooks?env=`.
pub(super) async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let endpoints: Vec<Endpoint> = ops::visible(ctx.state, who, Permission::WebhooksRead)
        .await?
        .into_iter()
        .filter(|ep| ep.environment == ctx.env())
        .rev()
        .collect();
    let projects = projects(ctx).await?;
    let may_write = who
        .effective_permissions()
        .contains(Permission::WebhooksWrite);
    let env = ctx.env_query();
    let body = html! {
        p class="crumbs" { "Settings → Developer → Webhooks" }
        h1 { "Webhook endpoints" }
        table data-testid="endpoints-table" {
            thead { tr { th { "URL" } th { "Events" } th { "Project" } th { "Environment" } th { "Status" } th { "Created" } th {} } }
            tbody {
                @for ep in &endpoints {
                    @let status = if ep.enabled { "enabled" } else { "disabled" };
                    tr data-endpoint-id=(ep.id.0) {
                        td data-col="url" {
                            a data-testid="endpoint-link" href={ "/console/webhooks/" (ep.id.0) "?" (env) } { (ep.url) }
                        }
                        td data-col="events" { (events_text(ep)) }
                        td data-col="project" { (project_text(ep, &projects)) }
                        td data-col="environment" { (ep.environment) }
                        td data-col="status" { span class={ "status " (status) } { (status) } }
                        td data-col="created" { (when(ep.created_at)) }
                        td class="actions" {
                            @if may_write && ep.enabled {
                                (test_form(ctx, ep))
                            }
                        }
                    }
                }
            }
        }
        @if endpoints.is_empty() {
            p class="empty" { "No endpoints in this environment yet." }
        }
        @if may_write {
            (add_form(ctx, &projects))
        }
    };
    Ok(ctx.page(StatusCode::OK, "Webhooks", body))
}

/// The "Send test event" button for `ep`.
fn test_form(ctx: &Ctx<'_>, ep: &Endpoint) -> Markup {
    html! {
        form method="post" action={ "/console/webhooks/" (ep.id.0) "/test" } class="inline" {
            (ctx.hidden_fields())
            button type="submit" data-testid="test-endpoint" { "Send test event" }
        }
    }
}

fn add_form(ctx: &Ctx<'_>, projects: &[align_keys::Project]) -> Markup {
    let admin = ctx
        .signed
        .as_ref()
        .is_some_and(|s| s.user.role == Role::Admin);
    html! {
        h2 { "Add an endpoint" }
        form id="add-endpoint" class="stacked" method="post" action="/console/webhooks" {
            (ctx.hidden_fields())
            label { "URL " input type="url" name="url" required maxlength="2048" placeholder="https://hooks.example.com/align"; }
            label { "Event types " input name="eventTypes" placeholder="all events, or e.g. api_key.revoked, api_key.*"; }
            label {
                "Project "
                select name="projectId" {
                    @if admin {
                        option value="" { "Whole organization" }
                    }
                    @for p in projects {
                        option value=(p.id) { (p.name) }
                    }
                }
            }
            p class="hint" { "Receives " (ctx.env()) " events. Live endpoints need https. The signing secret is shown once." }
            button type="submit" class="primary" data-testid="add-endpoint-submit" { "Add endpoint" }
        }
    }
}

/// `POST /console/webhooks`: registers through `routes::webhooks::register` as the user.
pub(super) async fn create(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let event_types = ctx
        .field("eventTypes")
        .map(|t| {
            t.split([',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|types| !types.is_empty());
    let project_id = ctx
        .field("projectId")
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ProjectId>()
                .map(|_| p.to_owned())
                .map_err(|_| ApiError::not_found())
        })
        .transpose()?;
    let request = EndpointRequest {
        url: ctx.field("url").unwrap_or("").trim().to_owned(),
        event_types,
        environment: Some(ctx.env()),
        project_id,
        signature_scheme: None,
        max_per_second: None,
    };
    let ep = ops::register(ctx.state, &acting, request).await?;
    let secret = align_keys::Secret::new(ops::verification_key(&ep));
    ctx.console
        .once
        .put(ctx.session()?, format!("endpoint:{}", ep.id.0), secret);
    Ok(html::see_other(&format!(
        "/console/webhooks/{}/created",
        ep.id.0
    )))
}

/// `GET /console/webhooks/{id}/created`: the signing secret, once.
pub(super) async fn created(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let ep = ops::load(ctx.state, who, id, Permission::WebhooksRead).await?;
    ctx.set_env(ep.environment);
    let secret = ctx
        .console
        .once
        .take(ctx.session()?, &format!("endpoint:{}", ep.id.0));
    let env = ctx.env_query();
    let body = html! {
        p class="crumbs" { "Settings → Developer → Webhooks" }
        @match secret {
            Some(secret) => {
                dialog open data-testid="endpoint-dialog" class="shown-once" {
                    h2 { "Endpoint added" }
                    p { "Deliveries to " code { (ep.url) } " are signed with this secret." }
                    p class="warning" data-testid="key-warning" { "Copy this signing secret now. It will not be shown again." }
                    div class="secret" {
                        code id="shown-secret" data-testid="endpoint-secret" { (secret.expose()) }
                        button type="button" data-testid="copy-key" data-copy="shown-secret" { "Copy" }
                    }
                    p class="hint" data-copied hidden { "Copied to the clipboard." }
                    a class="button primary" data-testid="done" href={ "/console/webhooks?" (env) } { "Done" }
                }
            }
            None => {
                div class="shown-once gone" {
                    p data-testid="key-gone" { "This signing secret was shown once and cannot be shown again." }
                    p { "If it was lost, rotate the endpoint's secret (" code { "align webhooks endpoints rotate-secret" } ")." }
                    a class="button" data-testid="done" href={ "/console/webhooks?" (env) } { "Back to webhooks" }
                }
            }
        }
    };
    Ok(ctx.page(StatusCode::OK, "Endpoint added", body))
}

/// `GET /console/webhooks/{id}?cursor=`: the endpoint and its recent deliveries.
pub(super) async fn show(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let ep = ops::load(ctx.state, who, id, Permission::WebhooksRead).await?;
    ctx.set_env(ep.environment);
    let before = ctx
        .query("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| crate::http::decode_cursor(&c))
        .transpose()?;
    let (rows, next) = ops::delivery_page(ctx.state, &ep, before, DELIVERIES_PER_PAGE).await?;
    let projects = projects(ctx).await?;
    let env = ctx.env_query();
    let may_test = who
        .effective_permissions()
        .contains(Permission::WebhooksWrite)
        && ep.enabled;
    let body = html! {
        p class="crumbs" { "Settings → Developer → Webhooks" }
        h1 { "Endpoint " code { (ep.url) } }
        dl class="facts" {
            dt { "Id" } dd { (ep.id.0) }
            dt { "Events" } dd { (events_text(&ep)) }
            dt { "Project" } dd { (project_text(&ep, &projects)) }
            dt { "Environment" } dd { (ep.environment) }
            dt { "Status" }
            dd {
                @if ep.enabled {
                    "enabled"
                } @else {
                    "disabled (" (ep.disabled_reason.as_deref().unwrap_or("no reason given")) ")"
                }
            }
        }
        @if ctx.query("sent").as_deref() == Some("1") {
            p class="notice" data-testid="test-sent" { "A test event was queued; it appears below once attempted." }
        }
        @if may_test {
            (test_form(ctx, &ep))
        }
        h2 { "Recent deliveries" }
        table data-testid="deliveries-table" {
            thead { tr { th { "Created" } th { "Event" } th { "Status" } th { "Attempts" } th { "Last response" } th { "Next attempt" } } }
            tbody {
                @for (d, event_type, attempts) in &rows {
                    tr data-delivery-id=(d.id.0) {
                        td { (when(d.created_at)) }
                        td data-col="event" { (event_type.as_deref().unwrap_or("—")) }
                        td data-col="status" { span class={ "status " (d.status.as_str()) } { (d.status.as_str()) } }
                        td { (d.attempts) }
                        td {
                            @match attempts.last() {
                                None => "—",
                                Some(a) => {
                                    @match (a.status, &a.error) {
                                        (Some(s), _) => { "HTTP " (s) " in " (a.latency_ms) " ms" }
                                        (None, Some(e)) => (e),
                                        (None, None) => "no response",
                                    }
                                }
                            }
                        }
                        td { (d.next_attempt_at.map_or_else(|| "—".to_owned(), when)) }
                    }
                }
            }
        }
        @if rows.is_empty() {
            p class="empty" { "No deliveries yet." }
        }
        @if let Some(n) = next {
            p { a data-testid="next-page" href={ "/console/webhooks/" (ep.id.0) "?" (env) "&cursor=" (crate::http::encode_cursor(n)) } { "Older deliveries" } }
        }
        p { a href={ "/console/webhooks?" (env) } { "Back to webhooks" } }
    };
    Ok(ctx.page(StatusCode::OK, "Endpoint", body))
}

/// `POST /console/webhooks/{id}/test`: queues a `webhook.test` event.
pub(super) async fn test(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let ep = ops::load(ctx.state, acting.who, id, Permission::WebhooksWrite).await?;
    ops::send_test(ctx.state, &acting, &ep).await?;
    Ok(html::see_other(&format!(
        "/console/webhooks/{}?env={}&sent=1",
        ep.id.0, ep.environment
    )))
}
