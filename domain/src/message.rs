//! Messages as the core sees them: ids, times, text, delivery state.

use std::fmt;

use crate::Username;
use crate::chain::ChainFault;
use crate::envelope::{Attachment, Ttl};

/// Milliseconds since the Unix epoch, UTC. The domain never reads a clock: times come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A message id: 16 random bytes chosen by the sender, unique across Parley.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; 16]);

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a message id is 32 hexadecimal digits")]
pub struct MessageIdError;

impl MessageId {
    /// Wraps 16 bytes (from the caller's random source).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// [`MessageIdError`] for any other text.
    pub fn parse(raw: &str) -> Result<Self, MessageIdError> {
        if raw.len() != 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MessageIdError);
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(raw.get(2 * i..2 * i + 2).ok_or(MessageIdError)?, 16)
                .map_err(|_| MessageIdError)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// The longest message text, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Message text: not empty, at most [`MAX_TEXT_BYTES`]. `Debug` does not print it, so a text
/// cannot reach a log line through a `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageText(String);

/// Why a text cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
    /// Longer than [`MAX_TEXT_BYTES`].
    #[error("the message is longer than 16 KiB")]
    TooLong,
}

impl MessageText {
    /// Checks and wraps `text`.
    ///
    /// # Errors
    /// [`TextError::Empty`] or [`TextError::TooLong`].
    pub fn parse(text: impl Into<String>) -> Result<Self, TextError> {
        let text = text.into();
        if text.is_empty() {
            return Err(TextError::Empty);
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(TextError::TooLong);
        }
        Ok(Self(text))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageText({} bytes)", self.0.len())
    }
}

/// Which way a message went, seen from this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Written here.
    Outgoing,
    /// Received from the contact.
    Incoming,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Outgoing, in the outbox, no receipt yet.
    Pending,
    /// Outgoing, held by the rendezvous's mailbox for the offline recipient since this time;
    /// still in the outbox (a later direct connection may deliver it first) until the receipt
    /// comes back.
    Queued(Timestamp),
    /// Outgoing, the recipient's receipt came back at this time.
    Delivered(Timestamp),
    /// Incoming, stored here at this time.
    Received(Timestamp),
    /// Outgoing, refused for good by the recipient's device at this time (for example an
    /// attachment over its cap): it left the outbox and will not be retried.
    Rejected(Timestamp),
}

impl Delivery {
    /// Whether an outgoing message still waits for its receipt (in the outbox): pending, or
    /// held by the rendezvous's mailbox.
    #[must_use]
    pub fn awaits_receipt(&self) -> bool {
        matches!(self, Self::Pending | Self::Queued(_))
    }
}

/// A message as kept in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The sender's id for it.
    pub id: MessageId,
    /// Who wrote it. For incoming messages this comes from the sender's verified certificate,
    /// never from anything the sender wrote.
    pub from: Username,
    /// Who it is for.
    pub to: Username,
    /// The text.
    pub text: MessageText,
    /// When the sender says it was written.
    pub sent_at: Timestamp,
    /// Which way it went.
    pub direction: Direction,
    /// Where it stands.
    pub delivery: Delivery,
    /// Whether the message is proven authentic and in place: its envelope's signature by the
    /// sender's certified device key holds, it was sealed to us, and it fits the sender's hash
    /// chain. Outgoing messages are our own.
    pub verification: Verification,
    /// The time to live the sender set, for a disappearing message.
    pub ttl: Option<Ttl>,
    /// When this device deletes it (see [`Ttl::expiry`]); never shown after.
    pub expires_at: Option<Timestamp>,
    /// Attachments named by the signed header, with their keys.
    pub attachments: Vec<Attachment>,
}

/// Whether a stored message may be shown as verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Signature, addressing and chain all hold.
    Verified,
    /// The signature holds but the message does not fit the sender's chain.
    Failed(ChainFault),
}

impl Verification {
    /// True for [`Verification::Verified`].
    #[must_use]
    pub fn is_verified(&self) -> bool {
        matches!(self, Self::Verified)
    }
}

impl StoredMessage {
    /// True when the message has expired at `now` and must be neither shown nor returned.
    #[must_use]
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The other party of the conversation this message belongs to.
    #[must_use]
    pub fn contact(&self) -> &Username {
        match self.direction {
            Direction::Outgoing => &self.to,
            Direction::Incoming => &self.from,
        }
    }
}

/// One line of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The other party.
    pub with: Username,
    /// How many messages the conversation holds.
    pub messages: u64,
    /// How many of them are unread: incoming, not expired, and arrived after the conversation
    /// was last marked read (every incoming one when it never was). Our own messages never
    /// count.
    pub unread: u64,
    /// The newest message.
    pub last: StoredMessage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_round_trips_through_hex() {
        let id = MessageId::from_bytes([0xa5; 16]);
        assert_eq!(MessageId::parse(&id.to_string()), Ok(id));
        assert_eq!(MessageId::parse("xyz"), Err(MessageIdError));
        assert_eq!(MessageId::parse(&"g".repeat(32)), Err(MessageIdError));
        assert_eq!(
            MessageId::parse(&"+f".repeat(16)),
            Err(MessageIdError),
            "sign is not a digit"
        );
    }

    #[test]
    fn text_is_bounded_and_never_debug_printed() {
        assert_eq!(MessageText::parse(""), Err(TextError::Empty));
        assert_eq!(
            MessageText::parse("x".repeat(MAX_TEXT_BYTES + 1)),
            Err(TextError::TooLong)
        );
        let t = MessageText::parse("secret words").expect("valid text");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
