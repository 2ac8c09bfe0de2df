//! Why a ratchet refused to seal or open a message.

/// Why a message could not be sealed. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// This side answers a conversation and has not received its first message yet, so it
    /// has no peer ratchet key to step against.
    #[error("no message has been received yet on this conversation, so none can be sent")]
    NothingReceived,
    /// The peer's ratchet key is of low order: no secret can be agreed with it.
    #[error("the peer's ratchet key is weak and cannot be used")]
    WeakKey,
    /// The sending chain has reached its last position (a rekey starts a new one), or the
    /// conversation its last DH step.
    #[error("the sending chain is exhausted")]
    ChainExhausted,
    /// The plaintext is too large for AES-GCM.
    #[error("the message is too large to be sealed")]
    TooLarge,
}

/// Why a message could not be opened. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The message is earlier in its chain than the next expected one and no skipped key is
    /// kept for it: it was already read (a replay), or its key was dropped.
    #[error("this message's key is gone: it was already read, or its skipped key was dropped")]
    KeyGone,
    /// Opening it would skip more than [`MAX_SKIP`](super::MAX_SKIP) messages of one chain.
    #[error("the message is too far ahead in its chain (more than the skip bound)")]
    TooFarAhead,
    /// Its skipped key is older than [`MAX_SKIPPED_AGE_MS`](super::MAX_SKIPPED_AGE_MS).
    #[error("the message arrived too late: its skipped key has expired")]
    Expired,
    /// The header, the ciphertext or the associated data was altered, or the message was not
    /// made for this conversation (or against a ratchet key this side no longer holds).
    #[error("the message does not decrypt in this conversation")]
    Undecryptable,
    /// The message belongs to a chain the sender started after one this side has not seen
    /// yet (the earlier chain's messages are late): keep it and open it again once an earlier
    /// message has been opened.
    #[error("an earlier message of the sender's must be opened first")]
    EarlierStepMissing,
    /// The sender's ratchet key is of low order.
    #[error("the message's ratchet key is weak")]
    WeakKey,
}

impl OpenError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyGone => "key_gone",
            Self::TooFarAhead => "too_far_ahead",
            Self::Expired => "expired",
            Self::Undecryptable => "undecryptable",
            Self::EarlierStepMissing => "earlier_step_missing",
            Self::WeakKey => "weak_key",
        }
    }
}

impl SealError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NothingReceived => "nothing_received",
            Self::WeakKey => "weak_key",
            Self::ChainExhausted => "chain_exhausted",
            Self::TooLarge => "too_large",
        }
    }
}
