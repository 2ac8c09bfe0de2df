//! `/parley/directory/2`: the JSON request the rendezvous receives and the JSON response a
//! peer receives (`parley_p2p::protocol`, decoded with `serde_json::from_slice` as libp2p's
//! JSON codec does), then what each side parses out of them: published addresses as
//! multiaddrs (the rendezvous), the looked-up username, and each listed device's peer id and
//! addresses (the peer, before it dials).
//!
//! Invariants: whatever decodes encodes to JSON that decodes to the same value; a username
//! that parses is the text it came from; an address or peer id that parses prints as text
//! that parses to the same value (so an address the rendezvous files reaches the dialer
//! unchanged), and the rendezvous's `/p2p/` suffix keeps the address and ends in that peer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_domain::Username;
use parley_fuzz::json_round_trip as round_trip;
use parley_p2p::protocol::{DirectoryRequest, DirectoryResponse};
use parley_p2p::{Multiaddr, PeerId, with_peer};

fn address(text: &str) -> Option<Multiaddr> {
    let addr: Multiaddr = text.parse().ok()?;
    let printed = addr.to_string();
    assert!(
        printed.parse::<Multiaddr>().ok().as_ref() == Some(&addr),
        "a multiaddr does not survive printing: {printed}"
    );
    Some(addr)
}

fuzz_target!(|data: &[u8]| {
    match round_trip::<DirectoryRequest>(data) {
        Some(DirectoryRequest::Publish { addrs, .. }) => {
            let publisher = PeerId::from_bytes(&[0, 4, 1, 2, 3, 4]).expect("an identity peer id");
            for addr in addrs
                .iter()
                .filter(|a| a.len() <= 256)
                .filter_map(|a| address(a))
            {
                let suffixed = with_peer(&addr, publisher);
                let filed = suffixed.to_string();
                assert!(filed.parse::<Multiaddr>().ok() == Some(suffixed.clone()));
                assert!(
                    suffixed.iter().count() == addr.iter().count()
                        || suffixed.iter().count() == addr.iter().count() + 1,
                    "the /p2p/ suffix changed more than the end"
                );
                assert!(suffixed.to_string().starts_with(&addr.to_string()));
            }
        }
        Some(DirectoryRequest::Lookup { username, .. }) => {
            if let Ok(user) = Username::parse(&username) {
                assert_eq!(user.as_str(), username);
            }
        }
        None => {}
    }
    match round_trip::<DirectoryResponse>(data) {
        Some(DirectoryResponse::Lookup { devices }) => {
            for record in &devices {
                if let Ok(peer) = record.peer_id.parse::<PeerId>() {
                    assert_eq!(peer.to_string().parse::<PeerId>().ok(), Some(peer));
                }
                for addr in &record.addrs {
                    address(addr);
                }
            }
        }
        Some(DirectoryResponse::RateLimited { retry_after_ms }) => {
            let _ = retry_after_ms.div_ceil(1000);
        }
        _ => {}
    }
});
