//! Anchoring the audit and request logs outside the database (DESIGN §8): while serving, and
//! once more at a clean shutdown, the head of each stream that moved is signed (Ed25519, key
//! in `DIR/audit-anchor-key`), appended to `DIR/audit-anchors.jsonl` and sent as an
//! `audit.checkpoint` event, so it reaches webhooks and `GET /events` and leaves the machine.
//! `align audit verify` holds the chain to the highest anchor, so the newest records cannot be
//! removed (and the head rewritten) unnoticed once an anchor covers them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use align_audit::{Anchor, AnchorKey, AnchorLog, Head, Stream};
use chrono::Utc;

use crate::bootstrap::key_file;
use crate::error::Error;
use crate::state::AppState;

/// The anchor signing key's file in the data directory (PKCS#8, hex, mode 0600).
pub const ANCHOR_KEY_FILE: &str = "audit-anchor-key";
/// The anchor file in the data directory (JSON Lines, mode 0600).
pub const ANCHOR_LOG_FILE: &str = "audit-anchors.jsonl";

/// The key that signs the anchors of the deployment whose data directory is `data_dir`
/// (`DIR/audit-anchor-key`): `None` when there is none, unless `create` is set, which makes
/// one first (an Ed25519 PKCS#8 document from `ring`, as hex, mode 0600).
pub fn audit_anchor_key(data_dir: &Path, create: bool) -> Result<Option<AnchorKey>, Error> {
    let path = data_dir.join(ANCHOR_KEY_FILE);
    let generate = || Ok(AnchorKey::generate_pkcs8()?);
    match key_file(&path, create, generate)? {
        None => Ok(None),
        Some(pkcs8) => AnchorKey::from_pkcs8(&pkcs8)
            .map(Some)
            .map_err(|e| Error::Setting {
                key: ANCHOR_KEY_FILE.into(),
                reason: e.to_string(),
            }),
    }
}

/// Where the anchors of the deployment whose data directory is `data_dir` are appended.
pub fn audit_anchor_log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ANCHOR_LOG_FILE)
}

/// Signs and records the heads of both streams.
pub(crate) struct Anchorer {
    key: AnchorKey,
    log: Arc<AnchorLog>,
    /// The head last anchored per stream by this process: an unchanged head is not anchored
    /// again.
    last: Mutex<BTreeMap<Stream, Head>>,
}

impl std::fmt::Debug for Anchorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchorer")
            .field("key", &self.key)
            .field("log", &self.log.path())
            .finish_non_exhaustive()
    }
}

impl Anchorer {
    /// The data directory's key (created on first start) and anchor file.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, Error> {
        let key = audit_anchor_key(data_dir, true)?.ok_or_else(|| Error::Setting {
            key: ANCHOR_KEY_FILE.into(),
            reason: "the key file could not be created".into(),
        })?;
        let log = AnchorLog::open(audit_anchor_log_path(data_dir))?;
        Ok(Self {
            key,
            log: Arc::new(log),
            last: Mutex::default(),
        })
    }

    /// The anchor file.
    pub(crate) fn path(&self) -> &Path {
        self.log.path()
    }

    /// The signing key's public half, for the start-up log line.
    pub(crate) fn public_key(&self) -> &align_audit::AnchorPublicKey {
        self.key.public_key()
    }

    /// Anchors each stream whose committed head moved since this process last anchored it
    /// (an empty stream is not anchored): signed, appended to the anchor file and on disk,
    /// then emitted as an `audit.checkpoint` event. Returns the anchors made. A stream that
    /// could not be anchored is logged and tried again next time.
    pub(crate) async fn anchor(&self, state: &AppState) -> Vec<Anchor> {
        let mut made = Vec::new();
        for stream in Stream::ALL {
            match self.anchor_stream(state, stream).await {
                Ok(Some(anchor)) => made.push(anchor),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, stream = stream.as_str(), "could not anchor the log");
                }
            }
        }
        made
    }

    async fn anchor_stream(
        &self,
        state: &AppState,
        stream: Stream,
    ) -> Result<Option<Anchor>, Error> {
        let head = state.audit.head(stream).await?;
        let unchanged = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&stream)
            == Some(&head);
        if head.sequence == 0 || unchanged {
            return Ok(None);
        }
        let anchor = self.key.sign(stream, head, Utc::now());
        let log = Arc::clone(&self.log);
        let line = anchor.clone();
        tokio::task::spawn_blocking(move || log.append(&line))
            .await
            .map_err(|_| align_audit::Error::Worker)??;
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream, head);
        state.audit_checkpoint(&anchor).await;
        Ok(Some(anchor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_0600_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        assert!(audit_anchor_key(dir.path(), false).unwrap().is_none());
        let made = audit_anchor_key(dir.path(), true).unwrap().unwrap();
        let again = audit_anchor_key(dir.path(), false).unwrap().unwrap();
        assert_eq!(made.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ANCHOR_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(ANCHOR_KEY_FILE), "abcd\n").unwrap();
        let e = audit_anchor_key(dir.path(), false).unwrap_err();
        assert!(e.to_string().contains(ANCHOR_KEY_FILE), "{e}");
    }
}
