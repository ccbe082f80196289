//! Per-key usage from the request log (DESIGN §11): requests of one API key counted per
//! minute, hour or day, by outcome, with the empty steps included.
//!
//! ```
//! use align_audit::{Granularity, UsageQuery};
//! use chrono::{TimeZone, Utc};
//!
//! let until = Utc.with_ymd_and_hms(2026, 5, 14, 10, 30, 0).unwrap();
//! let q = UsageQuery::new("key-id", until - chrono::Duration::hours(24), until, Granularity::Hour)?;
//! // Steps are whole hours (UTC): 10:00 on the 13th through 10:00 on the 14th.
//! assert_eq!(q.steps(), 25);
//! # Ok::<(), align_audit::Error>(())
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::query::{MAX_LIMIT, Query};
use crate::record::Stream;
use crate::sink::AuditSink;

/// Most steps one usage query answers (a day by minute, two months by hour, four years by
/// day); wider ranges are refused rather than answered slowly.
pub const MAX_STEPS: i64 = 1500;

const MINUTE_MS: i64 = 60_000;

/// The width of one usage step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Granularity {
    /// The step's width in minutes.
    pub const fn minutes(self) -> i64 {
        match self {
            Self::Minute => 1,
            Self::Hour => 60,
            Self::Day => 1440,
        }
    }

    /// `minute`, `hour` or `day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(Error::InvalidInput {
                field: "granularity",
                reason: "must be minute, hour or day",
            }),
        }
    }
}

/// Which usage to count: the requests one actor made in `[from, to)`, stepped by
/// `granularity`. The actor is named by its id: an API key's (what DESIGN §11 counts), or a
/// user's (the console's requests), as in [`Query::actor`].
/// Made only by [`UsageQuery::new`], which aligns the range to whole steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    key_id: String,
    /// First step's first minute (minutes since the epoch).
    first: i64,
    /// Number of steps.
    steps: i64,
    granularity: Granularity,
}

impl UsageQuery {
    /// The usage of `key_id` from the step holding `from` through the step holding the
    /// instant before `to`. Fails when `to` is not after `from` or the range needs more than
    /// [`MAX_STEPS`] steps.
    pub fn new(
        key_id: impl Into<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
    ) -> Result<Self> {
        let invalid = |reason| Error::InvalidInput {
            field: "usage range",
            reason,
        };
        if to <= from {
            return Err(invalid("`to` must be after `from`"));
        }
        let width = granularity.minutes();
        let first = from
            .timestamp_millis()
            .div_euclid(MINUTE_MS)
            .div_euclid(width)
            * width;
        let last = (to.timestamp_millis() - 1)
            .div_euclid(MINUTE_MS)
            .div_euclid(width)
            * width;
        let steps = (last - first) / width + 1;
        if steps > MAX_STEPS {
            return Err(invalid(
                "more than 1500 steps: choose a coarser granularity or a shorter range",
            ));
        }
        Ok(Self {
            key_id: key_id.into(),
            first,
            steps,
            granularity,
        })
    }

    /// The key counted.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How many steps the answer has.
    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// The step width.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The first counted instant (the first step's start).
    pub fn since(&self) -> DateTime<Utc> {
        minute_time(self.first)
    }

    /// The end of the last step (exclusive).
    pub fn until(&self) -> DateTime<Utc> {
        minute_time(self.end_minute())
    }

    /// The minutes since the epoch of the range, `[first, end)`.
    pub(crate) fn minutes(&self) -> (i64, i64) {
        (self.first, self.end_minute())
    }

    fn end_minute(&self) -> i64 {
        self.first + self.steps * self.granularity.minutes()
    }
}

fn minute_time(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(minute.saturating_mul(MINUTE_MS)).unwrap_or_default()
}

/// One step of a key's usage: its requests by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageBucket {
    /// The step's start.
    #[serde(with = "crate::serde_util::time_ms")]
    pub start: DateTime<Utc>,
    /// Every request made with the key (the sum of the four outcomes, and requests whose
    /// status was not recorded).
    pub requests: u64,
    /// Answered below 400.
    pub succeeded: u64,
    /// Answered 4xx other than 429.
    pub client_errors: u64,
    /// Answered 429.
    pub rate_limited: u64,
    /// Answered 5xx.
    pub server_errors: u64,
}

/// Counts per minute, by outcome: what the stores add up, in whatever order they read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) requests: u64,
    pub(crate) succeeded: u64,
    pub(crate) client_errors: u64,
    pub(crate) rate_limited: u64,
    pub(crate) server_errors: u64,
}

impl Counts {
    /// Adds `weight` requests answered `status`.
    pub(crate) fn add(&mut self, status: Option<u16>, weight: u64) {
        self.requests += weight;
        let slot = match status {
            Some(429) => &mut self.rate_limited,
            Some(s) if s >= 500 => &mut self.server_errors,
            Some(s) if s >= 400 => &mut self.client_errors,
            Some(_) => &mut self.succeeded,
            None => return,
        };
        *slot += weight;
    }

    /// Adds another count.
    pub(crate) fn merge(&mut self, o: &Self) {
        self.requests += o.requests;
        self.succeeded += o.succeeded;
        self.client_errors += o.client_errors;
        self.rate_limited += o.rate_limited;
        self.server_errors += o.server_errors;
    }
}

/// The minute (since the epoch) of a record's time in milliseconds.
pub(crate) fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS)
}

/// How many requests a request-log record stands for: 1, or the count of a folded summary
/// ([`crate::fold`]: `metadata.folded.count`).
pub(crate) fn represented(metadata: &str) -> u64 {
    if !metadata.contains("\"folded\"") {
        return 1;
    }
    serde_json::from_str::<serde_json::Value>(metadata)
        .ok()
        .and_then(|m| m.get("folded")?.get("count")?.as_u64())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// The answer to `q` from counts per minute (minutes outside the range are ignored): one
/// bucket per step, oldest first, empty steps included.
pub(crate) fn buckets(q: &UsageQuery, per_minute: &BTreeMap<i64, Counts>) -> Vec<UsageBucket> {
    let width = q.granularity.minutes();
    let (first, end) = q.minutes();
    let mut out: Vec<UsageBucket> = (0..q.steps)
        .map(|i| UsageBucket {
            start: minute_time(first + i * width),
            ..UsageBucket::default()
        })
        .collect();
    for (minute, c) in per_minute.range(first..end) {
        let Ok(i) = usize::try_from((minute - first) / width) else {
            continue;
        };
        if let Some(b) = out.get_mut(i) {
            b.requests += c.requests;
            b.succeeded += c.succeeded;
            b.client_errors += c.client_errors;
            b.rate_limited += c.rate_limited;
            b.server_errors += c.server_errors;
        }
    }
    out
}

/// Usage by paging through [`AuditSink::query`]: the default for sinks without an index of
/// their own (memory, JSON Lines).
pub(crate) async fn by_query<S: AuditSink + ?Sized>(
    sink: &S,
    q: &UsageQuery,
) -> Result<Vec<UsageBucket>> {
    let mut query = Query::new(Stream::Request)
        .actor(q.key_id())
        .between(q.since(), q.until())
        .limit(MAX_LIMIT);
    let mut per_minute: BTreeMap<i64, Counts> = BTreeMap::new();
    loop {
        let page = sink.query(&query).await?;
        for r in &page.records {
            let e = r.entry();
            per_minute
                .entry(minute_of(e.time().timestamp_millis()))
                .or_default()
                .add(e.status(), represented(e.metadata_json()));
        }
        match page.next_cursor {
            Some(c) => query = query.after(c),
            None => return Ok(buckets(q, &per_minute)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 14, h, m, 0).unwrap()
    }

    #[test]
    fn ranges_align_to_whole_steps_and_refuse_too_many() {
        let q = UsageQuery::new("k", at(10, 17), at(12, 1), Granularity::Hour).unwrap();
        assert_eq!((q.since(), q.until(), q.steps()), (at(10, 0), at(13, 0), 3));
        let q = UsageQuery::new("k", at(10, 0), at(11, 0), Granularity::Minute).unwrap();
        assert_eq!(q.steps(), 60);
        assert!(UsageQuery::new("k", at(10, 0), at(10, 0), Granularity::Hour).is_err());
        let long = at(0, 0) - chrono::Duration::days(2);
        assert!(UsageQuery::new("k", long, at(0, 0), Granularity::Minute).is_err());
        assert!(UsageQuery::new("k", long, at(0, 0), Granularity::Hour).is_ok());
    }

    #[test]
    fn outcomes_are_counted_by_status_class() {
        let mut c = Counts::default();
        for (s, w) in [(200, 1), (302, 1), (404, 2), (429, 5), (503, 1)] {
            c.add(Some(s), w);
        }
        c.add(None, 1);
        assert_eq!(
            (
                c.requests,
                c.succeeded,
                c.client_errors,
                c.rate_limited,
                c.server_errors
            ),
            (11, 2, 2, 5, 1)
        );
    }

    #[test]
    fn a_folded_summary_stands_for_its_count() {
        assert_eq!(represented("{}"), 1);
        assert_eq!(
            represented(r#"{"folded":{"count":37,"lastRequestId":"r"}}"#),
            37
        );
        assert_eq!(represented(r#"{"note":"\"folded\""}"#), 1);
    }

    #[test]
    fn empty_steps_are_included_and_minutes_land_in_their_step() {
        let q = UsageQuery::new("k", at(10, 0), at(13, 0), Granularity::Hour).unwrap();
        let mut m = BTreeMap::new();
        let mut c = Counts::default();
        c.add(Some(200), 3);
        m.insert(minute_of(at(12, 59).timestamp_millis()), c.clone());
        m.insert(minute_of(at(13, 0).timestamp_millis()), c);
        let b = buckets(&q, &m);
        assert_eq!(b.len(), 3);
        assert_eq!(b.iter().map(|b| b.requests).collect::<Vec<_>>(), [0, 0, 3]);
        assert_eq!(b[2].start, at(12, 0));
    }
}
