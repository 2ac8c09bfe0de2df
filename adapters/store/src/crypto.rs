//! The ciphers: AES-256-GCM sealing with a fresh random nonce, the HKDF-SHA256 sub-keys of the
//! store key, and the keyed hash that stands for a username in sled keys.
//!
//! Every sealed value is `nonce (12) ‖ ciphertext ‖ tag (16)`. What a value is bound to (its
//! tree and key) goes into the associated data, so a value copied to another record does not
//! open there. Error sentences never quote a value.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use parley_domain::Username;
use parley_usecases::ports::StoreError;
use sha2::Sha256;

/// Bytes of an AES-GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes of every key: the store key, the sub-keys, a message key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of a username's keyed hash in sled keys.
pub(crate) const NAME_LEN: usize = 16;

/// HKDF `info` of the sub-key that seals every sled value (message records aside).
const VALUES_INFO: &[u8] = b"parley/store/values/v1";
/// HKDF `info` of the sub-key that seals the message keys in `message-keys`.
const SLOTS_INFO: &[u8] = b"parley/store/slots/v1";
/// HKDF `info` of the sub-key of the username hash in sled keys.
const INDEX_INFO: &[u8] = b"parley/store/index/v1";

/// 32 secret bytes: the store key or a message key. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key32(pub(crate) [u8; KEY_LEN]);

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(..)")
    }
}

impl Key32 {
    /// A fresh random key from the operating system.
    pub(crate) fn random() -> Result<Self, StoreError> {
        random().map(Self)
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// `N` bytes from the operating system's random generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| {
        StoreError::Unavailable(format!("the system's random generator failed ({e})"))
    })?;
    Ok(out)
}

/// Encrypts `plaintext` under `cipher` with a fresh random nonce, bound to `aad`:
/// `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn seal(
    cipher: &Aes256Gcm,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let sealed = cipher
        .encrypt(
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| StoreError::Unavailable("a record could not be encrypted".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts what [`seal`] made with the same `cipher` and `aad`; `None` for anything else
/// (another key, another place, a changed byte, too short).
pub(crate) fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    cipher
        .decrypt(
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// `tree ‖ 0x00 ‖ key`: the associated data of a sled value.
pub(crate) fn record_aad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tree.len() + 1 + key.len());
    aad.extend_from_slice(tree.as_bytes());
    aad.push(0x00);
    aad.extend_from_slice(key);
    aad
}

/// The error for a value that does not decrypt where it is.
pub(crate) fn undecryptable(tree: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "a record of the {tree} tree could not be decrypted (corrupt or altered)"
    ))
}

/// The sub-keys derived from the store key.
pub(crate) struct Keys {
    /// Seals every sled value except message records (which have their own keys).
    values: Aes256Gcm,
    /// Seals the message keys in `message-keys`.
    pub(crate) slots: Aes256Gcm,
    /// Keys the username hash.
    index: Hmac<Sha256>,
}

impl Keys {
    /// HKDF-SHA256 (no salt: the store key is uniformly random already) of the store key.
    pub(crate) fn derive(store_key: &Key32) -> Result<Self, StoreError> {
        let hkdf = Hkdf::<Sha256>::new(None, &store_key.0);
        let sub = |info: &[u8]| -> Result<Key32, StoreError> {
            let mut key = [0u8; KEY_LEN];
            hkdf.expand(info, &mut key).map_err(|_| {
                StoreError::Unavailable("the store's sub-keys could not be derived".into())
            })?;
            Ok(Key32(key))
        };
        let index = sub(INDEX_INFO)?;
        Ok(Self {
            values: sub(VALUES_INFO)?.cipher(),
            slots: sub(SLOTS_INFO)?.cipher(),
            index: <Hmac<Sha256> as KeyInit>::new_from_slice(&index.0).map_err(|_| {
                StoreError::Unavailable("the store's index key could not be set up".into())
            })?,
        })
    }

    /// Seals `plaintext` as the value of `key` in `tree`.
    pub(crate) fn seal_value(
        &self,
        tree: &str,
        key: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        seal(&self.values, &record_aad(tree, key), plaintext)
    }

    /// Opens the value of `key` in `tree`.
    pub(crate) fn open_value(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        open(&self.values, &record_aad(tree, key), value).ok_or_else(|| undecryptable(tree))
    }

    /// HMAC-SHA256(index key, `"user" ‖ 0x00 ‖ name`) truncated to 16 bytes: what stands for
    /// a username in sled keys. Fixed length, so no separator is needed after it.
    pub(crate) fn name(&self, user: &Username) -> [u8; NAME_LEN] {
        let mut mac = self.index.clone();
        mac.update(b"user\0");
        mac.update(user.as_str().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; NAME_LEN];
        out.copy_from_slice(&full[..NAME_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(byte: u8) -> Keys {
        Keys::derive(&Key32([byte; KEY_LEN])).expect("derives")
    }

    #[test]
    fn given_a_sealed_value_when_opened_elsewhere_or_altered_then_it_does_not_open() {
        let keys = derived(1);
        let sealed = keys
            .seal_value("contacts", b"k1", b"secret words")
            .expect("seal");
        assert_eq!(
            keys.open_value("contacts", b"k1", &sealed).ok(),
            Some(b"secret words".to_vec())
        );
        assert!(
            keys.open_value("contacts", b"k2", &sealed).is_err(),
            "another key"
        );
        assert!(
            keys.open_value("seen", b"k1", &sealed).is_err(),
            "another tree"
        );
        assert!(
            derived(2).open_value("contacts", b"k1", &sealed).is_err(),
            "another store key"
        );
        for at in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bent = sealed.clone();
            bent[at] ^= 0x01;
            assert!(
                keys.open_value("contacts", b"k1", &bent).is_err(),
                "byte {at}"
            );
        }
        assert!(keys.open_value("contacts", b"k1", &sealed[..20]).is_err());
        let Err(StoreError::Unavailable(why)) = keys.open_value("contacts", b"k2", &sealed) else {
            panic!("refused");
        };
        assert!(
            why.contains("could not be decrypted") && !why.contains("secret"),
            "{why}"
        );
    }

    #[test]
    fn given_two_seals_of_the_same_text_then_they_differ() {
        let keys = derived(1);
        let a = keys.seal_value("t", b"k", b"same").expect("seal");
        let b = keys.seal_value("t", b"k", b"same").expect("seal");
        assert_ne!(a, b, "a fresh nonce each time");
    }

    #[test]
    fn given_usernames_when_hashed_then_the_hash_is_keyed_stable_and_distinct() {
        let bob = Username::parse("bob").expect("valid");
        let bobby = Username::parse("bobby").expect("valid");
        assert_eq!(derived(1).name(&bob), derived(1).name(&bob));
        assert_ne!(derived(1).name(&bob), derived(1).name(&bobby));
        assert_ne!(
            derived(1).name(&bob),
            derived(2).name(&bob),
            "keyed by the store"
        );
    }
}
