//! ML-KEM-768 (FIPS 203) for the domain's hybrid first-contact agreement, over aws-lc-rs:
//! the implementation behind [`parley_domain::agreement::Encapsulate`] and
//! [`parley_domain::agreement::Decapsulate`].

use std::fmt;

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use parley_domain::agreement::{Decapsulate, Encapsulate, KemCiphertext, KemError, KemPublicKey};
use parley_domain::ratchet::Key32;
use zeroize::Zeroizing;

/// Encapsulation to any ML-KEM-768 key; draws its randomness from the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct MlKem768;

impl Encapsulate for MlKem768 {
    fn encapsulate(&self, to: &KemPublicKey) -> Result<(KemCiphertext, Key32), KemError> {
        let key = EncapsulationKey::new(&ML_KEM_768, to.as_bytes())
            .map_err(|_| KemError::BadPublicKey)?;
        let (ciphertext, shared) = key.encapsulate().map_err(|_| KemError::Failed)?;
        let ciphertext = KemCiphertext::parse(ciphertext.as_ref())?;
        Ok((ciphertext, key32(shared.as_ref())?))
    }
}

/// One of this device's ML-KEM-768 prekeys: the secret half (wiped by aws-lc-rs on drop).
pub struct MlKem768Prekey {
    key: DecapsulationKey,
}

impl MlKem768Prekey {
    /// A fresh key pair from the operating system's random generator.
    ///
    /// # Errors
    /// [`KemError::Failed`] when aws-lc-rs cannot generate one.
    pub fn generate() -> Result<Self, KemError> {
        let key = DecapsulationKey::generate(&ML_KEM_768).map_err(|_| KemError::Failed)?;
        Ok(Self { key })
    }

    /// Reads a secret key written by [`MlKem768Prekey::secret_bytes`].
    ///
    /// # Errors
    /// [`KemError::BadSecretKey`] when aws-lc-rs refuses the bytes.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, KemError> {
        let key = DecapsulationKey::new(&ML_KEM_768, bytes).map_err(|_| KemError::BadSecretKey)?;
        Ok(Self { key })
    }

    /// The secret key's bytes, for the store, in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`KemError::Failed`] when aws-lc-rs cannot export it.
    pub fn secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, KemError> {
        let bytes = self.key.key_bytes().map_err(|_| KemError::Failed)?;
        Ok(Zeroizing::new(bytes.as_ref().to_vec()))
    }

    /// The public half, for the prekey bundle.
    ///
    /// # Errors
    /// [`KemError::Failed`] when aws-lc-rs cannot export it.
    pub fn public(&self) -> Result<KemPublicKey, KemError> {
        let public = self
            .key
            .encapsulation_key()
            .and_then(|k| k.key_bytes())
            .map_err(|_| KemError::Failed)?;
        KemPublicKey::parse(public.as_ref())
    }
}

impl Decapsulate for MlKem768Prekey {
    fn decapsulate(&self, ciphertext: &KemCiphertext) -> Result<Key32, KemError> {
        let shared = self
            .key
            .decapsulate(Ciphertext::from(ciphertext.as_bytes()))
            .map_err(|_| KemError::BadCiphertext)?;
        key32(shared.as_ref())
    }
}

impl fmt::Debug for MlKem768Prekey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlKem768Prekey(..)")
    }
}

fn key32(bytes: &[u8]) -> Result<Key32, KemError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KemError::Failed)?;
    Ok(Key32::new(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::{Signer, SigningKey};
    use parley_domain::agreement::{
        KemPrekey, PrekeyBundle, ResponderKeys, SignedPrekey, initiate, respond,
    };
    use parley_domain::ratchet::KeyPair;

    use super::*;

    fn random32() -> Key32 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        Key32::new(bytes)
    }

    #[test]
    fn encapsulation_and_decapsulation_agree_and_a_stored_prekey_still_opens() {
        let prekey = MlKem768Prekey::generate().unwrap();
        let (ciphertext, sent) = MlKem768.encapsulate(&prekey.public().unwrap()).unwrap();
        assert_eq!(
            prekey.decapsulate(&ciphertext).unwrap().expose(),
            sent.expose()
        );
        let stored = MlKem768Prekey::from_secret_bytes(&prekey.secret_bytes().unwrap()).unwrap();
        assert_eq!(
            stored.decapsulate(&ciphertext).unwrap().expose(),
            sent.expose()
        );
        let other = MlKem768Prekey::generate().unwrap();
        assert_ne!(
            other.decapsulate(&ciphertext).unwrap().expose(),
            sent.expose(),
            "ML-KEM rejects implicitly: another key gives another secret"
        );
    }

    #[test]
    fn the_hybrid_agreement_with_the_real_kem_gives_both_sides_one_root() {
        let device = SigningKey::from_bytes(random32().expose());
        let identity = KeyPair::from_secret(random32());
        let signed_prekey = KeyPair::from_secret(random32());
        let kem_prekey = MlKem768Prekey::generate().unwrap();
        let kem_public = kem_prekey.public().unwrap();
        let bundle = PrekeyBundle {
            identity: identity.public(),
            signed_prekey: SignedPrekey {
                id: 1,
                key: signed_prekey.public(),
                signature: device
                    .sign(&SignedPrekey::signed_message(1, &signed_prekey.public()))
                    .to_bytes(),
            },
            one_time_prekey: None,
            kem_prekey: Some(KemPrekey {
                id: 1,
                signature: device
                    .sign(&KemPrekey::signed_message(1, &kem_public))
                    .to_bytes(),
                key: kem_public,
            }),
        };
        let alice = KeyPair::from_secret(random32());
        let started = initiate(
            &alice,
            random32(),
            &bundle,
            &device.verifying_key().to_bytes(),
            &MlKem768,
        )
        .unwrap();
        let root = respond(
            &ResponderKeys {
                identity: &identity,
                signed_prekey: &signed_prekey,
                one_time_prekey: None,
                kem_prekey: &kem_prekey,
            },
            &started.message,
        )
        .unwrap();
        assert_eq!(root.expose(), started.root.expose());
    }
}
