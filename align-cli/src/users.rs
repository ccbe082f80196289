//! `align users …`: users, their roles, console passwords, and the corrections and deletion
//! of DESIGN §9 (`update`, `delete`), on the data directory or, with `--api-url`, through a
//! running server's routes (`list`, `update`, `delete`).

mod profile;

use align_keys::store::{LAST_ADMIN, takes_last_admin};
use align_keys::{PasswordHash, Role, Secret, User};
use chrono::Utc;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client;
use crate::common::{Area, Common};
use crate::data_dir::{DataDir, all_users};
use crate::output::{Failure, Out};

use self::profile::{UserUpdate, delete_api, delete_local, update_api, update_local};

/// Its help text is the doc comment of `Command::Users` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
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
        #[command(flatten)]
        change: UserUpdate,
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
        Action::Update { user, change } => update_local(&d, org, &user, change, &o).await,
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
        Action::Update { user, change } => update_api(&a, &user, change, &o).await,
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
    let user = User::new(org.id, email, role, Utc::now());
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
    change_role(d, org.id, &u, role).await?;
    out.object(&json!({ "id": u.id, "email": u.email, "role": role }))
}

/// Gives `u` the role `role` and records `user.role_changed` (`align users set-role` and
/// `align users update --role`); refuses to take away the organisation's last admin.
async fn change_role(
    d: &DataDir,
    org: align_keys::OrganizationId,
    u: &User,
    role: Role,
) -> Result<(), Failure> {
    if takes_last_admin(d.store.as_ref(), u, Some(role)).await? {
        return Err(Failure::usage(LAST_ADMIN));
    }
    d.store.set_user_role(u.id, role).await?;
    d.record(
        "user.role_changed",
        org,
        u.id.to_string(),
        json!({ "from": u.role, "to": role }),
    )
    .await
}
