//! What the SQLite and PostgreSQL stores share about sealed endpoint secrets: the checks made
//! when a store opens, and re-sealing.
//!
//! Each store records the id of the key its values are sealed with (table
//! `webhooks_sealing`, created by the migration `migrations/*/…_sealing.sql`), so that a process holding another key, a new key file made where the
//! old one was lost, or another instance's key, is refused when it opens the store, before
//! it seals anything the others cannot open, even while no endpoint exists yet.

use crate::error::{Error, Result};
use crate::model::EndpointId;
use crate::rotation::EndpointSecrets;
use crate::sealing::{Sealer, is_sealed, sealed_key_id};

/// Refuses a sealer that does not hold the key the store records.
pub(super) fn check_recorded(recorded: &str, sealer: &Sealer) -> Result<()> {
    if sealer.holds(recorded)? {
        Ok(())
    } else {
        Err(Error::UnknownSealingKey {
            key_id: recorded.to_owned(),
        })
    }
}

/// What to do with one stored value: `None` to keep it, or its new sealed form.
///
/// A value sealed under a key `sealer` does not hold is an error (so a store does not open
/// until the key file that holds it is restored). A plaintext value (written before sealing)
/// is always sealed; a sealed one is re-sealed under the current key when `reseal_all`.
pub(super) fn reseal(
    endpoint: EndpointId,
    stored: &str,
    sealer: &Sealer,
    reseal_all: bool,
) -> Result<Option<String>> {
    if is_sealed(stored) {
        let id = sealed_key_id(stored)?;
        if !sealer.holds(id)? {
            return Err(Error::UnknownSealingKey {
                key_id: id.to_owned(),
            });
        }
        if !reseal_all {
            return Ok(None);
        }
    }
    let secrets = EndpointSecrets::from_sealed(stored, endpoint, sealer)?;
    secrets.seal(endpoint, sealer).map(Some)
}

/// The sealer a store needs to read or write endpoints.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) fn required(sealer: Option<&Sealer>) -> Result<&Sealer> {
    sealer.ok_or(Error::NoSealer)
}
