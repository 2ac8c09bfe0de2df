//! Opening an envelope of version 2 in a ratchet session (`Sealer::open_in`), and reading
//! which session one names (`v2::session_of`).
//!
//! The input is an envelope as it arrives, opened by the recipient in a fresh copy of its side
//! of [`parley_fuzz::session_pair`] (the seeds are envelopes the sender sealed in that
//! session). Invariants: nothing panics; a refused envelope leaves the session exactly as it
//! was; an opened one keeps the header's and body's documented limits, its digest is the
//! SHA-256 of the bytes, it names the session, and opening the same bytes again is refused.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use parley_domain::Timestamp;
use parley_domain::ratchet::SessionState;
use parley_envelope::{Sealer, v2};
use parley_fuzz::{check_body, check_header, recipient, sender, session_pair, sha256};

static WORLD: LazyLock<(Sealer, Sealer, SessionState)> = LazyLock::new(|| {
    let (_, theirs) = session_pair();
    (sender(), recipient(), theirs)
});

fuzz_target!(|data: &[u8]| {
    let (sender, recipient, session) = &*WORLD;
    let named = v2::session_of(data);
    let mut s = session.clone();
    let before = s.ratchet.encode();
    match recipient.open_in(data, &sender.ed25519_public(), &mut s, Timestamp(10)) {
        Ok(opened) => {
            check_header(&opened.header);
            check_body(&opened.header, &opened.body);
            assert_eq!(opened.digest.0, sha256(data), "the digest is of the bytes");
            let named = named.expect("an opened envelope parses").expect("version 2");
            assert_eq!(named.id, session.id, "it names the session it opened in");
            let replay = recipient.open_in(data, &sender.ed25519_public(), &mut s, Timestamp(11));
            assert!(replay.is_err(), "the same envelope opens only once");
        }
        Err(_) => assert!(*s.ratchet.encode() == *before, "a refusal moved the session"),
    }
});
