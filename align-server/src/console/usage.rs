//! A key's page (DESIGN §11): its details, its usage as server-rendered SVG charts (the last
//! 24 hours by hour, the last 30 days by day), its latest requests, and for a key minted by a
//! rotation the old and the new key's traffic side by side since the rotation, so that "is
//! traffic flowing on the new key?" is one look. The figures are `routes::usage`'s and
//! `routes::audit_events`' own, read as the signed-in user.

use align_audit::{Granularity, Query, Stream, UsageBucket, UsageQuery};
use align_keys::Permission;
use chrono::{DateTime, TimeDelta, Utc};
use http::StatusCode;
use maud::{Markup, html};

use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::{audit_events, keys as ops};

/// Requests listed under the charts.
const LATEST: usize = 20;
/// The chart's drawing area, in SVG units.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// `GET /console/keys/{id}`.
pub(super) async fn show(ctx: &Ctx<'_>, id: &str) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let who = acting.who;
    let key = ops::load(ctx.state, who, id, Permission::KeysRead).await?;
    ctx.set_env(key.environment);
    let now = crate::audit::now();
    let actor = key.id.to_string();
    let (day, month) = last_day_and_month(ctx, &actor, now).await?;
    // The old key of a rotation, when the user may still read it.
    let predecessor = match key.rotated_from {
        Some(prev) => ops::load(ctx.state, who, &prev.to_string(), Permission::KeysRead)
            .await
            .ok(),
        None => None,
    };
    let rotation = match &predecessor {
        Some(old) => {
            let (from, step) = since_rotation(key.created_at, now);
            Some((
                usage(ctx, &old.id.to_string(), from, now, step).await?,
                usage(ctx, &actor, from, now, step).await?,
            ))
        }
        None => None,
    };
    let latest = if audit_events::may_read(who).is_ok() {
        let mut q = Query::new(Stream::Request).actor(key.id.to_string());
        q.limit = LATEST;
        Some(audit_events::query(ctx.state, who, q).await?.records)
    } else {
        None
    };
    let env = ctx.env_query();
    let body = html! {
        p class="crumbs" { a href={ "/console/keys?" (env) } { "Settings → Developer → API Keys" } " → " (key.name) }
        h1 data-testid="key-name" { (key.name) }
        p {
            "Prefix " code data-testid="key-prefix" { (key.prefix) }
            " · " (key.scope.kind()) " · " (key.environment)
            " · created " (when(key.created_at))
            " · last used " (key.last_used_at.map_or_else(|| "never".to_owned(), when))
            @if let Some(t) = key.expires_at { " · expires " (when(t)) }
            @if let Some(t) = key.revoked_at { " · revoked " (when(t)) }
        }
        @if let (Some(old), Some((old_usage, new_usage))) = (&predecessor, &rotation) {
            section class="rotation" data-testid="rotation-traffic" {
                h2 { "Rotation: traffic moving to this key" }
                p class="hint" {
                    "This key replaced " code { (old.prefix) } " on " (when(key.created_at))
                    @if let Some(t) = old.expires_at { "; the old key works until " (when(t)) }
                    ". Once the old key's chart stays empty, every client has moved."
                }
                div class="side-by-side" {
                    figure data-testid="old-key-usage" {
                        figcaption { "Old key " code { (old.prefix) } }
                        (chart(old_usage, "old key since the rotation"))
                    }
                    figure data-testid="new-key-usage" {
                        figcaption { "New key " code { (key.prefix) } }
                        (chart(new_usage, "this key since the rotation"))
                    }
                }
            }
        }
        h2 { "Usage" }
        (day_and_month(&day, &month))
        h2 { "Latest requests" }
        @match &latest {
            None => p class="hint" { "Reading the request log needs the audit:read permission over the whole organisation." },
            Some(records) if records.is_empty() => p class="empty" data-testid="no-requests" { "No request with this key yet." },
            Some(records) => {
                table data-testid="latest-requests" {
                    thead { tr { th { "Time" } th { "Method" } th { "Path" } th { "Status" } th { "Request id" } } }
                    tbody {
                        @for r in records {
                            @let e = r.entry();
                            tr {
                                td data-col="time" { (when(e.time())) }
                                td data-col="method" { (e.method().unwrap_or("")) }
                                td data-col="path" { code { (e.path().unwrap_or("")) } }
                                td data-col="status" { @if let Some(s) = e.status() { (s) } }
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

/// The usage of `actor` over the last 24 hours by hour and the last 30 days by day.
pub(super) async fn last_day_and_month(
    ctx: &Ctx<'_>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Vec<UsageBucket>, Vec<UsageBucket>), ApiError> {
    let day = usage(
        ctx,
        actor,
        now - TimeDelta::hours(24),
        now,
        Granularity::Hour,
    )
    .await?;
    let month = usage(ctx, actor, now - TimeDelta::days(30), now, Granularity::Day).await?;
    Ok((day, month))
}

/// The two usage charts of a key's page: the last 24 hours and the last 30 days.
pub(super) fn day_and_month(day: &[UsageBucket], month: &[UsageBucket]) -> Markup {
    html! {
        div class="side-by-side" {
            figure data-testid="usage-24h" {
                figcaption { "Last 24 hours, by hour" }
                (chart(day, "last 24 hours"))
            }
            figure data-testid="usage-30d" {
                figcaption { "Last 30 days, by day" }
                (chart(month, "last 30 days"))
            }
        }
    }
}

/// Since shortly before the rotation, by the finest step that covers it.
fn since_rotation(rotated: DateTime<Utc>, now: DateTime<Utc>) -> (DateTime<Utc>, Granularity) {
    let from = (rotated - TimeDelta::minutes(10)).min(now - TimeDelta::minutes(30));
    let minutes = (now - from).num_minutes();
    let step = if minutes < 1440 {
        Granularity::Minute
    } else if minutes < 60 * 24 * 60 {
        Granularity::Hour
    } else {
        Granularity::Day
    };
    (from.max(now - TimeDelta::days(1400)), step)
}

/// The usage of the key with id `actor` (an Align key or a key space key: both are the request
/// log's actors) from `from` to `to` by `step`.
async fn usage(
    ctx: &Ctx<'_>,
    actor: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: Granularity,
) -> Result<Vec<UsageBucket>, ApiError> {
    let q = UsageQuery::new(actor.to_owned(), from, to, step)
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    ctx.state.audit.usage(&q).await.map_err(|e| {
        tracing::error!(error = %e, "usage query failed");
        ApiError::unavailable()
    })
}

/// One outcome's count in a bucket.
type Outcome = fn(&UsageBucket) -> u64;

/// The outcomes drawn, bottom to top, with their CSS class.
const LAYERS: [(&str, Outcome); 4] = [
    ("succeeded", |b| b.succeeded),
    ("client-errors", |b| b.client_errors),
    ("rate-limited", |b| b.rate_limited),
    ("server-errors", |b| b.server_errors),
];

/// The non-empty layers of `b`'s bar as (class, top, height), bottom to top.
fn stack(b: &UsageBucket, peak: u64) -> Vec<(&'static str, f64, f64)> {
    let mut base = HEIGHT;
    let mut out = Vec::new();
    for (class, count) in LAYERS {
        let h = count(b) as f64 / peak as f64 * HEIGHT;
        if h > 0.0 {
            base -= h;
            out.push((class, base, h));
        }
    }
    out
}

/// Stacked bars, one per step, scaled to the busiest step, each with its figures as a
/// tooltip; the totals below.
fn chart(buckets: &[UsageBucket], what: &str) -> Markup {
    let total: u64 = buckets.iter().map(|b| b.requests).sum();
    let peak = buckets.iter().map(|b| b.requests).max().unwrap_or(0).max(1);
    let slot = WIDTH / buckets.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let sum = |f: Outcome| buckets.iter().map(f).sum::<u64>();
    html! {
        svg class="usage-chart" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none"
            role="img" aria-label={ (total) " requests, " (what) } data-total=(total) {
            @for (i, b) in buckets.iter().enumerate() {
                @let x = i as f64 * slot;
                g data-start=(b.start.to_rfc3339()) data-requests=(b.requests) {
                    title { (when(b.start)) ": " (b.requests) " requests, " (b.succeeded) " succeeded, " (b.client_errors) " client errors, " (b.rate_limited) " rate limited, " (b.server_errors) " server errors" }
                    @for (class, y, h) in stack(b, peak) {
                        rect class=(class) x=(format!("{x:.2}")) y=(format!("{y:.2}")) width=(format!("{bar:.2}")) height=(format!("{h:.2}")) {}
                    }
                }
            }
        }
        p class="usage-totals" {
            strong data-testid="usage-total" { (total) } " requests · "
            (sum(|b| b.succeeded)) " succeeded · "
            (sum(|b| b.client_errors)) " client errors · "
            (sum(|b| b.rate_limited)) " rate limited · "
            (sum(|b| b.server_errors)) " server errors"
        }
    }
}
