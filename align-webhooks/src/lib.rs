//! Standard Webhooks signing, durable delivery and a receiver kit.
//!
//! This crate is a placeholder in the workspace layout: it has no functionality yet.
//! It is filled by the webhooks issue (#5); until then it exports nothing, so nothing can depend on it by mistake.
