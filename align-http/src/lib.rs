//! The request pipeline every Align service shares, as `tower` layers: what the reference
//! server does to every request before its handlers, for any axum, hyper or tower service.
//!
//! The pipeline, outside in (each row a layer; the crate that owns it):
//!
//! | layer | crate | refuses with |
//! |---|---|---|
//! | [`RequestIdLayer`] | `align-http` | — (every response gets `X-Request-Id`) |
//! | `RequestLogLayer` | `align-audit` | — (every request gets an entry) |
//! | [`LimitsLayer`] | `align-http` | `400` headers too large, `413`, `504 timeout` |
//! | `KeyAuthLayer` | `align-keys` | `400 ambiguous_credentials`, `401 …`, `403` allow-list |
//! | `RateLimitLayer` | `align-ratelimit` | `429 rate_limit` |
//! | `ConcurrencyLayer` | `align-ratelimit` | `429 concurrency_limit` |
//! | `QuotaLayer` | `align-ratelimit` | `429 quota_exceeded` |
//! | [`BodyLimitLayer`] | `align-http` | `413 payload_too_large` |
//! | [`IdempotencyLayer`] | `align-http` | `409 idempotency_conflict`, `422 idempotency_key_reused` |
//!
//! Every refusal is an [`ApiError`], rendered by [`ApiError::to_response`] as the one envelope
//! `{"error":{"code","message","requestId"}}`, with its [`Rejection`] (status and code) in the
//! response's extensions for the layers outside it. `docs/embedding.md` stacks them in an axum service.

mod error;
pub mod idempotency;
mod lifecycle;
mod limits;
mod peer;
mod request_id;

pub use error::{ApiError, Rejection};
pub use idempotency::{IdempotencyLayer, ReplyStore, Seal};
pub use lifecycle::Lifecycle;
pub use limits::{
    BodyLimit, BodyLimitLayer, Limits, LimitsFuture, LimitsLayer, MAX_BODY_BYTES, MAX_HEADER_BYTES,
    REQUEST_TIMEOUT, read_body,
};
pub use peer::PeerAddr;
pub use request_id::{RequestId, RequestIdFuture, RequestIdLayer, RequestIdService, X_REQUEST_ID};

/// What can go wrong in this crate outside a request (requests fail as [`ApiError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The shared reply store could not be opened or migrated.
    #[error("idempotency store: {0}")]
    Store(String),
    /// A reply could not be sealed or opened.
    #[error("idempotency store: cannot seal or open a reply: {0}")]
    Seal(String),
}

// Compiles and runs the README's example as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
