//! Ports: what the core needs from the outside, as traits. Adapters implement them.
//!
//! Shared ownership: a port behind an `Arc` is still the port (`#[auto_impl(Arc)]` writes the
//! forwarding), so one adapter can serve several interactors (the daemon's messaging and its
//! queries share one store).

use std::future::Future;
use std::time::Duration;

use auto_impl::auto_impl;
mod account;
mod mailbox;
mod prekeys;
mod store;

pub use account::*;
pub use mailbox::*;
pub use prekeys::*;
pub use store::*;

use parley_domain::agreement::{InitialMessage, PrekeyBundle};
use parley_domain::ratchet::{SessionId, SessionState};
use parley_domain::{
    Body, CaFingerprint, DeviceIdentity, Digest, Header, MessageId, PeerKeys, Secret32,
    StoredMessage, Timestamp, Username, identity::Password,
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

/// Where one device of a user can be reached, as the directory says: opaque to the core, which
/// hands it to the [`Transport`] as it came (the adapter parses it once, at its edge), except
/// for the one thing the core asks of it: which device key it reaches.
pub trait DeviceAddress: Clone + std::fmt::Debug + Send + Sync {
    /// Whether this address reaches the device whose device (Ed25519) key is the one in `keys`
    /// (for libp2p: whether its peer id is that key's). A hint for choosing among a user's
    /// devices, not a check: the transport still holds the device to every pinned key.
    fn has_device_key(&self, keys: &PeerKeys) -> bool;
}

/// The rendezvous directory.
#[auto_impl(Arc)]
pub trait Directory: Send + Sync {
    /// Where a device can be reached, as the directory says.
    type Address: DeviceAddress;

    /// Every device of `user` online now, the newest publication first; the directory bounds
    /// the list. Empty for a user who is unknown *or* offline: the directory does not tell the
    /// two apart.
    ///
    /// # Errors
    /// [`DirectoryError`] when the rendezvous cannot answer.
    fn lookup(
        &self,
        user: &Username,
    ) -> impl Future<Output = Result<Vec<Self::Address>, DirectoryError>> + Send;
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
    /// Wraps `inner` (an envelope, or a receipt) once more to `recipient_x25519`, for the
    /// mailbox: the rendezvous holding it cannot read who sent it. Not signed (the envelope
    /// inside is).
    ///
    /// # Errors
    /// [`EnvelopeError`] (a weak recipient key).
    fn wrap(&self, inner: &[u8], recipient_x25519: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError>;
    /// Opens what [`Envelopes::wrap`] sealed to this device.
    ///
    /// # Errors
    /// [`EnvelopeError`] for anything altered, malformed or not for this device.
    fn unwrap(&self, bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError>;
    /// The SHA-256 of an envelope's bytes (what a receipt names).
    fn digest(&self, bytes: &[u8]) -> Digest;

    /// This device's signature on a receipt for the envelope `digest`
    /// ([`parley_domain::receipt`]): it stored that envelope.
    fn sign_receipt(&self, digest: &Digest) -> [u8; 64];

    /// Whether `signature` is the device `device_ed25519`'s on a receipt for `digest`.
    fn verify_receipt(
        &self,
        digest: &Digest,
        signature: &[u8; 64],
        device_ed25519: &[u8; 32],
    ) -> bool;

    /// Which ratchet session an envelope names, read before anything is checked (to find the
    /// session to open it with); `None` for an envelope of version 1, sealed to this device's
    /// long-term key before the ratchet.
    ///
    /// # Errors
    /// [`EnvelopeError`] when the bytes are no envelope.
    fn session_of(&self, bytes: &[u8]) -> Result<Option<EnvelopeSession>, EnvelopeError>;

    /// Checks a version-2 envelope's signature against `sender_ed25519` alone, so that a forged
    /// first message is refused before the responder's agreement costs anything.
    ///
    /// # Errors
    /// [`EnvelopeError`] (`bad_signature`, `malformed`, ...).
    fn check_signature(&self, bytes: &[u8], sender_ed25519: &[u8; 32])
    -> Result<(), EnvelopeError>;

    /// Opens a session to the device whose prekey `bundle` this is, with the hybrid
    /// agreement: the bundle's signatures must hold for `device_ed25519` (the pinned or
    /// certified device key), and its identity key must be `device_x25519`.
    ///
    /// # Errors
    /// [`EnvelopeError`] (`prekey_bad_signature`, `prekey_wrong_identity`, `prekey_no_kem`, ...).
    fn initiate(
        &self,
        bundle: &PrekeyBundle,
        device_ed25519: &[u8; 32],
        device_x25519: &[u8; 32],
        now: Timestamp,
    ) -> Result<SessionState, EnvelopeError>;

    /// The responding side of a session the peer opened with `initial`.
    ///
    /// # Errors
    /// [`EnvelopeError`] when the agreement fails (a weak key, a KEM ciphertext refused).
    fn respond(
        &self,
        initial: &InitialMessage,
        secrets: &ResponderSecrets,
        now: Timestamp,
    ) -> Result<SessionState, EnvelopeError>;

    /// Seals `body` under `header` with the next key of `session` (an envelope of version 2),
    /// signed with the device key; takes a timed DH step first when one is due at `now`, and
    /// moves the session on. On an error the session is unchanged.
    ///
    /// # Errors
    /// [`EnvelopeError`].
    fn seal_in(
        &self,
        header: &Header,
        body: &Body,
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Sealed, EnvelopeError>;

    /// Checks the signature against `sender_ed25519` first, then opens a version-2 envelope
    /// with `session`, moving it on. On an error the session is unchanged.
    ///
    /// # Errors
    /// [`EnvelopeError`]; `earlier_step_missing` is the one a later attempt may get past
    /// (a message of the peer's earlier DH step has to come first).
    fn open_in(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Opened, EnvelopeError>;
}

/// The session a version-2 envelope names, and the first-contact agreement it carries while
/// its sender has not heard back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSession {
    /// The session's id.
    pub id: SessionId,
    /// The agreement, on the first messages of a session.
    pub initial: Option<InitialMessage>,
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
    /// Where a peer can be reached: what the [`Directory`] answers.
    type Address: DeviceAddress;

    /// The devices of `user` this node holds a verified connection to now, as the connections'
    /// certificates proved them (no dial, no look-up): writing to one of them needs no
    /// rendezvous. Empty when there is none, or when the node cannot tell.
    ///
    /// Cancel safety: dropping the future loses only the answer.
    fn connected(&self, user: &Username) -> impl Future<Output = Vec<Self::Address>> + Send;

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
        at: &Self::Address,
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
        at: &Self::Address,
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
    /// The second-factor code, as typed, for a name that has it on.
    pub totp: Option<String>,
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
    /// The rendezvous holds one of our messages for its offline recipient.
    MessageQueued {
        /// Which message.
        id: MessageId,
        /// To whom.
        to: Username,
    },
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
    /// Whether other peers can dial this device directly, as AutoNAT found.
    pub reachability: Reachability,
    /// The slot held on the rendezvous's relay.
    pub relay: RelaySnapshot,
    /// One entry per contact the node is connected to now.
    pub connections: Vec<PeerConnection>,
}

/// Whether other peers can dial a device directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// A dial-back from the rendezvous reached one of its addresses.
    Public,
    /// Every address tested so far was unreachable from outside.
    Private,
    /// Nothing tested yet.
    #[default]
    Unknown,
}

/// The device's reservation on the rendezvous's relay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelaySnapshot {
    /// Whether the relay accepted a reservation that is live now.
    pub reserved: bool,
    /// The circuit addresses it gives, each ending in `/p2p-circuit/p2p/<own id>`.
    pub addrs: Vec<String>,
}

/// How a connection to a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Straight between the two devices (dialled, or hole-punched).
    Direct,
    /// Through a circuit on the rendezvous's relay (mutual TLS end to end all the same).
    Relayed,
}

/// A contact the node is connected to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConnection {
    /// The user its verified certificate names.
    pub user: Username,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Direct when any of its connections is, else relayed.
    pub path: Path,
}

/// The running node, seen from outside.
#[auto_impl(Arc)]
pub trait NodeInfo: Send + Sync {
    /// The node's state now.
    fn snapshot(&self) -> NodeSnapshot;
}
