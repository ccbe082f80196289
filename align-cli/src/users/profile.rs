//! `align users update|delete`: correcting a user (DESIGN §9) and deleting one, whose keys go
//! to another admin or are revoked and whose personal data is erased, on the data directory or
//! through a running server.

use align_keys::store::{LAST_ADMIN, takes_last_admin};
use align_keys::{Role, User};
use align_server::privacy::{self, Subject};
use chrono::Utc;
use serde_json::{Value, json};

use crate::client::{Api, query_value, resolve_user};
use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// What `align users update` changes: its options (their doc comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct UserUpdate {
    /// The corrected e-mail.
    #[arg(long)]
    pub(super) email: Option<String>,
    /// The corrected name (empty to remove it).
    #[arg(long)]
    pub(super) name: Option<String>,
    /// admin, engineer or viewer.
    #[arg(long)]
    pub(super) role: Option<String>,
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id, "email": u.email, "name": u.name, "role": u.role,
        "organizationId": u.organization_id, "createdAt": u.created_at,
    })
}

/// `align users update USER [--email] [--name] [--role]` on the data directory.
pub(super) async fn update_local(
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
            super::change_role(d, org.id, &u, role).await?;
            u.role = role;
        }
    }
    out.object(&user_json(&u))
}

/// `align users update USER --api-url …`.
pub(super) async fn update_api(
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
pub(super) async fn delete_local(
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
    if takes_last_admin(d.store.as_ref(), &u, None).await? {
        return Err(Failure::usage(LAST_ADMIN));
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
pub(super) async fn delete_api(
    api: &Api,
    user: &str,
    transfer_to: Option<&str>,
    out: &Out,
) -> Result<(), Failure> {
    let id = resolve_user(api, user).await?;
    let heir = match transfer_to {
        Some(t) => Some(resolve_user(api, t).await?),
        None => None,
    };
    let path = format!("/api/v1/users/{}", query_value(&id));
    api.client()?
        .delete_user(&id, heir.as_deref())
        .await
        .map_err(|e| api.failure(e, &path))?;
    out.object(&json!({ "id": id, "deleted": true }))
}
