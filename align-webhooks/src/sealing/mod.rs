//! Endpoint signing secrets sealed at rest (DESIGN §8): AES-256-GCM through `ring`, with keys
//! kept outside the database.
//!
//! A store must keep an endpoint's signing keys (the dispatcher signs with them), so whoever
//! reads the database or a backup of it could forge deliveries to every receiver. The SQLite
//! and PostgreSQL stores therefore keep only sealed values: [`Sealer::seal`] encrypts the
//! stored form of an endpoint's keys under the sealer's current [`SealingKey`] with a fresh
//! random 96-bit nonce, binding the endpoint id as associated data so that a sealed value
//! copied to another endpoint's row does not open.
//!
//! A sealed value names its key (`sealed:v1:{key id}:{base64 of nonce, ciphertext and
//! tag}`), so the keys can be rotated: [`Sealer::rotate`] makes a new key current while the
//! old ones still open what they sealed, [`WebhookStore::reseal_secrets`](crate::WebhookStore::reseal_secrets)
//! re-seals every value under the new key in one transaction, and
//! [`Sealer::retire_previous`] forgets the old keys. The keys live in a key file
//! ([`Sealer::load`], [`Sealer::load_or_create`]; mode `0600`, one key per line) or wherever
//! an embedder keeps them ([`Sealer::new`]).
//!
//! ```
//! use align_webhooks::{EndpointId, SealingKey, Sealer};
//! let sealer = Sealer::new(SealingKey::generate()?);
//! let endpoint = EndpointId::new();
//! let sealed = sealer.seal(endpoint, b"the stored keys")?;
//! assert!(sealed.starts_with(&format!("sealed:v1:{}:", sealer.current_id())));
//! assert_eq!(&*sealer.open(endpoint, &sealed)?, b"the stored keys");
//! // Moved to another endpoint's row, it does not open.
//! assert!(sealer.open(EndpointId::new(), &sealed).is_err());
//! assert_eq!(format!("{:?}", SealingKey::from_bytes(&[7; 32])?), "SealingKey { id: \"c0fb0379\", key: [redacted] }");
//! # Ok::<(), align_webhooks::Error>(())
//! ```

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::EndpointId;

mod file;

use file::{FileStamp, KeyFile};

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Bytes of a sealing key (AES-256).
pub const SEALING_KEY_BYTES: usize = 32;

/// Separates the associated data of sealed endpoint secrets from anything else a key might
/// ever seal.
const AAD_CONTEXT: &[u8] = b"align-webhooks endpoint secrets v1";

/// One AES-256-GCM key with its id: the first 8 hex digits of a SHA-256 of the key (which
/// tells nothing about the key, and lets an error name the key a value needs).
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    bytes: Arc<Zeroizing<[u8; SEALING_KEY_BYTES]>>,
    key: Arc<LessSafeKey>,
}

impl SealingKey {
    /// A fresh key from the system's secure random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0_u8; SEALING_KEY_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| Error::Random)?;
        Self::from_bytes(bytes.as_ref())
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; SEALING_KEY_BYTES] =
            bytes.try_into().map_err(|_| Error::MalformedSealingKey)?;
        let raw = Zeroizing::new(raw);
        let unbound =
            UnboundKey::new(&AES_256_GCM, raw.as_ref()).map_err(|_| Error::MalformedSealingKey)?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"align sealing key id\0");
        context.update(raw.as_ref());
        let digest = context.finish();
        let id = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id,
            bytes: Arc::new(raw),
            key: Arc::new(LessSafeKey::new(unbound)),
        })
    }

    /// Its id, as sealed values and error messages name it.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.as_ref().as_ref()
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

/// The keys that seal and open endpoint secrets: the current key, which seals, and the
/// previous ones, which only open what they sealed before a rotation. Cheap to clone (clones
/// share the keys).
///
/// A sealer loaded from a key file follows the file: before each seal, and when a value names
/// a key it does not hold, it reads the file again if the file changed. So a rotation made by
/// another process (`align secrets rotate-key` beside a running server) reaches it without a
/// restart.
#[derive(Clone)]
pub struct Sealer {
    keys: Arc<RwLock<Keys>>,
    file: Option<Arc<KeyFile>>,
}

#[derive(Clone)]
struct Keys {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl Keys {
    fn find(&self, id: &str) -> Option<&SealingKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    fn all(&self) -> impl Iterator<Item = &SealingKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.read();
        f.debug_struct("Sealer")
            .field("current", &keys.current.id)
            .field(
                "previous",
                &keys.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .field("file", &self.file.as_ref().map(|f| &f.path))
            .finish()
    }
}

impl Sealer {
    /// A sealer holding `current` only, kept in memory (an embedder's own key management).
    pub fn new(current: SealingKey) -> Self {
        Self {
            keys: Arc::new(RwLock::new(Keys {
                current,
                previous: Vec::new(),
            })),
            file: None,
        }
    }

    /// The same sealer, also able to open values sealed by `previous`.
    #[must_use]
    pub fn with_previous(self, previous: SealingKey) -> Self {
        {
            let mut keys = self.write();
            if keys.find(&previous.id).is_none() {
                keys.previous.push(previous);
            }
        }
        self
    }

    /// The sealer of the key file at `path` (see [`Sealer::load_or_create`] for its format).
    /// A missing, unreadable or malformed file is an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let (keys, stamp) = file::read(path)?;
        Ok(Self::from_file(keys, path, stamp))
    }

    /// The sealer of the key file at `path`, creating the file with a fresh key (mode `0600`)
    /// when there is none; the answer says whether it was created. Never replaces an existing
    /// file.
    ///
    /// The file holds one key per line, `aes256gcm:` and the key's 32 bytes in base64; the
    /// first key is current, any others only open values sealed before a rotation. Lines
    /// starting with `#` are comments.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match file::create(path)? {
            Some((keys, stamp)) => Ok((Self::from_file(keys, path, stamp), true)),
            None => Self::load(path).map(|s| (s, false)),
        }
    }

    fn from_file(keys: Keys, path: &Path, stamp: FileStamp) -> Self {
        Self {
            keys: Arc::new(RwLock::new(keys)),
            file: Some(Arc::new(KeyFile {
                path: path.to_owned(),
                stamp: Mutex::new(stamp),
            })),
        }
    }

    /// The key file this sealer follows, if any.
    pub fn key_file(&self) -> Option<&Path> {
        self.file.as_deref().map(|f| f.path.as_path())
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> String {
        self.read().current.id.clone()
    }

    /// The ids of every key held, current first.
    pub fn key_ids(&self) -> Vec<String> {
        self.read().all().map(|k| k.id.clone()).collect()
    }

    /// Whether the key `id` is held (after reading the key file again if it changed).
    pub fn holds(&self, id: &str) -> Result<bool> {
        if self.read().find(id).is_some() {
            return Ok(true);
        }
        self.refresh()?;
        Ok(self.read().find(id).is_some())
    }

    /// Seals `plaintext`, the stored keys of `endpoint`, under the current key (the key file
    /// is read again first if it changed).
    pub fn seal(&self, endpoint: EndpointId, plaintext: &[u8]) -> Result<String> {
        self.seal_value(AAD_CONTEXT, &endpoint.to_string(), plaintext)
    }

    /// Seals any other value at rest under the current key (the key file is read again
    /// first if it changed): `purpose` names the kind of value and `context` the one it
    /// belongs to (both bound as associated data), so a value sealed for one purpose or
    /// context never opens as another's. The server seals the replies it keeps for
    /// `Idempotency-Key` this way.
    pub fn seal_value(&self, purpose: &[u8], context: &str, plaintext: &[u8]) -> Result<String> {
        self.refresh()?;
        let key = self.read().current.clone();
        let mut nonce = [0_u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Random)?;
        // Sealed in place: the copy of the plaintext becomes the ciphertext.
        let mut body = Vec::with_capacity(plaintext.len() + AES_256_GCM.tag_len());
        body.extend_from_slice(plaintext);
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(purpose, &key.id, context)),
                &mut body,
            )
            .map_err(|_| Error::Corrupt("endpoint secrets too large to seal"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            key.id,
            STANDARD.encode(&sealed)
        ))
    }

    /// Opens a value [`Sealer::seal`] made for `endpoint`. A value sealed for another
    /// endpoint, altered, or sealed under another key with the same id does not open
    /// ([`Error::Unseal`]); one naming a key this sealer does not hold, even after reading
    /// the key file again, is [`Error::UnknownSealingKey`].
    pub fn open(&self, endpoint: EndpointId, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        self.open_value(AAD_CONTEXT, &endpoint.to_string(), sealed)
    }

    /// Opens a value [`Sealer::seal_value`] made with the same `purpose` and `context`.
    pub fn open_value(
        &self,
        purpose: &[u8],
        context: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (id, body) = split(sealed)?;
        let Some(key) = self.key(id)? else {
            return Err(Error::UnknownSealingKey {
                key_id: id.to_owned(),
            });
        };
        let raw = STANDARD.decode(body).map_err(|_| Error::Unseal)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Unseal)?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = key
            .key
            .open_in_place(
                nonce,
                Aad::from(associated_data(purpose, &key.id, context)),
                &mut buf,
            )
            .map_err(|_| Error::Unseal)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// The key `id`, reading the key file again when it is not held.
    fn key(&self, id: &str) -> Result<Option<SealingKey>> {
        if let Some(k) = self.read().find(id) {
            return Ok(Some(k.clone()));
        }
        self.refresh()?;
        Ok(self.read().find(id).cloned())
    }

    /// Starts a rotation: a fresh key becomes current, the old ones stay to open what they
    /// sealed; a file-backed sealer writes its file first (atomically, `0600`), so no value is
    /// ever sealed under a key that is not saved. Returns the new key's id. Then re-seal every
    /// value ([`WebhookStore::reseal_secrets`](crate::WebhookStore::reseal_secrets)) and
    /// finish with [`Sealer::retire_previous`].
    pub fn rotate(&self) -> Result<String> {
        self.refresh()?;
        let next = SealingKey::generate()?;
        let mut keys = self.read().clone();
        let old = std::mem::replace(&mut keys.current, next);
        keys.previous.insert(0, old);
        self.save_and_use(keys)
    }

    /// Ends a rotation: forgets every key but the current one (in the key file too). Call it
    /// only once every value is sealed under the current key.
    pub fn retire_previous(&self) -> Result<()> {
        self.refresh()?;
        let mut keys = self.read().clone();
        keys.previous.clear();
        self.save_and_use(keys).map(drop)
    }

    fn save_and_use(&self, keys: Keys) -> Result<String> {
        if let Some(f) = &self.file {
            let stamp = file::write(&f.path, &keys)?;
            *f.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        }
        let id = keys.current.id.clone();
        *self.write() = keys;
        Ok(id)
    }

    /// Reads the key file again if it changed since it was last read. A file that cannot be
    /// read or parsed now is an error (nothing is sealed under a key that may be stale).
    pub fn refresh(&self) -> Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let mut stamp = f.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if file::stamp(&f.path)? == *stamp {
            return Ok(());
        }
        let (keys, now) = file::read(&f.path)?;
        *self.write() = keys;
        *stamp = now;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a stored value is sealed (anything else is a plaintext value written before
/// sealing existed, which stores seal when they open).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The key id a sealed value names.
pub fn sealed_key_id(sealed: &str) -> Result<&str> {
    split(sealed).map(|(id, _)| id)
}

fn split(sealed: &str) -> Result<(&str, &str)> {
    sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .ok_or(Error::Unseal)
}

/// The context, the key's id and the endpoint's id: a value opens only for the endpoint it
/// was sealed for.
fn associated_data(purpose: &[u8], key_id: &str, context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(purpose.len() + key_id.len() + context.len() + 2);
    aad.extend_from_slice(purpose);
    aad.push(b'\n');
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(b'\n');
    aad.extend_from_slice(context.as_bytes());
    aad
}

#[cfg(test)]
mod tests;

/// The secrets key seals the replies `align-http` keeps for `Idempotency-Key` in a shared
/// store, as it seals endpoint secrets (feature `http`): a replayed mint's token is never at
/// rest in the clear.
#[cfg(feature = "http")]
impl align_http::Seal for Sealer {
    fn seal(
        &self,
        purpose: &[u8],
        context: &str,
        plaintext: &[u8],
    ) -> std::result::Result<String, align_http::Error> {
        self.seal_value(purpose, context, plaintext)
            .map_err(|e| align_http::Error::Seal(e.to_string()))
    }

    fn open(
        &self,
        purpose: &[u8],
        context: &str,
        sealed: &str,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, align_http::Error> {
        self.open_value(purpose, context, sealed)
            .map_err(|e| align_http::Error::Seal(e.to_string()))
    }
}
