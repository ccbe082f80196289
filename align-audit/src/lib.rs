//! Tamper-evident audit and request logs with retention, anonymisation and export.
//!
//! This crate is a placeholder in the workspace layout: it has no functionality yet.
//! It is filled by the audit issue (#4); until then it exports nothing, so nothing can depend on it by mistake.
