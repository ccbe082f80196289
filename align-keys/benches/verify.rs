//! Placeholder, replaced by the verify benchmark below.
fn main() {}
