//! The audit log, newest first: `routes::audit_events::query` as the signed-in user (admins
//! only, as organisation-scoped live keys only through the API).

use align_audit::{Actor, Cursor, Query, Stream};
use http::StatusCode;

use super::html::Html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::audit_events;

/// Records per page.
const PER_PAGE: usize = 50;

/// `GET /console/audit?cursor=`.
pub(super) async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let who = ctx.acting()?.who;
    let mut q = Query::new(Stream::Audit);
    q.limit = PER_PAGE;
    if let Some(c) = ctx.query("cursor").filter(|c| !c.is_empty()) {
        let cursor: Cursor = c
            .parse()
            .map_err(|_| ApiError::invalid_request("cursor is not valid"))?;
        q.cursor = Some(cursor);
    }
    let page = audit_events::query(ctx.state, who, q).await?;
    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → Audit log</p>")
        .raw("<h1>Audit log</h1>")
        .raw("<p class=\"hint\">Every security-relevant change in the organisation, live and sandbox, newest first. The log is hash-chained: <code>align audit verify</code> detects any change to it.</p>")
        .raw("<table data-testid=\"audit-table\"><thead><tr><th>Time</th><th>Actor</th><th>Action</th><th>Target</th><th>Status</th><th>IP</th></tr></thead><tbody>");
    for r in &page.records {
        let e = r.entry();
        let actor = match e.actor() {
            Actor::ApiKey { prefix, .. } => format!("api_key:{prefix}"),
            Actor::User { id } => format!("user:{id}"),
            _ => "system".to_owned(),
        };
        let status = e.status().map_or_else(String::new, |s| s.to_string());
        let ip = e.ip().map_or_else(String::new, |ip| ip.to_string());
        h.put("<tr data-sequence=\"{}\">", &[&r.sequence()])
            .put("<td data-col=\"time\">{}</td>", &[&when(e.time())])
            .put("<td data-col=\"actor\">{}</td>", &[&actor])
            .put("<td data-col=\"action\">{}</td>", &[&e.action()])
            .put(
                "<td data-col=\"target\">{}</td>",
                &[&e.target().unwrap_or("")],
            )
            .put("<td data-col=\"status\">{}</td>", &[&status])
            .put("<td data-col=\"ip\">{}</td></tr>", &[&ip]);
    }
    h.raw("</tbody></table>");
    if page.records.is_empty() {
        h.raw("<p class=\"empty\">Nothing recorded yet.</p>");
    }
    if let Some(next) = page.next_cursor {
        h.put(
            "<p><a data-testid=\"next-page\" href=\"/console/audit?{}&amp;cursor={}\">Older records</a></p>",
            &[&ctx.env_query(), &next.to_string()],
        );
    }
    Ok(ctx.page(StatusCode::OK, "Audit log", h))
}
