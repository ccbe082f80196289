//! Key space keys' named limits (DESIGN §12) over `align_ratelimit`'s window sets: in memory
//! for one instance, or in Redis (`ratelimit.redis_url`) so that every instance counts the same
//! windows. A named limit is exact: while Redis does not answer, a verification that would
//! spend on one fails (`503 unavailable`) rather than admit uncounted.

use std::sync::Arc;
use std::time::Duration;

use align_keys::KeyId;
use align_keys::keyspace::{LimitCheck, LimitState, LimitsOutcome, NamedLimiter};
use align_ratelimit::{MemoryWindowSet, WindowLimit, WindowSet};
use async_trait::async_trait;

use crate::config::Config;
use crate::error::Error;

/// The server's named limiter: the window set, and the in-memory one to sweep (if that is it).
pub(crate) struct NamedLimits {
    windows: Arc<dyn WindowSet>,
    memory: Option<Arc<MemoryWindowSet>>,
}

impl NamedLimits {
    /// Windows in this process's memory.
    pub(crate) fn in_memory() -> Self {
        let memory = Arc::new(MemoryWindowSet::new());
        Self {
            windows: Arc::clone(&memory) as Arc<dyn WindowSet>,
            memory: Some(memory),
        }
    }

    /// The windows `config` asks for: Redis when `ratelimit.redis_url` is set (must run inside
    /// the tokio runtime), else memory.
    pub(crate) fn build(config: &Config) -> Result<Self, Error> {
        match &config.redis.url {
            None => Ok(Self::in_memory()),
            Some(url) => redis(config, url),
        }
    }

    /// Drops the windows that have ended; how many.
    pub(crate) fn evict_idle(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.evict_idle())
    }
}

#[cfg(feature = "redis")]
fn redis(config: &Config, url: &crate::config::RedisUrl) -> Result<NamedLimits, Error> {
    let options = align_ratelimit::RedisOptions {
        prefix: config.redis.prefix.clone(),
        ..align_ratelimit::RedisOptions::default()
    };
    let store =
        align_ratelimit::RedisStore::open(url.expose(), options).map_err(|e| Error::Setting {
            key: "ratelimit.redis_url".into(),
            reason: e.to_string(),
        })?;
    Ok(NamedLimits {
        windows: Arc::new(align_ratelimit::RedisWindowSet::new(&store)),
        memory: None,
    })
}

#[cfg(not(feature = "redis"))]
fn redis(_: &Config, _: &crate::config::RedisUrl) -> Result<NamedLimits, Error> {
    Err(Error::Setting {
        key: "ratelimit.redis_url".into(),
        reason: "this build of the server has no Redis support (cargo feature `redis`)".into(),
    })
}

#[async_trait]
impl NamedLimiter for NamedLimits {
    async fn check(
        &self,
        key: KeyId,
        checks: &[LimitCheck<'_>],
    ) -> align_keys::Result<LimitsOutcome> {
        let group = key.to_string();
        let limits: Vec<WindowLimit<'_>> = checks
            .iter()
            .map(|c| {
                WindowLimit::new(
                    &c.limit.name,
                    c.limit.limit,
                    Duration::from_secs(c.limit.duration_seconds),
                )
                .with_cost(c.cost)
            })
            .collect();
        let decision = self
            .windows
            .check(&group, &limits)
            .await
            .map_err(|e| align_keys::Error::Limiter(e.to_string()))?;
        let states = checks
            .iter()
            .zip(decision.outcomes.iter())
            .map(|(c, o)| LimitState {
                name: c.limit.name.clone(),
                limit: o.limit,
                remaining: o.remaining,
                reset: o.reset_secs(),
            })
            .collect();
        Ok(LimitsOutcome {
            allowed: decision.allowed,
            states,
        })
    }
}
