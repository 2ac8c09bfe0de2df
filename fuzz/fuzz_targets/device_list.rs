//! A signed device list as it arrives from the rendezvous or a publishing device
//! (`parley_domain::devices::DeviceList::decode`), then the rules a holder applies
//! (`DeviceList::accept`) against a fixed list held.
//!
//! Invariants: a list that decodes has one encoding (decode → encode gives the same bytes);
//! a list accepted after the one held is newer, the same user's, signed by a device of the one
//! held, and holds 1 to 8 distinct devices; a list accepted on first use lists its signer.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use parley_domain::{
    Timestamp, Username,
    devices::{DeviceList, ListedDevice, MAX_DEVICES, Unsigned},
};

/// bob's version 3, listing the keys 1 and 2 (signature not checked: it is the list held).
static HELD: LazyLock<DeviceList> = LazyLock::new(|| {
    let device = |n: u8| ListedDevice {
        ed25519: [n; 32],
        added_at: Timestamp(1_800_000_000_000),
        name: format!("device {n}"),
    };
    Unsigned {
        user: Username::parse("bob").expect("valid"),
        version: 3,
        devices: vec![device(1), device(2)],
    }
    .signed([0; 64], [1; 32])
});

fuzz_target!(|data: &[u8]| {
    let Ok(list) = DeviceList::decode(data) else {
        return;
    };
    assert_eq!(
        list.encode().as_deref(),
        Ok(data),
        "a decoded list has one encoding"
    );
    if DeviceList::accept(None, &list).is_ok() {
        assert!(list.lists(&list.signer), "a first list lists its signer");
        assert!((1..=MAX_DEVICES).contains(&list.devices.len()));
    }
    if DeviceList::accept(Some(&HELD), &list).is_ok() {
        assert_eq!(list.user, HELD.user);
        assert!(list.version > HELD.version);
        assert!(HELD.lists(&list.signer));
    }
});
