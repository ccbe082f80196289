//! The Align reference API server: hyper app, request pipeline, handlers.
//!
//! This crate is a placeholder in the workspace layout: it has no functionality yet.
//! It is filled by the server issue (#6); until then it exports nothing, so nothing can depend on it by mistake.
