//! Placeholder replaced by the governor comparison below.
fn main() {}
