//! Opening an envelope with the recipient's fixed keys (`Sealer::open`).
//!
//! The first byte chooses the mode:
//! - even: the rest is an envelope as it arrives. Almost every input stops at the structure or
//!   the signature check; whatever opens must keep the invariants below.
//! - odd: the rest is `u16 header length ‖ header bytes ‖ body bytes`, sealed and signed
//!   properly here, so the header and body decoders behind the signature check and the
//!   decryption see fuzzed bytes. Such an envelope may only be refused for its structure or
//!   its rules, never for its signature, key or ciphertext.
//!
//! Invariants of an opened envelope: header and body keep the documented limits, its digest is
//! the SHA-256 of the bytes, `read_header` reads the same header, and sealing the opened
//! header and body again opens to the same values.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use parley_envelope::{OpenError, Sealer};
use parley_fuzz::{check_body, check_header, recipient, seal_parts, sender, sha256, split_u16};

static KEYS: LazyLock<(Sealer, Sealer)> = LazyLock::new(|| (sender(), recipient()));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sender, recipient) = &*KEYS;
    let signed = mode & 1 == 1;
    let envelope = if signed {
        let (header, body) = split_u16(rest);
        seal_parts(header, body)
    } else {
        rest.to_vec()
    };
    match recipient.open(&envelope, &sender.ed25519_public()) {
        Ok(opened) => {
            check_header(&opened.header);
            check_body(&opened.header, &opened.body);
            assert_eq!(
                opened.digest.0,
                sha256(&envelope),
                "the digest is not the SHA-256"
            );
            assert_eq!(
                parley_envelope::read_header(&envelope).as_ref(),
                Ok(&opened.header),
                "read_header disagrees with open"
            );
            let again = sender
                .seal(&opened.header, &opened.body, &recipient.x25519_public())
                .expect("an opened header and body can be sealed again");
            let reopened = recipient
                .open(&again.bytes, &sender.ed25519_public())
                .expect("a sealed envelope opens");
            assert_eq!(
                reopened.header, opened.header,
                "the header changed on the way"
            );
            assert_eq!(reopened.body, opened.body, "the body changed on the way");
        }
        Err(e) if signed => assert!(
            matches!(
                e,
                OpenError::TooLarge
                    | OpenError::Malformed(_)
                    | OpenError::InvalidHeader(_)
                    | OpenError::InvalidBody(_)
            ),
            "a properly sealed envelope was refused for its crypto: {e:?}"
        ),
        Err(_) => {}
    }
});
