//! `align users …`: users, their roles, console passwords, and the corrections and deletion
//! of DESIGN §9 (`update`, `delete`), on the data directory or, with `--api-url`, through a
//! running server's routes (`list`, `update`, `delete`).

use align_keys::{PasswordHash, Role, Secret, User, UserId};
use align_server::privacy::{self, Subject};
use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{self, Api, query_value};
use crate::common::Common;
use crate::data_dir::{DataDir, all_users};
use crate::output::{Failure, Out};

/// Users, their roles and console passwords. Example: align users create --email dev@acme.test --role engineer
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add a user. Example: printf '%s\n' "$PW" | align users create --email dev@acme.test --role engineer --password-stdin
    Create {
        #[arg(long)]
        email: String,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: String,
        /// Also set the user's console password, read as one line from stdin (at least 12
        /// characters; never echoed or logged).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's console password (at least 12 characters), read as one line from stdin
    /// with --password-stdin, or else from the environment variable ALIGN_USER_PASSWORD.
    /// The password is never echoed or logged; the user's console sessions end.
    ///
    /// Example: printf '%s\n' "$PW" | align users set-password admin@localhost --password-stdin
    SetPassword {
        /// The user's e-mail or id.
        user: String,
        /// Read the password as one line from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users. Example: align users list --json
    List,
    /// Change a user's role (their keys follow at once). Example: align users set-role dev@acme.test viewer
    SetRole {
        /// The user's e-mail or id.
        user: String,
        /// admin, engineer or viewer.
        role: String,
    },
    /// Correct a user's e-mail or name, or change their role (also with --api-url).
    ///
    /// Example: align users update dev@acme.test --name "Dana Dev" --email dana@acme.test
    Update {
        /// The user's e-mail or id.
        user: String,
        /// The corrected e-mail.
        #[arg(long)]
        email: Option<String>,
        /// The corrected name (empty to remove it).
        #[arg(long)]
        name: Option<String>,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: Option<String>,
    },
    /// Delete a user: their sessions end, their personal data is erased everywhere, and the
    /// keys they created are revoked unless --transfer-keys-to hands them to another admin.
    /// The organisation's last admin cannot be deleted. Also with --api-url.
    ///
    /// Example: align users delete dev@acme.test --transfer-keys-to admin@acme.test
    Delete {
        /// The user's e-mail or id.
        user: String,
        /// Another admin (e-mail or id) who takes over the user's keys.
        #[arg(long, value_name = "USER")]
        transfer_keys_to: Option<String>,
    },
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    if common.api_url.is_some() {
        return over_api(&common, action).await;
    }
    // Read before anything else, so a refused password costs no database work.
    let password = match &action {
        Action::Create {
            password_stdin: true,
            ..
        }
        | Action::SetPassword {
            password_stdin: true,
            ..
        } => Some(read_password_line(std::io::stdin().lock())?),
        Action::SetPassword { .. } => Some(password_from_env()?),
        _ => None,
    };
    let (d, o, org) = (common.open().await?, common.out(), common.org.as_deref());
    match action {
        Action::Create { email, role, .. } => create(&d, org, &email, &role, password, &o).await,
        Action::SetPassword { user, .. } => match password {
            Some(p) => set_password(&d, org, &user, p, &o).await,
            None => Err(Failure::usage("no password given")),
        },
        Action::List => list(&d, org, &o).await,
        Action::SetRole { user, role } => set_role(&d, org, &user, &role, &o).await,
        Action::Update {
            user,
            email,
            name,
            role,
        } => {
            let change = UserUpdate { email, name, role };
            update_local(&d, org, &user, change, &o).await
        }
        Action::Delete {
            user,
            transfer_keys_to,
        } => delete_local(&d, org, &user, transfer_keys_to.as_deref(), &o).await,
    }
}

/// `align users …` against a running server.
async fn over_api(common: &Common, action: Action) -> Result<(), Failure> {
    let (a, o) = (common.api("align users")?, common.out());
    match action {
        Action::List => {
            let v = a.call("GET", "/api/v1/users", None).await?;
            client::print(&v, &["id", "email", "name", "role"], &o)
        }
        Action::Update {
            user,
            email,
            name,
            role,
        } => {
            let change = UserUpdate { email, name, role };
            update_api(&a, &user, change, &o).await
        }
        Action::Delete {
            user,
            transfer_keys_to,
        } => delete_api(&a, &user, transfer_keys_to.as_deref(), &o).await,
        _ => Err(Failure::usage(
            "over --api-url, align users supports list, update and delete; the others \
                     work on the data directory",
        )),
    }
}

fn parse_role(name: &str) -> Result<Role, Failure> {
    Role::from_name(name).ok_or_else(|| Failure::usage("--role must be admin, engineer or viewer"))
}

async fn create(
    d: &DataDir,
    org: Option<&str>,
    email: &str,
    role: &str,
    password: Option<Secret>,
    out: &Out,
) -> Result<(), Failure> {
    let role = parse_role(role)?;
    // Hashed first: a refused password leaves no half-made user behind.
    let hash = match password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let org = d.org(org).await?;
    let user = User {
        id: UserId::new(),
        organization_id: org.id,
        email: email.to_owned(),
        name: None,
        role,
        created_at: Utc::now(),
    };
    d.store.create_user(&user).await?;
    d.record(
        "user.created",
        org.id,
        user.id.to_string(),
        json!({ "role": role }),
    )
    .await?;
    if let Some(hash) = &hash {
        d.store.set_user_password(user.id, hash).await?;
        d.record("user.password_set", org.id, user.id.to_string(), json!({}))
            .await?;
    }
    out.object(&json!({
        "id": user.id, "email": user.email, "role": user.role, "organizationId": org.id,
        "passwordSet": hash.is_some(),
    }))
}

/// `align users set-password`: hashes the password (PBKDF2, `console.pbkdf2_iterations`)
/// and stores the hash; the user's console sessions end.
async fn set_password(
    d: &DataDir,
    org: Option<&str>,
    user: &str,
    password: Secret,
    out: &Out,
) -> Result<(), Failure> {
    let hash = hash_password(password).await?;
    let org = d.org(org).await?;
    let u = d.user(&org, Some(user)).await?;
    d.store.set_user_password(u.id, &hash).await?;
    d.record("user.password_set", org.id, u.id.to_string(), json!({}))
        .await?;
    out.object(&json!({ "id": u.id, "email": u.email, "role": u.role, "passwordSet": true }))
}

/// Hashes a new console password off the async workers, with the configured iterations
/// (`ALIGN_CONSOLE_PBKDF2_ITERATIONS`, default 600000).
async fn hash_password(password: Secret) -> Result<PasswordHash, Failure> {
    align_keys::validate_password(password.expose()).map_err(|e| Failure::usage(e.to_string()))?;
    let config = align_server::Config::load(
        None,
        std::env::vars().filter(|(k, _)| k == "ALIGN_CONSOLE_PBKDF2_ITERATIONS"),
        &align_server::Overrides::default(),
    )?;
    let iterations = config.console.pbkdf2_iterations;
    tokio::task::spawn_blocking(move || PasswordHash::derive(password.expose(), iterations))
        .await
        .map_err(|_| Failure::usage("the password could not be hashed"))?
        .map_err(|e| Failure::usage(e.to_string()))
}

/// One line from `input` (the trailing newline dropped), as a password.
fn read_password_line(mut input: impl std::io::BufRead) -> Result<Secret, Failure> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(Failure::Output)?;
    let line = Secret::new(line);
    let trimmed = line.expose().trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(Failure::usage(
            "no password on stdin: pipe one line, e.g. printf '%s\\n' \"$PW\" | align users set-password EMAIL --password-stdin",
        ));
    }
    Ok(Secret::new(trimmed.to_owned()))
}

/// The password in `ALIGN_USER_PASSWORD`, for `set-password` without `--password-stdin`.
fn password_from_env() -> Result<Secret, Failure> {
    match std::env::var("ALIGN_USER_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(Secret::new(p)),
        _ => Err(Failure::usage(
            "give the password as one line on stdin with --password-stdin, or in ALIGN_USER_PASSWORD",
        )),
    }
}

async fn list(d: &DataDir, org: Option<&str>, out: &Out) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let rows: Vec<Value> = all_users(d.store.as_ref(), org.id)
        .await?
        .iter()
        .map(|u| json!({ "id": u.id, "email": u.email, "role": u.role, "createdAt": u.created_at }))
        .collect();
    out.table(&rows, &["id", "email", "role", "createdAt"])
}

async fn set_role(
    d: &DataDir,
    org: Option<&str>,
    user: &str,
    role: &str,
    out: &Out,
) -> Result<(), Failure> {
    let role = parse_role(role)?;
    let org = d.org(org).await?;
    let u = d.user(&org, Some(user)).await?;
    d.store.set_user_role(u.id, role).await?;
    d.record(
        "user.role_changed",
        org.id,
        u.id.to_string(),
        json!({ "from": u.role, "to": role }),
    )
    .await?;
    out.object(&json!({ "id": u.id, "email": u.email, "role": role }))
}

/// A user named by e-mail becomes their id (over the API, from `GET /users`); ids pass.
pub(crate) async fn resolve_user(api: &Api, id: &str) -> Result<String, Failure> {
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
struct UserUpdate {
    /// A corrected e-mail.
    email: Option<String>,
    /// A corrected name (empty: none).
    name: Option<String>,
    /// A new role.
    role: Option<String>,
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
async fn update_local(
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
    let name = change.name.map(|n| n.trim().to_owned());
    if name.as_deref().is_some_and(|n| n.chars().count() > 200) {
        return Err(Failure::usage("--name must be at most 200 characters"));
    }
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
async fn update_api(api: &Api, user: &str, change: UserUpdate, out: &Out) -> Result<(), Failure> {
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
async fn delete_local(
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
async fn delete_api(
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
