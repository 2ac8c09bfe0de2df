//! [`PeerError`]: every refusal of the peer, each with its stable code and one sentence, and
//! the parsers that turn what a person typed into domain values with those refusals.

use std::path::PathBuf;

use parley_domain::{MessageId, MessageText, Ttl, Username};
use parley_usecases::{
    commands::{SaveError, SendError, TrustError},
    ports::{AttachmentError, StoreError},
};

use crate::view::Refusal;

/// Why the peer refused or could not do something. Each variant has one stable snake_case
/// [`code`](PeerError::code) (the contract's) and its sentence is the `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A name that cannot be a username.
    #[error("{raw:?} is not a valid username: {reason}")]
    InvalidUsername {
        /// What was given.
        raw: String,
        /// What is wrong with it.
        reason: parley_domain::username::UsernameError,
    },
    /// A text that cannot be sent.
    #[error("cannot send: {0}")]
    InvalidText(parley_domain::message::TextError),
    /// A time to live that is not one.
    #[error("cannot send: {0}")]
    InvalidTtl(parley_domain::envelope::TtlError),
    /// A message id that is not one.
    #[error("{raw:?} is not a message id: {reason}")]
    InvalidId {
        /// What was given.
        raw: String,
        /// What is wrong with it.
        reason: parley_domain::message::MessageIdError,
    },
    /// The message was not delivered and nothing of it waits in the outbox.
    #[error(transparent)]
    Send(SendError),
    /// The message was not delivered now, but it is kept in the outbox and goes out by itself.
    #[error(transparent)]
    Queued(SendError),
    /// No contact by that name (before the first message).
    #[error("{0} is not one of your contacts yet; keys are pinned at the first message")]
    UnknownContact(Username),
    /// New keys could not be accepted.
    #[error(transparent)]
    Trust(TrustError),
    /// An attachment could not be saved.
    #[error(transparent)]
    Save(SaveError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's random generator failed.
    #[error("the system's random generator failed; nothing was sent")]
    Random,
    /// The home folder cannot be created.
    #[error("the home folder {} cannot be created ({source})", home.display())]
    HomeUnavailable {
        /// The home folder.
        home: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Another program holds this home's store.
    #[error(
        "This Parley home ({}) is already open in another Parley, the desktop app or `parley daemon`. Close that one first, or start this one with --home for another home.",
        home.display()
    )]
    HomeInUse {
        /// The home folder.
        home: PathBuf,
    },
    /// An empty passphrase for a store that has one.
    #[error("type the passphrase that protects this device's messages")]
    PassphraseRequired,
    /// The passphrase is not the store's.
    #[error("that passphrase does not open this device's messages; try again")]
    WrongPassphrase,
    /// The store cannot be opened.
    #[error(transparent)]
    Open(parley_store::Error),
    /// The store holds no identity yet.
    #[error("this home is not enrolled yet; run `parley enroll` first")]
    NotEnrolled,
    /// The stored certificate and key do not belong together.
    #[error("the stored certificate does not fit the stored key; enroll again")]
    CertificateMismatch(#[source] parley_p2p::Error),
    /// The stored certificate cannot be read.
    #[error("the stored certificate cannot be read; enroll again")]
    CertificateUnreadable(#[source] parley_p2p::Error),
    /// A stored rendezvous address is not a multiaddr.
    #[error("stored rendezvous address {0} is invalid; enroll again")]
    RendezvousAddress(String),
    /// The node could not start (it cannot listen, most often).
    #[error(transparent)]
    Node(parley_p2p::Error),
    /// A second-factor code that is not one.
    #[error("that is not a second-factor code: {0}")]
    NotACode(parley_domain::totp::NotACode),
    /// The rendezvous did not change the account.
    #[error(transparent)]
    Account(parley_usecases::ports::AccountError),
    /// The user's signed device list could not be made sure of.
    #[error("{0}")]
    Devices(parley_usecases::commands::DeviceListError),
    /// The store failed to make a write durable, so the peer stopped; `program` names what
    /// stopped (`the daemon`, `Parley`).
    #[error(
        "{program} stopped because the message store could not write to disk; no message was acknowledged that is not stored: free space or fix the disk, then start {program} again"
    )]
    Stopped {
        /// What stopped, as the sentence names it.
        program: &'static str,
    },
}

impl PeerError {
    /// The stable snake_case code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUsername { .. } => "invalid_username",
            Self::InvalidText(_) => "invalid_text",
            Self::InvalidTtl(_) => "invalid_ttl",
            Self::InvalidId { .. } => "invalid_id",
            Self::Send(e) | Self::Queued(e) => e.code(),
            Self::UnknownContact(_) | Self::Trust(TrustError::UnknownContact(_)) => {
                "unknown_contact"
            }
            Self::Trust(TrustError::NothingPending(_)) => "nothing_pending",
            Self::Trust(TrustError::Seal(_)) => "seal_failed",
            Self::Save(SaveError::NoMessage { .. }) => "no_message",
            Self::Save(SaveError::NoAttachment { .. }) => "no_attachment",
            Self::Save(SaveError::Attachment(AttachmentError::Damaged)) => "attachment_damaged",
            Self::Save(SaveError::Attachment(AttachmentError::Destination(_))) => "destination",
            Self::Trust(_) | Self::Save(_) | Self::Store(_) | Self::Open(_) => "store_unavailable",
            Self::Random => "internal",
            Self::HomeUnavailable { .. } => "home_unavailable",
            Self::HomeInUse { .. } => "home_in_use",
            Self::PassphraseRequired => "passphrase_required",
            Self::WrongPassphrase => "wrong_passphrase",
            Self::NotEnrolled => "not_enrolled",
            Self::CertificateMismatch(_)
            | Self::CertificateUnreadable(_)
            | Self::RendezvousAddress(_) => "identity_unusable",
            Self::Node(_) => "node_failed",
            Self::Stopped { .. } => "stopped",
            Self::NotACode(_) => "invalid_totp",
            Self::Account(e) => match e.code() {
                "totp_on" => "totp_on",
                "totp_off" => "totp_off",
                "invalid_totp" => "invalid_totp",
                "locked_out" => "locked_out",
                "busy" => "busy",
                "key_not_bound" => "key_not_bound",
                "rendezvous_unavailable" => "rendezvous_unavailable",
                _ => "account_refused",
            },
            Self::Devices(e) => match e.code() {
                "device_list_refused" => "device_list_refused",
                "bad_device_name" => "bad_device_name",
                "store_unavailable" => "store_unavailable",
                "rendezvous_unavailable" => "rendezvous_unavailable",
                "busy" => "busy",
                "key_not_bound" => "key_not_bound",
                _ => "account_refused",
            },
        }
    }

    /// The refusal as the window and the control socket show it.
    #[must_use]
    pub fn refusal(&self) -> Refusal {
        Refusal {
            code: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl From<PeerError> for Refusal {
    fn from(e: PeerError) -> Self {
        e.refusal()
    }
}

/// `raw` as a username.
///
/// # Errors
/// [`PeerError::InvalidUsername`].
pub fn username(raw: &str) -> Result<Username, PeerError> {
    Username::parse(raw).map_err(|reason| PeerError::InvalidUsername {
        raw: raw.to_owned(),
        reason,
    })
}

/// `raw` as a message's text.
///
/// # Errors
/// [`PeerError::InvalidText`].
pub fn text(raw: impl Into<String>) -> Result<MessageText, PeerError> {
    MessageText::parse(raw).map_err(PeerError::InvalidText)
}

/// `raw` as a time to live (`30s`, `10m`, `1h`, `7d`).
///
/// # Errors
/// [`PeerError::InvalidTtl`].
pub fn ttl(raw: &str) -> Result<Ttl, PeerError> {
    Ttl::parse(raw).map_err(PeerError::InvalidTtl)
}

/// `raw` as a message id (32 hex digits).
///
/// # Errors
/// [`PeerError::InvalidId`].
pub fn message_id(raw: &str) -> Result<MessageId, PeerError> {
    MessageId::parse(raw).map_err(|reason| PeerError::InvalidId {
        raw: raw.to_owned(),
        reason,
    })
}
