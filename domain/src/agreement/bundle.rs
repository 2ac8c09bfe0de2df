//! A device's prekey bundle, as the rendezvous serves it, and the signatures that bind its
//! prekeys to the device's Ed25519 key.
//!
//! ```text
//! signed message (X25519)     = "parley/prekey/v1/x25519"      ‖ id:u32 ‖ key:[32]
//! signed message (ML-KEM-768) = "parley/prekey/v1/ml-kem-768"  ‖ id:u32 ‖ key:[1184]
//! ```
//!
//! Both are Ed25519 signatures by the device key, checked with `verify_strict`.

use ed25519_dalek::{Signature, VerifyingKey};

use super::kem::KemPublicKey;
use crate::ratchet::PublicKey;

const X25519_CONTEXT: &[u8] = b"parley/prekey/v1/x25519";
const KEM_CONTEXT: &[u8] = b"parley/prekey/v1/ml-kem-768";

/// The medium-term X25519 prekey, signed by the device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPrekey {
    /// Which of the device's signed prekeys.
    pub id: u32,
    /// The prekey.
    pub key: PublicKey,
    /// Ed25519 over [`SignedPrekey::signed_message`].
    pub signature: [u8; 64],
}

/// A one-time X25519 prekey (unsigned, as in Signal: it only adds forward secrecy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// Which of the device's one-time prekeys.
    pub id: u32,
    /// The prekey.
    pub key: PublicKey,
}

/// The ML-KEM-768 prekey, signed by the device key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemPrekey {
    /// Which of the device's KEM prekeys.
    pub id: u32,
    /// The encapsulation key.
    pub key: KemPublicKey,
    /// Ed25519 over [`KemPrekey::signed_message`].
    pub signature: [u8; 64],
}

/// What an initiator fetches to open a conversation with a device that may be offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The device's X25519 identity key (the one its certificate names).
    pub identity: PublicKey,
    /// Its signed X25519 prekey.
    pub signed_prekey: SignedPrekey,
    /// One of its one-time prekeys, if any are left.
    pub one_time_prekey: Option<OneTimePrekey>,
    /// Its signed ML-KEM-768 prekey. `None` is refused: the agreement never falls back to
    /// X25519 alone.
    pub kem_prekey: Option<KemPrekey>,
}

impl SignedPrekey {
    /// The bytes the device key signs.
    #[must_use]
    pub fn signed_message(id: u32, key: &PublicKey) -> Vec<u8> {
        let mut m = Vec::with_capacity(X25519_CONTEXT.len() + 4 + 32);
        m.extend_from_slice(X25519_CONTEXT);
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&key.0);
        m
    }

    /// Whether the signature holds for the device's Ed25519 key.
    #[must_use]
    pub fn verifies(&self, device: &[u8; 32]) -> bool {
        verify(
            device,
            &Self::signed_message(self.id, &self.key),
            &self.signature,
        )
    }
}

impl KemPrekey {
    /// The bytes the device key signs.
    #[must_use]
    pub fn signed_message(id: u32, key: &KemPublicKey) -> Vec<u8> {
        let mut m = Vec::with_capacity(KEM_CONTEXT.len() + 4 + key.as_bytes().len());
        m.extend_from_slice(KEM_CONTEXT);
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(key.as_bytes());
        m
    }

    /// Whether the signature holds for the device's Ed25519 key.
    #[must_use]
    pub fn verifies(&self, device: &[u8; 32]) -> bool {
        verify(
            device,
            &Self::signed_message(self.id, &self.key),
            &self.signature,
        )
    }
}

fn verify(device: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(device).is_ok_and(|key| {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}
