//! Ports: what the core needs from the outside, as traits. Adapters implement them.

use std::future::Future;

use parley_domain::{
    CaFingerprint, Contact, ConversationSummary, DeviceIdentity, MessageId, MessageText, PeerKeys,
    Secret32, StoredMessage, Timestamp, Username, identity::Password,
};

/// The time now.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// Failure of the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be read or written (disk full, I/O error, corrupt record).
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
}

/// Whether [`MessageStore::store_incoming`] kept a new message or recognised one it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// First time this (sender, id): now stored durably.
    New,
    /// Already stored before; nothing changed.
    Duplicate,
}

/// Conversations, the outbox and contacts.
///
/// # Errors
/// Every method returns [`StoreError::Unavailable`] when the medium fails. Implementations MUST
/// NOT report success for a write that is not durable (flushed) yet.
pub trait MessageStore: Send + Sync {
    /// Adds an outgoing message to its conversation and to the outbox, durably, atomically.
    fn append_outgoing(&self, message: &StoredMessage) -> Result<(), StoreError>;
    /// Stores an incoming message durably, once per (sender, id).
    fn store_incoming(&self, message: &StoredMessage) -> Result<Stored, StoreError>;
    /// Records the receipt of an outgoing message and takes it out of the outbox.
    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError>;
    /// Outgoing messages still waiting for a receipt, oldest first.
    fn outbox(&self) -> Result<Vec<StoredMessage>, StoreError>;
    /// One conversation, oldest first.
    fn history(&self, with: &Username) -> Result<Vec<StoredMessage>, StoreError>;
    /// Every conversation, most recent first.
    fn conversations(&self) -> Result<Vec<ConversationSummary>, StoreError>;
    /// True when a conversation with `user` exists.
    fn is_contact(&self, user: &Username) -> Result<bool, StoreError>;
    /// The contact record (pinned keys) of `user`, if any.
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError>;
    /// Creates or replaces the contact record of `contact.user`, durably.
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError>;
}

/// The device identity, kept in the store.
///
/// # Errors
/// [`StoreError::Unavailable`] when the medium fails.
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

/// A message on its way out, as the transport carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Its id.
    pub id: MessageId,
    /// The recipient.
    pub to: Username,
    /// The text.
    pub text: MessageText,
    /// When it was written.
    pub sent_at: Timestamp,
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
        }
    }
}

/// Peer-to-peer delivery.
pub trait Transport: Send + Sync {
    /// Delivers `message` to `to` at `at`; resolves once the recipient's receipt is back, that
    /// is, once the recipient stored the message durably. With `pinned`, a peer whose
    /// certificate carries other keys is refused before anything is sent. Returns the keys the
    /// recipient's certificate carries.
    ///
    /// # Errors
    /// [`TransportError`]. The message may or may not have been stored by the recipient when
    /// this fails; a retry is always safe (the recipient stores it once).
    fn deliver(
        &self,
        to: &Username,
        at: &PeerAddress,
        message: &OutgoingMessage,
        pinned: Option<&PeerKeys>,
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
}

/// Where events go. Must not block; an implementation may drop events for slow watchers.
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
pub trait NodeInfo: Send + Sync {
    /// The node's state now.
    fn snapshot(&self) -> NodeSnapshot;
}

// Shared ownership: a port behind an `Arc` is still the port, so one adapter can serve several
// interactors (the daemon's messaging and its queries share one store).
impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<T: MessageStore + ?Sized> MessageStore for std::sync::Arc<T> {
    fn append_outgoing(&self, message: &StoredMessage) -> Result<(), StoreError> {
        (**self).append_outgoing(message)
    }
    fn store_incoming(&self, message: &StoredMessage) -> Result<Stored, StoreError> {
        (**self).store_incoming(message)
    }
    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        (**self).mark_delivered(id, at)
    }
    fn outbox(&self) -> Result<Vec<StoredMessage>, StoreError> {
        (**self).outbox()
    }
    fn history(&self, with: &Username) -> Result<Vec<StoredMessage>, StoreError> {
        (**self).history(with)
    }
    fn conversations(&self) -> Result<Vec<ConversationSummary>, StoreError> {
        (**self).conversations()
    }
    fn is_contact(&self, user: &Username) -> Result<bool, StoreError> {
        (**self).is_contact(user)
    }
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        (**self).contact(user)
    }
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        (**self).save_contact(contact)
    }
}

impl<T: Directory> Directory for std::sync::Arc<T> {
    fn lookup(
        &self,
        user: &Username,
    ) -> impl Future<Output = Result<Option<PeerAddress>, DirectoryError>> + Send {
        (**self).lookup(user)
    }
}

impl<T: Transport> Transport for std::sync::Arc<T> {
    fn deliver(
        &self,
        to: &Username,
        at: &PeerAddress,
        message: &OutgoingMessage,
        pinned: Option<&PeerKeys>,
    ) -> impl Future<Output = Result<PeerKeys, TransportError>> + Send {
        (**self).deliver(to, at, message, pinned)
    }
}

impl<T: EventSink + ?Sized> EventSink for std::sync::Arc<T> {
    fn emit(&self, event: Event) {
        (**self).emit(event);
    }
}
