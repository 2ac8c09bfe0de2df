//! The store ports: conversations, the outbox, chains, contacts, expiry, attachment files and
//! the device identity, all kept by one store adapter.

use std::path::{Path, PathBuf};

use auto_impl::auto_impl;
use parley_domain::ratchet::SessionBook;
use parley_domain::{
    Attachment, AttachmentRef, ChainHead, ChainState, Contact, ConversationSummary, DeviceIdentity,
    Digest, Link, MessageId, Neighbours, StoredMessage, Timestamp, Username,
};

/// Failure of the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be read or written (disk full, I/O error, corrupt record).
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
}

/// Whether [`Inbox::store_incoming`] kept a new message or recognised one it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// First time this (sender, id): now stored durably.
    New,
    /// The same envelope (same digest) was stored before; nothing changed. A retry or a
    /// replay: the receipt may be given again.
    Duplicate,
    /// Another envelope under this (sender, id) was stored before; nothing changed.
    Conflicting,
}

/// An outgoing message still waiting for its receipt, with the envelope to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The message as the conversation shows it.
    pub message: StoredMessage,
    /// The sealed envelope, sent unchanged on every attempt.
    pub envelope: Vec<u8>,
}

/// Conversations, the outbox, the hash chains, contacts and expiry: everything the messaging
/// interactor keeps. A blanket name for the ports below, which one store implements together;
/// a use case that needs only part of it asks for only that part ([`Conversations`] for the
/// history, [`OutboxStore`] for the status, [`Contacts`] for a contact's safety number).
///
/// # Errors
/// Every method of these ports returns [`StoreError::Unavailable`] when the medium fails.
/// Implementations MUST NOT report success for a write that is not durable (flushed) yet,
/// except for the `_deferred` writes, durable at the next [`Durability::sync`].
pub trait MessageStore:
    Durability + OutboxStore + Inbox + Chains + Conversations + Contacts + Expiry + Sessions
{
}

impl<T> MessageStore for T where
    T: Durability
        + OutboxStore
        + Inbox
        + Chains
        + Conversations
        + Contacts
        + Expiry
        + Sessions
        + ?Sized
{
}

/// A contact's ratchet sessions as a message leaves them, written in the same durable step as
/// that message: a crash keeps both or neither, so the two sides never fall out of step.
#[derive(Debug, Clone, Copy)]
pub struct SessionUpdate<'a> {
    /// The contact.
    pub with: &'a Username,
    /// Its sessions after the message.
    pub book: &'a SessionBook,
    /// The one-time prekey the message's agreement used up, deleted in the same step.
    pub used_one_time_prekey: Option<u32>,
}

/// The ratchet sessions with each contact.
#[auto_impl(Arc)]
pub trait Sessions: Durability {
    /// The sessions with `with` (empty when none).
    fn sessions(&self, with: &Username) -> Result<SessionBook, StoreError>;
    /// Every DH step this device took itself, over all conversations (`status`'s rekeys).
    fn rekeys(&self) -> Result<u64, StoreError>;
    /// Forgets the sessions with `with` (its keys changed and the user accepted the new ones).
    fn reset_sessions(&self, with: &Username) -> Result<(), StoreError>;
    /// The digest of the envelope stored under (`from`, `id`), if one was: a retry of the same
    /// envelope is recognised before its session is asked to open it a second time (which it
    /// cannot: its key is gone).
    fn incoming_digest(
        &self,
        from: &Username,
        id: &MessageId,
    ) -> Result<Option<Digest>, StoreError>;
    /// As [`OutboxStore::append_outgoing_deferred`], with the sessions in the same write.
    fn append_outgoing_in_session_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError>;
    /// As [`OutboxStore::reseal`], with the sessions in the same write; durable on return.
    fn reseal_in_session(
        &self,
        id: &MessageId,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError>;
    /// As [`Inbox::store_incoming_deferred`], with the sessions in the same write (which is not
    /// made when the message was stored before).
    fn store_incoming_in_session_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
        session: &SessionUpdate<'_>,
    ) -> Result<Stored, StoreError>;
}

/// Group commit: the `_deferred` writes of [`OutboxStore`] and [`Inbox`] become durable
/// together, at one trip to the disk.
#[auto_impl(Arc)]
pub trait Durability: Send + Sync {
    /// Makes every write so far durable (the deferred ones included).
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Outgoing messages: kept with their sealed envelopes until the receipt (or a refusal for
/// good) comes back.
#[auto_impl(Arc)]
pub trait OutboxStore: Durability {
    /// Adds an outgoing message to its conversation and, with its sealed `envelope`, to the
    /// outbox, and moves the chain towards `message.to` to `head` — durably, atomically.
    fn append_outgoing(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError>;
    /// As [`OutboxStore::append_outgoing`], but durable only once [`Durability::sync`]
    /// returns; nothing may be sent before that `sync`.
    fn append_outgoing_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        self.append_outgoing(message, envelope, head)
    }
    /// Replaces the kept envelope of the outbox message `id` (sealed again, to a contact's
    /// newly accepted keys) and moves the chain towards its recipient to `head`, atomically.
    /// Does nothing when `id` is no longer in the outbox.
    fn reseal(&self, id: &MessageId, envelope: &[u8], head: &ChainHead) -> Result<(), StoreError>;
    /// Records the receipt of an outgoing message and takes it out of the outbox. One of the two
    /// writes that need not be durable at once: lost in a crash, it only sends the message again, and
    /// the recipient stores it once.
    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError>;
    /// Records that the rendezvous holds an outgoing message for its offline recipient since
    /// `at` (its delivery shows `queued`); it stays in the outbox until its receipt. Durable
    /// when it returns: a queued message is never deposited twice after a crash. Does nothing
    /// when `id` is no longer in the outbox (its receipt came first).
    fn mark_queued(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError>;
    /// Records that the recipient refused an outgoing message for good and takes it out of
    /// the outbox.
    fn mark_rejected(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError>;
    /// Outgoing messages still waiting for a receipt, oldest first, expired ones left out.
    fn outbox(&self, now: Timestamp) -> Result<Vec<OutboxEntry>, StoreError>;
}

/// Incoming messages: stored once per (sender, id), with their place in the sender's chain.
#[auto_impl(Arc)]
pub trait Inbox: Durability {
    /// Stores an incoming message durably, once per (sender, id), with its place in the
    /// sender's chain: `link` joins the chain when the message is verified, and counts as a
    /// fault of that chain otherwise. The (sender, id) stays remembered after the message
    /// expires, so a replay is recognised for ever.
    fn store_incoming(&self, message: &StoredMessage, link: &Link) -> Result<Stored, StoreError>;
    /// As [`Inbox::store_incoming`], but durable only once [`Durability::sync`] returns: many
    /// writes then share one trip to the disk (group commit). No receipt may be given before
    /// that `sync`.
    fn store_incoming_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
    ) -> Result<Stored, StoreError> {
        self.store_incoming(message, link)
    }
}

/// The hash chains: this device's head towards each contact, and each contact's chain towards
/// this device.
#[auto_impl(Arc)]
pub trait Chains: Send + Sync {
    /// The head of this device's chain towards `to` ([`ChainHead::EMPTY`] before the first
    /// message).
    fn chain_head(&self, to: &Username) -> Result<ChainHead, StoreError>;
    /// The accepted links of `from`'s chain around position `seq`.
    fn neighbours(&self, from: &Username, seq: u64) -> Result<Neighbours, StoreError>;
    /// The state of `from`'s chain towards this device.
    fn chain_state(&self, from: &Username) -> Result<ChainState, StoreError>;
    /// Forgets both chains with `user` (the one received from them and this device's head
    /// towards them), durably: their new device starts its chain afresh, and knows nothing of
    /// ours. The ids seen from them stay remembered.
    fn reset_chains(&self, user: &Username) -> Result<(), StoreError>;
}

/// The conversations as the user reads them, and what was read.
#[auto_impl(Arc)]
pub trait Conversations: Send + Sync {
    /// One conversation, oldest first, without messages expired at `now`.
    fn history(&self, with: &Username, now: Timestamp) -> Result<Vec<StoredMessage>, StoreError>;
    /// Every conversation that still has a message not expired at `now`, most recent first.
    fn conversations(&self, now: Timestamp) -> Result<Vec<ConversationSummary>, StoreError>;
    /// Marks the conversation with `with` read up to now: every message it holds counts as
    /// read, and only those stored after this call count in
    /// [`ConversationSummary::unread`]. A later call moves the mark on; marking a
    /// conversation that does not exist (or holds nothing any more) is `Ok` and changes
    /// nothing that shows. Purging messages leaves the mark valid. Like
    /// [`OutboxStore::mark_delivered`], need not be durable at once: lost in a crash, it only
    /// shows those messages as unread again.
    fn mark_read(&self, with: &Username) -> Result<(), StoreError>;
}

/// Contacts and their pinned keys.
#[auto_impl(Arc)]
pub trait Contacts: Send + Sync {
    /// The contact record (pinned keys) of `user`, if any.
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError>;
    /// Creates or replaces the contact record of `contact.user`, durably.
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError>;
}

/// Disappearing messages.
#[auto_impl(Arc)]
pub trait Expiry: Send + Sync {
    /// Deletes every message expired at `now` (its record, its key, its attachments and its
    /// outbox entry), durably. Returns how many went.
    fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// A file the user attaches to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSource {
    /// The name it travels under (a plain file name).
    pub name: String,
    /// Where to read it.
    pub path: PathBuf,
}

/// Why an attachment could not be sealed, claimed or saved. One sentence, no content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The file to attach cannot be read.
    #[error("the file {0} cannot be read")]
    Unreadable(String),
    /// Over the configured cap.
    #[error("{name} has {size} bytes; attachments are limited to {max} bytes")]
    TooLarge {
        /// The file name.
        name: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The stored attachment is gone (expired) or does not decrypt to what the header says.
    #[error("the attachment is missing or damaged")]
    Damaged,
    /// The destination exists already or cannot be written.
    #[error("{0}")]
    Destination(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Encrypted attachment files, kept next to the message store.
///
/// An attachment belongs to one message, named by its sender (`owner`) and id, and its index in
/// the header. Deleting the message (expiry) deletes its files.
#[auto_impl(Arc)]
pub trait AttachmentFiles: Send + Sync {
    /// Encrypts the file at `source` under a fresh key into the store, as attachment `index` of
    /// the message (`owner`, `id`); returns what the header names and the key.
    ///
    /// # Errors
    /// [`AttachmentError`] (unreadable, too large, store failure).
    fn seal_file(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        source: &AttachmentSource,
    ) -> Result<Attachment, AttachmentError>;
    /// Where the encrypted attachment lies, for the transport.
    fn locator(&self, owner: &Username, id: &MessageId, index: usize) -> String;
    /// Deletes the first `count` sealed attachments of (`owner`, `id`): a send that failed
    /// before its message was kept leaves none behind.
    fn discard(&self, owner: &Username, id: &MessageId, count: usize);
    /// Takes the file `from` sent ahead of its envelope, with the digest and size `meta`
    /// names, as attachment `index` of (`from`, `id`). `Ok(false)` when no such file arrived
    /// (or other bytes did); `Ok(true)` also when it was claimed before.
    ///
    /// # Errors
    /// [`AttachmentError::Store`] when the medium fails.
    fn claim(
        &self,
        from: &Username,
        id: &MessageId,
        index: usize,
        meta: &AttachmentRef,
    ) -> Result<bool, AttachmentError>;
    /// Decrypts attachment `index` of (`owner`, `id`) into a new file at `dest`, checking the
    /// plaintext digest; returns the bytes written. Nothing is left at `dest` on failure.
    ///
    /// # Errors
    /// [`AttachmentError`].
    fn save(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        attachment: &Attachment,
        dest: &Path,
    ) -> Result<u64, AttachmentError>;
    /// Keeps `bytes`, an encrypted file `from` sent through the mailbox, where a file sent ahead
    /// of its envelope would lie, so that [`AttachmentFiles::claim`] takes it. `Ok(false)` when
    /// the bytes are not the ones `meta` names (size and SHA-256): nothing is kept.
    ///
    /// # Errors
    /// [`AttachmentError::Store`] when the medium fails.
    fn stage_file(
        &self,
        from: &Username,
        meta: &AttachmentRef,
        bytes: &[u8],
    ) -> Result<bool, AttachmentError>;
    /// Reads the encrypted attachment `index` of (`owner`, `id`) as it travels, for a deposit.
    ///
    /// # Errors
    /// [`AttachmentError::Damaged`] when it is gone; [`AttachmentError::Store`].
    fn encrypted(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
    ) -> Result<Vec<u8>, AttachmentError>;
}

/// The device identity, kept in the store.
///
/// # Errors
/// [`StoreError::Unavailable`] when the medium fails.
#[auto_impl(Arc)]
pub trait IdentityStore: Send + Sync {
    /// The identity, if this device has enrolled.
    fn identity(&self) -> Result<Option<DeviceIdentity>, StoreError>;
    /// Replaces the identity, durably.
    fn save_identity(&self, identity: &DeviceIdentity) -> Result<(), StoreError>;
}

/// Device lists held: this user's and each contact's, the newest version accepted so far, so
/// that a list the rendezvous serves later is judged against it (an older one replayed, or one
/// signed by a removed device, is refused).
///
/// # Errors
/// [`StoreError::Unavailable`] when the medium fails.
#[auto_impl(&, Arc)]
pub trait DeviceLists: Send + Sync {
    /// The list held for `user`, if any.
    fn device_list(
        &self,
        user: &Username,
    ) -> Result<Option<parley_domain::devices::DeviceList>, StoreError>;
    /// Replaces the list held for `list.user`, durably. The caller has accepted it.
    fn keep_device_list(&self, list: &parley_domain::devices::DeviceList)
    -> Result<(), StoreError>;
}
