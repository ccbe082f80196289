//! Standard Webhooks signing, durable delivery and a receiver kit.
//!
//! - **Signing** ([`SigningSecret`], [`SigningKey`], [`EndpointSecrets`]): Standard Webhooks
//!   v1 (HMAC-SHA256, `whsec_` secrets) and v1a (ed25519, `whsk_`/`whpk_` keys), with secret
//!   rotation during which every delivery carries both signatures.
//! - **Verification** ([`WebhookVerifier`], the [`Verifier`] trait): constant-time, with a
//!   timestamp tolerance (default 5 minutes, both directions).
//! - **Endpoint policy** ([`UrlPolicy`], [`Resolver`]): https for live endpoints (plain http
//!   to a local receiver only with the development setting
//!   [`UrlPolicy::allow_http_targets`]), no credentials or secret-looking query parameters, no
//!   private or reserved destinations, checked at registration and again at delivery.
//! - **Durable outbox** ([`WebhookStore`], [`MemoryWebhookStore`], `SqliteWebhookStore` with
//!   feature `sqlite`, `PgWebhookStore` with feature `postgres`): enqueue fans a message out
//!   to matching endpoints, idempotently by event id, and can join the caller's SQLite or
//!   PostgreSQL transaction; on PostgreSQL several dispatchers share the outbox.
//! - **Secrets at rest** ([`Sealer`], [`SealingKey`]): the SQLite and PostgreSQL stores keep
//!   endpoint keys sealed with AES-256-GCM under a key kept outside the database (a `0600`
//!   key file), bound to their endpoint, and rotatable.
//! - **Dispatcher** (`Dispatcher`, `DispatcherConfig`; feature `dispatch`, on by default):
//!   hyper over rustls (ring),
//!   bounded concurrency, per-attempt timeout, retries with jitter and `Retry-After`, 410 and
//!   long failure runs disable the endpoint, a per-endpoint throughput cap.
//! - **Receiver kit** ([`WebhookReceiver`], the [`Deduplicator`] trait,
//!   [`MemoryDeduplicator`], `SqliteDeduplicator` with feature `sqlite`): verify, then
//!   de-duplicate on `webhook-id`.
//!
//! Nothing in this crate prints secret material: every key type's `Debug` is redacted and no
//! error carries a secret.

#[cfg(feature = "dispatch")]
mod dispatch;
mod error;
mod model;
mod policy;
mod receiver;
mod rotation;
mod sealing;
mod secret;
mod store;
mod verify;

#[cfg(feature = "dispatch")]
pub use dispatch::{
    Dispatcher, DispatcherConfig, ENDPOINT_DISABLED_EVENT, ENV_ALLOW_HTTP_TARGETS,
    ENV_ALLOW_PRIVATE_TARGETS, ENV_RETRY_SCHEDULE, RetrySchedule, ScheduleParseError,
};
pub use error::{Error, ObjectKind, Result};
pub use model::{
    Attempt, Delivery, DeliveryId, DeliveryStatus, DueDelivery, Endpoint, EndpointId, Enqueued,
    EventFilter, MAX_RECORDED_BODY, Message, MessageId, NewMessage, Next, Owner,
};
pub use policy::{AddressClass, Resolver, SystemResolver, UrlDefect, UrlPolicy, classify};
pub use receiver::{DEFAULT_DEDUP_TTL, Deduplicator, MemoryDeduplicator, Receipt, WebhookReceiver};
pub use rotation::{DEFAULT_GRACE, EndpointSecrets};
pub use sealing::{SEALED_PREFIX, SEALING_KEY_BYTES, Sealer, SealingKey, is_sealed, sealed_key_id};
pub use secret::{
    DEFAULT_SECRET_BYTES, EndpointKey, MAX_SECRET_BYTES, MIN_SECRET_BYTES, SECRET_PREFIX,
    SIGNING_KEY_PREFIX, SigningKey, SigningSecret, VERIFYING_KEY_PREFIX, VerifyingKey,
};
#[cfg(feature = "postgres")]
pub use store::PgWebhookStore;
pub use store::{
    ClaimSkip, ERASED, MemoryWebhookStore, MessagePage, MessageQuery, OutboxStats, Purged,
    WebhookStore,
};
#[cfg(feature = "sqlite")]
pub use store::{SqliteDeduplicator, SqliteWebhookStore, enqueue_in_transaction};
pub use verify::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerificationKey,
    VerifiedWebhook, Verifier, WebhookVerifier,
};
