//! The Security page: the organisation's leak reports (where, when, what was done), what
//! happens to a leaked key (`leakedKeyAction`, `leakedSandboxKeyAction`; admins may change
//! it here) and who is told (the security contact).

use align_keys::store::PageRequest;
use align_keys::{LeakedKeyAction, Permission, Target};
use http::StatusCode;

use super::html::{self, Html};
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

    let mut h = Html::new();
    h.raw("<p class=\"crumbs\">Settings → Developer → Security</p>")
        .raw("<h1>Security</h1>")
        .raw("<h2>Leaked keys</h2>")
        .raw("<p class=\"hint\">Keys found in public by GitHub secret scanning, and keys reported with <code>report-compromise</code>. Each report is acted on once.</p>")
        .raw("<table data-testid=\"leaks-table\"><thead><tr><th>Reported</th><th>Key</th><th>Environment</th><th>Reported by</th><th>Where</th><th>Action</th></tr></thead><tbody>");
    for r in &reports.data {
        let place = r
            .url
            .as_deref()
            .or(r.reason.as_deref())
            .unwrap_or("—")
            .to_owned();
        h.put("<tr data-report=\"{}\">", &[&r.id])
            .put("<td data-col=\"when\">{}</td>", &[&when(r.reported_at)])
            .put(
                "<td data-col=\"key\"><code>{}</code></td>",
                &[&r.key_prefix],
            )
            .put("<td data-col=\"environment\">{}</td>", &[&r.environment])
            .put("<td data-col=\"reporter\">{}</td>", &[&r.reporter.as_str()])
            .put("<td data-col=\"where\">{}</td>", &[&place])
            .put(
                "<td data-col=\"action\">{}</td></tr>",
                &[&r.action.as_str()],
            );
    }
    h.raw("</tbody></table>");
    if reports.data.is_empty() {
        h.raw("<p class=\"empty\">No leak reported.</p>");
    }
    if let Some(next) = reports.next_cursor {
        h.put(
            "<p><a data-testid=\"next-page\" href=\"/console/security?{}&amp;cursor={}\">More reports</a></p>",
            &[&ctx.env_query(), &next],
        );
    }

    let contact = org.security_contact.as_deref().unwrap_or("not set");
    h.raw("<h2>Who is told</h2>")
        .put(
            "<p>Security contact: <strong data-testid=\"security-contact\">{}</strong>. It receives an e-mail for every leak (when the server has <code>notifications.smtp_url</code>); every leak is also an <code>api_key.leaked</code> webhook event.</p>",
            &[&contact],
        )
        .raw("<h2>What happens to a leaked key</h2>")
        .raw("<form method=\"post\" action=\"/console/security\" data-testid=\"leak-policy\">");
    ctx.hidden_fields(&mut h);
    for (field, label, current) in [
        ("leakedKeyAction", "Live keys", org.leak_policy.live),
        (
            "leakedSandboxKeyAction",
            "Sandbox keys",
            org.leak_policy.sandbox,
        ),
    ] {
        h.put("<label>{} <select name=\"{}\" ", &[&label, &field])
            .put("data-testid=\"{}\">", &[&field]);
        for action in [LeakedKeyAction::Revoke, LeakedKeyAction::Notify] {
            let selected = if action == current { " selected" } else { "" };
            h.put(
                "<option value=\"{}\"{}>{}</option>",
                &[&action.as_str(), &selected, &action.as_str()],
            );
        }
        h.raw("</select></label> ");
    }
    h.raw("<button type=\"submit\">Save</button></form>")
        .raw("<p class=\"hint\"><strong>revoke</strong>: the key stops working at once. <strong>notify</strong>: only the security contact and webhooks are told.</p>");
    Ok(ctx.page(StatusCode::OK, "Security", h))
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
