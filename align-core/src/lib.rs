//! The small vocabulary every Align crate shares, so that no library compiles another's
//! store: the [`Environment`] of keys and data, the [`Secret`] wrapper, the [`Redactor`] that
//! masks secrets before anything is logged or stored, [`files`] created private (`0600` /
//! `0700`), and the [`sqlite`] and [`postgres`] conventions (opening, pools, migrations
//! recorded per crate) behind cargo features.
//!
//! ```
//! use align_core::{Environment, Redactor, Secret};
//! assert_eq!(Environment::from_name("sandbox"), Some(Environment::Sandbox));
//! let s = Secret::new("hunter2".to_owned());
//! assert_eq!(format!("{s:?}"), "Secret([redacted])");
//! let r = Redactor::new();
//! assert_eq!(r.redact_text("X-API-Key: abc"), "X-API-Key: …");
//! ```

mod caller;
mod environment;
mod error;
pub mod files;
pub mod migrations;
pub mod name;
#[cfg(feature = "postgres")]
pub mod postgres;
mod redact;
mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use caller::KeyIdentity;
pub use environment::Environment;
pub use error::{Error, Result};
pub use redact::{MASK, Redactor, TOKEN_PREFIX_LEN, is_sensitive_name};
pub use secret::Secret;

// Compiles and runs the README's example as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
