//! `align keys …`: API keys, minted, listed, changed, revoked and rotated on the data directory or, with
//! `--api-url`, through a running server; `align keys scan`, which finds keys in files; and
//! `align keys verify`, which checks a key space key through a running server.

mod scan;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

use align_keys::store::KeyFilter;
use align_keys::{Environment, KeyChanges, KeyRecord, NewKey, Scope, Vocabulary};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client;
use crate::common::{Area, Common};
use crate::data_dir::{DataDir, every};
use crate::output::{self, Failure, KEY_SHOWN_ONCE, Out};

/// Its help text is the doc comment of `Command::Keys` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Mint a key; the token is printed once, to stdout. Example: align keys create --name ci-read
    Create(CreateArgs),
    /// List keys (never tokens). Example: align keys list --json
    List,
    /// Show one key. Example: align keys show 6f1c…
    Show { id: String },
    /// Change a key's name, owner id, data, rate limit, expiry or networks (a change that
    /// widens the key is judged as a mint would be). Example: align keys update 6f1c… --owner cust_42 --meta '{"plan":"pro"}'
    Update(UpdateArgs),
    /// A key's requests per minute, hour or day by outcome, from the request log (default: the
    /// last 24 hours by hour). Example: align keys usage 6f1c… --granularity day --from 2026-11-01T00:00:00Z
    Usage(UsageArgs),
    /// Revoke a key for good; a running server refuses it within 250 ms. Example: align keys revoke 6f1c…
    Revoke { id: String },
    /// Mint a successor; the old key works for --grace seconds more. Example: align keys rotate 6f1c… --grace 3600
    Rotate {
        id: String,
        #[arg(long, default_value_t = 86_400)]
        grace: u64,
    },
    /// Report a key as compromised (API only): it is revoked at once, and the security
    /// contact is told. Example: align keys report-compromise 6f1c… --reason "pasted in chat" --api-url URL
    ReportCompromise {
        id: String,
        /// What happened (never paste the key itself; it is masked if you do).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Find API keys (valid checksums only) in files and directories, Align's (ako_, akt_) and
    /// any key space's (acme_…), honouring .gitignore and skipping binary files. Prints
    /// `path:line prefix` (never the secret); exits 1 when it found any, 0 when none: usable
    /// as a pre-commit hook.
    ///
    /// Example: align keys scan . --json
    Scan {
        /// Files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Verify a key your customer presented to your API (a key space key, DESIGN §12) as a
    /// gateway would, through a running server (--api-url, with a key holding keys:verify):
    /// prints the code (VALID, NOT_FOUND, REVOKED, EXPIRED, SUSPENDED, RATE_LIMITED,
    /// USAGE_EXCEEDED or INSUFFICIENT_PERMISSIONS; the whole answer with --json) and exits 0
    /// for VALID, 1 for any other code, 2 for a bad request (such as a malformed query).
    /// A VALID verification spends the key's credits and named limits.
    ///
    /// Example: align keys verify - --permissions "invoices:read AND admin" --cost 1 --ratelimit tokens:250 --api-url http://127.0.0.1:8080 < presented-key
    Verify(verify::VerifyArgs),
}

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    if let Action::Scan { paths } = &action {
        return scan::run(paths, common.json);
    }
    if let Action::Verify(args) = &action {
        let api =
            common.api("align keys verify (named limits and credits are counted by the server)")?;
        return verify::run(&api, args, &common.out()).await;
    }
    if common.api_url.is_some() {
        return over_api(&common, action).await;
    }
    let (d, o, org) = (common.open().await?, common.out(), common.org.as_deref());
    match action {
        Action::Create(args) => create(&d, org, &args, &o).await,
        Action::List => list(&d, org, &o).await,
        Action::Show { id } => show(&d, &id, &o).await,
        Action::Update(args) => update(&d, &args, &o).await,
        Action::Usage(args) => usage(&d, &args, &o).await,
        Action::Revoke { id } => revoke(&d, &id, &o).await,
        Action::Rotate { id, grace } => rotate(&d, &id, grace, &o).await,
        Action::ReportCompromise { .. } => Err(Failure::usage(
            "report-compromise goes through the server: add --api-url (and ALIGN_API_KEY)",
        )),
        Action::Scan { .. } | Action::Verify(_) => Ok(()),
    }
}

/// `align keys …` against a running server.
async fn over_api(common: &Common, action: Action) -> Result<(), Failure> {
    let api = common.api("align keys")?;
    let o = common.out();
    let columns = [
        "apiKeyId",
        "keyPrefix",
        "keyName",
        "scope",
        "environment",
        "revokedAt",
        "lastUsedAt",
    ];
    let v = match action {
        Action::Create(CreateArgs {
            name,
            project,
            permissions,
            sandbox,
            user,
            owner,
            meta,
        }) => {
            if user.is_some() {
                return Err(Failure::usage(
                    "--user applies to the data directory; the API mints as the calling key",
                ));
            }
            let mut body = serde_json::json!({
                "name": name,
                "scope": if project.is_some() { "project" } else { "organization" },
            });
            if let Some(p) = project {
                body["projectId"] = serde_json::json!(p);
            }
            if let Some(p) = permissions {
                body["permissions"] =
                    serde_json::json!(p.split(',').map(str::trim).collect::<Vec<_>>());
            }
            if sandbox {
                body["environment"] = serde_json::json!("sandbox");
            }
            if let Some(owner) = owner {
                body["ownerId"] = serde_json::json!(owner);
            }
            if let Some(meta) = meta {
                body["meta"] = serde_json::Value::Object(parse_meta(&meta)?);
            }
            let v = api.call("POST", "/api/v1/keys", Some(body)).await?;
            return o.secret_object(&v, output::KEY_SHOWN_ONCE);
        }
        Action::List => api.call("GET", "/api/v1/keys?limit=200", None).await?,
        Action::Show { id } => api.call("GET", &format!("/api/v1/keys/{id}"), None).await?,
        Action::Update(args) => {
            let body = args.body()?;
            let v = api
                .call("PATCH", &format!("/api/v1/keys/{}", args.id), Some(body))
                .await?;
            return o.object(&v);
        }
        Action::Usage(args) => {
            let v = api.call("GET", &args.path(), None).await?;
            return client::print(&v, &USAGE_COLUMNS, &o);
        }
        Action::Revoke { id } => {
            api.call("POST", &format!("/api/v1/keys/{id}/revoke"), None)
                .await?
        }
        Action::Rotate { id, grace } => {
            let body = serde_json::json!({ "graceSeconds": grace });
            let v = api
                .call("POST", &format!("/api/v1/keys/{id}/rotate"), Some(body))
                .await?;
            return o.secret_object(&v, output::KEY_SHOWN_ONCE);
        }
        Action::ReportCompromise { id, reason } => {
            let body = match reason {
                Some(r) => serde_json::json!({ "reason": r }),
                None => serde_json::json!({}),
            };
            let v = api
                .call(
                    "POST",
                    &format!("/api/v1/keys/{id}/report-compromise"),
                    Some(body),
                )
                .await?;
            return o.object(&v);
        }
        Action::Scan { paths } => return scan::run(&paths, common.json),
        Action::Verify(args) => return verify::run(&api, &args, &o).await,
    };
    client::print(&v, &columns, &o)
}

/// The columns of `keys usage`, as `GET /api/v1/keys/{id}/usage` names them.
pub(crate) const USAGE_COLUMNS: [&str; 6] = [
    "start",
    "requests",
    "succeeded",
    "clientErrors",
    "rateLimited",
    "serverErrors",
];

/// What `keys usage` was asked for, on the data directory or over the API.
#[derive(Debug, clap::Args)]
pub(crate) struct UsageArgs {
    id: String,
    #[command(flatten)]
    range: UsageRange,
}

/// The range and step of a usage question (`keys usage`, `keyspaces keys usage`).
#[derive(Debug, clap::Args)]
pub(crate) struct UsageRange {
    /// The first instant counted, RFC 3339 (default: a day before --to).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// The end of the range, RFC 3339 (default: now).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// minute, hour or day.
    #[arg(long, default_value = "hour")]
    granularity: align_audit::Granularity,
}

impl UsageRange {
    fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let to = self.to.unwrap_or_else(Utc::now);
        (self.from.unwrap_or(to - chrono::TimeDelta::hours(24)), to)
    }

    /// The API query string of the same question (`from=…&to=…&granularity=…`).
    pub(crate) fn query(&self) -> String {
        let (from, to) = self.range();
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        format!(
            "from={}&to={}&granularity={}",
            time(from),
            time(to),
            self.granularity.as_str()
        )
    }

    /// Prints the usage of `actor` (a key's id) from the data directory's request log, as the
    /// API answers it.
    pub(crate) async fn print_local(
        &self,
        d: &DataDir,
        actor: String,
        o: &Out,
    ) -> Result<(), Failure> {
        let (from, to) = self.range();
        let q = align_audit::UsageQuery::new(actor, from, to, self.granularity)
            .map_err(|e| Failure::usage(e.to_string()))?;
        let buckets = d.audit().await?.usage(&q).await?;
        let rows = serde_json::to_value(&buckets)
            .map_err(|e| Failure::usage(format!("cannot print the usage: {e}")))?;
        client::print(&json!({ "data": rows }), &USAGE_COLUMNS, o)
    }
}

impl UsageArgs {
    /// The API path and query of the same question.
    fn path(&self) -> String {
        format!("/api/v1/keys/{}/usage?{}", self.id, self.range.query())
    }
}

async fn usage(d: &DataDir, args: &UsageArgs, o: &Out) -> Result<(), Failure> {
    let key = d.key(&args.id).await?;
    args.range.print_local(d, key.id.to_string(), o).await
}

fn key_json(k: &KeyRecord) -> Value {
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

/// What `keys create` was asked for, on the data directory or over the API: its options
/// (their doc comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    #[arg(long)]
    pub(crate) name: String,
    /// Scope the key to this project (default: the whole organisation).
    #[arg(long, value_name = "PROJECT_ID")]
    pub(crate) project: Option<String>,
    /// Comma-separated permissions, e.g. keys:read,webhooks:read (default: all the scope allows).
    #[arg(long)]
    pub(crate) permissions: Option<String>,
    /// Mint a sandbox (akt_) key instead of a live one.
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// The creating user, by e-mail or id (default: the first admin).
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Your own id for the key's owner (a customer, a user), at most 256 characters.
    #[arg(long, value_name = "ID")]
    pub(crate) owner: Option<String>,
    /// Your own data about the key: a JSON object of at most 4 KiB, e.g. '{"plan":"pro"}'.
    #[arg(long, value_name = "JSON")]
    pub(crate) meta: Option<String>,
}

/// What `keys update` changes, on the data directory or over the API (`PATCH
/// /api/v1/keys/{id}`): its options (their doc comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// The key's id.
    pub(crate) id: String,
    /// A new name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A new owner id (a customer, a user), at most 256 characters.
    #[arg(long, value_name = "ID")]
    pub(crate) owner: Option<String>,
    /// New data about the key, replacing the old: a JSON object of at most 4 KiB.
    #[arg(long, value_name = "JSON")]
    pub(crate) meta: Option<String>,
    /// Requests per minute for this key.
    #[arg(long, value_name = "N")]
    pub(crate) rate_limit: Option<u32>,
    /// When the key stops working, in RFC 3339 (e.g. 2027-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub(crate) expires_at: Option<String>,
    /// Comma-separated fields to clear: owner, meta, rate-limit (back to the server's
    /// default) or expiry (the key works with no end date).
    #[arg(long, value_name = "FIELDS", value_delimiter = ',',
          value_parser = ["owner", "meta", "rate-limit", "expiry"])]
    pub(crate) clear: Vec<String>,
    /// Comma-separated networks the key may be used from, e.g. 203.0.113.0/24,2001:db8::/32
    /// ("" for any network).
    #[arg(long, value_name = "CIDRS")]
    pub(crate) allowed_cidrs: Option<String>,
}

impl UpdateArgs {
    /// The changes asked for; at least one.
    fn changes(&self) -> Result<KeyChanges, Failure> {
        let clear = |field: &str| self.clear.iter().any(|c| c == field);
        for (field, set) in [
            ("owner", self.owner.is_some()),
            ("meta", self.meta.is_some()),
            ("rate-limit", self.rate_limit.is_some()),
            ("expiry", self.expires_at.is_some()),
        ] {
            if set && clear(field) {
                return Err(Failure::usage(format!(
                    "--clear {field} and a new value for it cannot go together"
                )));
            }
        }
        let expires_at = self
            .expires_at
            .as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        Failure::usage(
                            "--expires-at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z",
                        )
                    })
            })
            .transpose()?;
        let allowed_cidrs = self
            .allowed_cidrs
            .as_deref()
            .map(|list| {
                list.split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| {
                        align_keys::parse_network(c).ok_or_else(|| {
                            Failure::usage("--allowed-cidrs must hold CIDRs such as 203.0.113.0/24")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let changes = KeyChanges {
            name: self.name.clone(),
            expires_at: if clear("expiry") {
                Some(None)
            } else {
                expires_at.map(Some)
            },
            rate_limit_per_minute: if clear("rate-limit") {
                Some(None)
            } else {
                self.rate_limit.map(Some)
            },
            allowed_cidrs,
            owner_id: if clear("owner") {
                Some(None)
            } else {
                self.owner.clone().map(Some)
            },
            meta: if clear("meta") {
                Some(None)
            } else {
                self.meta.as_deref().map(parse_meta).transpose()?.map(Some)
            },
        };
        if changes.changed_fields().is_empty() {
            return Err(Failure::usage(
                "nothing to change: give --name, --owner, --meta, --rate-limit, --expires-at, --allowed-cidrs or --clear",
            ));
        }
        Ok(changes)
    }

    /// The `PATCH` body of the same changes (`null` clears a field).
    fn body(&self) -> Result<Value, Failure> {
        let c = self.changes()?;
        let mut body = json!({});
        if let Some(name) = c.name {
            body["name"] = json!(name);
        }
        if let Some(e) = c.expires_at {
            body["expiresAt"] = json!(e);
        }
        if let Some(r) = c.rate_limit_per_minute {
            body["rateLimitPerMinute"] = json!(r);
        }
        if let Some(n) = c.allowed_cidrs {
            body["allowedCidrs"] = json!(n.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        if let Some(o) = c.owner_id {
            body["ownerId"] = json!(o);
        }
        if let Some(m) = c.meta {
            body["meta"] = json!(m);
        }
        Ok(body)
    }
}

/// `--meta`: a JSON object.
fn parse_meta(text: &str) -> Result<align_keys::Meta, Failure> {
    serde_json::from_str(text).map_err(|_| Failure::usage("--meta must be a JSON object"))
}

async fn create(d: &DataDir, org: Option<&str>, a: &CreateArgs, out: &Out) -> Result<(), Failure> {
    let org = d.org(org).await?;
    let user = d.user(&org, a.user.as_deref()).await?;
    let scope = match a.project.as_deref() {
        None => Scope::Organization,
        Some(p) => Scope::Project(d.project(&org, p).await?.id),
    };
    let permissions = a
        .permissions
        .as_deref()
        .map(|list| {
            Vocabulary::SERVER
                .parse(list.split(',').map(str::trim))
                .map_err(|e| Failure::usage(e.to_string()))
        })
        .transpose()?;
    let new = NewKey {
        name: a.name.clone(),
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
        owner_id: a.owner.clone(),
        meta: a.meta.as_deref().map(parse_meta).transpose()?,
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

async fn list(d: &DataDir, org: Option<&str>, out: &Out) -> Result<(), Failure> {
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

async fn show(d: &DataDir, id: &str, out: &Out) -> Result<(), Failure> {
    out.object(&key_json(&d.key(id).await?))
}

async fn update(d: &DataDir, a: &UpdateArgs, out: &Out) -> Result<(), Failure> {
    let k = d.key(&a.id).await?;
    let changes = a.changes()?;
    let changed = changes.changed_fields();
    let updated = d.keys.update(k.id, changes).await?;
    d.record(
        "api_key.updated",
        k.organization_id,
        k.id.to_string(),
        json!({ "keyPrefix": k.prefix, "changed": changed }),
    )
    .await?;
    out.object(&key_json(&updated))
}

async fn revoke(d: &DataDir, id: &str, out: &Out) -> Result<(), Failure> {
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

async fn rotate(d: &DataDir, id: &str, grace: u64, out: &Out) -> Result<(), Failure> {
    let k = d.key(id).await?;
    let r = d
        .keys
        .rotate(k.id, Duration::from_secs(grace), Utc::now())
        .await?;
    let mut v = key_json(&r.successor.record);
    v["key"] = json!(r.successor.token.expose());
    out.secret_object(&v, KEY_SHOWN_ONCE)
}
