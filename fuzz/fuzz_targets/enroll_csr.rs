//! The CSR of an enrollment (`rendezvous::csr::parse`), for the user `alice`.
//!
//! The first byte chooses the mode (modulo 3):
//! - 0: the rest is the PEM text as it arrives;
//! - 1: the rest is DER, wrapped here in a `CERTIFICATE REQUEST` PEM block, so the fuzzer
//!   works on the ASN.1 rather than on base64;
//! - 2: the rest is a CertificationRequestInfo, signed here with a fixed Ed25519 key, so
//!   inputs that name that key get past the signature check to the extension rules.
//!
//! Invariants: an accepted CSR yields an Ed25519 key that is a valid public key; in mode 2 it
//! is the fixed key, the only one that signed.
#![no_main]

use std::sync::LazyLock;

use ed25519_dalek::{SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use parley_domain::Username;
use parley_fuzz::{CSR_ED25519, pem, signed_csr_pem};
use parley_rendezvous::csr;

static USER: LazyLock<Username> = LazyLock::new(|| Username::parse("alice").expect("valid"));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mode = mode % 3;
    let text = match mode {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => pem("CERTIFICATE REQUEST", rest),
        _ => signed_csr_pem(rest),
    };
    let result = csr::parse(&text, &USER);
    if let Ok(keys) = result {
        assert!(
            VerifyingKey::from_bytes(&keys.ed25519).is_ok(),
            "an accepted CSR has an invalid Ed25519 key"
        );
        if mode == 2 {
            let signer = SigningKey::from_bytes(&CSR_ED25519)
                .verifying_key()
                .to_bytes();
            assert_eq!(
                keys.ed25519, signer,
                "a CSR was accepted for a key that did not sign it"
            );
        }
    }
});
