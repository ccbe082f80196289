//! Per-key rate, quota and concurrency limits as the server composes them
//! (`align_ratelimit::KeyLimits`): in memory (one instance), or shared by every instance through
//! Redis (`ratelimit.redis_url`) with a failure policy (`ratelimit.redis_failure`). The back-end
//! is chosen once, here, at start-up.

use align_keys::KeyId;
use align_ratelimit::KeyLimits;

use crate::config::Config;
use crate::error::Error;

/// The limits `config` asks for (must run inside the tokio runtime when Redis is set).
pub(crate) fn build(config: &Config) -> Result<KeyLimits<KeyId>, Error> {
    let mut builder = KeyLimits::builder(config.rate_limit_per_minute)
        .max_concurrent(config.max_concurrent_per_key)
        .quota_per_day(config.quota_per_day)
        .quota_per_month(config.quota_per_month);
    if let Some(url) = &config.redis.url {
        builder = builder.shared(shared::compose(config, url)?);
    }
    builder.build().map_err(|e| {
        // Name the setting that holds the zero.
        let key = if config.rate_limit_per_minute == 0 {
            "ratelimit.per_minute"
        } else if config.max_concurrent_per_key == 0 {
            "limits.max_concurrent_per_key"
        } else if config.quota_per_day == Some(0) {
            "ratelimit.quota_per_day"
        } else {
            "ratelimit.quota_per_month"
        };
        Error::Setting {
            key: key.into(),
            reason: e.to_string(),
        }
    })
}

#[cfg(not(feature = "redis"))]
mod shared {
    use super::*;
    use crate::config::RedisUrl;
    use align_ratelimit::ConcurrencyLimiter;

    pub(super) fn compose(
        _: &Config,
        _: &RedisUrl,
    ) -> Result<fn(ConcurrencyLimiter<KeyId>) -> align_ratelimit::Sharing<KeyId>, Error> {
        Err(Error::Setting {
            key: "ratelimit.redis_url".into(),
            reason: "this build of the server has no Redis support (cargo feature `redis`)".into(),
        })
    }
}

#[cfg(feature = "redis")]
mod shared;

pub(crate) mod named;
