//! Reading an envelope's header without opening it (`parley_envelope::read_header`, used for
//! this device's own outgoing envelopes).
//!
//! The first byte chooses the mode: even, the rest is a whole envelope; odd, the rest is a
//! header, framed here as an envelope so every input reaches the header decoder.
//!
//! Invariants: a header that is read keeps the documented limits, and sealing it (with a body
//! that carries one key per attachment) gives an envelope whose header reads the same.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use parley_domain::{AttachmentKey, Body, Digest, MessageText, Secret32};
use parley_envelope::{Sealer, read_header};
use parley_fuzz::{check_header, frame_header, recipient, sender};

static KEYS: LazyLock<(Sealer, [u8; 32])> =
    LazyLock::new(|| (sender(), recipient().x25519_public()));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let envelope = if mode & 1 == 1 {
        frame_header(rest)
    } else {
        rest.to_vec()
    };
    let Ok(header) = read_header(&envelope) else {
        return;
    };
    check_header(&header);
    let body = Body {
        text: MessageText::parse("x".to_owned()).expect("a valid text"),
        attachment_keys: header
            .attachments
            .iter()
            .map(|_| AttachmentKey {
                key: Secret32::new([1; 32]),
                plain_sha256: Digest([2; 32]),
            })
            .collect(),
    };
    let (sender, recipient_x25519) = &*KEYS;
    // A header of at most 4096 bytes and a body of at most 518 stay far below the 24 KiB cap.
    let sealed = sender
        .seal(&header, &body, recipient_x25519)
        .expect("a header that was read can be sealed");
    assert_eq!(
        read_header(&sealed.bytes),
        Ok(header),
        "the header changed between reading and sealing"
    );
});
