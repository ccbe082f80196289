//! Finding records: filters and cursor paging, newest first.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::record::{Entry, Record, Stream};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size; bigger limits are lowered to it.
pub const MAX_LIMIT: usize = 1000;

/// A value a [`Query`]'s SQL condition compares a column with.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) enum SqlValue {
    /// A text column's value.
    Text(String),
    /// A time in milliseconds since the epoch, or a sequence number.
    Int(i64),
}

/// A filter over one stream; every set condition must hold. Results come newest first.
///
/// ```
/// use align_audit::{Query, Stream};
/// let q = Query::new(Stream::Audit).organization("org_1").action("api_key.revoked").limit(50);
/// assert_eq!(q.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// The stream searched.
    pub stream: Stream,
    /// Only this organisation.
    pub organization: Option<String>,
    /// Only this actor id (API key id or user id).
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only records concerning this data subject (as subject or as actor).
    pub subject: Option<String>,
    /// Only records answered with this HTTP status (request log).
    pub status: Option<u16>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records before this time.
    pub until: Option<DateTime<Utc>>,
    /// Page size (1 to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Query {
    /// The query's filters as SQL conditions on `audit_records`' columns, in order, each with
    /// a `?` for each of its values (bound in order): what the SQL sinks add to the stream,
    /// order and limit of their own `SELECT`.
    pub(crate) fn sql_conditions(&self) -> Vec<(&'static str, Vec<SqlValue>)> {
        let text = |v: &String| SqlValue::Text(v.clone());
        let mut out = Vec::new();
        let columns = [
            ("organization = ?", &self.organization),
            ("actor_id = ?", &self.actor),
            ("action = ?", &self.action),
            ("target = ?", &self.target),
        ];
        for (clause, value) in columns {
            if let Some(v) = value {
                out.push((clause, vec![text(v)]));
            }
        }
        if let Some(v) = &self.subject {
            out.push(("(subject = ? OR actor_id = ?)", vec![text(v), text(v)]));
        }
        if let Some(s) = self.status {
            // Cast, so that both dialects compare it with a bound 64-bit integer.
            out.push((
                "CAST(status AS BIGINT) = ?",
                vec![SqlValue::Int(i64::from(s))],
            ));
        }
        if let Some(t) = self.since {
            out.push(("time >= ?", vec![SqlValue::Int(t.timestamp_millis())]));
        }
        if let Some(t) = self.until {
            out.push(("time < ?", vec![SqlValue::Int(t.timestamp_millis())]));
        }
        if let Some(c) = self.cursor {
            let before = i64::try_from(c.0).unwrap_or(i64::MAX);
            out.push(("sequence < ?", vec![SqlValue::Int(before)]));
        }
        out
    }
}

impl Query {
    /// Everything in `stream`, first page of [`DEFAULT_LIMIT`].
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            organization: None,
            actor: None,
            action: None,
            target: None,
            subject: None,
            status: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
    /// Only this organisation.
    #[must_use]
    pub fn organization(mut self, id: impl Into<String>) -> Self {
        self.organization = Some(id.into());
        self
    }
    /// Only this actor id.
    #[must_use]
    pub fn actor(mut self, id: impl Into<String>) -> Self {
        self.actor = Some(id.into());
        self
    }
    /// Only this action.
    #[must_use]
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }
    /// Only this target.
    #[must_use]
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    /// Only records concerning this data subject.
    #[must_use]
    pub fn subject(mut self, id: impl Into<String>) -> Self {
        self.subject = Some(id.into());
        self
    }
    /// Only records answered with `status`.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// Only records in `[since, until)`.
    #[must_use]
    pub fn between(mut self, since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }
    /// Page size (clamped to 1..=[`MAX_LIMIT`]).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Continue after the page that returned `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    pub(crate) fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIMIT)
    }

    /// Whether `record` passes every filter (the cursor included).
    pub(crate) fn matches(&self, record: &Record) -> bool {
        let e: &Entry = &record.entry;
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        e.stream == self.stream
            && self.cursor.is_none_or(|c| record.sequence < c.0)
            && eq(&self.organization, e.organization())
            && eq(&self.actor, e.actor.id())
            && eq(&self.action, Some(e.action()))
            && eq(&self.target, e.target())
            && self.subject.as_deref().is_none_or(|s| e.concerns(s))
            && self.status.is_none_or(|s| e.status() == Some(s))
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time < t)
    }
}

/// An opaque position between pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub(crate) u64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:x}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        s.strip_prefix('c')
            .filter(|h| (1..=15).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(Self)
            .ok_or(Error::InvalidCursor)
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records, newest first.
    pub records: Vec<Record>,
    /// Pass to [`Query::after`] for the next page; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

impl Page {
    /// A page from up to `limit + 1` matching records (newest first); the extra one, if
    /// present, only says that another page follows.
    pub(crate) fn of(mut records: Vec<Record>, limit: usize) -> Self {
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| Cursor(r.sequence))
        } else {
            None
        };
        Self {
            records,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let c = Cursor(0x2a);
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        assert!("42".parse::<Cursor>().is_err());
        assert!("czz".parse::<Cursor>().is_err());
    }
}
