//! Operator commands for webhook endpoints and deliveries on a data directory: they open the
//! same database as the server (its `webhooks_` tables, in `DIR/align.db` or PostgreSQL) and
//! audit every change with the system as actor, as the key commands do.

use std::sync::Arc;
use std::time::Duration;

use align_keys::Environment;
use align_webhooks::{
    Delivery, DeliveryId, DispatcherConfig, Endpoint, EndpointId, EndpointKey, EndpointSecrets,
    EventFilter, Owner, SigningKey, SigningSecret, SystemResolver, WebhookStore,
};
use chrono::Utc;
use serde_json::{Value, json};

use crate::data_dir::DataDir;
use crate::output::{Failure, Out};

/// What `stderr` says after a new endpoint secret is printed.
pub(crate) const SECRET_SHOWN_ONCE: &str = "The signing secret above is shown once. Give it to the \
     receiver now (e.g. `align webhooks listen --secret-file FILE`); it cannot be shown again, \
     only rotated.";

/// What `webhooks endpoints add` was asked for, on the data directory or over the API: its
/// options (their doc comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// Where deliveries go.
    #[arg(long)]
    pub(crate) url: String,
    /// Only this project's events (default: every event of the organisation).
    #[arg(long, value_name = "PROJECT_ID")]
    pub(crate) project: Option<String>,
    /// live or sandbox: which events the endpoint receives (default: live on the data
    /// directory, the calling key's environment over --api-url).
    #[arg(long)]
    pub(crate) environment: Option<String>,
    /// Comma-separated event types; `family.*` matches a family (default: every type).
    #[arg(long)]
    pub(crate) events: Option<String>,
}

/// The data directory with its webhook store, and the organisation given with `--org` (if
/// any) that every endpoint acted on must belong to.
pub(crate) struct Hooks {
    dir: DataDir,
    store: Arc<dyn WebhookStore>,
    org: Option<String>,
}

impl Hooks {
    pub(crate) fn new(dir: DataDir, org: Option<&str>) -> Self {
        let store = Arc::clone(&dir.webhooks);
        Self {
            dir,
            store,
            org: org.map(str::to_owned),
        }
    }

    /// The endpoint `id`; endpoints of another organisation than `--org` do not exist here.
    async fn endpoint(&self, id: &str) -> Result<Endpoint, Failure> {
        let id = EndpointId::parse(id)
            .ok_or_else(|| Failure::usage("the endpoint id must be a UUID"))?;
        let ep = self.store.endpoint(id).await?;
        match &self.org {
            Some(org) if ep.owner.organization != *org => Err(Failure::not_found("endpoint")),
            _ => Ok(ep),
        }
    }

    /// Records an operator's change to `ep` in the audit log.
    async fn record(&self, action: &str, ep: &Endpoint, details: Value) -> Result<(), Failure> {
        self.dir
            .record(action, &ep.owner.organization, ep.id.0.to_string(), details)
            .await
    }
}

fn environment(name: &str) -> Result<Environment, Failure> {
    Environment::from_name(name)
        .ok_or_else(|| Failure::usage("--environment must be live or sandbox"))
}

/// Scheme, host and port only: a URL's path can itself be a credential (many chat services'
/// incoming-webhook URLs are), so the audit log never records more.
fn origin(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "-".to_owned(), |u| u.origin().ascii_serialization())
}

fn endpoint_json(ep: &Endpoint) -> Value {
    let events = match &ep.filter {
        EventFilter::All => Value::Null,
        EventFilter::Only(types) => json!(types),
    };
    json!({
        "id": ep.id.0.to_string(), "url": ep.url, "environment": ep.environment,
        "organizationId": ep.owner.organization, "projectId": ep.owner.project,
        "events": events, "enabled": ep.enabled, "disabledReason": ep.disabled_reason,
        "failingSince": ep.failing_since, "createdAt": ep.created_at,
    })
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id.0.to_string(), "messageId": d.message_id.to_string(),
        "endpointId": d.endpoint_id.0.to_string(), "status": d.status.as_str(),
        "attempts": d.attempts, "nextAttemptAt": d.next_attempt_at, "createdAt": d.created_at,
    })
}

/// A fresh key of the same kind as `current`, and the text the receiver needs: the
/// `whsec_` secret, or for an ed25519 endpoint the `whpk_` public key.
fn fresh_key(current: &EndpointKey) -> Result<(EndpointKey, String), Failure> {
    Ok(match current {
        EndpointKey::Symmetric(_) => {
            let s = SigningSecret::generate()?;
            let text = s.expose().expose().to_owned();
            (EndpointKey::Symmetric(s), text)
        }
        EndpointKey::Asymmetric(_) => {
            let k = SigningKey::generate()?;
            let text = k.verifying_key().to_text();
            (EndpointKey::Asymmetric(k), text)
        }
    })
}

pub(crate) async fn add(h: &Hooks, a: AddArgs, out: &Out) -> Result<(), Failure> {
    let org = h.dir.org(h.org.as_deref()).await?;
    let project = match a.project.as_deref() {
        Some(p) => Some(h.dir.project(&org, p).await?.id.to_string()),
        None => None,
    };
    let env = environment(a.environment.as_deref().unwrap_or("live"))?;
    // The same policy, from the same settings, as the server's dispatcher applies.
    let policy = DispatcherConfig::from_env()?.url_policy;
    policy.check(&a.url, env, &SystemResolver).await?;
    let filter = match a.events.as_deref() {
        None => EventFilter::All,
        Some(list) => {
            let types: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if types.is_empty() {
                return Err(Failure::usage("--events needs at least one event type"));
            }
            EventFilter::Only(types)
        }
    };
    let secret = SigningSecret::generate()?;
    let shown = secret.expose();
    let owner = Owner {
        organization: org.id.to_string(),
        project,
    };
    let mut new = Endpoint::new(
        env,
        a.url,
        EndpointSecrets::new(EndpointKey::Symmetric(secret)),
    )
    .owned_by(owner);
    new.filter = filter;
    h.store.create_endpoint(&new).await?;
    // As stored (times at the store's millisecond precision).
    let ep = h.store.endpoint(new.id).await?;
    let details = json!({ "origin": origin(&ep.url), "environment": env,
                          "events": endpoint_json(&ep)["events"] });
    h.record("webhook_endpoint.created", &ep, details).await?;
    let mut v = endpoint_json(&ep);
    v["secret"] = json!(shown.expose());
    out.secret_object(&v, SECRET_SHOWN_ONCE)
}

pub(crate) async fn list(h: &Hooks, out: &Out) -> Result<(), Failure> {
    let org = h.dir.org(h.org.as_deref()).await?.id.to_string();
    let rows: Vec<Value> = h
        .store
        .endpoints()
        .await?
        .iter()
        .filter(|ep| ep.owner.organization == org)
        .map(endpoint_json)
        .collect();
    out.table(
        &rows,
        &[
            "id",
            "environment",
            "enabled",
            "url",
            "events",
            "projectId",
            "createdAt",
        ],
    )
}

pub(crate) async fn show(h: &Hooks, id: &str, out: &Out) -> Result<(), Failure> {
    out.object(&endpoint_json(&h.endpoint(id).await?))
}

pub(crate) async fn remove(h: &Hooks, id: &str, out: &Out) -> Result<(), Failure> {
    let ep = h.endpoint(id).await?;
    h.store.delete_endpoint(ep.id).await?;
    h.record(
        "webhook_endpoint.deleted",
        &ep,
        json!({ "origin": origin(&ep.url), "environment": ep.environment }),
    )
    .await?;
    out.object(&json!({ "id": ep.id.0.to_string(), "deleted": true }))
}

pub(crate) async fn rotate_secret(
    h: &Hooks,
    id: &str,
    grace_seconds: u64,
    out: &Out,
) -> Result<(), Failure> {
    let mut ep = h.endpoint(id).await?;
    let (next, shown) = fresh_key(ep.secrets.current())?;
    let now = Utc::now();
    let grace = Duration::from_secs(grace_seconds);
    ep.secrets.rotate(next, now, grace);
    h.store.update_endpoint(&ep).await?;
    h.record(
        "webhook_endpoint.secret_rotated",
        &ep,
        json!({ "graceSeconds": grace_seconds }),
    )
    .await?;
    let until = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|g| now.checked_add_signed(g));
    let v = json!({
        "id": ep.id.0.to_string(),
        "secret": shown,
        "previousSecretSignsUntil": if grace_seconds == 0 { None } else { until },
    });
    out.secret_object(&v, SECRET_SHOWN_ONCE)
}

pub(crate) async fn deliveries(
    h: &Hooks,
    endpoint: &str,
    limit: usize,
    out: &Out,
) -> Result<(), Failure> {
    let ep = h.endpoint(endpoint).await?;
    let mut rows = Vec::new();
    for d in h.store.deliveries(ep.id, limit.clamp(1, 1000)).await? {
        let mut v = delivery_json(&d);
        v["eventType"] = json!(h.store.message(&d.message_id).await?.event_type);
        let last = h.store.latest_attempts(d.id, 1).await?.pop();
        v["lastStatus"] = json!(last.as_ref().and_then(|a| a.status));
        v["lastAttemptAt"] = json!(last.as_ref().map(|a| a.at));
        rows.push(v);
    }
    out.table(
        &rows,
        &[
            "id",
            "eventType",
            "status",
            "attempts",
            "lastStatus",
            "nextAttemptAt",
            "createdAt",
        ],
    )
}

/// `--limit` of `webhooks attempts`: 1 to 100, as the server takes.
pub(crate) fn attempt_limit(limit: usize) -> Result<usize, Failure> {
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(Failure::usage("--limit must be between 1 and 100"))
    }
}

/// A cursor `webhooks attempts` printed (`c` and 1 to 15 hex digits, as the server's), as
/// the position it names.
pub(crate) fn cursor_position(cursor: &str) -> Result<u64, Failure> {
    align_server::cursor_position(cursor)
        .ok_or_else(|| Failure::usage("--cursor is not a cursor this command printed"))
}

/// A page of attempts (`{"data": […], "nextCursor": …}`): the JSON object with --json;
/// otherwise a table, and the next page's cursor on stderr.
pub(crate) fn print_attempts(page: &Value, out: &Out) -> Result<(), Failure> {
    if out.json {
        return out.object(page);
    }
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    out.table(&rows, &["at", "status", "latencyMs", "error"])?;
    if let Some(c) = page["nextCursor"].as_str() {
        eprintln!("more: --cursor {c}");
    }
    Ok(())
}

/// `webhooks attempts` on the data directory: a delivery's attempts, newest first, a page at
/// a time, read with a LIMIT.
pub(crate) async fn attempts(
    h: &Hooks,
    delivery: &str,
    limit: usize,
    cursor: Option<&str>,
    out: &Out,
) -> Result<(), Failure> {
    let id = DeliveryId::parse(delivery)
        .ok_or_else(|| Failure::usage("the delivery id must be a UUID"))?;
    let limit = attempt_limit(limit)?;
    let before = cursor.map(cursor_position).transpose()?;
    let d = h.store.delivery(id).await?;
    h.endpoint(&d.endpoint_id.0.to_string()).await?;
    let (page, next) = h.store.attempt_page(id, before, limit).await?;
    let data: Vec<Value> = page
        .iter()
        .map(|a| {
            json!({
                "at": a.at, "status": a.status, "latencyMs": a.latency_ms,
                "responseBody": a.response_body, "error": a.error,
            })
        })
        .collect();
    let next = next.map(|n| format!("c{n:x}"));
    print_attempts(&json!({ "data": data, "nextCursor": next }), out)
}

pub(crate) async fn retry(h: &Hooks, delivery: &str, out: &Out) -> Result<(), Failure> {
    let id = DeliveryId::parse(delivery)
        .ok_or_else(|| Failure::usage("the delivery id must be a UUID"))?;
    let d = h.store.delivery(id).await?;
    let ep = h.endpoint(&d.endpoint_id.0.to_string()).await?;
    h.store.retry(id, Utc::now()).await?;
    h.record(
        "webhook_delivery.retried",
        &ep,
        json!({ "deliveryId": id.0.to_string(), "messageId": d.message_id.to_string() }),
    )
    .await?;
    if !ep.enabled {
        eprintln!(
            "{} is disabled: the delivery waits until it is enabled again",
            ep.id.0
        );
    }
    out.object(&delivery_json(&h.store.delivery(id).await?))
}

/// Makes every failed delivery of the endpoint created since `since` due again now.
pub(crate) async fn recover(
    h: &Hooks,
    endpoint: &str,
    since: chrono::DateTime<Utc>,
    out: &Out,
) -> Result<(), Failure> {
    let ep = h.endpoint(endpoint).await?;
    let n = h
        .store
        .recover_failed_since(ep.id, since, Utc::now())
        .await?;
    h.record(
        "webhook_endpoint.recovered",
        &ep,
        json!({ "since": since, "recovered": n }),
    )
    .await?;
    out.object(&json!({ "id": ep.id.0.to_string(), "recovered": n }))
}
