//! `/parley/message/3`: the bytes of a message stream, read as the node reads them
//! (`parley_p2p::message::read_frame` with the request frame's cap), and a frame's CBOR item
//! decoded as a request (what a peer receives) and as a response (what a sender receives).
//!
//! Invariants: no frame over the cap is returned, and a length over it is refused before its
//! body is read; whatever decodes encodes to an item that decodes to the same value; a decoded
//! request has at most `MAX_META_ENTRIES` metadata entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_p2p::message::{MAX_REQUEST_FRAME_BYTES, Request, Response, read_frame};
use parley_p2p::protocol::MAX_META_ENTRIES;

fn check(item: &[u8]) {
    if let Ok(request) = Request::decode(item) {
        assert!(request.meta.len() <= MAX_META_ENTRIES);
        assert_eq!(Request::decode(&request.encode()), Ok(request));
    }
    if let Ok(response) = Response::decode(item) {
        assert_eq!(Response::decode(&response.encode()), Ok(response));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    let frame = futures::executor::block_on(read_frame(&mut stream, MAX_REQUEST_FRAME_BYTES));
    match frame {
        Ok(Some(item)) => {
            assert!(item.len() <= MAX_REQUEST_FRAME_BYTES);
            check(&item);
        }
        Ok(None) => assert!(data.is_empty()),
        Err(_) => {}
    }
    check(data);
});
