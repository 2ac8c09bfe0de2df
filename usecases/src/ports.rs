//! Ports: what the core needs from the outside, as traits. Adapters implement them.
//!
//! Shared ownership: a port behind an `Arc` is still the port (`#[auto_impl(Arc)]` writes the
//! forwarding), so one adapter can serve several interactors (the daemon's messaging and its
//! queries share one store).

use std::future::Future;
use std::time::Duration;

use auto_impl::auto_impl;
use parley_domain::{
    Attachment, AttachmentRef, Body, CaFingerprint, ChainHead, ChainState, Contact,
    ConversationSummary, DeviceIdentity, Digest, Header, Link, MessageId, Neighbours, PeerKeys,
    Secret32, StoredMessage, Timestamp, Username, identity::Password,
};

/// The time now, and waiting for time to pass.
#[auto_impl(Arc)]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Resolves once `duration` has passed (on this clock: a fake one moves itself on).
    ///
    /// Cancel safety: dropping the future just stops the wait.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

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
    Durability + OutboxStore + Inbox + Chains + Conversations + Contacts + Expiry
{
}

impl<T> MessageStore for T where
    T: Durability + OutboxStore + Inbox + Chains + Conversations + Contacts + Expiry + ?Sized
{
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
    /// Where to read it (opaque to the core: a path for the file-system adapter).
    pub path: String,
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
        dest: &str,
    ) -> Result<u64, AttachmentError>;
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

/// Where a user can be dialled, as the directory says. Opaque strings to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// The libp2p peer id the user's certificate key gives.
    pub peer_id: String,
    /// Multiaddrs the peer listens on.
    pub addrs: Vec<String>,
}

/// Failure to consult the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The rendezvous could not be reached or did not answer.
    #[error("the rendezvous is unreachable: {0}")]
    Unavailable(String),
    /// The rendezvous refused the look-up (for example, rate limit).
    #[error("the rendezvous refused the look-up: {0}")]
    Refused(String),
}

/// The rendezvous directory.
#[auto_impl(Arc)]
pub trait Directory: Send + Sync {
    /// Where `user` is online now. `Ok(None)` for a user who is unknown *or* offline: the
    /// directory does not tell the two apart.
    ///
    /// # Errors
    /// [`DirectoryError`] when the rendezvous cannot answer.
    fn lookup(
        &self,
        user: &Username,
    ) -> impl Future<Output = Result<Option<PeerAddress>, DirectoryError>> + Send;
}

/// A sealed message on its way out, as the transport carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    /// Its id (for receipts and traces).
    pub id: MessageId,
    /// The recipient.
    pub to: Username,
    /// The sealed envelope.
    pub bytes: Vec<u8>,
    /// The encrypted attachments it names, sent ahead of it.
    pub attachments: Vec<OutgoingFile>,
}

/// An encrypted attachment on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// Where the encrypted file lies (opaque to the core: the attachment store's locator).
    pub locator: String,
    /// Its SHA-256, as the signed header names it.
    pub sha256: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// An envelope just sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The envelope's bytes.
    pub bytes: Vec<u8>,
    /// Their SHA-256: the next message's `prev`.
    pub digest: Digest,
}

/// An envelope opened: its signature held, it was sealed to this device, it decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The signed header.
    pub header: Header,
    /// The decrypted body.
    pub body: Body,
    /// The envelope's SHA-256.
    pub digest: Digest,
}

/// Why an envelope could not be sealed or opened. `code` is stable; `message` one sentence
/// with no secret in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EnvelopeError {
    /// A stable snake_case name (`bad_signature`, `undecryptable`, `weak_key`, ...).
    pub code: &'static str,
    /// One sentence.
    pub message: String,
}

/// Sealing to a recipient and opening from a sender, with this device's keys.
#[auto_impl(Arc)]
pub trait Envelopes: Send + Sync {
    /// Encrypts `body` to `recipient_x25519`, binds `header`, signs with the device key.
    ///
    /// # Errors
    /// [`EnvelopeError`] (for example, a weak recipient key).
    fn seal(
        &self,
        header: &Header,
        body: &Body,
        recipient_x25519: &[u8; 32],
    ) -> Result<Sealed, EnvelopeError>;
    /// Checks the signature against `sender_ed25519`, decrypts with this device's key.
    ///
    /// # Errors
    /// [`EnvelopeError`] for anything altered, malformed, forged or not for this device.
    fn open(&self, bytes: &[u8], sender_ed25519: &[u8; 32]) -> Result<Opened, EnvelopeError>;
    /// Reads the header of an envelope without checking anything (this device's own outgoing
    /// envelopes, to seal them again).
    ///
    /// # Errors
    /// [`EnvelopeError`] when the bytes are no envelope.
    fn header(&self, bytes: &[u8]) -> Result<Header, EnvelopeError>;
}

/// Failure to deliver a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection could be made to any address.
    #[error("could not connect: {0}")]
    Unreachable(String),
    /// A connection was made, but the certificate did not name the expected user.
    #[error("the peer's certificate does not name {expected}")]
    WrongIdentity {
        /// Who we meant to reach.
        expected: Username,
    },
    /// The peer's certificate is for the right name but not for the pinned keys: refused at
    /// the handshake, before any application byte.
    #[error("the peer presented other keys than the pinned ones")]
    KeysChanged {
        /// The keys it presented.
        presented: PeerKeys,
    },
    /// The recipient answered with a refusal instead of a receipt.
    #[error("the recipient refused the message: {0}")]
    Refused(String),
    /// The connection broke or timed out before the receipt came back.
    #[error("no receipt: {0}")]
    NoReceipt(String),
    /// The recipient refused for good: sending the same envelope again cannot succeed.
    #[error("the recipient refused it for good: {0}")]
    Rejected(String),
}

impl TransportError {
    /// A stable snake_case name for the failure (span attributes, logs).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::WrongIdentity { .. } => "wrong_identity",
            Self::KeysChanged { .. } => "keys_changed",
            Self::Refused(_) => "refused",
            Self::NoReceipt(_) => "no_receipt",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// Peer-to-peer delivery.
#[auto_impl(Arc)]
pub trait Transport: Send + Sync {
    /// Delivers `message` to `to` at `at`; resolves once the recipient's receipt is back, that
    /// is, once the recipient stored the message durably. With `pinned`, a peer whose
    /// certificate carries other keys is refused before anything is sent. Returns the keys the
    /// recipient's certificate carries.
    ///
    /// The envelope is sealed to the pinned keys, so `deliver` is only called with `pinned`
    /// set; a first contact learns the keys with [`Transport::keys_of`] first.
    ///
    /// # Errors
    /// [`TransportError`]. The message may or may not have been stored by the recipient when
    /// this fails; a retry is always safe (the recipient stores it once).
    fn deliver(
        &self,
        to: &Username,
        at: &PeerAddress,
        message: &OutgoingEnvelope,
        pinned: Option<&PeerKeys>,
    ) -> impl Future<Output = Result<PeerKeys, TransportError>> + Send;

    /// Connects to `to` at `at` and returns the keys its certificate carries, without sending
    /// a message (first contact: the envelope has to be sealed to those keys).
    ///
    /// # Errors
    /// [`TransportError`] as for [`Transport::deliver`].
    fn keys_of(
        &self,
        to: &Username,
        at: &PeerAddress,
    ) -> impl Future<Output = Result<PeerKeys, TransportError>> + Send;
}

/// A request to enroll this device.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    /// The rendezvous's HTTPS URL.
    pub server: String,
    /// The name to enroll.
    pub user: Username,
    /// The password (sets it at first enrollment).
    pub password: Password,
    /// The CA fingerprint to insist on; `None` trusts on first use.
    pub ca_pin: Option<CaFingerprint>,
    /// The device's existing Ed25519 and X25519 secrets, to renew its certificate and keep its
    /// identity (contacts keep their pins); `None` makes fresh keys.
    pub keys: Option<(Secret32, Secret32)>,
}

/// Failure to enroll.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The server could not be reached.
    #[error("the rendezvous at {0} could not be reached")]
    Unreachable(String),
    /// The server's CA is not the pinned one.
    #[error("the rendezvous's CA fingerprint is {actual}, not the pinned {expected}")]
    FingerprintMismatch {
        /// The pin given.
        expected: CaFingerprint,
        /// What the server presented.
        actual: CaFingerprint,
    },
    /// Wrong password for an enrolled name.
    #[error("the password for this username is wrong")]
    InvalidCredentials,
    /// The server refused, with its own sentence and code.
    #[error("{message}")]
    Refused {
        /// The server's `code`.
        code: String,
        /// The server's sentence.
        message: String,
    },
    /// Anything else that went wrong on the way (malformed answer, local key error).
    #[error("{0}")]
    Failed(String),
}

/// The rendezvous's enrollment API, with key generation on this device.
#[auto_impl(Arc)]
pub trait Enrollment: Send + Sync {
    /// Has the device keys certified (fresh ones, or `request.keys` to renew), and returns the
    /// identity to keep.
    ///
    /// # Errors
    /// [`EnrollError`]; nothing is kept on failure.
    fn enroll(
        &self,
        request: &EnrollRequest,
    ) -> impl Future<Output = Result<DeviceIdentity, EnrollError>> + Send;
}

/// Something that happened, for whoever watches (the chat screen, the desktop UI).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new message arrived and is stored.
    MessageReceived(StoredMessage),
    /// A contact presented other keys than the pinned ones; nothing from or to it flows until
    /// the user accepts them.
    KeysChanged {
        /// Whose keys.
        user: Username,
    },
    /// The receipt for one of our messages came back.
    MessageDelivered {
        /// Which message.
        id: MessageId,
        /// To whom.
        to: Username,
    },
    /// One of our messages is sealed and stored, and on its way (its receipt is not back yet).
    MessageSent(StoredMessage),
    /// An incoming message was refused for good: altered, forged, spliced or replayed. Nothing
    /// of it was kept.
    MessageRefused {
        /// Who sent it, as the connection's verified certificate names it.
        from: Username,
        /// Why, in words.
        reason: String,
    },
    /// Disappearing messages reached their time and were deleted.
    MessagesExpired {
        /// How many.
        count: u64,
    },
    /// A contact came online or went offline, as the directory tells.
    Presence {
        /// Whose state.
        user: Username,
        /// Whether the directory lists it now.
        online: bool,
    },
}

/// Where events go. Must not block; an implementation may drop events for slow watchers.
#[auto_impl(Arc)]
pub trait EventSink: Send + Sync {
    /// Publishes one event.
    fn emit(&self, event: Event);
}

/// Connection state of the local node, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// This device's libp2p peer id.
    pub peer_id: String,
    /// Addresses the node listens on.
    pub listen_addrs: Vec<String>,
    /// Whether the node holds a verified connection to the rendezvous now and the rendezvous
    /// acknowledged its addresses (so other peers can find it).
    pub rendezvous_connected: bool,
}

/// The running node, seen from outside.
#[auto_impl(Arc)]
pub trait NodeInfo: Send + Sync {
    /// The node's state now.
    fn snapshot(&self) -> NodeSnapshot;
}
