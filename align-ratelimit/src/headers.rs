//! Response header values for a [`Decision`]: the `X-RateLimit-*` trio, `Retry-After`, and the
//! IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).

use std::time::Duration;

use crate::decision::Decision;
use crate::error::{Error, Result};

/// Header names and values to add to a response, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(&'static str, String)>);

impl Headers {
    /// The value of header `name` (case-insensitive), if present.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

impl IntoIterator for Headers {
    type Item = (&'static str, String);
    type IntoIter = std::vec::IntoIter<(&'static str, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A named policy for the IETF `RateLimit-Policy` and `RateLimit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IetfPolicy {
    name: String,
    window_secs: u64,
}

impl IetfPolicy {
    /// A policy called `name` (letters, digits, `-`, `_`, `.`) with a window of `window`.
    pub fn new(name: &str, window: Duration) -> Result<Self> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(Error::InvalidConfig(
                "an IETF policy name may use only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            window_secs: crate::decision::ceil_secs(window),
        })
    }
}

impl Decision {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, and `Retry-After`
    /// when denied.
    ///
    /// ```
    /// use align_ratelimit::{KeyedLimiter, Rate, RateLimiter, SlidingWindow};
    ///
    /// let limiter = KeyedLimiter::new(SlidingWindow::new(Rate::per_minute(1))?);
    /// limiter.check(&7, 1)?;
    /// let headers = limiter.check(&7, 1)?.headers();
    /// assert_eq!(headers.get("X-RateLimit-Remaining"), Some("0"));
    /// assert!(headers.get("Retry-After").is_some());
    /// # Ok::<(), align_ratelimit::Error>(())
    /// ```
    #[must_use]
    pub fn headers(&self) -> Headers {
        let mut h = vec![
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset", self.reset_after_secs().to_string()),
        ];
        self.push_retry_after(&mut h);
        Headers(h)
    }

    /// The IETF `RateLimit-Policy` and `RateLimit` fields for `policy`, and `Retry-After`
    /// when denied, e.g. `RateLimit-Policy: "default";q=600;w=60` and
    /// `RateLimit: "default";r=599;t=60`.
    #[must_use]
    pub fn ietf_headers(&self, policy: &IetfPolicy) -> Headers {
        let mut h = vec![
            (
                "RateLimit-Policy",
                format!(
                    "\"{}\";q={};w={}",
                    policy.name, self.limit, policy.window_secs
                ),
            ),
            (
                "RateLimit",
                format!(
                    "\"{}\";r={};t={}",
                    policy.name,
                    self.remaining,
                    self.reset_after_secs().min(policy.window_secs)
                ),
            ),
        ];
        self.push_retry_after(&mut h);
        Headers(h)
    }

    fn push_retry_after(&self, h: &mut Vec<(&'static str, String)>) {
        if let Some(secs) = self.retry_after_secs() {
            h.push(("Retry-After", secs.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> Decision {
        Decision {
            allowed: false,
            limit: 600,
            remaining: 0,
            reset_after: Duration::from_millis(2_500),
            retry_after: Some(Duration::from_millis(200)),
        }
    }

    #[test]
    fn legacy_headers_carry_whole_seconds_and_retry_after_when_denied() {
        let h = denied().headers();
        let pairs: Vec<_> = h.iter().collect();
        assert_eq!(
            pairs,
            [
                ("X-RateLimit-Limit", "600"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "3"),
                ("Retry-After", "1"),
            ]
        );
        let allowed = Decision {
            allowed: true,
            retry_after: None,
            ..denied()
        };
        assert_eq!(allowed.headers().get("retry-after"), None);
    }

    #[test]
    fn ietf_fields_use_structured_field_syntax() {
        let policy = IetfPolicy::new("default", Duration::from_secs(60)).unwrap();
        let h = denied().ietf_headers(&policy);
        assert_eq!(h.get("RateLimit-Policy"), Some("\"default\";q=600;w=60"));
        assert_eq!(h.get("RateLimit"), Some("\"default\";r=0;t=3"));
        assert_eq!(h.get("Retry-After"), Some("1"));
        assert!(IetfPolicy::new("bad\"name", Duration::from_secs(1)).is_err());
    }
}
