//! The key-encapsulation mechanism of the hybrid agreement (ML-KEM-768), behind two traits so
//! that the domain needs no KEM implementation of its own: the adapter that has one (the
//! envelope's, over aws-lc-rs) provides it.

use std::fmt;

use crate::ratchet::Key32;

/// The length of an ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_LEN: usize = 1184;
/// The length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;

/// An ML-KEM-768 encapsulation key, as a prekey bundle publishes it.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Vec<u8>);

/// An ML-KEM-768 ciphertext, as the initiator's first message carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Vec<u8>);

/// Why bytes are not a KEM key or ciphertext, or the KEM failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KemError {
    /// Not [`KEM_PUBLIC_LEN`] bytes, or refused by the implementation.
    #[error("the ML-KEM-768 public key is malformed")]
    BadPublicKey,
    /// Not [`KEM_CIPHERTEXT_LEN`] bytes, or refused by the implementation.
    #[error("the ML-KEM-768 ciphertext is malformed")]
    BadCiphertext,
    /// A stored secret key the implementation refuses.
    #[error("the ML-KEM-768 secret key is malformed")]
    BadSecretKey,
    /// The implementation failed (its random generator, for one).
    #[error("the ML-KEM-768 implementation failed")]
    Failed,
}

impl KemPublicKey {
    /// Parses an encapsulation key: exactly [`KEM_PUBLIC_LEN`] bytes.
    ///
    /// # Errors
    /// [`KemError::BadPublicKey`] for any other length.
    pub fn parse(bytes: &[u8]) -> Result<Self, KemError> {
        (bytes.len() == KEM_PUBLIC_LEN)
            .then(|| Self(bytes.to_vec()))
            .ok_or(KemError::BadPublicKey)
    }

    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl KemCiphertext {
    /// Parses a ciphertext: exactly [`KEM_CIPHERTEXT_LEN`] bytes.
    ///
    /// # Errors
    /// [`KemError::BadCiphertext`] for any other length.
    pub fn parse(bytes: &[u8]) -> Result<Self, KemError> {
        (bytes.len() == KEM_CIPHERTEXT_LEN)
            .then(|| Self(bytes.to_vec()))
            .ok_or(KemError::BadCiphertext)
    }

    /// The ciphertext's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemPublicKey({} bytes)", self.0.len())
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemCiphertext({} bytes)", self.0.len())
    }
}

/// Encapsulation to a peer's ML-KEM-768 key (the initiator's side).
pub trait Encapsulate {
    /// A fresh shared secret and the ciphertext that carries it to the key's owner.
    ///
    /// # Errors
    /// An implementation MUST return [`KemError::BadPublicKey`] for a key it refuses and
    /// [`KemError::Failed`] when it cannot draw randomness; never a panic.
    fn encapsulate(&self, to: &KemPublicKey) -> Result<(KemCiphertext, Key32), KemError>;
}

/// Decapsulation with one of our ML-KEM-768 secret keys (the responder's side).
pub trait Decapsulate {
    /// The shared secret a ciphertext carries.
    ///
    /// # Errors
    /// An implementation MUST return [`KemError::BadCiphertext`] for a ciphertext it refuses;
    /// never a panic.
    fn decapsulate(&self, ciphertext: &KemCiphertext) -> Result<Key32, KemError>;
}
