//! An embedder's axum service protected by Align's tower layers: request logging, API-key
//! authentication and per-key rate limits, stacked as any tower middleware.
//!
//! Run it with `cargo run -p align-examples --example axum_service`, then call it with the
//! demo key it prints: `curl -H "Authorization: Bearer <key>" http://127.0.0.1:3000/whoami`.

use std::sync::Arc;

use align_audit::{AuditSink, MemorySink, RequestLogLayer};
use align_keys::layer::KeyAuthLayer;
use align_keys::{
    Environment, KeyId, KeyManager, MemoryKeyStore, NewKey, OrganizationId, Scope, Sha256Hasher,
    UserId, VerifiedKey,
};
use align_ratelimit::{KeyedLimiter, Rate, RateLimitLayer, RateLimiter, SlidingWindow};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

/// The service: `GET /whoami` answers with the calling key's name and prefix.
///
/// Layers run outside in: the request log sees every request (and the caller, which the
/// key layer reports on the response); the key layer refuses requests without a valid key;
/// the rate limit counts each verified key's requests.
pub(crate) fn app(
    keys: &KeyManager,
    log: Arc<dyn AuditSink>,
    per_minute: u64,
) -> Result<Router, align_ratelimit::Error> {
    let limiter: Arc<dyn RateLimiter<KeyId>> = Arc::new(KeyedLimiter::new(SlidingWindow::new(
        Rate::per_minute(per_minute),
    )?));
    let rate_limit = RateLimitLayer::new(limiter, |_headers, extensions| {
        extensions.get::<VerifiedKey>().map(|k| k.record().id)
    });
    Ok(Router::new()
        .route("/whoami", get(whoami))
        .layer(rate_limit)
        .layer(KeyAuthLayer::new(Arc::clone(keys.verifier())))
        .layer(RequestLogLayer::new(log)))
}

async fn whoami(Extension(key): Extension<VerifiedKey>) -> Json<Value> {
    let k = key.record();
    Json(json!({ "keyName": k.name, "keyPrefix": k.prefix, "environment": k.environment }))
}

/// A key for the demo (a real service mints keys through its own admin flow).
pub(crate) async fn demo_key(
    keys: &KeyManager,
) -> Result<align_keys::MintedKey, align_keys::Error> {
    let new = NewKey {
        name: "demo".into(),
        organization_id: OrganizationId::new(),
        scope: Scope::Organization,
        permissions: None,
        environment: Environment::Sandbox,
        created_by: UserId::new(),
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: None,
        meta: None,
    };
    keys.mint(new, chrono::Utc::now()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = KeyManager::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher));
    let demo = demo_key(&keys).await?;
    let log: Arc<dyn AuditSink> = Arc::new(MemorySink::new());
    let router = app(&keys, log, 600)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!("demo key (sandbox, shown once): {}", demo.token.expose());
    axum::serve(listener, router).await?;
    Ok(())
}
