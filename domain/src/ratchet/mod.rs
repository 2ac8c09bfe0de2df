//! The Double Ratchet of one conversation, as a pure state machine.
//!
//! Symmetric chains per direction give every message its own key, deleted once used; a DH
//! step on every change of speaker, and on [`Ratchet::rekey`] whenever the sender chooses (the
//! timed rekey), moves the keys on so that a stolen state opens nothing from before its last
//! step (forward secrecy) and a copied state is locked out after the next steps on both sides
//! (post-compromise security). Signal's specification is the reference; where this differs
//! (one root chain per direction, so that steps may cross) is said in [`Ratchet`] and in
//! `docs/protocol.md`.
//!
//! No I/O, no clock, no randomness of its own: the 32 random bytes a new ratchet key needs and
//! the receiver's time come in as arguments.

mod book;
pub(crate) mod encoding;
mod error;
mod header;
mod interval;
mod kdf;
mod keys;
mod session;
mod skipped;
#[cfg(test)]
mod tests;

pub use book::{MAX_SESSIONS, SessionBook, SessionId, SessionState};
pub use encoding::{DecodeError, STATE_VERSION};
pub use error::{OpenError, SealError};
pub use header::{HEADER_LEN, Header, HeaderError};
pub use interval::RekeyEvery;
pub use keys::{Key32, KeyPair, PublicKey};
pub use session::{Ratchet, Sealed};

/// At most this many message keys are skipped over in one chain by one message, and at most
/// this many skipped keys are kept per conversation (the oldest are dropped beyond it).
pub const MAX_SKIP: usize = 1000;

/// A skipped key older than this (7 days, in milliseconds) is dropped: a message that late
/// is refused with [`OpenError::Expired`] or [`OpenError::KeyGone`].
pub const MAX_SKIPPED_AGE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// At most this many of our own ratchet key pairs are kept while the peer has not yet shown
/// it has the newest (messages it sent against an older one may still be on their way). At
/// the bound our next DH step waits until the peer catches up, so no key it may use is dropped.
pub const MAX_OWN_KEYS: usize = 16;
