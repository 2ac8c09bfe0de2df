//! What a sealed message says about itself: the signed header, the encrypted body, time to
//! live and attachments. The bytes on the wire are the envelope adapter's business; the rules
//! about what a header may contain, and when a message expires, are the domain's.

use std::fmt;

use crate::{MessageId, MessageText, Secret32, Timestamp, Username};

/// A SHA-256 digest: of an envelope (the hash chain) or of an attachment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest that the first message of a chain names as its predecessor.
    pub const GENESIS: Self = Self([0; 32]);

    /// Parses 64 hex digits.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(raw.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// How long a disappearing message lives, in milliseconds. At most [`Ttl::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(u64);

/// Why a string is not a time to live.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a time to live is a whole number followed by s, m, h or d, for example 30s, 10m, 1h or 7d"
)]
pub struct TtlError;

impl Ttl {
    /// The longest time to live: 30 days. Longer requests are clamped to it.
    pub const MAX: Self = Self(30 * 24 * 3600 * 1000);
    /// The shortest: one second.
    pub const MIN: Self = Self(1000);

    /// `ms` milliseconds, clamped to [`Ttl::MIN`]..=[`Ttl::MAX`].
    #[must_use]
    pub fn from_millis(ms: u64) -> Self {
        Self(ms.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// Parses `30s`, `10m`, `1h`, `7d` (a positive whole number and one unit), clamped to
    /// [`Ttl::MAX`].
    ///
    /// # Errors
    /// [`TtlError`] for anything else, including zero.
    pub fn parse(raw: &str) -> Result<Self, TtlError> {
        let raw = raw.trim();
        let unit_at = raw.len().checked_sub(1).ok_or(TtlError)?;
        let (number, unit) = (raw.get(..unit_at).ok_or(TtlError)?, &raw[unit_at..]);
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TtlError);
        }
        let n: u64 = number.parse().map_err(|_| TtlError)?;
        let unit_ms: u64 = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(TtlError),
        };
        if n == 0 {
            return Err(TtlError);
        }
        Ok(Self::from_millis(n.saturating_mul(unit_ms)))
    }

    /// Milliseconds.
    #[must_use]
    pub fn millis(self) -> u64 {
        self.0
    }

    /// When a message with this time to live expires on the device that keeps it.
    ///
    /// The rule, the same on both sides: a message lives `ttl` from the *earlier* of the time
    /// its sender wrote in the signed header and the time this device first stored it. A sender
    /// whose clock runs ahead therefore cannot keep a message alive longer than its TTL on the
    /// recipient's device (the recipient's own clock caps it), and one whose clock runs behind
    /// only shortens it. On the sender's device the two times are the same clock's.
    #[must_use]
    pub fn expiry(self, sent_at: Timestamp, stored_at: Timestamp) -> Timestamp {
        let start = sent_at.0.min(stored_at.0);
        let ttl = i64::try_from(self.0).unwrap_or(i64::MAX);
        Timestamp(start.saturating_add(ttl))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// The longest attachment file name, in bytes.
pub const MAX_ATTACHMENT_NAME: usize = 255;
/// At most this many attachments per message.
pub const MAX_ATTACHMENTS: usize = 8;

/// An attachment as the signed header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRef {
    /// The file name (no folder), as the sender gave it.
    pub name: String,
    /// The size of the encrypted attachment, in bytes.
    pub size: u64,
    /// SHA-256 of the encrypted attachment, as it travels and as it is stored.
    pub sha256: Digest,
}

/// Why a file name cannot travel as an attachment name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an attachment name is 1 to 255 bytes without '/', '\\', control characters, '.' or '..'")]
pub struct AttachmentNameError;

/// Checks an attachment name: a plain file name that cannot climb out of a folder.
///
/// # Errors
/// [`AttachmentNameError`].
pub fn check_attachment_name(name: &str) -> Result<(), AttachmentNameError> {
    let bad = name.is_empty()
        || name.len() > MAX_ATTACHMENT_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        Err(AttachmentNameError)
    } else {
        Ok(())
    }
}

/// The signed, unencrypted part of an envelope. Everything here is bound to the ciphertext
/// (it is the AEAD's associated data) and signed by the sender's device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The message id.
    pub id: MessageId,
    /// The sender. Must equal the name in the sender's certificate.
    pub from: Username,
    /// The recipient. Must be the device that opens it.
    pub to: Username,
    /// When the sender wrote it, by the sender's clock.
    pub sent_at: Timestamp,
    /// Time to live, for a disappearing message.
    pub ttl: Option<Ttl>,
    /// The position in the sender → recipient chain, from 1.
    pub seq: u64,
    /// The digest of the sender's previous envelope to this recipient ([`Digest::GENESIS`]
    /// for the first).
    pub prev: Digest,
    /// The attachments, in order.
    pub attachments: Vec<AttachmentRef>,
}

/// The key and plaintext digest of one attachment: travels only inside the encrypted body.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentKey {
    /// The attachment's own AES-256-GCM key.
    pub key: Secret32,
    /// SHA-256 of the plaintext file, checked after decryption.
    pub plain_sha256: Digest,
}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentKey")
            .field("plain_sha256", &self.plain_sha256)
            .finish_non_exhaustive()
    }
}

/// An attachment as a device keeps it: what the header names and the key to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// What the signed header says.
    pub meta: AttachmentRef,
    /// Its key and plaintext digest (from the encrypted body).
    pub key: AttachmentKey,
}

/// The encrypted part of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The text.
    pub text: MessageText,
    /// One key per attachment of the header, in the same order.
    pub attachment_keys: Vec<AttachmentKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_the_four_units_clamps_and_refuses_the_rest() {
        assert_eq!(Ttl::parse("30s").map(Ttl::millis), Ok(30_000));
        assert_eq!(Ttl::parse("10m").map(Ttl::millis), Ok(600_000));
        assert_eq!(Ttl::parse("1h").map(Ttl::millis), Ok(3_600_000));
        assert_eq!(Ttl::parse("7d").map(Ttl::millis), Ok(604_800_000));
        assert_eq!(Ttl::parse("999d"), Ok(Ttl::MAX));
        assert_eq!(Ttl::parse("99999999999999999999d"), Err(TtlError));
        for bad in ["", "s", "0s", "-1s", "1", "1w", "1.5h", "+1h", "1 h", "١s"] {
            assert_eq!(Ttl::parse(bad), Err(TtlError), "{bad:?}");
        }
        assert_eq!(Ttl::parse("7d").map(|t| t.to_string()), Ok("7d".into()));
        assert_eq!(Ttl::parse("90s").map(|t| t.to_string()), Ok("90s".into()));
    }

    #[test]
    fn a_clock_ahead_cannot_extend_a_message_life_and_one_behind_only_shortens_it() {
        let ttl = Ttl::parse("1h").expect("valid");
        let now = Timestamp(1_000_000_000);
        let hour = 3_600_000;
        // Sender's clock a day ahead: the recipient's storage time caps the life.
        let ahead = Timestamp(now.0 + 24 * hour);
        assert_eq!(ttl.expiry(ahead, now), Timestamp(now.0 + hour));
        // Sender's clock 59 minutes behind: one minute left.
        let behind = Timestamp(now.0 - 59 * 60_000);
        assert_eq!(ttl.expiry(behind, now), Timestamp(now.0 + 60_000));
    }

    #[test]
    fn attachment_names_cannot_climb_out_of_a_folder() {
        assert!(check_attachment_name("photo.jpg").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b", "a\nb"] {
            assert!(check_attachment_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_attachment_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn a_body_never_prints_its_text_or_keys() {
        let body = Body {
            text: MessageText::parse("secret words").expect("text"),
            attachment_keys: vec![AttachmentKey {
                key: Secret32::new([0xab; 32]),
                plain_sha256: Digest([1; 32]),
            }],
        };
        let shown = format!("{body:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            !shown.contains("ab, ab") && !shown.contains("171"),
            "{shown}"
        );
    }

    #[test]
    fn digests_print_and_parse_as_hex() {
        let d = Digest([0xab; 32]);
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("ab"), None);
    }
}
