#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::*;
use crate::message::Timestamp;
use crate::ratchet::{Key32, KeyPair, Ratchet};

/// A stand-in KEM for the domain's tests (the real ML-KEM-768 is the envelope adapter's):
/// the ciphertext is the secret masked with a hash of the public key. Useless as
/// cryptography, faithful as plumbing.
struct FakeKem {
    public: KemPublicKey,
}

fn mask(public: &KemPublicKey) -> [u8; 32] {
    Sha256::digest(public.as_bytes()).into()
}

impl Encapsulate for FakeKem {
    fn encapsulate(&self, to: &KemPublicKey) -> Result<(KemCiphertext, Key32), KemError> {
        let secret = [0x42u8; 32];
        let mut ct = vec![0u8; KEM_CIPHERTEXT_LEN];
        for (i, (s, m)) in secret.iter().zip(mask(to)).enumerate() {
            ct[i] = s ^ m;
        }
        Ok((KemCiphertext::parse(&ct)?, Key32::new(secret)))
    }
}

impl Decapsulate for FakeKem {
    fn decapsulate(&self, ciphertext: &KemCiphertext) -> Result<Key32, KemError> {
        let mut secret = [0u8; 32];
        for (i, m) in mask(&self.public).iter().enumerate() {
            secret[i] = ciphertext.as_bytes()[i] ^ m;
        }
        Ok(Key32::new(secret))
    }
}

struct Bob {
    device: SigningKey,
    identity: KeyPair,
    signed_prekey: KeyPair,
    one_time_prekey: KeyPair,
    kem: FakeKem,
}

fn kp(byte: u8) -> KeyPair {
    KeyPair::from_secret(Key32::new([byte; 32]))
}

fn bob() -> Bob {
    Bob {
        device: SigningKey::from_bytes(&[3; 32]),
        identity: kp(4),
        signed_prekey: kp(5),
        one_time_prekey: kp(6),
        kem: FakeKem {
            public: KemPublicKey::parse(&[7; KEM_PUBLIC_LEN]).unwrap(),
        },
    }
}

impl Bob {
    fn bundle(&self, with_one_time: bool) -> PrekeyBundle {
        let spk = self.signed_prekey.public();
        let kem = self.kem.public.clone();
        PrekeyBundle {
            identity: self.identity.public(),
            signed_prekey: SignedPrekey {
                id: 1,
                key: spk,
                signature: self
                    .device
                    .sign(&SignedPrekey::signed_message(1, &spk))
                    .to_bytes(),
            },
            one_time_prekey: with_one_time.then(|| OneTimePrekey {
                id: 9,
                key: self.one_time_prekey.public(),
            }),
            kem_prekey: Some(KemPrekey {
                id: 2,
                signature: self
                    .device
                    .sign(&KemPrekey::signed_message(2, &kem))
                    .to_bytes(),
                key: kem,
            }),
        }
    }

    fn device_key(&self) -> [u8; 32] {
        self.device.verifying_key().to_bytes()
    }

    fn respond(&self, message: &InitialMessage) -> Result<Key32, AgreementError> {
        respond(
            &ResponderKeys {
                identity: &self.identity,
                signed_prekey: &self.signed_prekey,
                one_time_prekey: message.one_time_prekey_id.map(|_| &self.one_time_prekey),
                kem_prekey: &self.kem,
            },
            message,
        )
    }
}

fn initiate_with(bob: &Bob, bundle: &PrekeyBundle) -> Result<Initiated, AgreementError> {
    let kem = FakeKem {
        public: bob.kem.public.clone(),
    };
    initiate(&kp(1), Key32::new([2; 32]), bundle, &bob.device_key(), &kem)
}

/// Both sides agree, and a ratchet started from the agreement carries a message.
fn check(bob: &Bob, with_one_time: bool) -> Key32 {
    let started = initiate_with(bob, &bob.bundle(with_one_time)).unwrap();
    assert_eq!(
        started.message.one_time_prekey_id.is_some(),
        with_one_time,
        "the one-time prekey is used exactly when the bundle has one"
    );
    let root = bob.respond(&started.message).unwrap();
    assert_eq!(root.expose(), started.root.expose());
    let mut alice = Ratchet::initiator(&started.root, started.responder_ratchet);
    let mut responder = Ratchet::responder(&root, bob.signed_prekey.clone());
    let sealed = alice.seal(Key32::new([8; 32]), b"hi", b"ad").unwrap();
    assert_eq!(
        responder
            .open(&sealed.header, &sealed.ciphertext, b"ad", Timestamp(0))
            .unwrap(),
        b"hi"
    );
    root
}

#[test]
fn both_sides_agree_on_the_root_with_or_without_a_one_time_prekey() {
    let bob = bob();
    let with = check(&bob, true);
    let without = check(&bob, false);
    assert_ne!(with.expose(), without.expose());
}

#[test]
fn a_forged_prekey_signature_is_refused() {
    let bob = bob();
    let mut bundle = bob.bundle(true);
    bundle.signed_prekey.signature[0] ^= 1;
    assert_eq!(
        initiate_with(&bob, &bundle).err(),
        Some(AgreementError::BadPrekeySignature)
    );
    let mut bundle = bob.bundle(true);
    bundle.signed_prekey.key = kp(66).public();
    assert_eq!(
        initiate_with(&bob, &bundle).err(),
        Some(AgreementError::BadPrekeySignature),
        "a prekey swapped under a genuine signature"
    );
    let mut bundle = bob.bundle(true);
    if let Some(kem) = &mut bundle.kem_prekey {
        kem.signature[5] ^= 1;
    }
    assert_eq!(
        initiate_with(&bob, &bundle).err(),
        Some(AgreementError::BadKemPrekeySignature)
    );
    let impostor = Bob {
        device: SigningKey::from_bytes(&[99; 32]),
        ..bob
    };
    let bundle = impostor.bundle(true);
    let kem = FakeKem {
        public: impostor.kem.public.clone(),
    };
    let genuine_device = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
    assert_eq!(
        initiate(&kp(1), Key32::new([2; 32]), &bundle, &genuine_device, &kem).err(),
        Some(AgreementError::BadPrekeySignature),
        "prekeys signed by another device's key"
    );
}

#[test]
fn a_bundle_without_a_kem_prekey_is_refused_not_downgraded() {
    let bob = bob();
    let mut bundle = bob.bundle(true);
    bundle.kem_prekey = None;
    assert_eq!(
        initiate_with(&bob, &bundle).err(),
        Some(AgreementError::MissingKemPrekey)
    );
}

#[test]
fn the_responder_refuses_a_one_time_prekey_it_does_not_hold() {
    let bob = bob();
    let started = initiate_with(&bob, &bob.bundle(true)).unwrap();
    let refused = respond(
        &ResponderKeys {
            identity: &bob.identity,
            signed_prekey: &bob.signed_prekey,
            one_time_prekey: None,
            kem_prekey: &bob.kem,
        },
        &started.message,
    );
    assert_eq!(refused.err(), Some(AgreementError::OneTimePrekeyMismatch));
}

#[test]
fn the_kem_secret_and_every_dh_are_part_of_the_root() {
    let bob = bob();
    let started = initiate_with(&bob, &bob.bundle(true)).unwrap();
    let other_kem = FakeKem {
        public: KemPublicKey::parse(&[8; KEM_PUBLIC_LEN]).unwrap(),
    };
    let root = respond(
        &ResponderKeys {
            identity: &bob.identity,
            signed_prekey: &bob.signed_prekey,
            one_time_prekey: Some(&bob.one_time_prekey),
            kem_prekey: &other_kem,
        },
        &started.message,
    )
    .unwrap();
    assert_ne!(root.expose(), started.root.expose());
    let mut message = started.message.clone();
    message.identity = kp(77).public();
    assert_ne!(
        bob.respond(&message).unwrap().expose(),
        started.root.expose()
    );
}

#[test]
fn kem_keys_and_ciphertexts_have_their_exact_lengths() {
    assert_eq!(
        KemPublicKey::parse(&[0; KEM_PUBLIC_LEN - 1]),
        Err(KemError::BadPublicKey)
    );
    assert_eq!(
        KemCiphertext::parse(&[0; KEM_CIPHERTEXT_LEN + 1]),
        Err(KemError::BadCiphertext)
    );
}
