//! A typed async client of the Align HTTP API (`docs/openapi.yaml`, DESIGN §4 and §11).
//!
//! One method per operation of the spec, named after its `operationId` in snake case
//! ([`OPERATIONS`] lists them), with typed bodies ([`types`]) and one error type
//! ([`Error`]) whose API variant carries the status, the error code, the message and the
//! request id. Every `POST` carries an `Idempotency-Key` (a random UUID v4) that stays the
//! same across the retries of that call; `429` and `503` answers are retried after their
//! `Retry-After` (plus jitter) up to a bounded number of attempts, connection failures only
//! for calls that are safe to repeat (`GET`, `DELETE`, and keyed `POST`s); no other `4xx` is
//! ever retried. List operations come as one page (`list_keys`) or as a stream of items
//! following `nextCursor` (`list_keys_stream`). [`Client::environment`] tells whether the key
//! is live or sandbox, and [`ClientBuilder::require_environment`] refuses to send anything
//! with a key of the other environment.
//!
//! ```no_run
//! use align_client::{Client, CreateKey, Environment};
//! use futures_util::TryStreamExt;
//!
//! # async fn run() -> Result<(), align_client::Error> {
//! let client = Client::builder("http://127.0.0.1:8080")
//!     .api_key(std::env::var("ALIGN_API_KEY").unwrap_or_default())
//!     .require_environment(Environment::Sandbox)
//!     .build()?;
//! let minted = client.create_key(&CreateKey::organization("ci")).await?;
//! println!("minted {} (token shown once)", minted.resource.key_prefix);
//! let keys: Vec<_> = client.list_keys_stream(None).try_collect().await?;
//! println!("{} keys", keys.len());
//! # Ok(())
//! # }
//! ```

mod error;
mod ops;
mod transport;
pub mod types;

pub use error::{ApiError, ERROR_CODES, Error, ErrorCode};
pub use http::Method;
pub use ops::{ItemStream, OPERATIONS, github_report_body};
pub use transport::{Client, ClientBuilder, RawResponse};
pub use types::*;

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
