//! The Align reference API server: hyper 1.x over one SQLite file.
//!
//! [`Server::start`] prepares the data directory (bootstrapping an empty one with an
//! organisation, its admin and a first key), [`Server::run`] serves until shutdown. The request
//! path reads top to bottom in `app.rs`; routes and handlers live in `routes/`; HTTP status
//! codes and error codes are decided in one place, [`ApiError`].

mod anchor;
mod app;
mod at_rest;
mod audit;
mod bootstrap;
pub mod config;
mod connections;
mod console;
mod deployment;
mod disk;
mod docs;
mod error;
mod events;
mod fold;
mod http;
mod leaks;
mod limits;
mod metrics;
mod notify;
#[cfg(test)]
mod pipeline_props;
mod principal;
pub mod privacy;
pub mod retention;
mod routes;
mod serve;
mod state;
mod tls;

pub use align_http::ReplyStore;
pub use anchor::{ANCHOR_KEY_FILE, ANCHOR_LOG_FILE, audit_anchor_key, audit_anchor_log_path};
pub use at_rest::{open_sealed, prepare_data_dir};
pub use bootstrap::{Bootstrap, audit_sink_config, bootstrap, is_initialised};
pub use config::{Config, ConsoleSettings, Database, LogSettings, Overrides, RetentionSettings};
pub use deployment::Deployment;
pub use error::{ApiError, Error};
/// The key store hook that writes `api_key.*` events to the webhook outbox in the change's
/// transaction: `SqliteKeyStore::open(path).await?.with_event_hook(Arc::new(OutboxHook))`,
/// after `SqliteWebhookStore::open(path)` has created the outbox tables.
pub use events::OutboxHook;
pub use http::cursor_position;
pub use routes::keyspaces::{key_view as keyspace_key_view, keyspace_view};
pub use routes::{Access, Listing, ROUTE_TABLE, Route};
pub use serve::{Backends, Server, shutdown_signal};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
