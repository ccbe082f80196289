//! The Security page: the organisation's leak reports (where, when, what was done), what
//! happens to a leaked key (`leakedKeyAction`, `leakedSandboxKeyAction`; admins may change
//! it here) and who is told (the security contact).

use align_keys::store::PageRequest;
use align_keys::{LeakedKeyAction, Permission, Target};
use http::StatusCode;

use maud::html;

use super::html;
use super::{Ctx, when};
use crate::error::ApiError;
use crate::http::Response;
use crate::routes::{leaks, organization};

/// Reports per page.
const PER_PAGE: u32 = 100;

/// `GET /console/security?cursor=`.
pub(super) async fn show(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let who = acting.who;
    let org_id = who.organization_id();
    who.authorize(
        Permission::OrganizationRead,
        Target {
            organization_id: org_id,
            project_id: None,
            environment: None,
        },
    )?;
    let org = ctx
        .state
        .store()
        .get_organization(org_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let page = PageRequest {
        limit: PER_PAGE,
        cursor: ctx.query("cursor").filter(|c| !c.is_empty()),
    };
    let reports = leaks::visible(ctx.state, who, &page).await?;

    let contact = org.security_contact.as_deref().unwrap_or("not set");
    let policies = [
        ("leakedKeyAction", "Live keys", org.leak_policy.live),
        (
            "leakedSandboxKeyAction",
            "Sandbox keys",
            org.leak_policy.sandbox,
        ),
    ];
    let body = html! {
        p class="crumbs" { "Settings → Developer → Security" }
        h1 { "Security" }
        h2 { "Leaked keys" }
        p class="hint" { "Keys found in public by GitHub secret scanning, and keys reported with " code { "report-compromise" } ". Each report is acted on once." }
        table data-testid="leaks-table" {
            thead { tr { th { "Reported" } th { "Key" } th { "Environment" } th { "Reported by" } th { "Where" } th { "Action" } } }
            tbody {
                @for r in &reports.data {
                    tr data-report=(r.id) {
                        td data-col="when" { (when(r.reported_at)) }
                        td data-col="key" { code { (r.key_prefix) } }
                        td data-col="environment" { (r.environment) }
                        td data-col="reporter" { (r.reporter.as_str()) }
                        td data-col="where" { (r.url.as_deref().or(r.reason.as_deref()).unwrap_or("—")) }
                        td data-col="action" { (r.action.as_str()) }
                    }
                }
            }
        }
        @if reports.data.is_empty() {
            p class="empty" { "No leak reported." }
        }
        @if let Some(next) = &reports.next_cursor {
            p { a data-testid="next-page" href={ "/console/security?" (ctx.env_query()) "&cursor=" (next) } { "More reports" } }
        }
        h2 { "Who is told" }
        p {
            "Security contact: " strong data-testid="security-contact" { (contact) }
            ". It receives an e-mail for every leak (when the server has " code { "notifications.smtp_url" }
            "); every leak is also an " code { "api_key.leaked" } " webhook event."
        }
        h2 { "What happens to a leaked key" }
        form method="post" action="/console/security" data-testid="leak-policy" {
            (ctx.hidden_fields())
            @for (field, label, current) in policies {
                label {
                    (label) " "
                    select name=(field) data-testid=(field) {
                        @for action in [LeakedKeyAction::Revoke, LeakedKeyAction::Notify] {
                            option value=(action.as_str()) selected[action == current] { (action.as_str()) }
                        }
                    }
                }
                " "
            }
            button type="submit" { "Save" }
        }
        p class="hint" { strong { "revoke" } ": the key stops working at once. " strong { "notify" } ": only the security contact and webhooks are told." }
    };
    Ok(ctx.page(StatusCode::OK, "Security", body))
}

/// `POST /console/security`: saves the leak policy (admins).
pub(super) async fn update(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let acting = ctx.acting()?;
    let parse = |name: &str| -> Result<Option<LeakedKeyAction>, ApiError> {
        ctx.field(name)
            .map(|v| {
                LeakedKeyAction::from_name(v).ok_or_else(|| {
                    ApiError::invalid_request(format!("{name} must be revoke or notify"))
                })
            })
            .transpose()
    };
    let live = parse("leakedKeyAction")?;
    let sandbox = parse("leakedSandboxKeyAction")?;
    organization::set_leak_policy(ctx.state, &acting, live, sandbox).await?;
    Ok(html::see_other(&format!(
        "/console/security?{}",
        ctx.env_query()
    )))
}
