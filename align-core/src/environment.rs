//! Which world a key, an endpoint or a record lives in: live or sandbox.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which world a key lives in. Sandbox keys only ever touch sandbox data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production: tag `ako`.
    Live,
    /// Testing: tag `akt`.
    Sandbox,
}

impl Environment {
    /// The token tag for this environment (`ako` or `akt`).
    pub const fn tag(self) -> &'static str {
        match self {
            Self::Live => "ako",
            Self::Sandbox => "akt",
        }
    }

    /// The lowercase name used in JSON and storage (`live` or `sandbox`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sandbox => "sandbox",
        }
    }

    /// Parses `live` or `sandbox`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "live" => Some(Self::Live),
            "sandbox" => Some(Self::Sandbox),
            _ => None,
        }
    }

    /// The environment of a token tag (`ako` or `akt`).
    pub fn from_tag(tag: &[u8]) -> Option<Self> {
        match tag {
            b"ako" => Some(Self::Live),
            b"akt" => Some(Self::Sandbox),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
