//! `Idempotency-Key` on POST: per API key, for 24 hours.
//!
//! The first request with a key runs; while it runs, a second gets `409 idempotency_conflict`;
//! afterwards the same request gets the stored status and body again with
//! `Idempotent-Replayed: true`, and a different request with the same key gets
//! `422 idempotency_key_reused`. Server errors (5xx) are not stored, so the client may retry.
//!
//! Where the replies are kept ([`ReplyStore`]):
//! - **this instance's memory** (the default, and the embedded SQLite deployment): zeroed when
//!   dropped, never written to disk, forgotten at a restart;
//! - **the PostgreSQL database** every instance shares (`ReplyStore::postgres`, feature `postgres`): the same
//!   replay is answered by any instance (issue 21, finding 6: a replay on another instance
//!   minted a second key). A reply can hold a freshly minted token, so it is sealed
//!   (AES-256-GCM, the secrets key file's key, bound to its API key and `Idempotency-Key`)
//!   before it is written (DESIGN §8).
//!
//! Both are bounded in bytes as well as entries (issue 21, finding 1): a reply larger than
//! [`Budget::max_reply_bytes`] is not kept (a retry runs again), one API key holds at most
//! [`Budget::max_bytes_per_key`] (its own oldest entries go first), and the whole store at
//! most [`Budget::max_bytes`] (the oldest entries of anyone go first).

mod layer;
mod memory;
#[cfg(feature = "postgres")]
mod migrations;
#[cfg(feature = "postgres")]
mod shared;

use bytes::Bytes;
use http::StatusCode;

use crate::ApiError;

pub use layer::{IdempotencyLayer, IdempotencyService};
pub use memory::{Budget, MAX_KEY_LEN, Stored, TTL, fingerprint, validate_key};

/// Seals replies before the shared store writes them, and opens them again (the reference
/// server seals with its secrets key, AES-256-GCM). `purpose` and `context` are associated
/// data: a reply opens only for the API key and `Idempotency-Key` it was sealed for.
pub trait Seal: Send + Sync + 'static {
    /// `plaintext` sealed, as text.
    fn seal(&self, purpose: &[u8], context: &str, plaintext: &[u8])
    -> Result<String, crate::Error>;
    /// What [`Seal::seal`] sealed.
    fn open(
        &self,
        purpose: &[u8],
        context: &str,
        sealed: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::Error>;
}

/// Where the replies kept for `Idempotency-Key` live: this instance's memory (the
/// [`Default`]) or the PostgreSQL database several instances share.
pub struct ReplyStore(Backend);

enum Backend {
    Memory(memory::Idempotency),
    #[cfg(feature = "postgres")]
    Shared(shared::Shared),
}

impl std::fmt::Debug for ReplyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "postgres")]
            Backend::Shared(_) => "postgres",
        };
        f.debug_tuple("ReplyStore").field(&kind).finish()
    }
}

impl Default for ReplyStore {
    fn default() -> Self {
        Self::memory()
    }
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug)]
pub enum Begin {
    /// Run it; complete the ticket with its response.
    Run(Ticket),
    /// Answer with this stored response.
    Replay(Stored),
}

/// The right to run a request; dropping it without completing frees the key again.
#[derive(Debug)]
pub struct Ticket(TicketKind);

#[derive(Debug)]
enum TicketKind {
    Memory(memory::Ticket),
    #[cfg(feature = "postgres")]
    Shared(shared::Ticket),
}

impl ReplyStore {
    /// Replies kept in this instance's memory, within the default budget (64 KiB a reply,
    /// 1 MiB a key, 64 MiB in all).
    pub fn memory() -> Self {
        Self(Backend::Memory(memory::Idempotency::default()))
    }

    /// Replies kept in the PostgreSQL database behind `pool` (table `idempotency_replies`,
    /// created by migration), sealed by `sealer`, so that every instance sharing the database
    /// answers a replay the same way. Every instance needs the same secrets key (as it does
    /// for webhook secrets).
    #[cfg(feature = "postgres")]
    pub async fn postgres(
        pool: align_core::postgres::Pool,
        sealer: std::sync::Arc<dyn Seal>,
    ) -> Result<Self, crate::Error> {
        Ok(Self(Backend::Shared(
            shared::Shared::open(pool, sealer, Budget::default()).await?,
        )))
    }

    /// Bytes held (replies, keys and bookkeeping), for `align_idempotency_bytes`. For the
    /// shared store, as of the last [`ReplyStore::sweep`].
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Backend::Memory(m) => m.bytes(),
            #[cfg(feature = "postgres")]
            Backend::Shared(s) => s.bytes(),
        }
    }

    /// Removes what expired and keeps the whole store within its budget (the memory table
    /// does this as it goes; the shared one here, every sweep).
    pub async fn sweep(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Shared(s) = &self.0 {
            if let Err(e) = s.sweep().await {
                tracing::warn!(code = e.code, "idempotency sweep failed");
            }
        }
    }

    /// Registers a request, or says how to answer it.
    pub async fn begin(
        &self,
        api_key: &str,
        idem_key: String,
        fingerprint: [u8; 32],
    ) -> Result<Begin, ApiError> {
        Ok(match &self.0 {
            Backend::Memory(m) => match m.begin(api_key, idem_key, fingerprint)? {
                memory::Begin::Run(t) => Begin::Run(Ticket(TicketKind::Memory(t))),
                memory::Begin::Replay(stored) => Begin::Replay(stored),
            },
            #[cfg(feature = "postgres")]
            Backend::Shared(s) => match s.begin(api_key, idem_key, fingerprint).await? {
                Ok(t) => Begin::Run(Ticket(TicketKind::Shared(t))),
                Err(stored) => Begin::Replay(stored),
            },
        })
    }
}

impl Ticket {
    /// Stores the response for replay. Server errors free the key instead, and so does a
    /// reply over the size budget (a retry then runs again).
    pub async fn complete(self, status: StatusCode, body: &Bytes) {
        match self.0 {
            TicketKind::Memory(t) => t.complete(status, body),
            #[cfg(feature = "postgres")]
            TicketKind::Shared(t) => t.complete(status, body).await,
        }
    }
}
