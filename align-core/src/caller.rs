//! Who a request was authenticated as, in the words every crate understands.

use crate::Environment;

/// The API key a request was authenticated with, as a layer that authenticates (such as
/// `align-keys`' `KeyAuthLayer`) puts it into the request's and response's extensions, for
/// layers that only need to name the caller (such as `align-audit`'s request log). Holds no
/// secret: the key's id and its public prefix only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    /// The key's id.
    pub key_id: String,
    /// The key's public prefix (`ako_9311c954`).
    pub prefix: String,
    /// The organisation the key belongs to.
    pub organization_id: String,
    /// The key's environment.
    pub environment: Environment,
}
