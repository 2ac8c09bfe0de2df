//! The stable binary encoding of a [`Ratchet`], for the store.
//!
//! ```text
//! state    = version:u8 (= 1) ‖ send_root:[32] ‖ recv_root:[32] ‖ steps:u64 ‖ previous:u32
//!            ‖ n_own:u8 (≤ MAX_OWN_KEYS) ‖ n_own × own_secret:[32]       (oldest first)
//!            ‖ theirs:opt([32])
//!            ‖ send:opt(chain:[32] ‖ next:u32 ‖ against:[32] ‖ step:u32)
//!            ‖ recv:opt(ratchet:[32] ‖ chain:[32] ‖ next:u32 ‖ step:u32)
//!            ‖ n_skipped:u16 (≤ MAX_SKIP) ‖ n_skipped × (ratchet:[32] ‖ n:u32 ‖ key:[32] ‖ at:i64)
//!            ‖ rekey_due:u8 (0 or 1)
//! opt(x)   = 0x00 | 0x01 ‖ x
//! ```
//!
//! Integers are big-endian, `at` is milliseconds since the Unix epoch (two's complement).
//! Nothing may follow the last field. The bytes hold every secret of the conversation: they
//! are returned in a buffer wiped on drop and must be stored encrypted.

use zeroize::Zeroizing;

use crate::message::Timestamp;

use super::keys::{Key32, KeyPair, PublicKey};
use super::session::{Ratchet, RecvChain, SendChain};
use super::skipped::{Entry, Skipped};
use super::{MAX_OWN_KEYS, MAX_SKIP};

/// The encoding version this crate writes and reads.
pub const STATE_VERSION: u8 = 1;

/// Why bytes are not an encoded ratchet state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first byte names a version this crate does not read.
    #[error("the ratchet state has unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The bytes end before the last field.
    #[error("the ratchet state is truncated")]
    Truncated,
    /// A field holds a value it may not; the text says which.
    #[error("the ratchet state is malformed: {0}")]
    Malformed(&'static str),
    /// Bytes follow the last field.
    #[error("the ratchet state has trailing bytes")]
    TrailingBytes,
}

impl DecodeError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::Truncated => "truncated",
            Self::Malformed(_) => "malformed",
            Self::TrailingBytes => "trailing_bytes",
        }
    }
}

impl Ratchet {
    /// The state's bytes, in a buffer wiped on drop.
    #[must_use]
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            128 + self.own.len() * 32 + self.skipped.entries.len() * 76,
        ));
        out.push(STATE_VERSION);
        out.extend_from_slice(self.send_root.expose());
        out.extend_from_slice(self.recv_root.expose());
        out.extend_from_slice(&self.steps.to_be_bytes());
        out.extend_from_slice(&self.previous.to_be_bytes());
        // At most MAX_OWN_KEYS (16) keys are kept: the count fits a byte.
        out.push(u8::try_from(self.own.len()).unwrap_or(u8::MAX));
        for pair in &self.own {
            out.extend_from_slice(pair.secret().expose());
        }
        match &self.theirs {
            None => out.push(0),
            Some(theirs) => {
                out.push(1);
                out.extend_from_slice(&theirs.0);
            }
        }
        match &self.send {
            None => out.push(0),
            Some(send) => {
                out.push(1);
                out.extend_from_slice(send.chain.expose());
                out.extend_from_slice(&send.next.to_be_bytes());
                out.extend_from_slice(&send.against.0);
                out.extend_from_slice(&send.step.to_be_bytes());
            }
        }
        match &self.recv {
            None => out.push(0),
            Some(recv) => {
                out.push(1);
                out.extend_from_slice(&recv.ratchet.0);
                out.extend_from_slice(recv.chain.expose());
                out.extend_from_slice(&recv.next.to_be_bytes());
                out.extend_from_slice(&recv.step.to_be_bytes());
            }
        }
        // At most MAX_SKIP (1000) skipped keys are kept: the count fits two bytes.
        out.extend_from_slice(
            &u16::try_from(self.skipped.entries.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for e in &self.skipped.entries {
            out.extend_from_slice(&e.ratchet.0);
            out.extend_from_slice(&e.n.to_be_bytes());
            out.extend_from_slice(e.key.expose());
            out.extend_from_slice(&e.at.0.to_be_bytes());
        }
        out.push(u8::from(self.rekey_due));
        out
    }

    /// Reads a state written by [`Ratchet::encode`].
    ///
    /// # Errors
    /// [`DecodeError`] for any input `encode` could not have written.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != STATE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let send_root = r.key()?;
        let recv_root = r.key()?;
        let steps = u64::from_be_bytes(r.array()?);
        let previous = r.u32()?;
        let n_own = usize::from(r.u8()?);
        if n_own > MAX_OWN_KEYS {
            return Err(DecodeError::Malformed("too many own ratchet keys"));
        }
        let mut own = Vec::with_capacity(n_own);
        for _ in 0..n_own {
            own.push(KeyPair::from_secret(r.key()?));
        }
        let theirs = if r.flag()? {
            Some(PublicKey(r.array()?))
        } else {
            None
        };
        let send = if r.flag()? {
            Some(SendChain {
                chain: r.key()?,
                next: r.u32()?,
                against: PublicKey(r.array()?),
                step: r.u32()?,
            })
        } else {
            None
        };
        let recv = if r.flag()? {
            Some(RecvChain {
                ratchet: PublicKey(r.array()?),
                chain: r.key()?,
                next: r.u32()?,
                step: r.u32()?,
            })
        } else {
            None
        };
        let n_skipped = usize::from(u16::from_be_bytes(r.array()?));
        if n_skipped > MAX_SKIP {
            return Err(DecodeError::Malformed("too many skipped keys"));
        }
        let mut entries = Vec::with_capacity(n_skipped);
        for _ in 0..n_skipped {
            entries.push(Entry {
                ratchet: PublicKey(r.array()?),
                n: r.u32()?,
                key: r.key()?,
                at: Timestamp(i64::from_be_bytes(r.array()?)),
            });
        }
        let rekey_due = r.flag()?;
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        if send.is_some() && own.is_empty() {
            return Err(DecodeError::Malformed(
                "a sending chain without a ratchet key",
            ));
        }
        Ok(Self {
            send_root,
            recv_root,
            own,
            theirs,
            send,
            previous,
            recv,
            skipped: Skipped { entries },
            steps,
            rekey_due,
        })
    }
}

/// A cursor over stored bytes; every read is bounds-checked.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn key(&mut self) -> Result<Key32, DecodeError> {
        Ok(Key32::new(self.array()?))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed(
                "an optional field's flag is neither 0 nor 1",
            )),
        }
    }
}
