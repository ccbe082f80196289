//! Webhook endpoints: the list, adding one (its signing secret shown once), sending a test
//! event, and an endpoint's recent deliveries. Every action is `routes::webhooks`' own,
//! acting as the signed-in user.

use align_keys::{Permission, ProjectId, Role};
use align_webhooks::{Endpoint, EventFilter};
use http::StatusCode;

use super::html::{self, Html};
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
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → Webhooks</p>")
        .raw("<h1>Webhook endpoints</h1>")
        .raw("<table data-testid=\"endpoints-table\"><thead><tr><th>URL</th><th>Events</th><th>Project</th><th>Environment</th><th>Status</th><th>Created</th><th></th></tr></thead><tbody>");
    for ep in &endpoints {
        let status = if ep.enabled { "enabled" } else { "disabled" };
        h.put("<tr data-endpoint-id=\"{}\">", &[&ep.id.0])
            .put(
                "<td data-col=\"url\"><a data-testid=\"endpoint-link\" href=\"/console/webhooks/{}?{}\">{}</a></td>",
                &[&ep.id.0, &ctx.env_query(), &ep.url],
            )
            .put("<td data-col=\"events\">{}</td>", &[&events_text(ep)])
            .put("<td data-col=\"project\">{}</td>", &[&project_text(ep, &projects)])
            .put("<td data-col=\"environment\">{}</td>", &[&ep.environment])
            .put(
                "<td data-col=\"status\"><span class=\"status {}\">{}</span></td>",
                &[&status, &status],
            )
            .put("<td data-col=\"created\">{}</td><td class=\"actions\">", &[&when(ep.created_at)]);
        if may_write && ep.enabled {
            h.put(
                "<form method=\"post\" action=\"/console/webhooks/{}/test\" class=\"inline\">",
                &[&ep.id.0],
            );
            ctx.hidden_fields(&mut h);
            h.raw("<button type=\"submit\" data-testid=\"test-endpoint\">Send test event</button></form>");
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    if endpoints.is_empty() {
        h.raw("<p class=\"empty\">No endpoints in this environment yet.</p>");
    }
    if may_write {
        add_form(ctx, &mut h, &projects);
    }
    Ok(ctx.page(StatusCode::OK, "Webhooks", h))
}

fn add_form(ctx: &Ctx<'_>, h: &mut Html, projects: &[align_keys::Project]) {
    let admin = ctx
        .signed
        .as_ref()
        .is_some_and(|s| s.user.role == Role::Admin);
    h.raw("<h2>Add an endpoint</h2>").raw(
        "<form id=\"add-endpoint\" class=\"stacked\" method=\"post\" action=\"/console/webhooks\">",
    );
    ctx.hidden_fields(h);
    h.raw("<label>URL <input type=\"url\" name=\"url\" required maxlength=\"2048\" placeholder=\"https://hooks.example.com/align\"></label>")
        .raw("<label>Event types <input name=\"eventTypes\" placeholder=\"all events, or e.g. api_key.revoked, api_key.*\"></label>")
        .raw("<label>Project <select name=\"projectId\">");
    if admin {
        h.raw("<option value=\"\">Whole organization</option>");
    }
    for p in projects {
        h.put("<option value=\"{}\">{}</option>", &[&p.id, &p.name]);
    }
    h.raw("</select></label>")
        .put(
            "<p class=\"hint\">Receives {} events. Live endpoints need https. The signing secret is shown once.</p>",
            &[&ctx.env()],
        )
        .raw("<button type=\"submit\" class=\"primary\" data-testid=\"add-endpoint-submit\">Add endpoint</button></form>");
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
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → Webhooks</p>");
    match secret {
        Some(secret) => {
            h.raw("<dialog open data-testid=\"endpoint-dialog\" class=\"shown-once\">")
                .raw("<h2>Endpoint added</h2>")
                .put("<p>Deliveries to <code>{}</code> are signed with this secret.</p>", &[&ep.url])
                .raw("<p class=\"warning\" data-testid=\"key-warning\">Copy this signing secret now. It will not be shown again.</p>")
                .put(
                    "<div class=\"secret\"><code id=\"shown-secret\" data-testid=\"endpoint-secret\">{}</code>",
                    &[&secret.expose()],
                )
                .raw("<button type=\"button\" data-testid=\"copy-key\" data-copy=\"shown-secret\">Copy</button></div>")
                .raw("<p class=\"hint\" data-copied hidden>Copied to the clipboard.</p>")
                .put(
                    "<a class=\"button primary\" data-testid=\"done\" href=\"/console/webhooks?{}\">Done</a></dialog>",
                    &[&ctx.env_query()],
                );
        }
        None => {
            h.raw("<div class=\"shown-once gone\">")
                .raw("<p data-testid=\"key-gone\">This signing secret was shown once and cannot be shown again.</p>")
                .raw("<p>If it was lost, rotate the endpoint's secret (<code>align webhooks endpoints rotate-secret</code>).</p>")
                .put(
                    "<a class=\"button\" data-testid=\"done\" href=\"/console/webhooks?{}\">Back to webhooks</a></div>",
                    &[&ctx.env_query()],
                );
        }
    }
    Ok(ctx.page(StatusCode::OK, "Endpoint added", h))
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
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → Webhooks</p>")
        .put("<h1>Endpoint <code>{}</code></h1>", &[&ep.url])
        .put(
            "<dl class=\"facts\"><dt>Id</dt><dd>{}</dd><dt>Events</dt><dd>{}</dd><dt>Project</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd></dl>",
            &[
                &ep.id.0,
                &events_text(&ep),
                &project_text(&ep, &projects),
                &ep.environment,
                &if ep.enabled { "enabled".to_owned() } else {
                    format!("disabled ({})", ep.disabled_reason.as_deref().unwrap_or("no reason given"))
                },
            ],
        );
    if ctx.query("sent").as_deref() == Some("1") {
        h.raw("<p class=\"notice\" data-testid=\"test-sent\">A test event was queued; it appears below once attempted.</p>");
    }
    if who
        .effective_permissions()
        .contains(Permission::WebhooksWrite)
        && ep.enabled
    {
        h.put(
            "<form method=\"post\" action=\"/console/webhooks/{}/test\" class=\"inline\">",
            &[&ep.id.0],
        );
        ctx.hidden_fields(&mut h);
        h.raw(
            "<button type=\"submit\" data-testid=\"test-endpoint\">Send test event</button></form>",
        );
    }
    h.raw("<h2>Recent deliveries</h2>")
        .raw("<table data-testid=\"deliveries-table\"><thead><tr><th>Created</th><th>Event</th><th>Status</th><th>Attempts</th><th>Last response</th><th>Next attempt</th></tr></thead><tbody>");
    for (d, event_type, attempts) in &rows {
        let last = attempts.last().map_or_else(
            || "—".to_owned(),
            |a| match (a.status, &a.error) {
                (Some(s), _) => format!("HTTP {s} in {} ms", a.latency_ms),
                (None, Some(e)) => e.clone(),
                (None, None) => "no response".to_owned(),
            },
        );
        let next_at = d.next_attempt_at.map_or_else(|| "—".to_owned(), when);
        h.put("<tr data-delivery-id=\"{}\">", &[&d.id.0])
            .put("<td>{}</td>", &[&when(d.created_at)])
            .put(
                "<td data-col=\"event\">{}</td>",
                &[&event_type.as_deref().unwrap_or("—")],
            )
            .put(
                "<td data-col=\"status\"><span class=\"status {}\">{}</span></td>",
                &[&d.status.as_str(), &d.status.as_str()],
            )
            .put("<td>{}</td>", &[&d.attempts])
            .put("<td>{}</td>", &[&last])
            .put("<td>{}</td></tr>", &[&next_at]);
    }
    h.raw("</tbody></table>");
    if rows.is_empty() {
        h.raw("<p class=\"empty\">No deliveries yet.</p>");
    }
    if let Some(n) = next {
        h.put(
            "<p><a data-testid=\"next-page\" href=\"/console/webhooks/{}?{}&amp;cursor={}\">Older deliveries</a></p>",
            &[&ep.id.0, &ctx.env_query(), &crate::http::encode_cursor(n)],
        );
    }
    h.put(
        "<p><a href=\"/console/webhooks?{}\">Back to webhooks</a></p>",
        &[&ctx.env_query()],
    );
    Ok(ctx.page(StatusCode::OK, "Endpoint", h))
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
