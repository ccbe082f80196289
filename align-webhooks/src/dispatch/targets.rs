//! Endpoint URLs already checked against the dispatcher's [`UrlPolicy`], with their parsed
//! request target.
//!
//! The check needs no DNS (addresses are checked on every new connection, by the client's
//! resolver), so its answer depends only on the URL text, the environment and the policy,
//! which is fixed for the dispatcher's life. Parsing the URL twice per attempt (the policy's
//! WHATWG parse, then hyper's URI) showed in profiles of busy endpoints.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use align_core::Environment;
use http::Uri;

use crate::policy::UrlPolicy;

/// More distinct URLs than this and the cache starts over (a bound, not an eviction policy:
/// a dispatcher serves far fewer endpoints).
const MAX_ENTRIES: usize = 4096;

/// The checked target of a URL, or why it is refused.
pub(crate) type Target = std::result::Result<Uri, String>;

/// Checked URLs, one map per environment (looked up by `&str`, no allocation).
#[derive(Default)]
pub(crate) struct Targets {
    live: Mutex<HashMap<String, Target>>,
    sandbox: Mutex<HashMap<String, Target>>,
}

impl Targets {
    /// The request target for `url`, or the policy's refusal, checked once per URL.
    pub(crate) fn get(&self, policy: &UrlPolicy, url: &str, environment: Environment) -> Target {
        let map = match environment {
            Environment::Live => &self.live,
            Environment::Sandbox => &self.sandbox,
        };
        if let Some(known) = map.lock().unwrap_or_else(PoisonError::into_inner).get(url) {
            return known.clone();
        }
        let checked = match policy.check_url(url, environment) {
            Err(refused) => Err(refused.to_string()),
            Ok(_) => url
                .parse::<Uri>()
                .map_err(|_| "the endpoint URL is not a valid request target".to_owned()),
        };
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(url.to_owned(), checked.clone());
        checked
    }
}

#[cfg(test)]
mod tests {
    use align_core::Environment;

    use super::Targets;
    use crate::policy::UrlPolicy;

    #[test]
    fn answers_are_the_policys_and_stay_per_environment() {
        let targets = Targets::default();
        let policy = UrlPolicy::new();
        let url = "http://example.com/hook";
        for _ in 0..2 {
            assert!(targets.get(&policy, url, Environment::Sandbox).is_ok());
            // Live endpoints need https: the sandbox answer must not leak into live.
            assert!(targets.get(&policy, url, Environment::Live).is_err());
            assert!(
                targets
                    .get(&policy, "http://127.0.0.1/", Environment::Sandbox)
                    .is_err()
            );
        }
    }
}
