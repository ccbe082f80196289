//! `align keyspaces …`: key spaces and the keys an organisation mints in them for its own
//! customers (DESIGN §12), on the data directory ([`local`]) or, with `--api-url`, through a
//! running server. Both print what the API answers (`align_server::keyspace_view`,
//! `keyspace_key_view`). Verification is `align keys verify`, through a server only.

mod local;

use align_keys::keyspace::{Credits, NamedLimit, Refill, RefillInterval};
use align_keys::{Environment, Meta};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{self, Api};
use crate::common::{Area, Common};
use crate::keys::{USAGE_COLUMNS, UsageRange};
use crate::output::{self, Failure, Out};

/// Its help text is the doc comment of `Command::Keyspaces` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Create a key space: its own token prefix (2 to 8 lowercase letters, not ako or akt;
    /// never changes) and the permissions its keys may hold.
    ///
    /// Example: align keyspaces create --name "Acme API" --prefix acme --permissions invoices:read,invoices:write,admin
    Create {
        #[arg(long)]
        name: String,
        /// The token prefix: acme gives acme_9311c954_… keys.
        #[arg(long)]
        prefix: String,
        /// Comma-separated permissions its keys may hold: resource:action, resource:* or a word.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
    },
    /// List the organisation's key spaces. Example: align keyspaces list --json
    List,
    /// Show one key space. Example: align keyspaces show 8a4e2c1d-…
    Show { id: String },
    /// Rename a key space or replace its permissions (keys keep what they hold).
    ///
    /// Example: align keyspaces update 8a4e2c1d-… --permissions invoices:read,invoices:write,refunds:read
    Update {
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// The new comma-separated permissions, replacing the old ("" for none).
        #[arg(long)]
        permissions: Option<String>,
    },
    /// The keys of a key space: minted for your customers, never shown again after minting.
    ///
    /// Example: align keyspaces keys list 8a4e2c1d-… --owner cus_8812
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyAction {
    /// Mint a key for a customer; the token is printed once, to stdout.
    ///
    /// Example: align keyspaces keys mint 8a4e2c1d-… --name "cus_8812 production" --owner cus_8812 --permissions invoices:read --credits 1000 --refill 1000/month --ratelimit requests:100/60s
    Mint(MintArgs),
    /// List a key space's keys (never tokens).
    ///
    /// Example: align keyspaces keys list 8a4e2c1d-… --owner cus_8812 --json
    List {
        /// The key space's id.
        keyspace: String,
        /// Only this owner's keys.
        #[arg(long, value_name = "ID")]
        owner: Option<String>,
        /// Revoked keys too.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Show one key. Example: align keyspaces keys show 8a4e2c1d-… 2e7f9a1b-…
    Show { keyspace: String, key: String },
    /// Change a key's name, owner, data, permissions, expiry, credits or named limits.
    ///
    /// Example: align keyspaces keys update 8a4e2c1d-… 2e7f9a1b-… --credits 5000 --refill 5000/month --clear expiry
    Update(UpdateArgs),
    /// Revoke a key for good; its next verification answers REVOKED.
    ///
    /// Example: align keyspaces keys revoke 8a4e2c1d-… 2e7f9a1b-…
    Revoke { keyspace: String, key: String },
    /// Mint a successor (printed once, with its token); the old key verifies for --grace
    /// seconds more.
    ///
    /// Example: align keyspaces keys rotate 8a4e2c1d-… 2e7f9a1b-… --grace 3600
    Rotate {
        keyspace: String,
        key: String,
        #[arg(long, default_value_t = 86_400)]
        grace: u64,
    },
    /// Suspend a key until resumed (verifications answer SUSPENDED).
    ///
    /// Example: align keyspaces keys suspend 8a4e2c1d-… 2e7f9a1b-…
    Suspend { keyspace: String, key: String },
    /// Lift a key's suspension. Example: align keyspaces keys resume 8a4e2c1d-… 2e7f9a1b-…
    Resume { keyspace: String, key: String },
    /// A key's verifications per minute, hour or day by outcome (default: the last 24 hours
    /// by hour).
    ///
    /// Example: align keyspaces keys usage 8a4e2c1d-… 2e7f9a1b-… --granularity day
    Usage {
        keyspace: String,
        key: String,
        #[command(flatten)]
        range: UsageRange,
    },
}

/// What a key is minted or changed with: the options `mint` and `update` share (their doc
/// comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct KeyOptions {
    /// Your own id for the customer holding it, at most 256 characters.
    #[arg(long, value_name = "ID")]
    owner: Option<String>,
    /// Your own data about the key: a JSON object of at most 4 KiB, e.g. '{"plan":"pro"}'.
    #[arg(long, value_name = "JSON")]
    meta: Option<String>,
    /// Comma-separated permissions, each one the key space declares ("" for none).
    #[arg(long)]
    permissions: Option<String>,
    /// When the key stops verifying, in RFC 3339 (e.g. 2027-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    expires_at: Option<DateTime<Utc>>,
    /// Verifications the key may make (each VALID one spends its cost, default 1).
    #[arg(long, value_name = "N")]
    credits: Option<u64>,
    /// Credits set back to AMOUNT at each UTC midnight (day) or first of the month (month),
    /// e.g. 1000/month. Needs --credits.
    #[arg(long, value_name = "AMOUNT/INTERVAL", requires = "credits")]
    refill: Option<String>,
    /// A named rate limit, NAME:LIMIT/WINDOW with the window in seconds or with s, m, h or d:
    /// requests:100/60s, tokens:50000/1d. Repeatable; on update, the list replaces the key's.
    #[arg(long, value_name = "NAME:LIMIT/WINDOW")]
    ratelimit: Vec<String>,
}

/// `keyspaces keys mint`.
#[derive(Debug, clap::Args)]
pub(crate) struct MintArgs {
    /// The key space's id.
    keyspace: String,
    #[arg(long)]
    name: String,
    #[command(flatten)]
    options: KeyOptions,
    /// Mint a sandbox key (a sandbox caller sees and verifies only those).
    #[arg(long)]
    sandbox: bool,
}

/// `keyspaces keys update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// The key space's id.
    keyspace: String,
    /// The key's id.
    key: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    options: KeyOptions,
    /// Comma-separated fields to clear: owner, meta, expiry (the key never expires),
    /// credits (verifications no longer limited by credits) or ratelimits (none).
    #[arg(long, value_name = "FIELDS", value_delimiter = ',',
          value_parser = ["owner", "meta", "expiry", "credits", "ratelimits"])]
    clear: Vec<String>,
}

/// A comma-separated list (`""` is none).
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `--refill AMOUNT/INTERVAL`.
fn refill(text: &str) -> Result<Refill, Failure> {
    let bad = || Failure::usage("--refill is AMOUNT/day or AMOUNT/month, e.g. 1000/month");
    let (amount, interval) = text.split_once('/').ok_or_else(bad)?;
    Ok(Refill {
        amount: amount.trim().parse().map_err(|_| bad())?,
        interval: RefillInterval::from_name(interval.trim()).ok_or_else(bad)?,
    })
}

/// `--ratelimit NAME:LIMIT/WINDOW` (the name may hold `:`; the last one separates).
fn named_limit(text: &str) -> Result<NamedLimit, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--ratelimit {text:?} is not NAME:LIMIT/WINDOW, e.g. requests:100/60s"
        ))
    };
    let (name, rest) = text.rsplit_once(':').ok_or_else(bad)?;
    let (limit, window) = rest.split_once('/').ok_or_else(bad)?;
    let (number, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => window.split_at(i),
        None => (window, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds: u64 = number.parse().map_err(|_| bad())?;
    Ok(NamedLimit {
        name: name.to_owned(),
        limit: limit.parse().map_err(|_| bad())?,
        duration_seconds: seconds.checked_mul(scale).ok_or_else(bad)?,
    })
}

/// The API's JSON of credits given on the command line.
fn credits_json(c: &Credits) -> Value {
    let mut v = json!({ "remaining": c.remaining });
    if let Some(r) = c.refill {
        v["refill"] = json!({ "amount": r.amount, "interval": r.interval });
    }
    v
}

impl KeyOptions {
    fn meta(&self) -> Result<Option<Meta>, Failure> {
        self.meta
            .as_deref()
            .map(|m| {
                serde_json::from_str(m).map_err(|_| Failure::usage("--meta must be a JSON object"))
            })
            .transpose()
    }

    fn permissions(&self) -> Option<Vec<String>> {
        self.permissions.as_deref().map(list)
    }

    fn credits(&self, now: DateTime<Utc>) -> Result<Option<Credits>, Failure> {
        let refill = self.refill.as_deref().map(refill).transpose()?;
        Ok(self.credits.map(|n| Credits::new(n, refill, now)))
    }

    /// The named limits given (`None` when none are).
    fn limits(&self) -> Result<Option<Vec<NamedLimit>>, Failure> {
        if self.ratelimit.is_empty() {
            return Ok(None);
        }
        self.ratelimit
            .iter()
            .map(|l| named_limit(l))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// These options as fields of a request body (`null` for what `clear` names).
    fn body(&self, body: &mut Value, clear: &[String]) -> Result<(), Failure> {
        let cleared = |f: &str| clear.iter().any(|c| c == f);
        for (field, set) in [
            ("owner", self.owner.is_some()),
            ("meta", self.meta.is_some()),
            ("expiry", self.expires_at.is_some()),
            ("credits", self.credits.is_some()),
            ("ratelimits", !self.ratelimit.is_empty()),
        ] {
            if set && cleared(field) {
                return Err(Failure::usage(format!(
                    "--clear {field} and a new value for it cannot go together"
                )));
            }
        }
        if let Some(o) = &self.owner {
            body["ownerId"] = json!(o);
        }
        if let Some(m) = self.meta()? {
            body["meta"] = json!(m);
        }
        if let Some(p) = self.permissions() {
            body["permissions"] = json!(p);
        }
        if let Some(t) = self.expires_at {
            body["expiresAt"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        if let Some(c) = self.credits(Utc::now())? {
            body["credits"] = credits_json(&c);
        }
        if let Some(l) = self.limits()? {
            body["ratelimits"] = json!(l);
        }
        for (flag, field, value) in [
            ("owner", "ownerId", Value::Null),
            ("meta", "meta", Value::Null),
            ("expiry", "expiresAt", Value::Null),
            ("credits", "credits", Value::Null),
            ("ratelimits", "ratelimits", json!([])),
        ] {
            if cleared(flag) {
                body[field] = value;
            }
        }
        Ok(())
    }
}

impl MintArgs {
    /// The key's environment: sandbox with `--sandbox`, else live (over the API: the
    /// caller's).
    fn environment(&self) -> Option<Environment> {
        self.sandbox.then_some(Environment::Sandbox)
    }

    /// The `POST /api/v1/keyspaces/{id}/keys` body.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({ "name": self.name });
        if let Some(e) = self.environment() {
            body["environment"] = json!(e);
        }
        self.options.body(&mut body, &[])?;
        Ok(body)
    }
}

impl UpdateArgs {
    /// The `PATCH` body; at least one change.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({});
        if let Some(n) = &self.name {
            body["name"] = json!(n);
        }
        self.options.body(&mut body, &self.clear)?;
        if body.as_object().is_none_or(serde_json::Map::is_empty) {
            return Err(Failure::usage(
                "nothing to change: give --name, --owner, --meta, --permissions, --expires-at, \
                 --credits, --ratelimit or --clear",
            ));
        }
        Ok(body)
    }
}

/// The columns of `keyspaces list`.
const KEYSPACE_COLUMNS: [&str; 5] = ["id", "prefix", "name", "permissions", "createdAt"];
/// The columns of `keyspaces keys list`.
const KEY_COLUMNS: [&str; 7] = [
    "id",
    "keyPrefix",
    "name",
    "ownerId",
    "environment",
    "expiresAt",
    "revokedAt",
];

pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    if common.api_url.is_some() {
        return over_api(&common, action).await;
    }
    local::run(&common, action).await
}

/// Prints a rotation's answer: the whole of it with `--json`, else the successor with its
/// token (shown once).
fn print_rotation(v: &Value, o: &Out) -> Result<(), Failure> {
    if o.json {
        o.secret_object(v, output::KEY_SHOWN_ONCE)
    } else {
        o.secret_object(&v["successor"], output::KEY_SHOWN_ONCE)
    }
}

/// `align keyspaces …` against a running server.
async fn over_api(common: &Common, action: Action) -> Result<(), Failure> {
    let api = common.api("align keyspaces")?;
    let o = common.out();
    let v = match action {
        Action::Create {
            name,
            prefix,
            permissions,
        } => {
            let body = json!({ "name": name, "prefix": prefix, "permissions": permissions });
            api.call("POST", "/api/v1/keyspaces", Some(body)).await?
        }
        Action::List => {
            let rows = api.list("/api/v1/keyspaces?limit=200", usize::MAX).await?;
            return o.table(&rows, &KEYSPACE_COLUMNS);
        }
        Action::Show { id } => api.call("GET", &keyspace_path(&id), None).await?,
        Action::Update {
            id,
            name,
            permissions,
        } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(p) = permissions {
                body["permissions"] = json!(list(&p));
            }
            api.call("PATCH", &keyspace_path(&id), Some(body)).await?
        }
        Action::Keys { action } => return keys_over_api(&api, action, &o).await,
    };
    o.object(&v)
}

async fn keys_over_api(api: &Api, action: KeyAction, o: &Out) -> Result<(), Failure> {
    let v = match action {
        KeyAction::Mint(args) => {
            let path = format!("{}/keys", keyspace_path(&args.keyspace));
            let v = api.call("POST", &path, Some(args.body()?)).await?;
            return o.secret_object(&v, output::KEY_SHOWN_ONCE);
        }
        KeyAction::List {
            keyspace,
            owner,
            include_revoked,
        } => {
            let mut path = format!("{}/keys?limit=200", keyspace_path(&keyspace));
            if let Some(owner) = owner {
                path.push_str(&format!("&ownerId={}", client::query_value(&owner)));
            }
            if include_revoked {
                path.push_str("&includeRevoked=true");
            }
            let rows = api.list(&path, usize::MAX).await?;
            return o.table(&rows, &KEY_COLUMNS);
        }
        KeyAction::Show { keyspace, key } => {
            api.call("GET", &key_path(&keyspace, &key, ""), None)
                .await?
        }
        KeyAction::Update(args) => {
            let path = key_path(&args.keyspace, &args.key, "");
            api.call("PATCH", &path, Some(args.body()?)).await?
        }
        KeyAction::Rotate {
            keyspace,
            key,
            grace,
        } => {
            let body = json!({ "graceSeconds": grace });
            let path = key_path(&keyspace, &key, "/rotate");
            let v = api.call("POST", &path, Some(body)).await?;
            return print_rotation(&v, o);
        }
        KeyAction::Revoke { keyspace, key } => {
            let path = key_path(&keyspace, &key, "/revoke");
            api.call("POST", &path, None).await?
        }
        KeyAction::Suspend { keyspace, key } => {
            let path = key_path(&keyspace, &key, "/suspend");
            api.call("POST", &path, None).await?
        }
        KeyAction::Resume { keyspace, key } => {
            let path = key_path(&keyspace, &key, "/resume");
            api.call("POST", &path, None).await?
        }
        KeyAction::Usage {
            keyspace,
            key,
            range,
        } => {
            let path = format!("{}?{}", key_path(&keyspace, &key, "/usage"), range.query());
            let v = api.call("GET", &path, None).await?;
            return client::print(&v, &USAGE_COLUMNS, o);
        }
    };
    o.object(&v)
}

/// `/api/v1/keyspaces/{id}`, the id percent-encoded.
fn keyspace_path(id: &str) -> String {
    format!("/api/v1/keyspaces/{}", client::query_value(id))
}

/// `/api/v1/keyspaces/{id}/keys/{key}` and what follows it.
fn key_path(keyspace: &str, key: &str, rest: &str) -> String {
    format!(
        "{}/keys/{}{rest}",
        keyspace_path(keyspace),
        client::query_value(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_limits_take_a_window_in_seconds_or_with_a_unit() {
        let l = named_limit("requests:100/60s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.name.as_str(), l.limit, l.duration_seconds),
            ("requests", 100, 60)
        );
        let l = named_limit("api:read:5/1h").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.name.as_str(), l.limit, l.duration_seconds),
            ("api:read", 5, 3600)
        );
        assert_eq!(
            named_limit("t:1/90").map(|l| l.duration_seconds).ok(),
            Some(90)
        );
        for bad in ["requests", "requests:100", "r:x/60", "r:1/60w", "r:1/"] {
            assert!(named_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refill_is_an_amount_per_day_or_month() {
        let r = refill("1000/month").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.amount, r.interval), (1000, RefillInterval::Month));
        assert!(refill("1000/week").is_err());
        assert!(refill("month").is_err());
    }
}
