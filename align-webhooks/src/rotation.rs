//! An endpoint's keys over time: the current key plus rotated-out keys still inside their
//! grace period, all of which sign every delivery so receivers can switch at their pace.

use std::time::Duration;

use align_core::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::EndpointId;
use crate::sealing::{Sealer, is_sealed};
use crate::secret::EndpointKey;

/// How long a rotated-out key keeps signing by default: 24 hours.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The keys an endpoint signs with.
///
/// ```
/// use align_webhooks::{EndpointKey, EndpointSecrets, SigningSecret};
/// use chrono::Utc;
/// let old = EndpointKey::Symmetric(SigningSecret::generate().unwrap());
/// let mut keys = EndpointSecrets::new(old);
/// let now = Utc::now();
/// keys.rotate(EndpointKey::Symmetric(SigningSecret::generate().unwrap()), now,
///     align_webhooks::DEFAULT_GRACE);
/// // During the grace period both keys sign.
/// assert_eq!(keys.signature_header("msg_1", 1, b"{}", now).split(' ').count(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct EndpointSecrets {
    current: EndpointKey,
    previous: Vec<(EndpointKey, DateTime<Utc>)>,
}

impl EndpointSecrets {
    /// Keys with only `current`.
    pub fn new(current: EndpointKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// The key new receivers should be given.
    pub fn current(&self) -> &EndpointKey {
        &self.current
    }

    /// Makes `next` current; the old current key keeps signing until `now + grace`.
    /// Keys whose grace period has ended are dropped.
    pub fn rotate(&mut self, next: EndpointKey, now: DateTime<Utc>, grace: Duration) {
        let until = now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let old = std::mem::replace(&mut self.current, next);
        self.previous.retain(|(_, until)| *until > now);
        if grace > Duration::ZERO {
            self.previous.push((old, until));
        }
    }

    /// The keys that sign a delivery made at `now`: current first.
    pub fn active_at(&self, now: DateTime<Utc>) -> impl Iterator<Item = &EndpointKey> {
        std::iter::once(&self.current).chain(
            self.previous
                .iter()
                .filter(move |(_, until)| *until > now)
                .map(|(k, _)| k),
        )
    }

    /// The `webhook-signature` value for a delivery at `now`: one signature per active key,
    /// space-separated.
    pub fn signature_header(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> String {
        // Room for one `v1` signature; rotation (or `v1a`) grows it once more at most.
        let mut out = String::with_capacity(47);
        for key in self.active_at(now) {
            if !out.is_empty() {
                out.push(' ');
            }
            key.sign_to(msg_id, timestamp, body, &mut out);
        }
        out
    }

    /// The stored form (JSON holding the key texts), for webhook store implementations:
    /// the dispatcher needs the keys to sign, so stores keep them. It is as sensitive as the
    /// keys themselves, hence wrapped in a [`Secret`]. Only the crate's stores need it.
    pub fn to_stored(&self) -> Result<Secret> {
        let stored = Stored {
            current: self.current.expose().expose().to_owned(),
            previous: self
                .previous
                .iter()
                .map(|(k, until)| (k.expose().expose().to_owned(), *until))
                .collect(),
        };
        Ok(Secret::new(serde_json::to_string(&stored)?))
    }

    /// Parses [`EndpointSecrets::to_stored`]'s output.
    pub fn from_stored(text: &str) -> Result<Self> {
        let stored: Stored =
            serde_json::from_str(text).map_err(|_| Error::Corrupt("endpoint secrets"))?;
        let current = EndpointKey::parse(&stored.current)?;
        let previous = stored
            .previous
            .iter()
            .map(|(k, until)| EndpointKey::parse(k).map(|k| (k, *until)))
            .collect::<Result<_>>()?;
        Ok(Self { current, previous })
    }
}

impl EndpointSecrets {
    /// The stored form sealed for `endpoint` by `sealer` (see [`Sealer`]): what the SQLite and
    /// PostgreSQL stores keep.
    pub fn seal(&self, endpoint: EndpointId, sealer: &Sealer) -> Result<String> {
        sealer.seal(endpoint, self.to_stored()?.expose().as_bytes())
    }

    /// Reads a stored value of `endpoint`: sealed by [`EndpointSecrets::seal`], or the plain
    /// [`EndpointSecrets::to_stored`] form that versions before sealing wrote (stores seal
    /// those when they open).
    pub fn from_sealed(stored: &str, endpoint: EndpointId, sealer: &Sealer) -> Result<Self> {
        if !is_sealed(stored) {
            return Self::from_stored(stored);
        }
        let plain = sealer.open(endpoint, stored)?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Corrupt("endpoint secrets"))?;
        Self::from_stored(text)
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    current: String,
    previous: Vec<(String, DateTime<Utc>)>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.current.zeroize();
        for (k, _) in &mut self.previous {
            k.zeroize();
        }
    }
}
