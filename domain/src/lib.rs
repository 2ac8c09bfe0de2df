//! Parley's domain: the pure types and rules every other crate speaks.
//!
//! **Architecture invariant:** this crate does no I/O, owns no async runtime, never reads a
//! clock and never draws randomness of its own. Times and random ids are passed in. It knows
//! nothing of libp2p, rustls, sled, tokio, serde wire formats or tauri.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agreement;
pub mod chain;
pub mod contact;
pub mod devices;
pub mod envelope;
pub mod invite;
pub mod mailbox;
pub mod message;
pub mod pki;
pub mod prekeys;
pub mod ratchet;
pub mod receipt;
pub mod renewal;
pub mod secret;
pub mod totp;
pub mod username;

pub use chain::{ChainFault, ChainHead, ChainState, Link, Neighbours};
pub use contact::{Contact, KeyCheck, PeerKeys, SafetyNumber};
pub use envelope::{Attachment, AttachmentKey, AttachmentRef, Body, Digest, Header, Ttl};
pub use invite::{Invite, InviteError};
pub use mailbox::{MailId, MailboxLimits, Usage};
pub use message::{
    ConversationSummary, Delivery, Direction, MessageId, MessageText, StoredMessage, Timestamp,
    Verification,
};
pub use pki::{CaFingerprint, CertifiedPeer, Role};
pub use secret::Secret32;
pub use username::Username;
pub mod identity;
pub use identity::{DeviceIdentity, Password};
