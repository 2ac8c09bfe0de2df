//! First contact: the hybrid X25519 + ML-KEM-768 agreement (after Signal's PQXDH) that gives
//! two devices the root key of their [`Ratchet`](crate::ratchet::Ratchet), even when the
//! responder is offline and only its signed prekeys are at hand.
//!
//! A recording of the first messages stays private against a future quantum computer as long
//! as ML-KEM-768 holds, and against today's attacker as long as X25519 does. A bundle without
//! a KEM prekey is refused, never agreed with X25519 alone; a bundle without a one-time prekey
//! falls back to the signed prekey alone (three DH agreements instead of four).

mod bundle;
mod kem;
mod pqxdh;
#[cfg(test)]
mod tests;

pub use bundle::{KemPrekey, OneTimePrekey, PrekeyBundle, SignedPrekey};
pub use kem::{
    Decapsulate, Encapsulate, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KemCiphertext, KemError,
    KemPublicKey,
};
pub use pqxdh::{AgreementError, InitialMessage, Initiated, ResponderKeys, initiate, respond};
