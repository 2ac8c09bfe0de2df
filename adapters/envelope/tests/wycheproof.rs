//! The primitives the envelope rests on, against Project Wycheproof's test vectors: X25519
//! (x25519-dalek), Ed25519 with `verify_strict` (ed25519-dalek) and AES-GCM (aes-gcm).
//! Each family counts the vectors it ran and insists on a floor, so none can pass vacuously.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use ed25519_dalek::{Signature, VerifyingKey};
use wycheproof::TestResult;
use x25519_dalek::{PublicKey, StaticSecret};

#[test]
fn x25519_matches_wycheproof() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519)
        .expect("the x25519 vectors load");
    let (mut ran, mut zero_shared) = (0usize, 0usize);
    for group in &set.test_groups {
        for test in &group.tests {
            let id = test.tc_id;
            let (Ok(private), Ok(public)) = (
                <[u8; 32]>::try_from(test.private_key.as_slice()),
                <[u8; 32]>::try_from(test.public_key.as_slice()),
            ) else {
                // Keys of another length cannot even be expressed with these types.
                assert!(
                    test.result.must_fail(),
                    "tc {id}: a valid vector with an odd key"
                );
                continue;
            };
            let shared = StaticSecret::from(private).diffie_hellman(&PublicKey::from(public));
            ran += 1;
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        shared.as_bytes().as_slice(),
                        test.shared_secret.as_slice(),
                        "tc {id}: {}",
                        test.comment
                    );
                }
                TestResult::Invalid => {
                    assert_ne!(
                        shared.as_bytes().as_slice(),
                        test.shared_secret.as_slice(),
                        "tc {id}: {}",
                        test.comment
                    );
                }
            }
            if test.shared_secret.iter().all(|&b| b == 0) {
                zero_shared += 1;
                assert!(
                    !shared.was_contributory(),
                    "tc {id}: an all-zero result must not count as contributory"
                );
            } else {
                assert!(shared.was_contributory(), "tc {id}");
            }
        }
    }
    assert!(ran >= 500, "only {ran} x25519 vectors ran");
    assert!(zero_shared > 0, "no all-zero x25519 vector ran");
}

#[test]
fn ed25519_verify_strict_matches_wycheproof() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
        .expect("the ed25519 vectors load");
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in &set.test_groups {
        let key = <[u8; 32]>::try_from(group.key.pk.as_slice())
            .ok()
            .and_then(|pk| VerifyingKey::from_bytes(&pk).ok());
        for test in &group.tests {
            let id = test.tc_id;
            let verified = key.is_some_and(|key| {
                <[u8; 64]>::try_from(test.sig.as_slice()).is_ok_and(|sig| {
                    key.verify_strict(&test.msg, &Signature::from_bytes(&sig))
                        .is_ok()
                })
            });
            match test.result {
                TestResult::Valid => {
                    valid += 1;
                    assert!(verified, "tc {id} should verify: {}", test.comment);
                }
                TestResult::Invalid => {
                    invalid += 1;
                    assert!(!verified, "tc {id} should be refused: {}", test.comment);
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
    assert!(
        valid + invalid >= 100,
        "only {} ed25519 vectors ran",
        valid + invalid
    );
}

fn check_aes_gcm<C>(test: &wycheproof::aead::Test) -> bool
where
    C: Aead + KeyInit + aes_gcm::AeadCore<NonceSize = aes_gcm::aead::consts::U12>,
{
    let id = test.tc_id;
    let cipher = C::new_from_slice(&test.key).expect("key size checked by the group");
    let nonce = aes_gcm::Nonce::try_from(test.nonce.as_slice()).expect("96-bit nonce");
    let sealed: Vec<u8> = [test.ct.as_slice(), test.tag.as_slice()].concat();
    let opened = cipher.decrypt(
        &nonce,
        Payload {
            msg: &sealed,
            aad: &test.aad,
        },
    );
    match test.result {
        TestResult::Valid | TestResult::Acceptable => {
            let encrypted = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &test.pt,
                        aad: &test.aad,
                    },
                )
                .expect("encrypts");
            assert_eq!(encrypted, sealed, "tc {id}: {}", test.comment);
            assert_eq!(
                opened.as_deref().ok(),
                Some(test.pt.as_slice()),
                "tc {id}: {}",
                test.comment
            );
            true
        }
        TestResult::Invalid => {
            assert!(
                opened.is_err(),
                "tc {id} should be refused: {}",
                test.comment
            );
            false
        }
    }
}

#[test]
fn aes_gcm_matches_wycheproof() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm)
        .expect("the AES-GCM vectors load");
    let mut ran = [[0usize; 2]; 2]; // [128-bit, 256-bit][valid, invalid]
    for group in &set.test_groups {
        if group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for test in &group.tests {
            let (slot, valid) = match group.key_size {
                128 => (0, check_aes_gcm::<Aes128Gcm>(test)),
                256 => (1, check_aes_gcm::<Aes256Gcm>(test)),
                _ => continue,
            };
            ran[slot][usize::from(!valid)] += 1;
        }
    }
    for (bits, [valid, invalid]) in [128, 256].into_iter().zip(ran) {
        assert!(
            valid > 0 && invalid > 0,
            "AES-{bits}-GCM: {valid} valid, {invalid} invalid vectors ran"
        );
    }
}
