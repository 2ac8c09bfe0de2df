//! What a receipt's signature covers: the recipient's device signs, with its Ed25519 device
//! key, that it stored the envelope with this SHA-256.
//!
//! ```text
//! signed = "parley/receipt/v1" ‖ digest:[32]
//! ```
//!
//! The digest names one envelope of one conversation (it covers the sender, the recipient,
//! the message id and the chain position), so a receipt cannot be moved to another message.

use crate::Digest;

const CONTEXT: &[u8] = b"parley/receipt/v1";

/// The bytes a receipt for the envelope `digest` signs.
#[must_use]
pub fn signed_message(digest: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT.len() + 32);
    out.extend_from_slice(CONTEXT);
    out.extend_from_slice(&digest.0);
    out
}

/// Whether `signature` is the device `device`'s (Ed25519, `verify_strict`) on a receipt for
/// `digest`.
#[must_use]
pub fn verifies(device: &[u8; 32], digest: &Digest, signature: &[u8; 64]) -> bool {
    use ed25519_dalek::{Signature, VerifyingKey};
    VerifyingKey::from_bytes(device).is_ok_and(|key| {
        key.verify_strict(&signed_message(digest), &Signature::from_bytes(signature))
            .is_ok()
    })
}
