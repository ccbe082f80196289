//! How a record's fields map to table columns, shared by the SQL sinks (SQLite, PostgreSQL):
//! the actor as three columns, personal data as JSON text, and whether a row still holds an
//! original personal value.

use crate::error::{Error, Result};
use crate::personal::{Personal, PersonalState};
use crate::record::{Actor, Entry};

/// The actor as `(actor_kind, actor_id, actor_prefix)` columns.
pub(crate) fn actor_columns(actor: &Actor) -> (&'static str, Option<&str>, Option<&str>) {
    match actor {
        Actor::System => ("system", None, None),
        Actor::ApiKey { id, prefix } => ("apiKey", Some(id.as_str()), Some(prefix.as_str())),
        Actor::User { id } => ("user", Some(id.as_str()), None),
    }
}

/// The actor read back from its three columns.
pub(crate) fn actor_from_columns(
    kind: &str,
    id: Option<String>,
    prefix: Option<String>,
) -> Result<Actor> {
    match (kind, id) {
        ("system", _) => Ok(Actor::System),
        ("apiKey", Some(id)) => Ok(Actor::ApiKey {
            id,
            prefix: prefix.unwrap_or_default(),
        }),
        ("user", Some(id)) => Ok(Actor::User { id }),
        _ => Err(Error::Corrupt("actor")),
    }
}

/// Whether `e` holds no original personal value (nothing left for anonymisation to do).
pub(crate) fn is_anonymised(e: &Entry) -> bool {
    e.personal
        .as_ref()
        .is_none_or(|p| p.state() != PersonalState::Present)
}

/// Personal data as the JSON text stored in PostgreSQL's `personal` column (SQLite stores
/// the compact form).
#[cfg(feature = "postgres")]
pub(crate) fn personal_json(personal: &Personal) -> Result<String> {
    serde_json::to_string(personal).map_err(|_| Error::Corrupt("personal data"))
}

/// Personal data read back from the `personal` column.
pub(crate) fn parse_personal(json: &str) -> Result<Personal> {
    serde_json::from_str(json).map_err(|_| Error::Corrupt("personal data"))
}
