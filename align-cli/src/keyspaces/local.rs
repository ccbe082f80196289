//! `align keyspaces …` on the data directory: the same checks as the server's (through
//! `align_keys::Keyspaces`), an audit record of each change (the actor is the system, as for
//! every operator command), and a running server sees each key change within 250 ms through
//! the store's change log.

use std::sync::Arc;
use std::time::Duration;

use align_keys::keyspace::Keyspace;
use align_keys::keyspace::{
    KeyspaceId, KeyspaceKey, KeyspaceKeyChanges, KeyspaceKeyFilter, LimitCheck, LimitsOutcome,
    NamedLimiter, NewKeyspaceKey,
};
use align_keys::{Environment, KeyId, Keyspaces, Sha256Hasher};
use align_server::{keyspace_key_view, keyspace_view};
use chrono::Utc;
use serde_json::{Value, json};

use super::{Action, KEY_COLUMNS, KEYSPACE_COLUMNS, KeyAction, UpdateArgs, list, print_rotation};
use crate::common::Common;
use crate::data_dir::{DataDir, every};
use crate::output::{self, Failure, Out};

/// The longest grace period of a rotation, as the server's (30 days).
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

/// Named limits live in the server that counts them (its memory, or Redis): the CLI never
/// verifies, so it never counts one.
struct ServerOnly;

#[async_trait::async_trait]
impl NamedLimiter for ServerOnly {
    async fn check(&self, _: KeyId, _: &[LimitCheck<'_>]) -> align_keys::Result<LimitsOutcome> {
        Err(align_keys::Error::Limiter(
            "named limits are counted by a running server: verify with --api-url".into(),
        ))
    }
}

/// What a refusal of the key space rules means for the operator: a usage error (exit 2) for
/// bad input or a final key, "not found" (exit 3) for a missing key.
fn refused(e: align_keys::Error) -> Failure {
    use align_keys::Error as E;
    match e {
        E::InvalidInput { .. } | E::AlreadyExists(_) | E::KeyNotActive => {
            Failure::usage(e.to_string())
        }
        E::NotFound(_) => Failure::not_found("key"),
        other => Failure::Keys(other),
    }
}

pub(super) async fn run(common: &Common, action: Action) -> Result<(), Failure> {
    let d = common.open().await?;
    let o = common.out();
    let spaces = Keyspaces::new(
        Arc::clone(&d.keyspaces),
        Arc::new(Sha256Hasher),
        Arc::new(ServerOnly),
    );
    match action {
        Action::Create {
            name,
            prefix,
            permissions,
        } => {
            let org = d.org(common.org.as_deref()).await?;
            let user = d.user(&org, None).await?;
            let ks = spaces
                .create_keyspace(org.id, &name, &prefix, permissions, user.id, Utc::now())
                .await
                .map_err(refused)?;
            let details =
                json!({"name": ks.name, "prefix": ks.prefix, "permissions": ks.permissions});
            d.record("keyspace.created", org.id, ks.id.to_string(), details)
                .await?;
            o.object(&keyspace_view(&ks))
        }
        Action::List => {
            let org = d.org(common.org.as_deref()).await?;
            let store = &d.keyspaces;
            let all =
                every(|page| async move { store.list_keyspaces(org.id, &page).await }).await?;
            let rows: Vec<Value> = all.iter().map(keyspace_view).collect();
            o.table(&rows, &KEYSPACE_COLUMNS)
        }
        Action::Show { id } => o.object(&keyspace_view(&load(&d, &id).await?)),
        Action::Update {
            id,
            name,
            permissions,
        } => {
            if name.is_none() && permissions.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --name or --permissions",
                ));
            }
            let ks = load(&d, &id).await?;
            let fields: Vec<&str> = [
                ("name", name.is_some()),
                ("permissions", permissions.is_some()),
            ]
            .into_iter()
            .filter_map(|(f, set)| set.then_some(f))
            .collect();
            let ks = spaces
                .update_keyspace(ks, name, permissions.as_deref().map(list))
                .await
                .map_err(refused)?;
            d.record(
                "keyspace.updated",
                ks.organization_id,
                ks.id.to_string(),
                json!({ "fields": fields }),
            )
            .await?;
            o.object(&keyspace_view(&ks))
        }
        Action::Keys { action } => keys(&d, &spaces, action, &o).await,
    }
}

/// Key space `id`.
async fn load(d: &DataDir, id: &str) -> Result<Keyspace, Failure> {
    let id: KeyspaceId = id
        .parse()
        .map_err(|_| Failure::usage("the key space id must be a UUID"))?;
    d.keyspaces
        .get_keyspace(id)
        .await?
        .ok_or_else(|| Failure::not_found("key space"))
}

/// Key `id` of key space `ks` (a key of another space does not exist here).
async fn load_key(spaces: &Keyspaces, ks: &Keyspace, id: &str) -> Result<KeyspaceKey, Failure> {
    let id: KeyId = id
        .parse()
        .map_err(|_| Failure::usage("the key id must be a UUID"))?;
    spaces
        .get(id)
        .await?
        .filter(|k| k.keyspace_id == ks.id)
        .ok_or_else(|| Failure::not_found("key"))
}

/// What an audit record says about a key space key: never the token.
fn summary(k: &KeyspaceKey) -> Value {
    json!({
        "keyspaceId": k.keyspace_id, "keyPrefix": k.prefix, "keyName": k.name,
        "environment": k.environment, "ownerId": k.owner_id,
    })
}

/// The view of a freshly minted key, with its token.
fn minted(k: &KeyspaceKey, token: &str) -> Value {
    let mut v = keyspace_key_view(k);
    v["key"] = json!(token);
    v
}

async fn keys(d: &DataDir, spaces: &Keyspaces, action: KeyAction, o: &Out) -> Result<(), Failure> {
    let keyspace = match &action {
        KeyAction::Mint(a) => &a.keyspace,
        KeyAction::Update(a) => &a.keyspace,
        KeyAction::List { keyspace, .. }
        | KeyAction::Show { keyspace, .. }
        | KeyAction::Revoke { keyspace, .. }
        | KeyAction::Rotate { keyspace, .. }
        | KeyAction::Suspend { keyspace, .. }
        | KeyAction::Resume { keyspace, .. }
        | KeyAction::Usage { keyspace, .. } => keyspace,
    };
    let ks = load(d, keyspace).await?;
    let now = Utc::now();
    let (action_name, key) = match action {
        KeyAction::Mint(args) => {
            let org = d.org(Some(&ks.organization_id.to_string())).await?;
            let user = d.user(&org, None).await?;
            let new = NewKeyspaceKey {
                name: args.name.clone(),
                environment: args.environment().unwrap_or(Environment::Live),
                owner_id: args.options.owner.clone(),
                meta: args.options.meta()?,
                permissions: args.options.permissions().unwrap_or_default(),
                expires_at: args.options.expires_at,
                credits: args.options.credits(now)?,
                ratelimits: args.options.limits()?.unwrap_or_default(),
                created_by: user.id,
            };
            let m = spaces.mint(&ks, new, now).await.map_err(refused)?;
            record(d, "keyspace_key.created", &m.key, summary(&m.key)).await?;
            return o.secret_object(&minted(&m.key, m.token.expose()), output::KEY_SHOWN_ONCE);
        }
        KeyAction::List {
            owner,
            include_revoked,
            ..
        } => {
            let filter = KeyspaceKeyFilter {
                keyspace_id: ks.id,
                owner_id: owner,
                environment: None,
                include_revoked,
            };
            let store = &d.keyspaces;
            let filter = &filter;
            let all =
                every(|page| async move { store.list_keyspace_keys(filter, &page).await }).await?;
            let rows: Vec<Value> = all.iter().map(keyspace_key_view).collect();
            return o.table(&rows, &KEY_COLUMNS);
        }
        KeyAction::Show { key, .. } => {
            return o.object(&keyspace_key_view(&load_key(spaces, &ks, &key).await?));
        }
        KeyAction::Usage { key, range, .. } => {
            let key = load_key(spaces, &ks, &key).await?;
            return range.print_local(d, key.id.to_string(), o).await;
        }
        KeyAction::Update(args) => {
            let key = load_key(spaces, &ks, &args.key).await?;
            let changes = changes(&args)?;
            let fields = changes.fields();
            let key = spaces
                .change(&ks, key.id, changes, now)
                .await
                .map_err(refused)?;
            let details = json!({ "key": summary(&key), "fields": fields });
            record(d, "keyspace_key.updated", &key, details).await?;
            return o.object(&keyspace_key_view(&key));
        }
        KeyAction::Rotate { key, grace, .. } => {
            if grace > MAX_GRACE_SECS {
                return Err(Failure::usage("--grace is at most 2592000 (30 days)"));
            }
            let key = load_key(spaces, &ks, &key).await?;
            let org = d.org(Some(&ks.organization_id.to_string())).await?;
            let user = d.user(&org, None).await?;
            let (successor, previous) = spaces
                .rotate(&ks, key.id, Duration::from_secs(grace), user.id, now)
                .await
                .map_err(refused)?;
            let mut details = json!({ "key": summary(&previous) });
            details["successorKeyId"] = json!(successor.key.id);
            record(d, "keyspace_key.rotated", &previous, details).await?;
            let token = successor.token.expose();
            let v = json!({
                "key": token,
                "successor": minted(&successor.key, token),
                "previous": keyspace_key_view(&previous),
            });
            return print_rotation(&v, o);
        }
        KeyAction::Revoke { key, .. } => {
            let key = load_key(spaces, &ks, &key).await?;
            (
                "revoked",
                spaces.revoke(key.id, now).await.map_err(refused)?,
            )
        }
        KeyAction::Suspend { key, .. } => {
            let key = load_key(spaces, &ks, &key).await?;
            (
                "suspended",
                spaces.suspend(key.id, now).await.map_err(refused)?,
            )
        }
        KeyAction::Resume { key, .. } => {
            let key = load_key(spaces, &ks, &key).await?;
            (
                "resumed",
                spaces.resume(key.id, now).await.map_err(refused)?,
            )
        }
    };
    let action = format!("keyspace_key.{action_name}");
    record(d, &action, &key, json!({ "key": summary(&key) })).await?;
    o.object(&keyspace_key_view(&key))
}

/// Records an operator's change of key `k`.
async fn record(d: &DataDir, action: &str, k: &KeyspaceKey, details: Value) -> Result<(), Failure> {
    d.record(action, k.organization_id, k.id.to_string(), details)
        .await
}

/// A change of an optional field: cleared, set, or left alone.
fn either<T>(clear: bool, set: Option<T>) -> Option<Option<T>> {
    if clear { Some(None) } else { set.map(Some) }
}

/// The changes `keyspaces keys update` asks for; at least one.
fn changes(args: &UpdateArgs) -> Result<KeyspaceKeyChanges, Failure> {
    let o = &args.options;
    // The same checks and conflicts as the API body (`--clear x` with a new x).
    args.body()?;
    let cleared = |f: &str| args.clear.iter().any(|c| c == f);
    Ok(KeyspaceKeyChanges {
        name: args.name.clone(),
        owner_id: either(cleared("owner"), o.owner.clone()),
        meta: either(cleared("meta"), o.meta()?),
        permissions: o.permissions(),
        expires_at: either(cleared("expiry"), o.expires_at),
        credits: either(cleared("credits"), o.credits(Utc::now())?),
        ratelimits: if cleared("ratelimits") {
            Some(Vec::new())
        } else {
            o.limits()?
        },
    })
}
