//! Runnable examples of embedding the Align crates; run one with
//! `cargo run -p align-examples --example keys_service`.
