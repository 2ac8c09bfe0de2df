//! `/parley/message/2`: the JSON request a peer receives and the JSON response a sender
//! receives (`parley_p2p::protocol`, decoded as libp2p's JSON codec does, with
//! `serde_json::from_slice`), then the checks before the envelope is read
//! (`parley_p2p::parse_request`) and the receipt's digest (`Digest::parse`).
//!
//! Invariants: whatever decodes encodes to JSON that decodes to the same value; an accepted
//! request keeps the metadata bounds and the base64 cap, and its envelope is the one
//! canonical base64 text (re-encoding the bytes gives the text back); a refusal names the
//! first rule broken; a digest that parses prints as the same hex, in lower case.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use parley_domain::Digest;
use parley_fuzz::json_round_trip as round_trip;
use parley_p2p::parse_request;
use parley_p2p::protocol::{
    MAX_ENVELOPE_BASE64, MessageRequest, MessageResponse, meta_within_bounds,
};

fuzz_target!(|data: &[u8]| {
    if let Some(request) = round_trip::<MessageRequest>(data) {
        match parse_request(&request) {
            Ok(envelope) => {
                assert!(meta_within_bounds(&request.meta));
                assert!(request.envelope.len() <= MAX_ENVELOPE_BASE64);
                assert_eq!(
                    base64::engine::general_purpose::STANDARD.encode(&envelope),
                    request.envelope,
                    "the envelope's base64 is not canonical"
                );
            }
            Err(reason) => {
                let expected = if !meta_within_bounds(&request.meta) {
                    "the message metadata is too large"
                } else if request.envelope.len() > MAX_ENVELOPE_BASE64 {
                    "the envelope is too large"
                } else {
                    "the envelope is not valid base64"
                };
                assert_eq!(reason, expected);
            }
        }
    }
    if let Some(MessageResponse::Receipt { digest }) = round_trip::<MessageResponse>(data)
        && let Some(parsed) = Digest::parse(&digest)
    {
        assert_eq!(parsed.to_string(), digest.to_ascii_lowercase());
    }
});
