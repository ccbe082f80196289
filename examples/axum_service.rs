//! An embedder's axum service with the reference server's pipeline, stacked from the crates'
//! public layers in the same order (`docs/embedding.md` walks through it):
//!
//! request id → request log → limits and timeout → key authentication (allow-list included)
//! → per-key rate, concurrency and quota → body → `Idempotency-Key` → routes.
//!
//! Creating an invoice also puts an `invoice.created` event in the webhook outbox
//! (`align-webhooks`), which the dispatcher delivers, signed, to the registered endpoints.
//!
//! Every refusal, axum's own 404 included, is the one envelope
//! `{"error":{"code","message","requestId"}}`, so a client cannot tell this service's pipeline
//! from the reference server's (`tests/differential.rs` checks that, row by row).
//!
//! Run it with `cargo run -p align-examples --example axum_service`, then call it with the
//! demo key it prints: `curl -H "Authorization: Bearer <key>" http://127.0.0.1:3000/api/v1/invoices`.

use std::net::SocketAddr;
use std::sync::Arc;

use align_audit::{AuditSink, MemorySink, RequestLogLayer};
use align_http::{
    ApiError, BodyLimitLayer, IdempotencyLayer, Lifecycle, LimitsLayer, PeerAddr, ReplyStore,
    RequestId, RequestIdLayer,
};
use align_keys::layer::{Authenticated, KeyAuthLayer, require};
use align_keys::{
    Environment, KeyId, KeyManager, MemoryKeyStore, NewKey, OrganizationId, Permission,
    Sha256Hasher, VerifiedKey, Vocabulary,
};
use align_ratelimit::{KeyLimits, KeyLimitsLayer};
use align_webhooks::{NewMessage, WebhookStore};
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tower::ServiceBuilder;

/// This service's own permissions (DESIGN §3's open vocabulary): keys carry these names, and
/// `invoices:*` grants both.
pub(crate) const INVOICES: Vocabulary = Vocabulary::new(&["invoices:read", "invoices:write"]);
/// Reading invoices.
pub(crate) const INVOICES_READ: Permission = INVOICES.permission("invoices:read");
/// Creating invoices.
pub(crate) const INVOICES_WRITE: Permission = INVOICES.permission("invoices:write");

/// The service's keys, stored with its vocabulary, in memory.
pub(crate) fn key_manager() -> KeyManager {
    let store = MemoryKeyStore::new().with_vocabulary(&INVOICES);
    KeyManager::new(Arc::new(store), Arc::new(Sha256Hasher))
}

/// The stores of a service that several instances share: keys, the webhook outbox and the
/// `Idempotency-Key` replies in the PostgreSQL database at `url` (each with its own tables and
/// migrations). `sealer` seals webhook secrets and kept replies (every instance needs the same
/// key; `Sealer::load_or_create` keeps it in a file).
pub(crate) async fn postgres_stores(
    url: &str,
    sealer: align_webhooks::Sealer,
) -> Result<(KeyManager, Arc<dyn WebhookStore>, Arc<ReplyStore>), Box<dyn std::error::Error>> {
    let keys = align_keys::PgKeyStore::connect(url)
        .await?
        .with_vocabulary(&INVOICES);
    let pool = keys.pool().clone();
    let webhooks = align_webhooks::PgWebhookStore::open(pool.clone(), sealer.clone()).await?;
    let replies = ReplyStore::postgres(pool, Arc::new(sealer)).await?;
    Ok((
        KeyManager::new(Arc::new(keys), Arc::new(Sha256Hasher)),
        Arc::new(webhooks),
        Arc::new(replies),
    ))
}

/// The pipeline's settings: the reference server's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Requests per key and minute unless the key has its own rate.
    pub(crate) per_minute: u32,
    /// Requests of one key in flight at once.
    pub(crate) max_concurrent: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            per_minute: 600,
            max_concurrent: 32,
        }
    }
}

/// The service: `GET /api/v1/invoices` (needs `invoices:read`) lists the calling customer's
/// invoices, `POST /api/v1/invoices` (needs `invoices:write`) makes one for them, `GET
/// /api/v1/me` names the calling key and its customer. A key's customer is its `ownerId`: no
/// side table. `log` is the request log: `RequestLogLayer::new(sink)` folds floods of
/// rejections into summary entries (past the first 100 of one client in a second), which its
/// sweeper writes ([`RequestLogLayer::start_sweeper`], as `main` does).
pub(crate) fn app(
    keys: &KeyManager,
    log: RequestLogLayer,
    webhooks: Arc<dyn WebhookStore>,
    replies: Arc<ReplyStore>,
    settings: Settings,
) -> Result<Router, align_ratelimit::Error> {
    let limits = Arc::new(
        KeyLimits::<KeyId>::builder(settings.per_minute)
            .max_concurrent(settings.max_concurrent)
            .build()?,
    );
    // A verified key is limited under its id, at its own rate when it has one.
    let key_of = |ext: &axum::http::Extensions| {
        ext.get::<VerifiedKey>()
            .map(|k| (k.record().id, k.record().rate_limit_per_minute))
    };
    let pipeline = ServiceBuilder::new()
        // axum's `ConnectInfo` becomes the `PeerAddr` the key and log layers read.
        .map_request(PeerAddr::from_connect_info(
            |c: &ConnectInfo<SocketAddr>| c.0,
        ))
        .layer(RequestIdLayer)
        .layer(log)
        .layer(LimitsLayer::default())
        .layer(KeyAuthLayer::new(Arc::clone(keys.verifier())))
        .layer(KeyLimitsLayer::new(limits, key_of))
        .layer(BodyLimitLayer::default())
        .layer(IdempotencyLayer::new(replies));
    Ok(Router::new()
        .route(
            "/api/v1/invoices",
            get(list_invoices).route_layer(require(INVOICES_READ)),
        )
        .route(
            "/api/v1/invoices",
            axum::routing::post(create_invoice).route_layer(require(INVOICES_WRITE)),
        )
        .route("/api/v1/me", get(me))
        .fallback(not_found)
        .with_state(webhooks)
        .layer(pipeline))
}

async fn list_invoices(Extension(caller): Extension<Authenticated>) -> Json<Value> {
    let customer = caller.key.record().owner_id.clone();
    Json(json!({ "data": [], "customer": customer }))
}

async fn create_invoice(
    State(webhooks): State<Arc<dyn WebhookStore>>,
    Extension(caller): Extension<Authenticated>,
    Extension(id): Extension<RequestId>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(invoice) = serde_json::from_slice::<Value>(&body) else {
        return ApiError::invalid_request("the body must be a JSON object").into_axum(Some(&id));
    };
    let key = caller.key.record();
    let created =
        json!({ "id": uuid::Uuid::new_v4(), "customer": key.owner_id, "invoice": invoice });
    // The event goes to the outbox; the dispatcher delivers it, signed, with retries.
    let event = NewMessage::new(
        format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "invoice.created",
        key.environment,
        created.clone(),
    );
    if let Err(e) = webhooks.enqueue(event, chrono::Utc::now()).await {
        return ApiError::from(e).into_axum(Some(&id));
    }
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn me(Extension(key): Extension<VerifiedKey>) -> Json<Value> {
    let k = key.record();
    Json(json!({
        "keyName": k.name,
        "keyPrefix": k.prefix,
        "environment": k.environment,
        "customer": k.owner_id,
    }))
}

/// axum's fallback in the envelope, like every other refusal.
async fn not_found(req: Request<axum::body::Body>) -> Response {
    ApiError::not_found().into_axum(req.extensions().get::<RequestId>())
}

/// Renders an [`ApiError`] as an axum response.
trait IntoAxum {
    fn into_axum(self, id: Option<&RequestId>) -> Response;
}

impl IntoAxum for ApiError {
    fn into_axum(self, id: Option<&RequestId>) -> Response {
        self.to_response(id.map_or("", RequestId::as_str))
    }
}

/// A key for the demo customer `cus_demo` (a real service mints keys in its own sign-up or
/// admin flow), minted by the service itself: no user, every permission of its vocabulary.
pub(crate) async fn demo_key(
    keys: &KeyManager,
) -> Result<align_keys::MintedKey, align_keys::Error> {
    let mut new = NewKey::new("demo", OrganizationId::new());
    new.environment = Environment::Sandbox;
    new.permissions = Some(INVOICES.all());
    new.owner_id = Some("cus_demo".into());
    keys.mint(new, chrono::Utc::now()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `DATABASE_URL=postgres://…` runs the same service over PostgreSQL.
    let (keys, webhooks, replies) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let sealer = align_webhooks::Sealer::new(align_webhooks::SealingKey::generate()?);
            postgres_stores(&url, sealer).await?
        }
        Err(_) => (
            key_manager(),
            Arc::new(align_webhooks::MemoryWebhookStore::new()) as Arc<dyn WebhookStore>,
            Arc::new(ReplyStore::memory()),
        ),
    };
    let demo = demo_key(&keys).await?;
    let sink: Arc<dyn AuditSink> = Arc::new(MemorySink::new());
    // The request log folds floods of rejections into summary entries; its sweeper writes a
    // summary once its second is over.
    let log = RequestLogLayer::new(Arc::clone(&sink));
    let sweeper = log.start_sweeper();
    let router = app(&keys, log, webhooks, replies, Settings::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!("demo key (sandbox, shown once): {}", demo.token.expose());
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    // The last added stops first: the sweeper writes the summaries still open, then the log
    // commits everything queued.
    Lifecycle::new()
        .on_shutdown("request log", move || async move {
            let _ = sink.close().await;
        })
        .on_shutdown("request-log folding", move || sweeper.shutdown())
        .shutdown()
        .await;
    Ok(())
}
