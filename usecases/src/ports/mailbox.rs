//! The mailbox ports: the peer's side ([`Mailbox`]: deposit, fetch, acknowledge, and the
//! certified keys of someone never met) and the rendezvous's store of held entries
//! ([`MailboxStore`], sled today, PostgreSQL beside it for scale-out).

use std::future::Future;

use auto_impl::auto_impl;
use parley_domain::{MailId, PeerKeys, Timestamp, Usage, Username};

/// What a peer hands the rendezvous to hold for an offline recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Deposit {
    /// The sealed envelope, wrapped once more to the recipient's device
    /// ([`crate::ports::Envelopes::wrap`]): the rendezvous cannot read even the sender's name.
    pub sealed: Vec<u8>,
    /// The message's attachment files, each already encrypted under its own key, in the
    /// header's order.
    pub files: Vec<Vec<u8>>,
    /// When the message disappears (its TTL), so the rendezvous purges it then.
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for Deposit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deposit")
            .field("sealed", &self.sealed.len())
            .field(
                "files",
                &self.files.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An entry the rendezvous held for this device, as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct MailItem {
    /// Its id at the rendezvous (to acknowledge it).
    pub id: MailId,
    /// The wrapped envelope (or receipt), as deposited.
    pub sealed: Vec<u8>,
    /// The attachment files, as deposited.
    pub files: Vec<Vec<u8>>,
}

impl std::fmt::Debug for MailItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailItem")
            .field("id", &self.id)
            .field("sealed", &self.sealed.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// One batch of held mail, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailBatch {
    /// The entries.
    pub items: Vec<MailItem>,
    /// Whether more wait behind them (fetch again after acknowledging these).
    pub more: bool,
}

/// Why the mailbox could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The rendezvous could not be reached or did not answer.
    #[error("the rendezvous's mailbox is unreachable: {0}")]
    Unavailable(String),
    /// The rendezvous refused, with its code (`mailbox_full`, `mailbox_sender_quota`, …) and
    /// one sentence.
    #[error("the rendezvous refused to hold the message ({code}): {reason}")]
    Refused {
        /// A stable snake_case code ([`parley_domain::mailbox::Refusal::code`]).
        code: String,
        /// One sentence.
        reason: String,
        /// Whether the same deposit can never succeed.
        permanent: bool,
    },
}

impl MailboxError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Unavailable(_) => "rendezvous_unavailable",
            Self::Refused { code, .. } => code,
        }
    }
}

/// The rendezvous's mailbox, as the peer uses it over its mutual-TLS link; every request is
/// made as this device's certificate (no request names its sender).
#[auto_impl(Arc)]
pub trait Mailbox: Send + Sync {
    /// Asks the rendezvous to hold `deposit` for `to`. Resolves once it is durably held.
    ///
    /// # Errors
    /// [`MailboxError`]; nothing was held.
    fn deposit(
        &self,
        to: &Username,
        deposit: &Deposit,
    ) -> impl Future<Output = Result<(), MailboxError>> + Send;

    /// The oldest entries held for this device.
    ///
    /// # Errors
    /// [`MailboxError`].
    fn fetch(&self) -> impl Future<Output = Result<MailBatch, MailboxError>> + Send;

    /// Lets the rendezvous delete these entries: they are stored here durably.
    ///
    /// # Errors
    /// [`MailboxError`]; the entries stay held and come again at the next fetch.
    fn acknowledge(&self, ids: &[MailId]) -> impl Future<Output = Result<(), MailboxError>> + Send;

    /// The keys of `user`'s certificate as the rendezvous issued it, verified against the CA
    /// by the adapter; `None` when nobody by that name is enrolled.
    ///
    /// # Errors
    /// [`MailboxError`] (unreachable, rate-limited, or a certificate that does not verify).
    fn certified_keys(
        &self,
        user: &Username,
    ) -> impl Future<Output = Result<Option<PeerKeys>, MailboxError>> + Send;
}

/// A held entry's bookkeeping: everything the rendezvous knows about it besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldMeta {
    /// Its id.
    pub id: MailId,
    /// When it came.
    pub deposited_at: Timestamp,
    /// When it is purged.
    pub expires_at: Timestamp,
    /// Its bytes, sealed envelope and files together.
    pub size: u64,
}

/// A held entry, bytes included.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldEntry {
    /// Its bookkeeping.
    pub meta: HeldMeta,
    /// The wrapped envelope.
    pub sealed: Vec<u8>,
    /// The attachment files.
    pub files: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HeldEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldEntry")
            .field("meta", &self.meta)
            .field("sealed", &self.sealed.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// The store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxStoreError {
    /// Could not be read or written, or a record is corrupt.
    #[error("the mailbox store is unavailable: {0}")]
    Unavailable(String),
}

/// Where the rendezvous keeps held mail. Blocking calls: the caller runs them off the async
/// workers. Entries are filed under the recipient only; no sender is stored.
///
/// # Errors
/// Every method returns [`MailboxStoreError`] when the medium fails.
#[auto_impl(Arc, Box)]
pub trait MailboxStore: Send + Sync {
    /// Holds `entry` for `recipient`; durable (synced) before it returns.
    fn put(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError>;
    /// Holds each entry of `batch` for its recipient and syncs once for all of them (group
    /// commit): one result per entry, in order, each `Ok` durable when this returns. The
    /// default puts them one by one.
    fn put_batch(&self, batch: &[(Username, HeldEntry)]) -> Vec<Result<(), MailboxStoreError>> {
        batch
            .iter()
            .map(|(recipient, entry)| self.put(recipient, entry))
            .collect()
    }
    /// The oldest entries held for `recipient`, at most `max_entries` and — beyond the first —
    /// at most `max_bytes` together, with the bytes; and whether more wait. Expired entries
    /// (at `now`) are left out.
    fn oldest(
        &self,
        recipient: &Username,
        now: Timestamp,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<(Vec<HeldEntry>, bool), MailboxStoreError>;
    /// Deletes `id` from `recipient`'s mailbox, durably; returns its bookkeeping if it was
    /// held (an id of another recipient's entry is not found).
    fn remove(
        &self,
        recipient: &Username,
        id: &MailId,
    ) -> Result<Option<HeldMeta>, MailboxStoreError>;
    /// Deletes each of `ids` from `recipient`'s mailbox and syncs once; returns the
    /// bookkeeping of those that were held. The default removes them one by one.
    fn remove_batch(
        &self,
        recipient: &Username,
        ids: &[MailId],
    ) -> Result<Vec<HeldMeta>, MailboxStoreError> {
        let mut removed = Vec::new();
        for id in ids {
            removed.extend(self.remove(recipient, id)?);
        }
        Ok(removed)
    }
    /// What `recipient`'s mailbox holds now.
    fn usage(&self, recipient: &Username) -> Result<Usage, MailboxStoreError>;
    /// Deletes every entry whose expiry is at or before `now`, durably; returns the
    /// recipients and bookkeeping of what went.
    fn purge_expired(&self, now: Timestamp)
    -> Result<Vec<(Username, HeldMeta)>, MailboxStoreError>;
    /// What the whole store holds (for the metrics).
    fn totals(&self) -> Result<Usage, MailboxStoreError>;
}

/// The rendezvous's book of issued certificates, for the key look-up of someone never met.
#[auto_impl(Arc, Box)]
pub trait CertificateBook: Send + Sync {
    /// The newest certificate issued to `user` (DER), if the name is enrolled.
    ///
    /// # Errors
    /// [`MailboxStoreError`] when the registry cannot be read.
    fn certificate_of(&self, user: &Username) -> Result<Option<Vec<u8>>, MailboxStoreError>;
}
