//! The key types of the ratchet: 32 secret bytes wiped on drop, and X25519 ratchet keys.

use std::fmt;

use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};
use zeroize::Zeroize;

/// 32 secret bytes (a root, chain or message key) that are wiped when dropped and never print.
#[derive(Clone)]
pub struct Key32(pub(crate) [u8; 32]);

impl Key32 {
    /// Wraps the bytes.
    #[must_use]
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, for the code that needs them.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(..)")
    }
}

/// An X25519 public key as it travels in a ratchet header or a prekey bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key's bytes.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

/// An X25519 key pair: the secret is wiped on drop.
#[derive(Clone)]
pub struct KeyPair {
    secret: Key32,
    public: PublicKey,
}

impl KeyPair {
    /// The key pair whose secret is these 32 bytes (from the caller's random source).
    #[must_use]
    pub fn from_secret(secret: Key32) -> Self {
        let dalek = StaticSecret::from(secret.0);
        let public = PublicKey(DalekPublic::from(&dalek).to_bytes());
        Self { secret, public }
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret half, for encoding the state (and for the store, which keeps prekeys).
    #[must_use]
    pub fn secret(&self) -> &Key32 {
        &self.secret
    }

    /// X25519 with `theirs`; `None` when the result is not contributory (a low-order key).
    pub(crate) fn agree(&self, theirs: &PublicKey) -> Option<Key32> {
        let shared = StaticSecret::from(self.secret.0).diffie_hellman(&DalekPublic::from(theirs.0));
        shared.was_contributory().then(|| Key32(shared.to_bytes()))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}
