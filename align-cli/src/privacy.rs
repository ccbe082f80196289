//! `align privacy export|erase`, `align users update|delete` and `align retention run`: the
//! privacy rights and retention of DESIGN §9, on the data directory (the same functions the
//! server runs, `align_server::privacy` and `align_server::retention`) or, with `--api-url`,
//! through a running server's routes.

use std::io::Write;
use std::path::Path;

use align_keys::{Role, User};
use align_server::privacy::{self, Subject};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::client::{Api, query_value};
use crate::ops::DataDir;
use crate::output::{Failure, Out};
use crate::progress::Progress;

/// Writes `body` to the new file `to` (created `0600`: it holds personal data) or stdout.
fn deliver(body: &[u8], to: Option<&Path>) -> Result<(), Failure> {
    match to {
        Some(path) => {
            let mut f = align_keys::files::private_options()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", path.display())))?;
            f.write_all(body)?;
            f.sync_all()?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(body)?;
            out.flush()?;
        }
    }
    eprintln!(
        "exported {} records",
        body.iter().filter(|b| **b == b'\n').count()
    );
    Ok(())
}

/// The subject `id` (a user id or e-mail, or a key id) of `org`.
async fn subject(d: &DataDir, org: Option<&str>, id: &str) -> Result<Subject, Failure> {
    let org = d.org(org).await?;
    if let Ok(user) = d.user(&org, Some(id)).await {
        return Ok(Subject::User(user));
    }
    privacy::find_subject(d.store.as_ref(), org.id, id)
        .await?
        .ok_or(Failure::NotFound("subject"))
}

/// `align privacy export SUBJECT [--to FILE]` on the data directory.
pub(crate) async fn export_local(
    d: &DataDir,
    org: Option<&str>,
    id: &str,
    to: Option<&Path>,
) -> Result<(), Failure> {
    let s = subject(d, org, id).await?;
    let sink = d.audit().await?;
    let mut body = Vec::new();
    privacy::export(d.store.as_ref(), sink.as_ref(), &s, &mut body).await?;
    let _ = sink.close().await;
    d.record(
        "privacy.exported",
        s.organization_id(),
        s.id(),
        json!({ "lines": body.iter().filter(|b| **b == b'\n').count() }),
    )
    .await?;
    deliver(&body, to)
}

/// `align privacy export SUBJECT --api-url …`.
pub(crate) async fn export_api(api: &Api, id: &str, to: Option<&Path>) -> Result<(), Failure> {
    let id = resolve_user(api, id).await?;
    let body = api
        .call_raw(
            "GET",
            &format!("/api/v1/privacy/export?subject={}", query_value(&id)),
            None,
        )
        .await?;
    deliver(&body, to)
}

/// `align privacy erase SUBJECT` on the data directory.
pub(crate) async fn erase_local(
    d: &DataDir,
    org: Option<&str>,
    id: &str,
    out: &Out,
) -> Result<(), Failure> {
    let s = subject(d, org, id).await?;
    let sink = d.audit().await?;
    let done = privacy::erase(d.store.as_ref(), sink.as_ref(), d.webhooks.as_ref(), &s).await?;
    let _ = sink.close().await;
    d.record(
        "privacy.erased",
        s.organization_id(),
        s.id(),
        json!({ "erasedRecords": done.erased_records }),
    )
    .await?;
    out.object(&done.view())
}

/// `align privacy erase SUBJECT --api-url …`.
pub(crate) async fn erase_api(api: &Api, id: &str, out: &Out) -> Result<(), Failure> {
    let id = resolve_user(api, id).await?;
    let v = api
        .call(
            "POST",
            "/api/v1/privacy/erasure",
            Some(json!({ "subject": id })),
        )
        .await?;
    out.object(&v)
}

/// A user named by e-mail becomes their id (over the API, from `GET /users`); ids pass.
async fn resolve_user(api: &Api, id: &str) -> Result<String, Failure> {
    if !id.contains('@') {
        return Ok(id.to_owned());
    }
    let users = api.call("GET", "/api/v1/users", None).await?;
    users["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["email"].as_str() == Some(id))
        .and_then(|u| u["id"].as_str().map(str::to_owned))
        .ok_or(Failure::NotFound("user"))
}

/// What `align users update` changes.
#[derive(Debug, Default)]
pub(crate) struct UserUpdate {
    /// A corrected e-mail.
    pub(crate) email: Option<String>,
    /// A corrected name (empty: none).
    pub(crate) name: Option<String>,
    /// A new role.
    pub(crate) role: Option<String>,
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id, "email": u.email, "name": u.name, "role": u.role,
        "organizationId": u.organization_id, "createdAt": u.created_at,
    })
}

async fn admins(d: &DataDir, org: align_keys::OrganizationId) -> Result<usize, Failure> {
    let mut page = align_keys::store::PageRequest {
        limit: align_keys::store::MAX_PAGE_SIZE,
        cursor: None,
    };
    let mut n = 0;
    loop {
        let got = d.store.list_users(org, &page).await?;
        n += got.data.iter().filter(|u| u.role == Role::Admin).count();
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(n),
        }
    }
}

/// `align users update USER [--email] [--name] [--role]` on the data directory.
pub(crate) async fn update_local(
    d: &DataDir,
    org: Option<&str>,
    user: &str,
    change: UserUpdate,
    out: &Out,
) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let mut u = d.user(&org, Some(user)).await?;
    let email = change.email.map(|e| e.trim().to_owned());
    if email.as_deref().is_some_and(|e| {
        !e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            || e.len() > 254
            || e.chars().any(char::is_whitespace)
    }) {
        return Err(Failure::usage("--email must be an e-mail address"));
    }
    // An empty --name removes the name; any other is held to the one rule for names.
    let name = match change.name.as_deref() {
        None => None,
        Some(n) if n.trim().is_empty() => Some(String::new()),
        Some(n) => Some(
            align_core::name::checked_name(n)
                .map_err(|defect| Failure::usage(format!("--{defect}")))?
                .to_owned(),
        ),
    };
    let mut fields = Vec::new();
    if let Some(e) = email.filter(|e| *e != u.email) {
        u.email = e;
        fields.push("email");
    }
    if let Some(n) = name {
        let n = (!n.is_empty()).then_some(n);
        if n != u.name {
            u.name = n;
            fields.push("name");
        }
    }
    if !fields.is_empty() {
        match d
            .store
            .update_user_profile(u.id, &u.email, u.name.as_deref())
            .await
        {
            Err(align_keys::Error::AlreadyExists(_)) => {
                return Err(Failure::usage(
                    "another user of the organisation has this e-mail",
                ));
            }
            other => other?,
        }
        d.record(
            "user.updated",
            org.id,
            u.id.to_string(),
            json!({ "fields": fields }),
        )
        .await?;
    }
    if let Some(role) = change.role {
        let role = Role::from_name(&role)
            .ok_or_else(|| Failure::usage("--role must be admin, engineer or viewer"))?;
        if role != u.role {
            if u.role == Role::Admin && admins(d, org.id).await? <= 1 {
                return Err(Failure::usage(
                    "this is the organisation's last admin: make another user admin first",
                ));
            }
            d.store.set_user_role(u.id, role).await?;
            d.record(
                "user.role_changed",
                org.id,
                u.id.to_string(),
                json!({ "from": u.role, "to": role }),
            )
            .await?;
            u.role = role;
        }
    }
    out.object(&user_json(&u))
}

/// `align users update USER --api-url …`.
pub(crate) async fn update_api(
    api: &Api,
    user: &str,
    change: UserUpdate,
    out: &Out,
) -> Result<(), Failure> {
    let id = resolve_user(api, user).await?;
    let mut body = json!({});
    if let Some(e) = change.email {
        body["email"] = json!(e);
    }
    if let Some(n) = change.name {
        body["name"] = if n.trim().is_empty() {
            Value::Null
        } else {
            json!(n)
        };
    }
    if let Some(r) = change.role {
        body["role"] = json!(r);
    }
    let v = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{}", query_value(&id)),
            Some(body),
        )
        .await?;
    out.object(&v)
}

/// `align users delete USER [--transfer-keys-to ADMIN]` on the data directory: the keys the
/// user created go to the other admin or are revoked, their personal data is erased, their
/// sessions end and their record goes; each step is in the audit log.
pub(crate) async fn delete_local(
    d: &DataDir,
    org: Option<&str>,
    user: &str,
    transfer_to: Option<&str>,
    out: &Out,
) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let u = d.user(&org, Some(user)).await?;
    let heir = match transfer_to {
        None => None,
        Some(t) => {
            let heir = d.user(&org, Some(t)).await?;
            if heir.id == u.id || heir.role != Role::Admin {
                return Err(Failure::usage(
                    "--transfer-keys-to must name another admin of the organisation",
                ));
            }
            Some(heir)
        }
    };
    if u.role == Role::Admin && admins(d, org.id).await? <= 1 {
        return Err(Failure::usage(
            "this is the organisation's last admin: make another user admin first",
        ));
    }
    let (mut revoked, mut transferred) = (0u64, 0u64);
    if let Some(heir) = &heir {
        transferred = d.store.transfer_keys(u.id, heir.id).await?;
        d.record(
            "user.keys_transferred",
            org.id,
            u.id.to_string(),
            json!({ "to": heir.id, "keys": transferred }),
        )
        .await?;
    } else {
        let now = Utc::now();
        for k in privacy::keys_created_by(d.store.as_ref(), org.id, u.id).await? {
            if k.revoked_at.is_none() {
                d.keys.revoke(k.id, now).await?;
                d.record(
                    "api_key.revoked",
                    org.id,
                    k.id.to_string(),
                    json!({ "reason": "creator deleted" }),
                )
                .await?;
                revoked += 1;
            }
        }
    }
    let sink = d.audit().await?;
    let done = privacy::erase(
        d.store.as_ref(),
        sink.as_ref(),
        d.webhooks.as_ref(),
        &Subject::User(u.clone()),
    )
    .await?;
    let _ = sink.close().await;
    d.store.delete_user(u.id).await?;
    d.record(
        "user.deleted",
        org.id,
        u.id.to_string(),
        json!({
            "keysRevoked": revoked,
            "keysTransferred": transferred,
            "erasedRecords": done.erased_records,
        }),
    )
    .await?;
    out.object(&json!({
        "id": u.id,
        "deleted": true,
        "keysRevoked": revoked,
        "keysTransferred": transferred,
        "erasedRecords": done.erased_records,
    }))
}

/// `align users delete USER --api-url …`.
pub(crate) async fn delete_api(
    api: &Api,
    user: &str,
    transfer_to: Option<&str>,
    out: &Out,
) -> Result<(), Failure> {
    let id = resolve_user(api, user).await?;
    let mut path = format!("/api/v1/users/{}", query_value(&id));
    if let Some(t) = transfer_to {
        let heir = resolve_user(api, t).await?;
        path.push_str(&format!("?transferKeysTo={}", query_value(&heir)));
    }
    api.call("DELETE", &path, None).await?;
    out.object(&json!({ "id": id, "deleted": true }))
}

/// `align retention run [--as-of TIME]`: every store's retention as of `as_of` (default
/// now), with a progress line on a terminal and what it removed per store.
pub(crate) async fn retention_run(
    d: &DataDir,
    database: &align_server::Database,
    settings: &align_server::RetentionSettings,
    as_of: Option<DateTime<Utc>>,
    out: &Out,
) -> Result<(), Failure> {
    let as_of = as_of.unwrap_or_else(Utc::now);
    let lock = align_server::retention::RunLock::for_database(database)?;
    // Purging a chain leaves a signed checkpoint: the key is made on first use, as
    // `align audit purge` does.
    let sink = d.audit_with_key(true).await?;
    let mut progress = Progress::new("retention");
    let total = align_server::retention::STEPS.len() as u64;
    let mut step = |i: usize, _: &str| progress.set(i as u64, Some(total));
    let work = align_server::retention::run(
        d.store.as_ref(),
        sink.as_ref(),
        d.webhooks.as_ref(),
        settings,
        as_of,
        &mut step,
    );
    let report = lock.run(work).await?;
    progress.set(total, Some(total));
    progress.finish();
    let _ = sink.close().await;
    let Some(report) = report else {
        return Err(Failure::Remote(
            "another instance is running retention now; try again later".into(),
        ));
    };
    if out.json {
        return out.object(&report.to_json());
    }
    let rows: Vec<Value> = report
        .removed()
        .iter()
        .map(|(store, n)| json!({ "store": store, "removed": n }))
        .collect();
    out.table(&rows, &["store", "removed"])?;
    eprintln!(
        "anonymised: request log {}, audit log {}",
        report.request_log_anonymised, report.audit_log_anonymised
    );
    Ok(())
}
