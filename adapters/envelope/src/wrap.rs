//! The mailbox wrapping: an envelope (or a receipt) sealed once more to the recipient's device,
//! so that the rendezvous holding it for an offline recipient cannot read even who sent it
//! (the envelope's header names sender and recipient in clear).
//!
//! ```text
//! wrapped = version:u8 (= 1) ‖ eph_pub:[32] ‖ nonce:[12] ‖ ciphertext (including the 16-byte tag)
//! ```
//!
//! `shared = X25519(eph, recipient_x25519_pub)` with a fresh ephemeral secret each time (a
//! non-contributory result is refused), the key is HKDF-SHA256 over it with salt `eph_pub ‖
//! recipient_pub` and info `parley/mailbox/v1/aes-256-gcm`, and AES-256-GCM binds `version ‖
//! eph_pub ‖ recipient_pub` as associated data. Nothing is signed here: what it wraps is (an
//! envelope carries the sender's signature, and a receipt names the SHA-256 of an envelope
//! only the two devices have seen).

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::{MAX_ENVELOPE_BYTES, OpenError, SealError, Sealer, random};

/// The wrapping's version byte.
pub const WRAP_VERSION: u8 = 1;
/// The most a wrapping may hold: an envelope of the largest size, and a little room.
pub const MAX_WRAPPED_PLAIN: usize = MAX_ENVELOPE_BYTES + 256;
const INFO: &[u8] = b"parley/mailbox/v1/aes-256-gcm";
const AAD: &[u8] = b"parley/mailbox/v1";
const FRAMING: usize = 1 + 32 + 12 + 16;
/// The largest wrapped message.
pub const MAX_WRAPPED_BYTES: usize = MAX_WRAPPED_PLAIN + FRAMING;

fn cipher(shared: &[u8; 32], eph_pub: &[u8; 32], recipient_pub: &[u8; 32]) -> Option<Aes256Gcm> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(recipient_pub);
    let mut key = Key::<Aes256Gcm>::default();
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(INFO, &mut key)
        .ok()?;
    Some(Aes256Gcm::new(&key))
}

fn aad(eph_pub: &[u8; 32], recipient_pub: &[u8; 32]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD.len() + 1 + 64);
    aad.extend_from_slice(AAD);
    aad.push(WRAP_VERSION);
    aad.extend_from_slice(eph_pub);
    aad.extend_from_slice(recipient_pub);
    aad
}

impl Sealer {
    /// Wraps `inner` to `recipient_x25519` (see the module documentation).
    ///
    /// # Errors
    /// [`SealError::TooLarge`] beyond [`MAX_WRAPPED_PLAIN`], [`SealError::WeakRecipientKey`],
    /// [`SealError::Randomness`].
    pub fn wrap(&self, inner: &[u8], recipient_x25519: &[u8; 32]) -> Result<Vec<u8>, SealError> {
        if inner.len() > MAX_WRAPPED_PLAIN {
            return Err(SealError::TooLarge);
        }
        let eph = StaticSecret::from(random::<32>()?);
        let eph_pub = PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&PublicKey::from(*recipient_x25519));
        if !shared.was_contributory() {
            return Err(SealError::WeakRecipientKey);
        }
        let cipher = cipher(shared.as_bytes(), &eph_pub, recipient_x25519)
            .ok_or(SealError::Invalid("the key could not be derived"))?;
        let nonce = random::<12>()?;
        let ciphertext = cipher
            .encrypt(
                &Nonce::<U12>::from(nonce),
                Payload {
                    msg: inner,
                    aad: &aad(&eph_pub, recipient_x25519),
                },
            )
            .map_err(|_| SealError::TooLarge)?;
        let mut out = Vec::with_capacity(FRAMING + inner.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&eph_pub);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens what [`Sealer::wrap`] sealed to this device.
    ///
    /// # Errors
    /// [`OpenError::TooLarge`], [`OpenError::Malformed`] (too short),
    /// [`OpenError::UnsupportedVersion`], [`OpenError::WeakKey`], [`OpenError::Undecryptable`]
    /// (altered, or not for this device).
    pub fn unwrap(&self, bytes: &[u8]) -> Result<Vec<u8>, OpenError> {
        if bytes.len() > MAX_WRAPPED_BYTES {
            return Err(OpenError::TooLarge);
        }
        if bytes.len() < FRAMING {
            return Err(OpenError::Malformed("the wrapping ends too early"));
        }
        if bytes[0] != WRAP_VERSION {
            return Err(OpenError::UnsupportedVersion(bytes[0]));
        }
        let mut eph_pub = [0u8; 32];
        eph_pub.copy_from_slice(&bytes[1..33]);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&bytes[33..45]);
        let shared = self.x25519.diffie_hellman(&PublicKey::from(eph_pub));
        if !shared.was_contributory() {
            return Err(OpenError::WeakKey);
        }
        let own = self.x25519_public.to_bytes();
        let cipher = cipher(shared.as_bytes(), &eph_pub, &own).ok_or(OpenError::Undecryptable)?;
        cipher
            .decrypt(
                &Nonce::<U12>::from(nonce),
                Payload {
                    msg: &bytes[45..],
                    aad: &aad(&eph_pub, &own),
                },
            )
            .map_err(|_| OpenError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::Secret32;

    use super::*;

    fn device(seed: u8) -> Sealer {
        Sealer::new(
            &Secret32::new([seed; 32]),
            &Secret32::new([seed ^ 0x55; 32]),
        )
    }

    #[test]
    fn only_the_recipient_unwraps_and_every_changed_byte_is_refused() {
        let (alice, bob, carol) = (device(1), device(2), device(3));
        let wrapped = alice
            .wrap(b"an envelope", &bob.x25519_public())
            .expect("wrap");
        assert_eq!(bob.unwrap(&wrapped).expect("unwrap"), b"an envelope");
        assert_eq!(carol.unwrap(&wrapped), Err(OpenError::Undecryptable));
        for at in 0..wrapped.len() {
            let mut altered = wrapped.clone();
            altered[at] ^= 0x01;
            assert!(
                bob.unwrap(&altered).is_err(),
                "byte {at} changed, still opened"
            );
        }
        for len in 0..wrapped.len() {
            assert!(
                bob.unwrap(&wrapped[..len]).is_err(),
                "cut at {len}, still opened"
            );
        }
    }

    #[test]
    fn the_plaintext_is_not_in_the_wrapping_and_each_wrapping_differs() {
        let (alice, bob) = (device(1), device(2));
        let one = alice
            .wrap(b"from:alice", &bob.x25519_public())
            .expect("wrap");
        let two = alice
            .wrap(b"from:alice", &bob.x25519_public())
            .expect("wrap");
        assert_ne!(one, two);
        assert!(!one.windows(10).any(|w| w == b"from:alice"));
    }

    #[test]
    fn a_low_order_key_and_an_oversized_inner_are_refused() {
        let alice = device(1);
        assert_eq!(
            alice.wrap(b"x", &[0u8; 32]),
            Err(SealError::WeakRecipientKey)
        );
        let big = vec![0u8; MAX_WRAPPED_PLAIN + 1];
        assert_eq!(
            alice.wrap(&big, &device(2).x25519_public()),
            Err(SealError::TooLarge)
        );
    }
}
