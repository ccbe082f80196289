//! Building entries: every free-text field and the metadata pass through the `align-keys`
//! redactor, paths lose their query string, personal values are committed with fresh salts.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use align_core::{Environment, Redactor};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::encode::canonical_json;
use crate::error::{Error, Result};
use crate::personal::{IP, Personal, USER_AGENT, Values};
use crate::record::{Actor, Entry, Stream};

/// Longest text field kept, in bytes; longer values are cut at a character boundary.
pub const MAX_TEXT_LEN: usize = 2048;
/// Largest metadata accepted, in bytes of canonical JSON.
pub const MAX_METADATA_LEN: usize = 64 * 1024;

/// Builds an [`Entry`]. Nothing it is given reaches the entry unredacted.
///
/// ```
/// use align_audit::{Actor, Entry};
/// let entry = Entry::request("GET", "/api/v1/me?api_key=secret")
///     .actor(Actor::ApiKey { id: "k1".into(), prefix: "ako_9311c954".into() })
///     .status(200)
///     .ip("203.0.113.7".parse().unwrap())
///     .user_agent("curl/8.5")
///     .build()
///     .unwrap();
/// assert_eq!(entry.path(), Some("/api/v1/me"));
/// assert_eq!(entry.user_agent(), Some("curl/8.5"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct EntryBuilder {
    stream: Stream,
    action: String,
    time: Option<DateTime<Utc>>,
    organization: Option<String>,
    environment: Option<Environment>,
    actor: Actor,
    target: Option<String>,
    request_id: Option<String>,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    latency: Option<Duration>,
    subject: Option<String>,
    metadata: Option<Value>,
    ip: Option<IpAddr>,
    personal: Values,
}

/// Shows only the stream and the redacted action: the builder still holds unredacted input.
impl std::fmt::Debug for EntryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryBuilder")
            .field("stream", &self.stream)
            .field("action", &Redactor::new().redact_text(&self.action))
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// Starts an entry for `stream` recording `action`.
    pub fn builder(stream: Stream, action: impl Into<String>) -> EntryBuilder {
        EntryBuilder {
            stream,
            action: action.into(),
            time: None,
            organization: None,
            environment: None,
            actor: Actor::System,
            target: None,
            request_id: None,
            method: None,
            path: None,
            status: None,
            latency: None,
            subject: None,
            metadata: None,
            ip: None,
            personal: Values::new(),
        }
    }

    /// Starts a request-log entry (action `http.request`) for `method` and `path`.
    pub fn request(method: impl Into<String>, path: impl Into<String>) -> EntryBuilder {
        Self::builder(Stream::Request, "http.request")
            .method(method)
            .path(path)
    }

    /// Starts an audit-log entry recording `action` (`api_key.revoked`, …).
    pub fn audit(action: impl Into<String>) -> EntryBuilder {
        Self::builder(Stream::Audit, action)
    }
}

impl EntryBuilder {
    /// When it happened (default: when [`build`](Self::build) runs). Kept to the millisecond.
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }
    /// The organisation concerned.
    pub fn organization(mut self, id: impl Into<String>) -> Self {
        self.organization = Some(id.into());
        self
    }
    /// Live or sandbox.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }
    /// Who did it (default [`Actor::System`]).
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }
    /// The object acted on.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    /// The request id (`X-Request-Id`).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
    /// The HTTP method.
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
    /// The request path; the query string and fragment are dropped.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
    /// The HTTP status sent.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// How long the request took (kept in microseconds).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }
    /// The person the record is about, when that is not the actor (for export and erasure).
    pub fn subject(mut self, user_id: impl Into<String>) -> Self {
        self.subject = Some(user_id.into());
        self
    }
    /// Structured details. Credential-named fields and anything that looks like a key or
    /// secret are masked. Put nothing personal here: use [`personal`](Self::personal).
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
    /// The client IP address (personal: anonymised to its /24 or /48, erasable).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }
    /// The user agent (personal: dropped by anonymisation and erasure).
    pub fn user_agent(self, user_agent: impl Into<String>) -> Self {
        self.personal(USER_AGENT, user_agent)
    }
    /// Any other personal value, under `name` (dropped by anonymisation and erasure).
    /// A second value under the same name replaces the first.
    pub fn personal(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.personal.insert(name.into(), value.into());
        self
    }

    /// Redacts, commits personal values and returns the entry.
    ///
    /// Fails on an empty action, a reserved personal name (`ip`), metadata over
    /// [`MAX_METADATA_LEN`], or when the system random generator fails.
    pub fn build(self) -> Result<Entry> {
        let r = Redactor::new();
        let text = |s: String| clean(&r, s);
        let opt = |s: Option<String>| s.map(|s| clean(&r, s));
        if self.action.trim().is_empty() {
            return Err(Error::InvalidInput {
                field: "action",
                reason: "must not be empty",
            });
        }
        let time = self.time.unwrap_or_else(Utc::now);
        let time = DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time);
        let metadata = match self.metadata {
            // No metadata (every request-log entry): the canonical text of `{}`.
            None => String::from("{}"),
            Some(mut metadata) => {
                r.redact_json(&mut metadata);
                canonical_json(&metadata)
            }
        };
        if metadata.len() > MAX_METADATA_LEN {
            return Err(Error::InvalidInput {
                field: "metadata",
                reason: "larger than 64 KiB",
            });
        }
        let mut personal = Values::new();
        for (name, value) in self.personal {
            if name == IP {
                return Err(Error::InvalidInput {
                    field: "personal",
                    reason: "the name `ip` is reserved for EntryBuilder::ip",
                });
            }
            personal.insert(text(name), text(value));
        }
        if let Some(ip) = self.ip {
            personal.insert(IP.to_owned(), crate::personal::ip_text(ip));
        }
        let personal = Personal::new(personal, self.ip)?;
        let actor = match self.actor {
            Actor::ApiKey { id, prefix } => Actor::ApiKey {
                id: text(id),
                prefix: text(prefix),
            },
            Actor::User { id } => Actor::User { id: text(id) },
            Actor::System => Actor::System,
        };
        Ok(Entry {
            id: crate::random::uuid_v4()?,
            stream: self.stream,
            time,
            organization: opt(self.organization),
            environment: self.environment,
            actor,
            action: text(self.action),
            target: opt(self.target),
            request_id: opt(self.request_id),
            method: opt(self.method),
            path: self.path.map(|mut p| {
                p.truncate(strip_query(&p).len());
                clean(&r, p)
            }),
            status: self.status,
            latency_us: self
                .latency
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            subject: opt(self.subject),
            metadata,
            personal,
        })
    }
}

/// The path without `?query` or `#fragment`.
fn strip_query(path: &str) -> &str {
    path.find(['?', '#']).map_or(path, |i| &path[..i])
}

/// Redacted and cut to [`MAX_TEXT_LEN`] bytes at a character boundary; `s` itself when
/// nothing needed masking (most text), without a copy.
fn clean(r: &Redactor, s: String) -> String {
    let redacted = match r.redact_text(&s) {
        Cow::Borrowed(_) => None,
        Cow::Owned(o) => Some(o),
    };
    let mut out = redacted.unwrap_or(s);
    if out.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first valid test-vector token (a fixture, not a key).
    const TOKEN: &str = concat!(
        "ako_9311c954_",
        "00000000000000000000000000000000000000000000",
        "Rws4U"
    );

    #[test]
    fn query_strings_and_fragments_are_stripped() {
        assert_eq!(strip_query("/a/b?x=1#f"), "/a/b");
        assert_eq!(strip_query("/a#f?x"), "/a");
        assert_eq!(strip_query("/a"), "/a");
    }

    #[test]
    fn tokens_in_fields_and_metadata_are_masked() {
        let e = Entry::audit("api_key.minted")
            .target(format!("key {TOKEN}"))
            .user_agent(format!("bot {TOKEN}"))
            .metadata(serde_json::json!({"authorization": "Bearer x", "note": TOKEN}))
            .build()
            .unwrap();
        let all = serde_json::to_string(&e).unwrap();
        assert!(!all.contains(&TOKEN[13..]), "{all}");
        assert_eq!(e.target(), Some("key ako_9311c954…"));
        assert_eq!(
            e.metadata_json(),
            r#"{"authorization":"Bearer …","note":"ako_9311c954…"}"#
        );
    }

    #[test]
    fn debug_output_of_a_builder_shows_no_input() {
        let b = Entry::audit("x")
            .path(format!("/k/{TOKEN}"))
            .user_agent("secret-ua");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains(&TOKEN[13..]) && !shown.contains("secret-ua"),
            "{shown}"
        );
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let e = Entry::audit("x")
            .target("é".repeat(MAX_TEXT_LEN))
            .build()
            .unwrap();
        assert!(e.target().unwrap().len() <= MAX_TEXT_LEN);
    }
}
