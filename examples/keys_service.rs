//! A service that issues and checks API keys with `align-keys` over SQLite.
//!
//! Run it with `cargo run -p align-examples --example keys_service`. It creates a throwaway
//! database, mints a key (shown once), verifies it the way a request handler would, checks
//! what the key may do, revokes it, and shows what a log line looks like after redaction.

use std::sync::Arc;

use align_keys::policy::{Caller, Target};
use align_keys::store::Directory;
use align_keys::{
    Environment, KeyManager, NewKey, Organization, Permission, Redactor, Role, Sha256Hasher,
    SqliteKeyStore, User, Verification,
};
use chrono::Utc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("align-example-{}", std::process::id()));
    // Key hashes and metadata: a directory only this user can open (0700, files 0600).
    align_keys::files::create_private_dir(&dir)?;
    let store = Arc::new(SqliteKeyStore::open(dir.join("keys.db")).await?);

    // An organisation and its admin: the authority every key hangs from.
    let now = Utc::now();
    let mut org = Organization::new("Acme", now);
    org.security_contact = Some("security@acme.example".into());
    store.create_organization(&org).await?;
    let admin = User::new(org.id, "admin@acme.example", Role::Admin, now);
    store.create_user(&admin).await?;

    let keys = KeyManager::new(store.clone(), Arc::new(Sha256Hasher));
    // Write last-used times in the background, in batches.
    let flusher = keys
        .verifier()
        .spawn_last_used_flusher(std::time::Duration::from_secs(1));

    let minted = keys
        .mint(
            NewKey {
                created_by: admin.id,
                ..NewKey::new("prod-sync", org.id)
            },
            Utc::now(),
        )
        .await?;
    // The only time the token is shown. The database keeps its SHA-256, never the token.
    println!(
        "minted {} (copy it now: it is shown once)",
        minted.record.prefix
    );
    let token = minted.token.expose().to_owned();

    // What a request handler does with `Authorization: Bearer <token>`.
    match keys.verifier().verify(&token, Utc::now()).await? {
        Verification::Valid(key) => {
            let creator = store.get_user(key.record().created_by).await?;
            let role = creator.map_or(Role::Viewer, |u| u.role);
            let caller = Caller {
                key: key.record(),
                creator_role: role,
            };
            let target = Target {
                organization_id: org.id,
                project_id: None,
                environment: Some(Environment::Live),
            };
            let may_write = caller.authorize(Permission::KeysWrite, target).is_ok();
            println!("valid: {} may write keys: {may_write}", key.record().prefix);
        }
        other => println!("refused: {other:?}"),
    }

    keys.revoke(minted.record.id, Utc::now()).await?;
    let after = keys.verifier().verify(&token, Utc::now()).await?;
    println!(
        "after revoke: {}",
        if matches!(after, Verification::Revoked(_)) {
            "revoked"
        } else {
            "?"
        }
    );

    let log_line = format!("GET /api/v1/me Authorization: Bearer {token} 200");
    println!("logged as: {}", Redactor::new().redact_text(&log_line));

    flusher.abort();
    keys.verifier().flush_last_used().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
