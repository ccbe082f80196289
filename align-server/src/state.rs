//! What every request shares: the key manager, the limiter, settings, and a short-lived cache
//! of users' roles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_keys::store::KeyStore;
use align_keys::{KeyId, KeyManager, Role, UserId};
use align_ratelimit::{KeyedLimiter, Rate, SlidingWindow};

use crate::config::Config;
use crate::error::{ApiError, Error};

/// How long a looked-up role is trusted. Role changes made through this server apply at once;
/// changes made by another process (the CLI) within this delay.
const ROLE_TTL: Duration = Duration::from_secs(1);

/// Shared server state.
pub(crate) struct AppState {
    /// Settings in force.
    pub(crate) config: Config,
    /// Keys: minting, verification, revocation.
    pub(crate) keys: KeyManager,
    /// Per-key sliding-window limiter.
    pub(crate) limiter: KeyedLimiter<KeyId, SlidingWindow>,
    roles: Mutex<HashMap<UserId, (Role, Instant)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state over an opened key store.
    pub(crate) fn new(config: Config, keys: KeyManager) -> Result<Self, Error> {
        let rate = Rate::per_minute(u64::from(config.rate_limit_per_minute));
        let algorithm = SlidingWindow::new(rate).map_err(|e| Error::Setting {
            key: "ratelimit.per_minute".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            config,
            keys,
            limiter: KeyedLimiter::new(algorithm),
            roles: Mutex::default(),
        })
    }

    /// The key store.
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        self.keys.store()
    }

    /// The current role of `user`; a user who no longer exists counts as a viewer.
    pub(crate) async fn role_of(&self, user: UserId) -> Result<Role, ApiError> {
        let now = Instant::now();
        {
            let roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((role, at)) = roles.get(&user) {
                if now.duration_since(*at) < ROLE_TTL {
                    return Ok(*role);
                }
            }
        }
        let role = self
            .store()
            .get_user(user)
            .await?
            .map_or(Role::Viewer, |u| u.role);
        let mut roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
        if roles.len() > 100_000 {
            roles.clear();
        }
        roles.insert(user, (role, now));
        Ok(role)
    }
}
