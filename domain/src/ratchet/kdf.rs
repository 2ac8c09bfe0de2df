//! The ratchet's key derivations and its AEAD, with their labels.
//!
//! * Root step: `(root', chain) = HKDF-SHA256(salt = root, ikm = X25519 output,
//!   info = "parley/ratchet/v1/root")`, 64 bytes.
//! * Chain step: `message = HMAC-SHA256(chain, 0x01)`, `chain' = HMAC-SHA256(chain, 0x02)`.
//! * Message: `key ‖ nonce = HKDF-SHA256(salt = none, ikm = message,
//!   info = "parley/ratchet/v1/message")`, 32 + 12 bytes, for AES-256-GCM. Every message key
//!   seals exactly one message, so a nonce never repeats under a key.
//! * Directions: `(initiator → responder, responder → initiator) = HKDF-SHA256(salt = none,
//!   ikm = the agreed root, info = "parley/ratchet/v1/directions")`, 64 bytes.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::keys::Key32;

const ROOT_INFO: &[u8] = b"parley/ratchet/v1/root";
const MESSAGE_INFO: &[u8] = b"parley/ratchet/v1/message";
const DIRECTIONS_INFO: &[u8] = b"parley/ratchet/v1/directions";
/// Prefixes the associated data of every ratchet message.
pub(crate) const AAD_CONTEXT: &[u8] = b"parley/ratchet/v1";

/// HKDF-SHA256 into 64 bytes, split in two keys.
fn expand_two(salt: Option<&[u8]>, ikm: &[u8], info: &[u8]) -> (Key32, Key32) {
    let mut okm = [0u8; 64];
    // 64 bytes is far below HKDF-SHA256's limit of 255 × 32: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut okm);
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    first.copy_from_slice(&okm[..32]);
    second.copy_from_slice(&okm[32..]);
    okm.zeroize();
    (Key32(first), Key32(second))
}

/// A root step: the next root key and a fresh chain key.
pub(crate) fn root_step(root: &Key32, dh: &Key32) -> (Key32, Key32) {
    expand_two(Some(&root.0), &dh.0, ROOT_INFO)
}

/// The two directions' first root keys: (initiator → responder, responder → initiator).
pub(crate) fn directions(root: &Key32) -> (Key32, Key32) {
    expand_two(None, &root.0, DIRECTIONS_INFO)
}

fn hmac(key: &Key32, byte: u8) -> Key32 {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as hkdf::hmac::KeyInit>::new_from_slice(&key.0) {
        mac.update(&[byte]);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    Key32(out)
}

/// A chain step: this position's message key and the next chain key.
pub(crate) fn chain_step(chain: &Key32) -> (Key32, Key32) {
    (hmac(chain, 0x01), hmac(chain, 0x02))
}

fn cipher(message: &Key32) -> (Aes256Gcm, [u8; 12]) {
    let mut okm = [0u8; 44];
    // 44 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, &message.0).expand(MESSAGE_INFO, &mut okm);
    let mut key = Key::<Aes256Gcm>::default();
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    okm.zeroize();
    let aead = Aes256Gcm::new(&key);
    key.zeroize();
    (aead, nonce)
}

/// Seals `plaintext` under the message key; `None` only if it is too large for AES-GCM.
pub(crate) fn seal(message: &Key32, plaintext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let (aead, nonce) = cipher(message);
    aead.encrypt(
        &Nonce::<U12>::from(nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    )
    .ok()
}

/// Opens `ciphertext` with the message key; `None` when it does not authenticate.
pub(crate) fn open(message: &Key32, ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let (aead, nonce) = cipher(message);
    aead.decrypt(
        &Nonce::<U12>::from(nonce),
        Payload {
            msg: ciphertext,
            aad,
        },
    )
    .ok()
}
