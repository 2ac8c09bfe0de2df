//! The header every ratchet message carries in the clear, authenticated as associated data.
//!
//! ```text
//! header = ratchet_pub:[32] ‖ step:u32 ‖ previous:u32 ‖ n:u32      (big-endian, 44 bytes)
//! ```

use super::keys::PublicKey;

/// The length of an encoded [`Header`].
pub const HEADER_LEN: usize = 44;

/// Which chain a message belongs to and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's ratchet public key: names the chain.
    pub ratchet: PublicKey,
    /// Which of the sender's DH steps made the chain (from 1). It lets the receiver tell a
    /// message whose earlier chain has not arrived yet (keep it and retry) from a forgery.
    pub step: u32,
    /// How many messages the sender's previous chain had.
    pub previous: u32,
    /// The message's position in its chain, from 0.
    pub n: u32,
}

/// Why bytes are not a ratchet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a ratchet header is exactly 44 bytes")]
pub struct HeaderError;

impl Header {
    /// The header's 40 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(&self.ratchet.0);
        out[32..36].copy_from_slice(&self.step.to_be_bytes());
        out[36..40].copy_from_slice(&self.previous.to_be_bytes());
        out[40..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    /// Parses 44 bytes.
    ///
    /// # Errors
    /// [`HeaderError`] for any other length.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let bytes: &[u8; HEADER_LEN] = bytes.try_into().map_err(|_| HeaderError)?;
        let mut ratchet = [0u8; 32];
        ratchet.copy_from_slice(&bytes[..32]);
        let word = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u32::from_be_bytes(w)
        };
        Ok(Self {
            ratchet: PublicKey(ratchet),
            step: word(32),
            previous: word(36),
            n: word(40),
        })
    }
}
