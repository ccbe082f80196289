//! Counters for `GET /metrics` (Prometheus text format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Authentication outcomes, in the order of [`Metrics::auth`]'s counters.
pub(crate) const AUTH_OUTCOMES: [&str; 7] = [
    "valid",
    "missing",
    "invalid",
    "revoked",
    "expired",
    "suspended",
    "ambiguous",
];
/// Limit refusals, in the order of [`Metrics::denied`]'s counters.
pub(crate) const DENIALS: [&str; 3] = ["rate_limit", "concurrency_limit", "quota_exceeded"];

/// Why the server closed a connection, in the order of [`Metrics::closed`]'s counters:
/// no request in flight for `limits.idle_timeout_secs`, or the longest idle, to make room for
/// a new connection at `limits.max_connections` (or when descriptors ran out).
pub(crate) const CLOSE_REASONS: [&str; 2] = ["idle_timeout", "evicted"];

/// A static label for `method` (no allocation per request; unusual methods share one label).
fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PATCH => "PATCH",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Requests by (method, route, status). A counter is created once under the write lock;
    /// every later request only takes the read lock (shared across workers) and adds to it.
    requests: RwLock<BTreeMap<(&'static str, &'static str, u16), AtomicU64>>,
    /// Requests whose latency fell in each bucket (not cumulative).
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    auth: [AtomicU64; AUTH_OUTCOMES.len()],
    denied: [AtomicU64; DENIALS.len()],
    /// Rejected requests counted in a request-log summary instead of an entry of their own.
    folded: AtomicU64,
    /// New connections that found `limits.max_connections` connections open.
    at_cap: AtomicU64,
    closed: [AtomicU64; CLOSE_REASONS.len()],
    /// Records removed by retention, per store (the order of
    /// [`crate::retention::RetentionReport::removed`]).
    retention_removed: [AtomicU64; 6],
    /// Retention runs this instance finished.
    retention_runs: AtomicU64,
}

impl Metrics {
    /// Counts a finished request.
    pub(crate) fn observe(
        &self,
        method: &http::Method,
        route: &'static str,
        status: u16,
        latency: Duration,
    ) {
        let key = (method_label(method), route, status);
        let counted = self
            .requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .map(|n| n.fetch_add(1, Ordering::Relaxed))
            .is_some();
        if !counted {
            self.requests
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
        // One counter per request (its own bucket); `render` sums them into the cumulative
        // `le` buckets Prometheus expects.
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts an authentication outcome (an entry of [`AUTH_OUTCOMES`]).
    pub(crate) fn auth(&self, outcome: &str) {
        if let Some(i) = AUTH_OUTCOMES.iter().position(|o| *o == outcome) {
            self.auth[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a limit refusal (an entry of [`DENIALS`]).
    pub(crate) fn denied(&self, kind: &str) {
        if let Some(i) = DENIALS.iter().position(|d| *d == kind) {
            self.denied[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts rejected requests folded into one request-log summary entry.
    pub(crate) fn folded(&self, requests: u64) {
        self.folded.fetch_add(requests, Ordering::Relaxed);
    }

    /// Adds what a retention run removed.
    pub(crate) fn retention_removed(&self, report: &crate::retention::RetentionReport) {
        for ((_, n), counter) in report.removed().iter().zip(&self.retention_removed) {
            counter.fetch_add(*n, Ordering::Relaxed);
        }
        self.retention_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new connection that found the server at its connection cap.
    pub(crate) fn connection_at_cap(&self) {
        self.at_cap.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection the server closed (an entry of [`CLOSE_REASONS`]).
    pub(crate) fn connection_closed(&self, reason: &str) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.closed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text; `gauges` are (name, help, value) read at scrape time.
    pub(crate) fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "align_http_requests_total",
            "counter",
            "HTTP requests by method, route and status.",
        );
        {
            let map = self.requests.read().unwrap_or_else(PoisonError::into_inner);
            for ((method, route, status), n) in map.iter() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "align_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "align_http_request_duration_seconds",
            "histogram",
            "Time to answer a request.",
        );
        let mut cumulative = 0;
        for (bound, counter) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "align_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "align_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "align_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "align_http_request_duration_seconds_count {count}");
        labelled(
            &mut out,
            "align_auth_total",
            "Authentication outcomes of requests to the API.",
            "outcome",
            &AUTH_OUTCOMES,
            &self.auth,
        );
        labelled(
            &mut out,
            "align_limit_denials_total",
            "Requests refused by a rate, concurrency or quota limit.",
            "limit",
            &DENIALS,
            &self.denied,
        );
        single(
            &mut out,
            "align_request_log_folded_total",
            "counter",
            "Requests (rejections, and any made without a key) logged in a per-client summary entry instead of one entry each.",
            self.folded.load(Ordering::Relaxed),
        );
        let stores = crate::retention::RetentionReport::default()
            .removed()
            .map(|(store, _)| store);
        labelled(
            &mut out,
            "align_retention_removed_total",
            "Records removed by retention runs of this instance, by store.",
            "store",
            &stores,
            &self.retention_removed,
        );
        single(
            &mut out,
            "align_retention_runs_total",
            "counter",
            "Retention runs this instance finished.",
            self.retention_runs.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "align_connections_at_cap_total",
            "counter",
            "New connections that arrived with limits.max_connections connections open.",
            self.at_cap.load(Ordering::Relaxed),
        );
        labelled(
            &mut out,
            "align_connections_closed_total",
            "Connections the server closed, by reason.",
            "reason",
            &CLOSE_REASONS,
            &self.closed,
        );
        for (name, help, value) in gauges {
            single(&mut out, name, "gauge", help, *value);
        }
        out
    }
}

/// Writes metric `name`'s `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes counter `name` with a sample for each of `label`'s `values`, counted in `counters`
/// (in the same order).
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
    counters: &[AtomicU64],
) {
    header(out, name, "counter", help);
    for (value, n) in values.iter().zip(counters) {
        let n = n.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Writes metric `name` of `kind` with its one sample, `value`.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}
