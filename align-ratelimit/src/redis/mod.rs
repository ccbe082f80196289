//! Limits shared by several instances of a service through one Redis (feature `redis`).
//!
//! [`RedisStore`] is the connection (a `redis` connection manager: one multiplexed connection,
//! re-established after a failure) plus a key prefix. [`RedisSlidingWindow`], [`RedisQuota`],
//! [`RedisWindowSet`] and [`RedisConcurrencyLimiter`] each decide in one Lua script run on the
//! server, so decisions are atomic however many instances share a key, and read the server's
//! clock (`TIME`), so instances whose own clocks disagree still agree on every window.

mod concurrency;
mod quota;
mod window;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;

use crate::error::{Error, Result};

pub use concurrency::{RedisConcurrencyLimiter, RedisPermit};
pub use quota::RedisQuota;
pub use window::RedisSlidingWindow;
pub use windows::RedisWindowSet;

/// How to reach Redis: the key prefix and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Put before every key this crate writes (default `align:rl:`), so several services or
    /// test runs can share one Redis without meeting.
    pub prefix: String,
    /// Longest wait for a connection or an answer (default 500 ms); past it the check fails
    /// with [`Error::Unavailable`] and the service applies its failure policy.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "align:rl:".to_owned(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// A connection to the Redis holding shared limiter state, and the prefix of its keys.
///
/// Cheap to clone (every clone shares one multiplexed connection). The connection is opened on
/// first use and re-opened after a failure, so a service can start while Redis is down; each
/// check then fails with [`Error::Unavailable`] until Redis answers again.
///
/// ```no_run
/// use align_ratelimit::{RedisOptions, RedisStore};
///
/// # async fn run() -> Result<(), align_ratelimit::Error> {
/// // Inside a tokio runtime.
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// store.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// `host:port/db`, never the password: what errors and logs name.
    target: Arc<str>,
}

impl RedisStore {
    /// Prepares a connection to the Redis at `url` (`redis://[user:password@]host:port/db`
    /// or `redis+unix:///path`); connects lazily, on the first check.
    ///
    /// Must be called within a tokio runtime (the connection lives on it). TLS (`rediss://`)
    /// is not built in: reach a remote Redis over a private network or a TLS tunnel.
    pub fn open(url: &str, options: RedisOptions) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidStore(
                "a Redis store must be opened inside a tokio runtime".to_owned(),
            ));
        }
        // The URL may hold a password: errors describe it, never quote it.
        let client = redis::Client::open(url).map_err(|e| {
            Error::InvalidStore(format!("not a usable redis:// URL ({})", e.category()))
        })?;
        let info = client.get_connection_info();
        let target: Arc<str> = format!("{}/{}", info.addr(), info.redis_settings().db()).into();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            // Retries are the caller's business (its failure policy probes again later): a
            // request should not wait through a reconnection back-off.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| unavailable(&target, &e))?;
        Ok(Self {
            conn,
            prefix: options.prefix.into(),
            target,
        })
    }

    /// The prefix of every key this store writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the store is (`host:port/db`; never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error(&e))
    }

    /// A handle for one command.
    fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Redis's failure as the crate's error, naming the store but not its credentials.
    fn error(&self, e: &redis::RedisError) -> Error {
        unavailable(&self.target, e)
    }
}

fn unavailable(target: &str, e: &redis::RedisError) -> Error {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection failed".to_owned()
    } else {
        // Server-side errors (a script error, NOAUTH, OOM): kind and code, no detail that could
        // echo an argument.
        format!("{} ({})", e.category(), e.code().unwrap_or("no code"))
    };
    Error::Unavailable {
        store: target.to_owned(),
        reason,
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Wraps a user's key in a hash tag, so one key's Redis keys live in one cluster slot.
fn tagged(namespace: &str, key: &dyn std::fmt::Display) -> String {
    format!("{namespace}{{{key}}}")
}
