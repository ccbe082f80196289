//! Operator commands on a data directory: they open the same stores the server uses, the
//! SQLite file `DIR/align.db` or, with `--database-url postgres://…` (or
//! `ALIGN_DATABASE_URL`), the PostgreSQL database several instances share. A running server
//! sees key changes made here within 250 ms.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use align_audit::{AuditSink, PgSink, PgSinkConfig, PrivacyPolicy, Query, SqliteSink, Stream};
use align_keys::store::{KeyFilter, KeyStore, PageRequest};
use align_keys::{
    Environment, KeyId, KeyManager, KeyRecord, NewKey, Organization, OrganizationId, PasswordHash,
    PgKeyStore, Project, ProjectId, Role, Scope, Secret, Sha256Hasher, SqliteKeyStore, User,
    UserId, Vocabulary,
};
use align_server::Database;
use align_webhooks::{PgWebhookStore, Sealer, SqliteWebhookStore, WebhookStore};
use chrono::Utc;
use serde_json::{Value, json};

use crate::output::{Failure, KEY_SHOWN_ONCE, Out};
use crate::progress::{self, CountingLines, Progress};

/// Where the records are: the data directory's SQLite file, or a PostgreSQL pool.
enum Location {
    Sqlite(PathBuf),
    Postgres(align_keys::postgres::Pool),
}

/// Everything a command needs: the key store, the webhook store and the audit log of one
/// deployment (its data directory, and its database).
pub(crate) struct DataDir {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) keys: KeyManager,
    pub(crate) webhooks: Arc<dyn WebhookStore>,
    /// What seals the webhook store's endpoint keys (the key file's keys).
    pub(crate) sealer: Sealer,
    dir: PathBuf,
    location: Location,
}

/// The stores of the database at `db`, opened as the server opens them: the webhook store
/// first (so the outbox tables exist, sealing with the key file `key_file`), then the key store
/// with the server's outbox hook, so that a key change made here commits with its `api_key.*`
/// event like one made over HTTP.
async fn open_stores(
    db: &Path,
    key_file: &Path,
) -> Result<(SqliteWebhookStore, SqliteKeyStore, Sealer), Failure> {
    let mut kept = None;
    let webhooks = align_server::open_sealed(key_file, |sealer| {
        kept = Some(sealer.clone());
        SqliteWebhookStore::open(db, sealer)
    })
    .await?;
    let keys = SqliteKeyStore::open(db)
        .await?
        .with_event_hook(Arc::new(align_server::OutboxHook));
    Ok((webhooks, keys, sealed_by(kept)?))
}

/// The sealer `open_sealed` handed to a store that opened.
fn sealed_by(kept: Option<Sealer>) -> Result<Sealer, Failure> {
    kept.ok_or_else(|| Failure::usage("the webhook store opened without its secrets key"))
}

impl DataDir {
    /// The stores of the data directory `dir` and of `database` (its `align.db`, which must
    /// exist, or PostgreSQL), webhook secrets sealed by the key file `key_file`. The data
    /// directory is tightened as the server does it (`0700`, files `0600`).
    pub(crate) async fn open(
        dir: &Path,
        database: &Database,
        key_file: &Path,
    ) -> Result<Self, Failure> {
        let (webhooks, store, location, sealer): (Arc<dyn WebhookStore>, Arc<dyn KeyStore>, _, _) =
            match database {
                Database::Sqlite => {
                    let db = dir.join("align.db");
                    if !db.exists() {
                        return Err(Failure::usage(format!(
                            "no Align database at {} (run `align init --data-dir {}` first, or \
                             pass --database-url for a PostgreSQL deployment)",
                            db.display(),
                            dir.display()
                        )));
                    }
                    align_server::prepare_data_dir(dir)?;
                    let (webhooks, store, sealer) = open_stores(&db, key_file).await?;
                    (
                        Arc::new(webhooks),
                        Arc::new(store),
                        Location::Sqlite(db),
                        sealer,
                    )
                }
                Database::Postgres(url) => {
                    align_server::prepare_data_dir(dir)?;
                    let pool =
                        align_keys::postgres::connect(url).map_err(align_keys::Error::from)?;
                    // Same order and hook as the server: outbox tables first.
                    let mut kept = None;
                    let webhooks = align_server::open_sealed(key_file, |sealer| {
                        kept = Some(sealer.clone());
                        PgWebhookStore::open(pool.clone(), sealer)
                    })
                    .await?;
                    let store = PgKeyStore::open(pool.clone())
                        .await?
                        .with_event_hook(Arc::new(align_server::OutboxHook));
                    (
                        Arc::new(webhooks),
                        Arc::new(store),
                        Location::Postgres(pool),
                        sealed_by(kept)?,
                    )
                }
            };
        let keys = KeyManager::new(Arc::clone(&store), Arc::new(Sha256Hasher));
        Ok(Self {
            store,
            keys,
            webhooks,
            sealer,
            dir: dir.to_owned(),
            location,
        })
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) async fn audit(&self) -> Result<Box<dyn AuditSink>, Failure> {
        self.audit_with_key(false).await
    }

    /// The audit sink with the checkpoint key of the data directory (created first when
    /// `create`).
    pub(crate) async fn audit_with_key(&self, create: bool) -> Result<Box<dyn AuditSink>, Failure> {
        let config = align_server::audit_sink_config(&self.dir, create)?;
        Ok(match &self.location {
            Location::Sqlite(db) => Box::new(SqliteSink::open(db, config).await?),
            Location::Postgres(pool) => {
                let mut pg = PgSinkConfig::default();
                pg.checkpoint_key = config.checkpoint_key;
                Box::new(PgSink::open(pool.clone(), pg).await?)
            }
        })
    }

    /// The organisation to act on: the one given, or the only one there is.
    pub(crate) async fn org(&self, given: Option<&str>) -> Result<Organization, Failure> {
        if let Some(id) = given {
            let id: OrganizationId = id
                .parse()
                .map_err(|_| Failure::usage("--org must be an organisation id"))?;
            return self
                .store
                .get_organization(id)
                .await?
                .ok_or_else(|| Failure::not_found("organisation"));
        }
        let page = PageRequest {
            limit: 2,
            cursor: None,
        };
        let mut orgs = self.store.list_organizations(&page).await?.data;
        match orgs.len() {
            1 => Ok(orgs.remove(0)),
            0 => Err(Failure::usage(
                "the database has no organisation (run `align init`)",
            )),
            _ => Err(Failure::usage("several organisations exist: pass --org ID")),
        }
    }

    /// A user of `org` by id or e-mail; without one, its first admin.
    pub(crate) async fn user(
        &self,
        org: &Organization,
        given: Option<&str>,
    ) -> Result<User, Failure> {
        let users = all_users(self.store.as_ref(), org.id).await?;
        let found = match given {
            Some(u) => users
                .into_iter()
                .find(|x| x.email == u || x.id.to_string() == u),
            None => users.into_iter().find(|x| x.role == Role::Admin),
        };
        found.ok_or_else(|| Failure::not_found("user"))
    }

    /// Durably records an operator's security-relevant change (the actor is the system: the
    /// CLI runs with the data directory's authority, not a key's).
    pub(crate) async fn record(
        &self,
        action: &str,
        org: impl std::fmt::Display,
        target: String,
        metadata: Value,
    ) -> Result<(), Failure> {
        let mut entry = align_audit::Entry::audit(action)
            .organization(org.to_string())
            .actor(align_audit::Actor::System);
        // A record about a person names them as its subject (their export and erasure find
        // it), as the server's do.
        if action.starts_with("user.") {
            entry = entry.subject(target.as_str());
        }
        let entry = entry
            .target(target)
            .metadata(json!({ "via": "align-cli", "details": metadata }))
            .build()?;
        let sink = self.audit().await?;
        sink.append(entry).await?;
        sink.close().await?;
        Ok(())
    }

    /// A project of `org`, by id (projects of other organisations do not exist here).
    pub(crate) async fn project(&self, org: &Organization, id: &str) -> Result<Project, Failure> {
        let id: ProjectId = id
            .parse()
            .map_err(|_| Failure::usage("--project must be a project id"))?;
        match self.store.get_project(id).await? {
            Some(p) if p.organization_id == org.id => Ok(p),
            _ => Err(Failure::not_found("project")),
        }
    }

    pub(crate) async fn key(&self, id: &str) -> Result<KeyRecord, Failure> {
        let id: KeyId = id
            .parse()
            .map_err(|_| Failure::usage("the key id must be a UUID"))?;
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| Failure::not_found("key"))
    }
}

/// Every item of a paged listing, page after page.
async fn every<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = align_keys::Result<align_keys::Page<T>>>,
{
    let mut out = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = fetch(page.clone()).await?;
        out.extend(p.data);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

async fn all_users(store: &dyn KeyStore, org: OrganizationId) -> Result<Vec<User>, Failure> {
    every(|page| async move { store.list_users(org, &page).await }).await
}

pub(crate) fn key_json(k: &KeyRecord) -> Value {
    json!({
        "apiKeyId": k.id, "keyName": k.name, "keyPrefix": k.prefix,
        "organizationId": k.organization_id, "scope": k.scope.kind(),
        "scopedProjectId": k.scope.project_id(), "permissions": k.permission_names(),
        "ownerId": k.owner_id, "meta": k.meta,
        "environment": k.environment, "createdByUserId": k.created_by,
        "createdAt": k.created_at, "lastUsedAt": k.last_used_at, "expiresAt": k.expires_at,
        "revokedAt": k.revoked_at, "suspendedAt": k.suspended_at,
        "status": format!("{:?}", k.status_at(Utc::now())).to_lowercase(),
    })
}

fn parse_role(name: &str) -> Result<Role, Failure> {
    Role::from_name(name).ok_or_else(|| Failure::usage("--role must be admin, engineer or viewer"))
}

pub(crate) async fn users_create(
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
pub(crate) async fn users_set_password(
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
pub(crate) fn read_password_line(mut input: impl std::io::BufRead) -> Result<Secret, Failure> {
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
pub(crate) fn password_from_env() -> Result<Secret, Failure> {
    match std::env::var("ALIGN_USER_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(Secret::new(p)),
        _ => Err(Failure::usage(
            "give the password as one line on stdin with --password-stdin, or in ALIGN_USER_PASSWORD",
        )),
    }
}

pub(crate) async fn users_list(d: &DataDir, org: Option<&str>, out: &Out) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let rows: Vec<Value> = all_users(d.store.as_ref(), org.id)
        .await?
        .iter()
        .map(|u| json!({ "id": u.id, "email": u.email, "role": u.role, "createdAt": u.created_at }))
        .collect();
    out.table(&rows, &["id", "email", "role", "createdAt"])
}

pub(crate) async fn users_set_role(
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

pub(crate) async fn projects_create(
    d: &DataDir,
    org: Option<&str>,
    name: &str,
    out: &Out,
) -> Result<(), Failure> {
    let name = align_core::name::checked_name(name)
        .map_err(|defect| Failure::usage(format!("--{defect}")))?;
    let org = d.org(org).await?;
    let p = Project {
        id: ProjectId::new(),
        organization_id: org.id,
        name: name.to_owned(),
        created_at: Utc::now(),
    };
    d.store.create_project(&p).await?;
    d.record(
        "project.created",
        org.id,
        p.id.to_string(),
        json!({ "name": p.name }),
    )
    .await?;
    out.object(&json!({ "id": p.id, "name": p.name, "organizationId": org.id }))
}

pub(crate) async fn projects_list(
    d: &DataDir,
    org: Option<&str>,
    out: &Out,
) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let rows: Vec<Value> = d
        .store
        .list_projects(org.id, &page)
        .await?
        .data
        .iter()
        .map(|p| json!({ "id": p.id, "name": p.name, "createdAt": p.created_at }))
        .collect();
    out.table(&rows, &["id", "name", "createdAt"])
}

pub(crate) async fn orgs_list(d: &DataDir, out: &Out) -> Result<(), Failure> {
    let page = PageRequest {
        limit: 200,
        cursor: None,
    };
    let rows: Vec<Value> = d
        .store
        .list_organizations(&page)
        .await?
        .data
        .iter()
        .map(|o| json!({ "id": o.id, "name": o.name, "securityContact": o.security_contact }))
        .collect();
    out.table(&rows, &["id", "name", "securityContact"])
}

/// What `keys create` was asked for.
pub(crate) struct KeyArgs<'a> {
    pub(crate) org: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) project: Option<&'a str>,
    pub(crate) permissions: Option<&'a str>,
    pub(crate) sandbox: bool,
    pub(crate) user: Option<&'a str>,
    pub(crate) owner: Option<&'a str>,
    pub(crate) meta: Option<&'a str>,
}

/// `--meta`: a JSON object.
pub(crate) fn parse_meta(text: &str) -> Result<align_keys::Meta, Failure> {
    serde_json::from_str(text).map_err(|_| Failure::usage("--meta must be a JSON object"))
}

pub(crate) async fn keys_create(d: &DataDir, a: KeyArgs<'_>, out: &Out) -> Result<(), Failure> {
    let org = d.org(a.org).await?;
    let user = d.user(&org, a.user).await?;
    let scope = match a.project {
        None => Scope::Organization,
        Some(p) => Scope::Project(d.project(&org, p).await?.id),
    };
    let permissions = a
        .permissions
        .map(|list| {
            Vocabulary::SERVER
                .parse(list.split(',').map(str::trim))
                .map_err(|e| Failure::usage(e.to_string()))
        })
        .transpose()?;
    let new = NewKey {
        name: a.name.to_owned(),
        organization_id: org.id,
        scope,
        permissions,
        environment: if a.sandbox {
            Environment::Sandbox
        } else {
            Environment::Live
        },
        created_by: user.id,
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: a.owner.map(str::to_owned),
        meta: a.meta.map(parse_meta).transpose()?,
    };
    align_keys::policy::check_user_mint(&Vocabulary::SERVER, &user, &new.spec())
        .map_err(|d| Failure::usage(d.to_string()))?;
    let minted = d.keys.mint(new, Utc::now()).await?;
    let r = &minted.record;
    let meta =
        json!({ "keyPrefix": r.prefix, "scope": r.scope.kind(), "environment": r.environment });
    d.record("api_key.created", org.id, r.id.to_string(), meta)
        .await?;
    let mut v = key_json(&minted.record);
    v["key"] = json!(minted.token.expose());
    out.secret_object(&v, KEY_SHOWN_ONCE)
}

pub(crate) async fn keys_list(d: &DataDir, org: Option<&str>, out: &Out) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let filter = KeyFilter {
        organization_id: org.id,
        project_id: None,
        environment: None,
        include_revoked: true,
    };
    let store = &d.store;
    let keys = every(|page| async move { store.list_keys(&filter, &page).await }).await?;
    let rows: Vec<Value> = keys.iter().map(key_json).collect();
    out.table(
        &rows,
        &[
            "apiKeyId",
            "keyPrefix",
            "keyName",
            "scope",
            "environment",
            "status",
            "lastUsedAt",
        ],
    )
}

pub(crate) async fn keys_show(d: &DataDir, id: &str, out: &Out) -> Result<(), Failure> {
    out.object(&key_json(&d.key(id).await?))
}

pub(crate) async fn keys_revoke(d: &DataDir, id: &str, out: &Out) -> Result<(), Failure> {
    let k = d.key(id).await?;
    let revoked = d.keys.revoke(k.id, Utc::now()).await?;
    d.record(
        "api_key.revoked",
        k.organization_id,
        k.id.to_string(),
        json!({ "keyPrefix": k.prefix }),
    )
    .await?;
    out.object(&key_json(&revoked))
}

pub(crate) async fn keys_rotate(
    d: &DataDir,
    id: &str,
    grace: u64,
    out: &Out,
) -> Result<(), Failure> {
    let k = d.key(id).await?;
    let r = d
        .keys
        .rotate(k.id, Duration::from_secs(grace), Utc::now())
        .await?;
    let mut v = key_json(&r.successor.record);
    v["key"] = json!(r.successor.token.expose());
    out.secret_object(&v, KEY_SHOWN_ONCE)
}

pub(crate) fn stream(name: &str) -> Result<Stream, Failure> {
    match name {
        "audit" => Ok(Stream::Audit),
        "request" | "requests" => Ok(Stream::Request),
        _ => Err(Failure::usage("--stream must be audit or request")),
    }
}

pub(crate) async fn audit_query(
    d: &DataDir,
    stream_name: &str,
    action: Option<&str>,
    limit: usize,
    out: &Out,
) -> Result<(), Failure> {
    let sink = d.audit().await?;
    let mut q = Query::new(stream(stream_name)?);
    q.action = action.map(str::to_owned);
    q.limit = limit.clamp(1, align_audit::MAX_LIMIT);
    let page = sink.query(&q).await?;
    let _ = sink.close().await;
    let rows: Vec<Value> = page
        .records
        .iter()
        .map(|r| {
            let e = r.entry();
            json!({
                "sequence": r.sequence(), "time": e.time(), "action": e.action(),
                "actor": e.actor().id(), "target": e.target(), "status": e.status(),
                "path": e.path(), "ip": e.ip().map(|i| i.to_string()),
                "requests": requests_of(e),
            })
        })
        .collect();
    out.table(
        &rows,
        &[
            "sequence", "time", "action", "actor", "target", "status", "path", "requests",
        ],
    )
}

/// The requests a record accounts for: 1, or for a request-log summary of folded rejections
/// (`metadata.folded.count`, written by `align serve`), their number.
pub(crate) fn requests_of(e: &align_audit::Entry) -> u64 {
    e.metadata()["folded"]["count"].as_u64().unwrap_or(1)
}

/// `align backup`: a consistent copy of the database, safe while the server runs.
pub(crate) async fn backup(dir: &Path, to: &Path, out: &Out) -> Result<(), Failure> {
    let db = dir.join("align.db");
    if !db.exists() {
        return Err(Failure::usage(format!(
            "no Align database at {}",
            db.display()
        )));
    }
    let requests_to = SqliteSink::request_log_dir(to);
    for path in [to, requests_to.as_path()] {
        if path.exists() {
            return Err(Failure::usage(format!(
                "{} exists: refusing to overwrite it",
                path.display()
            )));
        }
    }
    let target = to.to_owned();
    let source = db.clone();
    tokio::task::spawn_blocking(move || align_keys::sqlite::backup(&source, &target))
        .await
        .map_err(|_| Failure::usage("the backup task failed"))?
        .map_err(align_keys::Error::from)?;
    // The request log's segment files beside the database: a consistent snapshot too.
    let target = to.to_owned();
    let request_bytes =
        tokio::task::spawn_blocking(move || SqliteSink::copy_request_log(&db, &target))
            .await
            .map_err(|_| Failure::usage("the backup task failed"))??;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    out.object(&json!({
        "backup": to.display().to_string(),
        "bytes": bytes,
        "requestLog": requests_to.display().to_string(),
        "requestLogBytes": request_bytes,
    }))?;
    eprintln!("{BACKUP_NEEDS_THE_KEY}");
    Ok(())
}

/// What `align backup` and `align restore` remind the operator of.
const BACKUP_NEEDS_THE_KEY: &str = "The backup (mode 0600) holds the webhook signing secrets \
    sealed: it opens only with the secrets key file (DIR/secrets-key or secrets.key_file). \
    Keep a copy of that file, apart from the backups.";

/// `align restore`: replaces the database with a backup (the server must be stopped).
pub(crate) async fn restore(
    dir: &Path,
    from: &Path,
    force: bool,
    out: &Out,
) -> Result<(), Failure> {
    if !from.exists() {
        return Err(Failure::usage(format!("no backup at {}", from.display())));
    }
    let db = dir.join("align.db");
    if db.exists() && !force {
        return Err(Failure::usage(format!(
            "{} exists: stop the server, then pass --force to replace it",
            db.display()
        )));
    }
    align_server::prepare_data_dir(dir)?;
    let (source, target) = (from.to_owned(), db.clone());
    tokio::task::spawn_blocking(move || align_keys::sqlite::restore(&source, &target))
        .await
        .map_err(|_| Failure::usage("the restore task failed"))?
        .map_err(align_keys::Error::from)?;
    let (source, target) = (from.to_owned(), db.clone());
    tokio::task::spawn_blocking(move || SqliteSink::restore_request_log(&source, &target))
        .await
        .map_err(|_| Failure::usage("the restore task failed"))??;
    let archived = archive_anchors(dir)?;
    out.object(&json!({
        "restored": db.display().to_string(),
        "from": from.display().to_string(),
        "anchorsArchived": archived.map(|p| p.display().to_string()),
    }))?;
    eprintln!("{BACKUP_NEEDS_THE_KEY}");
    Ok(())
}

/// Moves the anchor file aside after a restore: its anchors describe the chains of the
/// database that was replaced, which the restored one (older) does not reach, so
/// `audit verify` would rightly call it cut short. The file is kept, renamed
/// `audit-anchors.before-restore-TIME.jsonl`, as the record of what was there.
fn archive_anchors(dir: &Path) -> Result<Option<PathBuf>, Failure> {
    let anchors = align_server::audit_anchor_log_path(dir);
    if !anchors.exists() {
        return Ok(None);
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let archived = dir.join(format!("audit-anchors.before-restore-{stamp}.jsonl"));
    std::fs::rename(&anchors, &archived).map_err(|e| {
        Failure::usage(format!(
            "restored, but {} could not be moved aside ({e}): move it yourself, or \
             `align audit verify` will report the restored chains as cut short",
            anchors.display()
        ))
    })?;
    Ok(Some(archived))
}

/// `align audit export`: one data subject's records as JSON Lines on stdout, or in a new file
/// `to` (created `0600`: the records hold personal data).
pub(crate) async fn audit_export(
    d: &DataDir,
    subject: &str,
    to: Option<&Path>,
) -> Result<(), Failure> {
    let file = match to {
        Some(path) => Some(
            align_keys::files::private_options()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Failure::usage(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let sink = d.audit().await?;
    let mut progress = Progress::new("exporting");
    let n = match file {
        Some(file) => {
            let mut lines = CountingLines::new(std::io::BufWriter::new(file), &mut progress);
            let n = sink.export_subject(subject, &mut lines).await?;
            lines
                .into_inner()
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            n
        }
        None => {
            let mut stdout = CountingLines::new(std::io::stdout(), &mut progress);
            sink.export_subject(subject, &mut stdout).await?
        }
    };
    progress.finish();
    let _ = sink.close().await;
    eprintln!("exported {n} records");
    Ok(())
}

/// `align secrets rotate-key`: a new key seals every webhook signing secret, in one
/// transaction, then the old key is dropped from the key file. A running server follows the
/// key file (it reads it again before it seals, and when it meets the new key).
pub(crate) async fn secrets_rotate_key(d: &DataDir, out: &Out) -> Result<(), Failure> {
    let sealer = d.sealer.clone();
    let previous = sealer.key_ids();
    let current = sealer.rotate()?;
    let resealed = d.webhooks.reseal_secrets().await?;
    sealer.retire_previous()?;
    let orgs = every(|page| async move { d.store.list_organizations(&page).await }).await?;
    let details = json!({ "keyId": current, "previousKeyIds": previous, "resealed": resealed });
    for org in &orgs {
        d.record(
            "secrets.key_rotated",
            org.id,
            current.clone(),
            details.clone(),
        )
        .await?;
    }
    out.object(&json!({
        "keyId": current,
        "previousKeyIds": previous,
        "resealedEndpoints": resealed,
        "keyFile": sealer.key_file().map(|p| p.display().to_string()),
    }))
}

fn streams(name: &str) -> Result<Vec<Stream>, Failure> {
    match name {
        "both" => Ok(vec![Stream::Request, Stream::Audit]),
        other => Ok(vec![stream(other)?]),
    }
}

/// `align audit purge|anonymize`: retention and de-identification by age (defaults from the
/// privacy policy: request log kept 30 days, audit 400; anonymised after 7 and 90 days).
pub(crate) async fn audit_privacy(
    d: &DataDir,
    purge: bool,
    stream_name: &str,
    older_than_days: Option<i64>,
    out: &Out,
) -> Result<(), Failure> {
    let policy = PrivacyPolicy::default();
    let sink = d.audit_with_key(purge).await?;
    let mut rows = Vec::new();
    for s in streams(stream_name)? {
        let age = match (older_than_days, purge) {
            (Some(days), _) => chrono::TimeDelta::days(days),
            (None, true) => policy.retention(s),
            (None, false) => policy.anonymise_after(s),
        };
        let cutoff = Utc::now() - age;
        let n = if purge {
            let label = format!("purging the {} log", s.as_str());
            progress::while_running(&label, sink.purge(s, cutoff)).await?
        } else {
            let label = format!("anonymising the {} log", s.as_str());
            progress::while_running(&label, sink.anonymise(s, cutoff)).await?
        };
        rows.push(json!({ "stream": s.as_str(), "olderThanDays": age.num_days(), "records": n }));
    }
    sink.close().await?;
    out.table(&rows, &["stream", "olderThanDays", "records"])
}
