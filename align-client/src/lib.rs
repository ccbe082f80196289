#![doc = include_str!("../README.md")]

mod error;
mod ops;
mod transport;
pub mod types;

pub use error::{ApiError, ERROR_CODES, Error, ErrorCode};
pub use http::Method;
pub use ops::{ItemStream, OPERATIONS, github_report_body};
pub use transport::{Client, ClientBuilder, RawResponse};
pub use types::*;

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
