//! Secrets shown once: a freshly minted key or endpoint secret waits here, in this process's
//! memory only, for the one page that shows it. Entries belong to the session that made them,
//! are removed by that first read, and expire unread after [`TTL`]. Nothing here is ever
//! written anywhere.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use align_keys::{Secret, SessionHash};

/// How long an unread secret waits.
pub(crate) const TTL: Duration = Duration::from_secs(600);
/// Most secrets waiting at once (a bound on memory, whatever clients do).
const MAX_ENTRIES: usize = 10_000;

/// The waiting secrets, by (session, object id).
#[derive(Default)]
pub(crate) struct ShownOnce {
    entries: Mutex<HashMap<(SessionHash, String), (Secret, Instant)>>,
}

impl std::fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShownOnce(..)")
    }
}

impl ShownOnce {
    /// Keeps `secret` for `session`'s next read of `id`.
    pub(crate) fn put(&self, session: SessionHash, id: String, secret: Secret) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, (_, at)| now.duration_since(*at) < TTL);
        if entries.len() >= MAX_ENTRIES {
            // The oldest goes: its page would have expired first anyway.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert((session, id), (secret, now));
    }

    /// Takes the secret waiting for `session` under `id`: the first call gets it, every later
    /// one (and any other session) gets `None`.
    pub(crate) fn take(&self, session: SessionHash, id: &str) -> Option<Secret> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (secret, at) = entries.remove(&(session, id.to_owned()))?;
        (now.duration_since(at) < TTL).then_some(secret)
    }

    /// Drops everything waiting for `session` (at sign-out).
    pub(crate) fn forget_session(&self, session: SessionHash) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|(s, _), _| *s != session);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_secret_is_read_once_and_only_by_its_session() {
        let once = ShownOnce::default();
        let (mine, theirs) = (SessionHash::of("a"), SessionHash::of("b"));
        once.put(mine, "key:1".into(), Secret::new("ako_x".into()));
        assert!(once.take(theirs, "key:1").is_none());
        assert_eq!(once.take(mine, "key:1").unwrap().expose(), "ako_x");
        assert!(once.take(mine, "key:1").is_none());
        once.put(mine, "key:2".into(), Secret::new("ako_y".into()));
        once.forget_session(mine);
        assert!(once.take(mine, "key:2").is_none());
    }
}
