//! The audit log, newest first: `routes::audit_events::query` as the signed-in user (admins
//! only, as organisation-scoped live keys only through the API).

use align_audit::{Actor, Cursor, Query, Stream};
use http::StatusCode;

use maud::html;

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
    let body = html! {
        p class="crumbs" { "Settings → Developer → Audit log" }
        h1 { "Audit log" }
        p class="hint" { "Every security-relevant change in the organisation, live and sandbox, newest first. The log is hash-chained: " code { "align audit verify" } " detects any change to it." }
        table data-testid="audit-table" {
            thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Target" } th { "Status" } th { "IP" } } }
            tbody {
                @for r in &page.records {
                    @let e = r.entry();
                    tr data-sequence=(r.sequence()) {
                        td data-col="time" { (when(e.time())) }
                        td data-col="actor" {
                            @match e.actor() {
                                Actor::ApiKey { prefix, .. } => { "api_key:" (prefix) }
                                Actor::User { id } => { "user:" (id) }
                                _ => "system",
                            }
                        }
                        td data-col="action" { (e.action()) }
                        td data-col="target" { (e.target().unwrap_or("")) }
                        td data-col="status" {
                            @if let Some(s) = e.status() { (s) }
                        }
                        td data-col="ip" {
                            @if let Some(ip) = e.ip() { (ip) }
                        }
                    }
                }
            }
        }
        @if page.records.is_empty() {
            p class="empty" { "Nothing recorded yet." }
        }
        @if let Some(next) = &page.next_cursor {
            p { a data-testid="next-page" href={ "/console/audit?" (ctx.env_query()) "&cursor=" (next) } { "Older records" } }
        }
    };
    Ok(ctx.page(StatusCode::OK, "Audit log", body))
}
