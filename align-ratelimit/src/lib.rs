//! Sliding-window rate limits, quotas and concurrency limits for per-key API traffic.
//!
//! This crate is a placeholder in the workspace layout: it has no functionality yet.
//! It is filled by the rate-limit issue (#3); until then it exports nothing, so nothing can depend on it by mistake.
