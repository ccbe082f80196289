//! [`RedisWindowSet`]: named fixed-window limits, their counters in Redis.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::RedisStore;
use crate::error::{Error, Result};
use crate::future::LimitFuture;
use crate::windows::{WindowLimit, WindowSet, WindowsDecision, finish, found, validate};

/// The script, loaded once per Redis (EVALSHA; EVAL and SCRIPT LOAD when Redis lacks it).
static WINDOWS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("windows.lua")));

/// Keys [`forget`](RedisWindowSet::forget) asks `SCAN` to look at per round trip.
const SCAN_COUNT: usize = 1_000;

/// A [`WindowSet`] with its counters in Redis: exact across every instance sharing the Redis.
///
/// Each check is one atomic Lua script over all the limits it names, on the Redis server's
/// clock (`TIME`), so instances with skewed clocks still agree on every window and, however
/// many instances check one group at once, no counter admits more than its limit in a window.
/// A counter is the integer `<prefix>w:<group length>:<group>:<name in hex>:<window ms>:<window
/// number>` (the group's length in bytes and the hex name keep keys apart whatever characters
/// groups and names hold), written only when a check spends on it and expiring a second after
/// its window ends. Counts are exact up to 2^63 - 1 per window.
///
/// ```no_run
/// use std::time::Duration;
/// use align_ratelimit::{RedisOptions, RedisStore, RedisWindowSet, WindowLimit};
///
/// # async fn run() -> Result<(), align_ratelimit::Error> {
/// let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
/// let set = RedisWindowSet::new(&store);
/// let limits = [
///     WindowLimit::new("requests", 100, Duration::from_secs(60)),
///     WindowLimit::new("daily", 10_000, Duration::from_secs(86_400)),
/// ];
/// let decision = set.check("key_1", &limits).await?;
/// if !decision.allowed {
///     // RATE_LIMITED; decision.refused_by names the limit
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisWindowSet {
    store: RedisStore,
    /// `{prefix}w:`, computed once.
    namespace: Arc<str>,
}

impl RedisWindowSet {
    /// Named limits with their counters on `store`.
    pub fn new(store: &RedisStore) -> Self {
        Self {
            store: store.clone(),
            namespace: format!("{}w:", store.prefix()).into(),
        }
    }

    /// Checks `limits` of `group` now on the Redis server's clock: all or nothing (see
    /// [`WindowSet`]).
    pub async fn check(&self, group: &str, limits: &[WindowLimit<'_>]) -> Result<WindowsDecision> {
        validate(limits)?;
        if limits.is_empty() {
            return Ok(finish(limits, Vec::new()));
        }
        let mut invocation = WINDOWS.prepare_invoke();
        let group_base = self.group_base(group);
        for l in limits {
            let mut key = group_base.clone();
            for byte in l.name.bytes() {
                // Writing to a String cannot fail.
                let _ = write!(key, "{byte:02x}");
            }
            let _ = write!(key, ":{}", l.window_ms());
            let most = l.limit.checked_sub(l.cost).map(|m| m.to_string());
            invocation
                .key(key)
                .arg(l.window_ms())
                .arg(l.cost)
                .arg(most.unwrap_or_default());
        }
        let reply: Vec<String> = invocation
            .invoke_async(&mut self.store.connection())
            .await
            .map_err(|e| self.store.error(&e))?;
        self.decision(limits, &reply)
            .ok_or_else(|| Error::Unavailable {
                store: self.store.target().to_owned(),
                reason: "the named-limits script answered in an unexpected shape".to_owned(),
            })
    }

    /// Forgets every counter of `group` (e.g. a deleted key).
    ///
    /// Counters end with their windows anyway; this finds the group's live ones with `SCAN`
    /// (a walk over the whole keyspace, some round trips) and unlinks them. A check of the
    /// group running meanwhile may leave a counter behind.
    pub async fn forget(&self, group: &str) -> Result<()> {
        let pattern = format!("{}*", glob_escape(&self.group_base(group)));
        let mut conn = self.store.connection();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.store.error(&e))?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| self.store.error(&e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// `<prefix>w:<group length>:<group>:`, the start of every counter of `group`.
    fn group_base(&self, group: &str) -> String {
        format!("{}{}:{group}:", self.namespace, group.len())
    }

    /// The decision from the script's reply, `None` if the reply is not what the script sends
    /// or disagrees with the rule it applied.
    fn decision(&self, limits: &[WindowLimit<'_>], reply: &[String]) -> Option<WindowsDecision> {
        let (refused, counters) = reply.split_first()?;
        if counters.len() != 2 * limits.len() {
            return None;
        }
        let outcomes = counters
            .chunks_exact(2)
            .zip(limits)
            .map(|(pair, l)| {
                let used = pair[0].parse().ok()?;
                let reset_us: u64 = pair[1].parse().ok()?;
                Some(found(
                    l,
                    used,
                    Duration::from_micros(reset_us).min(l.window),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        let decision = finish(limits, outcomes);
        let refused: usize = refused.parse().ok()?;
        (decision.refused_by.map_or(0, |i| i + 1) == refused).then_some(decision)
    }
}

/// `s` with Redis's glob characters escaped, so `SCAN MATCH` reads it literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl WindowSet for RedisWindowSet {
    fn check<'a>(
        &'a self,
        group: &'a str,
        limits: &'a [WindowLimit<'_>],
    ) -> LimitFuture<'a, Result<WindowsDecision>> {
        LimitFuture::boxed(Self::check(self, group, limits))
    }

    fn forget<'a>(&'a self, group: &'a str) -> LimitFuture<'a, Result<()>> {
        LimitFuture::boxed(Self::forget(self, group))
    }
}

impl std::fmt::Debug for RedisWindowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWindowSet")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
        assert_eq!(glob_escape("plain:key"), "plain:key");
    }
}
