//! The mailbox's rules: what the rendezvous holds for an offline recipient, for how long, and
//! when it refuses a deposit. Pure: counts, sizes and times come in as arguments.
//!
//! A deposit is opaque to these rules: a sealed blob (the envelope, wrapped once more to the
//! recipient's device so that not even the sender's name is readable) and the attachment files
//! it names, already encrypted. What the rules see is who it is for, how big it is, when it
//! came, when it expires, and who deposits it (the live connection's certificate, never
//! written down).

use std::fmt;

use crate::{Digest, MessageId, Timestamp};

/// A held entry's id: 8 bytes of deposit time (milliseconds, big-endian, so entries sort in
/// arrival order) and 8 random bytes (the caller draws them).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailId(pub [u8; 16]);

impl MailId {
    /// The id of an entry deposited at `at`, with `random` drawn by the caller.
    #[must_use]
    pub fn new(at: Timestamp, random: [u8; 8]) -> Self {
        let mut bytes = [0u8; 16];
        let millis = u64::try_from(at.0).unwrap_or(0);
        bytes[..8].copy_from_slice(&millis.to_be_bytes());
        bytes[8..].copy_from_slice(&random);
        Self(bytes)
    }

    /// Parses 32 lowercase hex digits.
    ///
    /// # Errors
    /// [`BadMailId`] for anything else.
    pub fn parse(text: &str) -> Result<Self, BadMailId> {
        if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadMailId);
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(BadMailId)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(BadMailId)?;
            bytes[i] = u8::try_from(hi * 16 + lo).map_err(|_| BadMailId)?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailId({self})")
    }
}

/// A mailbox entry id that is not 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a mailbox entry id is 32 lowercase hex digits")]
pub struct BadMailId;

/// How much a mailbox (or one sender's share of it) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Entries held.
    pub entries: u64,
    /// Their bytes (sealed envelope and attachment files).
    pub bytes: u64,
}

impl Usage {
    /// This usage with one more entry of `bytes`.
    #[must_use]
    pub fn plus(self, bytes: u64) -> Self {
        Self {
            entries: self.entries.saturating_add(1),
            bytes: self.bytes.saturating_add(bytes),
        }
    }

    /// This usage without one entry of `bytes`.
    #[must_use]
    pub fn minus(self, bytes: u64) -> Self {
        Self {
            entries: self.entries.saturating_sub(1),
            bytes: self.bytes.saturating_sub(bytes),
        }
    }
}

/// The operator's limits. [`Default`] is what the rendezvous runs with unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// How long an entry without its own expiry is held, in milliseconds (30 days); 0 turns the
    /// mailbox off.
    pub hold_ms: i64,
    /// Entries held for one recipient.
    pub entries_per_recipient: u64,
    /// Bytes held for one recipient.
    pub bytes_per_recipient: u64,
    /// Entries held from one sender for one recipient.
    pub entries_per_sender: u64,
    /// Bytes held from one sender for one recipient.
    pub bytes_per_sender: u64,
    /// The largest attachment file held.
    pub largest_attachment: u64,
    /// Deposits per second per sender, after a burst of [`MailboxLimits::deposit_burst`].
    pub deposits_per_second: u32,
    /// The burst of deposits a sender may make at once.
    pub deposit_burst: u32,
}

/// One day, in milliseconds.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// One mebibyte.
const MIB: u64 = 1024 * 1024;

impl Default for MailboxLimits {
    fn default() -> Self {
        Self {
            hold_ms: 30 * DAY_MS,
            entries_per_recipient: 10_000,
            bytes_per_recipient: 256 * MIB,
            entries_per_sender: 1_000,
            bytes_per_sender: 64 * MIB,
            largest_attachment: 32 * MIB,
            deposits_per_second: 50,
            deposit_burst: 200,
        }
    }
}

impl MailboxLimits {
    /// Whether the mailbox takes deposits at all.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.hold_ms > 0
    }

    /// When an entry deposited at `now` is purged: at the expiry the sender gave (a
    /// disappearing message's), and never later than the hold period.
    #[must_use]
    pub fn expiry(&self, now: Timestamp, requested: Option<Timestamp>) -> Timestamp {
        let hold = Timestamp(now.0.saturating_add(self.hold_ms));
        match requested {
            Some(at) if at.0 < hold.0 => at,
            _ => hold,
        }
    }

    /// Whether a deposit may be held, given what the recipient's mailbox and this sender's
    /// share of it hold now. Rate limits are the caller's (a bucket per live connection). A
    /// refusal leaves everything held as it was: a full mailbox never drops an entry to make
    /// room.
    ///
    /// # Errors
    /// [`Refusal`], with its code.
    pub fn admit(&self, deposit: &DepositSize, held: Usage, sender: Usage) -> Result<(), Refusal> {
        if !self.enabled() {
            return Err(Refusal::Disabled);
        }
        if let Some(largest) = deposit.files.iter().copied().max()
            && largest > self.largest_attachment
        {
            return Err(Refusal::AttachmentTooLarge {
                size: largest,
                max: self.largest_attachment,
            });
        }
        let size = deposit.total();
        let after = held.plus(size);
        if after.entries > self.entries_per_recipient || after.bytes > self.bytes_per_recipient {
            return Err(Refusal::MailboxFull);
        }
        let share = sender.plus(size);
        if share.entries > self.entries_per_sender || share.bytes > self.bytes_per_sender {
            return Err(Refusal::SenderQuota);
        }
        Ok(())
    }
}

/// The sizes of a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositSize {
    /// The sealed envelope's bytes.
    pub sealed: u64,
    /// Each attachment file's bytes.
    pub files: Vec<u64>,
}

impl DepositSize {
    /// Everything the entry holds.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.files
            .iter()
            .fold(self.sealed, |sum, size| sum.saturating_add(*size))
    }
}

/// Why a deposit was not held. Each has a stable code the sender reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The operator turned the mailbox off.
    #[error("this rendezvous holds no mail")]
    Disabled,
    /// Nobody by that name is enrolled here.
    #[error("nobody by that name is enrolled at this rendezvous")]
    UnknownRecipient,
    /// The recipient's mailbox holds as much as it may.
    #[error("the recipient's mailbox is full; try again once they have collected their mail")]
    MailboxFull,
    /// This sender holds as much as it may in this recipient's mailbox.
    #[error(
        "you have as much waiting in the recipient's mailbox as the rendezvous allows; try again once they have collected it"
    )]
    SenderQuota,
    /// An attachment file is larger than the mailbox holds.
    #[error(
        "an attachment of {size} bytes is larger than the {max} bytes the mailbox holds; it can only be delivered directly"
    )]
    AttachmentTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Too many deposits at once.
    #[error("too many deposits; try again in a moment")]
    RateLimited,
    /// The deposit is not well-formed (bad encoding, empty, or over the protocol's bounds).
    #[error("the deposit is malformed")]
    Malformed,
    /// It expires before it could be held.
    #[error("the message has already expired")]
    Expired,
    /// The rendezvous could not keep it durably.
    #[error("the rendezvous could not store the deposit")]
    Unavailable,
}

impl Refusal {
    /// A stable snake_case name, for the wire, metrics and the sender's error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "mailbox_disabled",
            Self::UnknownRecipient => "unknown_user",
            Self::MailboxFull => "mailbox_full",
            Self::SenderQuota => "mailbox_sender_quota",
            Self::AttachmentTooLarge { .. } => "mailbox_attachment_too_large",
            Self::RateLimited => "mailbox_rate_limited",
            Self::Malformed => "mailbox_malformed",
            Self::Expired => "mailbox_expired",
            Self::Unavailable => "mailbox_unavailable",
        }
    }

    /// True when depositing the same message again cannot succeed (it is too large, or
    /// malformed); false when later may work (full, rate-limited, unavailable).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::AttachmentTooLarge { .. } | Self::Malformed | Self::Expired | Self::Disabled
        )
    }
}

/// What a wrapped mailbox entry holds once the recipient unwrapped it: an envelope, or the
/// receipt for one (a recipient who fetched a message tells its offline sender this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parcel {
    /// A sealed envelope, as it travels between peers.
    Envelope(Vec<u8>),
    /// "Message `id`, whose envelope has this SHA-256, is stored on my device", signed by the
    /// recipient's device ([`crate::receipt`]).
    Receipt {
        /// The message.
        id: MessageId,
        /// Its envelope's SHA-256.
        digest: Digest,
        /// The recipient device's signature over the digest.
        signature: [u8; 64],
    },
}

const PARCEL_ENVELOPE: u8 = 1;
const PARCEL_RECEIPT: u8 = 3;

impl Parcel {
    /// `1 ‖ envelope`, or `3 ‖ id:[16] ‖ sha256:[32] ‖ signature:[64]`. (Kind 2, the unsigned
    /// receipt of an earlier release, is no longer read.)
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Envelope(bytes) => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(PARCEL_ENVELOPE);
                out.extend_from_slice(bytes);
                out
            }
            Self::Receipt {
                id,
                digest,
                signature,
            } => {
                let mut out = Vec::with_capacity(113);
                out.push(PARCEL_RECEIPT);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&digest.0);
                out.extend_from_slice(signature);
                out
            }
        }
    }

    /// Reads what [`Parcel::encode`] wrote.
    ///
    /// # Errors
    /// [`BadParcel`] for an unknown kind, an empty envelope or a receipt of the wrong length.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadParcel> {
        match bytes.split_first() {
            Some((&PARCEL_ENVELOPE, rest)) if !rest.is_empty() => Ok(Self::Envelope(rest.to_vec())),
            Some((&PARCEL_RECEIPT, rest)) if rest.len() == 112 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&rest[..16]);
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&rest[16..48]);
                let mut signature = [0u8; 64];
                signature.copy_from_slice(&rest[48..]);
                Ok(Self::Receipt {
                    id: MessageId::from_bytes(id),
                    digest: Digest(digest),
                    signature,
                })
            }
            _ => Err(BadParcel),
        }
    }
}

/// Bytes that are no [`Parcel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the mailbox entry holds neither an envelope nor a receipt")]
pub struct BadParcel;

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MailboxLimits {
        MailboxLimits {
            hold_ms: 1_000,
            entries_per_recipient: 3,
            bytes_per_recipient: 100,
            entries_per_sender: 2,
            bytes_per_sender: 60,
            largest_attachment: 40,
            deposits_per_second: 1,
            deposit_burst: 1,
        }
    }

    fn size(sealed: u64, files: &[u64]) -> DepositSize {
        DepositSize {
            sealed,
            files: files.to_vec(),
        }
    }

    #[test]
    fn ids_sort_by_deposit_time_and_round_trip_as_hex() {
        let early = MailId::new(Timestamp(1_000), [9; 8]);
        let late = MailId::new(Timestamp(2_000), [0; 8]);
        assert!(early < late);
        assert_eq!(MailId::parse(&early.to_string()), Ok(early));
        assert_eq!(MailId::parse("ABCD"), Err(BadMailId));
        assert_eq!(MailId::parse(&"g".repeat(32)), Err(BadMailId));
    }

    #[test]
    fn the_hold_period_bounds_every_expiry() {
        let limits = small();
        assert_eq!(limits.expiry(Timestamp(10), None), Timestamp(1_010));
        assert_eq!(
            limits.expiry(Timestamp(10), Some(Timestamp(500))),
            Timestamp(500)
        );
        assert_eq!(
            limits.expiry(Timestamp(10), Some(Timestamp(5_000))),
            Timestamp(1_010)
        );
    }

    #[test]
    fn each_quota_refuses_with_its_own_code() {
        let limits = small();
        let empty = Usage::default();
        assert_eq!(limits.admit(&size(10, &[40]), empty, empty), Ok(()));
        assert_eq!(
            limits
                .admit(&size(10, &[41]), empty, empty)
                .map_err(|r| r.code()),
            Err("mailbox_attachment_too_large")
        );
        let three = Usage {
            entries: 3,
            bytes: 30,
        };
        assert_eq!(
            limits.admit(&size(1, &[]), three, empty),
            Err(Refusal::MailboxFull)
        );
        let heavy = Usage {
            entries: 1,
            bytes: 95,
        };
        assert_eq!(
            limits.admit(&size(10, &[]), heavy, empty),
            Err(Refusal::MailboxFull)
        );
        let two = Usage {
            entries: 2,
            bytes: 2,
        };
        assert_eq!(
            limits.admit(&size(1, &[]), two, two),
            Err(Refusal::SenderQuota)
        );
        let fat = Usage {
            entries: 1,
            bytes: 55,
        };
        assert_eq!(
            limits.admit(&size(10, &[]), fat, fat),
            Err(Refusal::SenderQuota)
        );
    }

    #[test]
    fn a_disabled_mailbox_refuses_everything() {
        let limits = MailboxLimits {
            hold_ms: 0,
            ..small()
        };
        assert_eq!(
            limits.admit(&size(1, &[]), Usage::default(), Usage::default()),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn parcels_round_trip_and_anything_else_is_refused() {
        let envelope = Parcel::Envelope(vec![7, 8, 9]);
        assert_eq!(Parcel::decode(&envelope.encode()), Ok(envelope));
        let receipt = Parcel::Receipt {
            id: MessageId::from_bytes([3; 16]),
            digest: Digest([4; 32]),
            signature: [5; 64],
        };
        assert_eq!(Parcel::decode(&receipt.encode()), Ok(receipt.clone()));
        // The unsigned receipt of an earlier release is not read.
        let mut unsigned = vec![2];
        unsigned.extend_from_slice(&[3; 16]);
        unsigned.extend_from_slice(&[4; 32]);
        assert_eq!(Parcel::decode(&unsigned), Err(BadParcel));
        let mut long = receipt.encode();
        long.push(0);
        assert_eq!(Parcel::decode(&long), Err(BadParcel));
        assert_eq!(Parcel::decode(&[1]), Err(BadParcel));
        assert_eq!(Parcel::decode(&[3, 1, 2]), Err(BadParcel));
        assert_eq!(Parcel::decode(&[9, 1, 2]), Err(BadParcel));
        assert_eq!(Parcel::decode(&[]), Err(BadParcel));
    }

    #[test]
    fn usage_never_wraps() {
        let u = Usage::default().minus(5);
        assert_eq!(u, Usage::default());
        assert_eq!(Usage::default().plus(7).minus(7), Usage::default());
    }
}
