//! Reading a stored ratchet state and a ratchet header (`parley_domain::ratchet`), then opening
//! a message with them.
//!
//! The first byte chooses the mode:
//! - even: the rest is a stored state. A state that decodes encodes to bytes that decode to a
//!   state encoding the same (one form per state), and opening a zero-length message with it
//!   is refused without a panic.
//! - odd: `header (44 bytes) ‖ state length (u16, big-endian) ‖ state ‖ ciphertext`. A header that decodes encodes to the same 44 bytes; with a state that
//!   decodes, opening the ciphertext under it must not panic, and a refused one leaves the
//!   state's encoding as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_domain::Timestamp;
use parley_domain::ratchet::{HEADER_LEN, Header, Ratchet};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(state) = Ratchet::decode(rest) else {
            return;
        };
        let once = state.encode();
        let again = Ratchet::decode(&once).expect("an encoded state decodes");
        assert!(*again.encode() == *once, "a state has two encodings");
        return;
    }
    let Some((header, rest)) = rest.split_at_checked(HEADER_LEN) else {
        return;
    };
    let Ok(parsed) = Header::decode(header) else {
        return;
    };
    assert!(parsed.encode() == *header, "a header reads back differently");
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (state, ciphertext) = rest.split_at(len);
    let Ok(mut ratchet) = Ratchet::decode(state) else {
        return;
    };
    let before = ratchet.encode();
    if ratchet.open(&parsed, ciphertext, b"fuzz", NOW).is_err() {
        assert!(*ratchet.encode() == *before, "a refused message changed the state");
    }
});
