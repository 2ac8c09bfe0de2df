//! The signed device list at the real rendezvous, from the attacker's side: a device publishes
//! and fetches its user's list over `/parley/account/1` (the real mutual-TLS upgrade, raw
//! requests). The rendezvous keeps a list only when the user's rules take it after the one it
//! holds: a replayed older version, a list signed by a device that is not current (a removed
//! one, or a stranger's key), another user's list, a list signed by another device than the
//! one publishing it, one naming a key never enrolled under the name, and bytes that are no
//! list are all refused, and the list held stays as it was, across a restart too.

mod common;

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use parley_domain::{
    Timestamp, Username,
    devices::{DeviceList, ListedDevice, Unsigned},
};
use parley_p2p::account::{ACCOUNT_PROTOCOL, AccountRequest, AccountResponse};
use parley_testkit::Rendezvous;

const ANSWER: Duration = Duration::from_secs(20);

fn key_of(device: &common::Enrolled) -> SigningKey {
    SigningKey::from_bytes(device.secret.expose())
}

fn listed(device: &common::Enrolled, name: &str) -> ListedDevice {
    ListedDevice {
        ed25519: key_of(device).verifying_key().to_bytes(),
        added_at: Timestamp(1_800_000_000_000),
        name: name.into(),
    }
}

fn sign(unsigned: Unsigned, by: &SigningKey) -> DeviceList {
    let signer = by.verifying_key().to_bytes();
    let signature = by
        .sign(&unsigned.signed_bytes(&signer).expect("fits"))
        .to_bytes();
    unsigned.signed(signature, signer)
}

fn publish(list: &DeviceList) -> AccountRequest {
    AccountRequest::PublishDevices {
        list: base64::engine::general_purpose::STANDARD.encode(list.encode().expect("fits")),
        meta: Default::default(),
    }
}

fn fetch() -> AccountRequest {
    AccountRequest::Devices {
        meta: Default::default(),
    }
}

async fn ask(
    server: &Rendezvous,
    device: &common::Enrolled,
    requests: Vec<AccountRequest>,
) -> Vec<AccountResponse> {
    common::ask(server, device, ACCOUNT_PROTOCOL, requests, ANSWER).await
}

fn held(answer: &AccountResponse) -> Option<DeviceList> {
    match answer {
        AccountResponse::Devices { list } => list.as_ref().map(|l| {
            DeviceList::decode(
                &base64::engine::general_purpose::STANDARD
                    .decode(l)
                    .expect("base64"),
            )
            .expect("a list")
        }),
        other => panic!("not a device list: {other:?}"),
    }
}

fn code(answer: &AccountResponse) -> &str {
    match answer {
        AccountResponse::Refused { code, reason } => {
            assert!(
                reason.ends_with(|c: char| c.is_alphanumeric() || c == '.' || c == ')'),
                "one sentence: {reason}"
            );
            code
        }
        other => panic!("not a refusal: {other:?}"),
    }
}

fn bob() -> Username {
    Username::parse("bob").expect("valid")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendezvous_keeps_only_a_device_list_the_users_rules_take() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = common::start(&data, &["--enroll-burst", "1000"]);
    let laptop = common::enroll(&server, "bob").await;
    let desktop = common::enroll(&server, "bob").await;
    let eve = common::enroll(&server, "eve").await;

    // Nothing published yet.
    let answers = ask(&server, &laptop, vec![fetch()]).await;
    assert_eq!(held(&answers[0]), None);

    // The laptop publishes version 1, then version 2 adding the desktop.
    let v1 = sign(
        Unsigned::first(bob(), listed(&laptop, "laptop")).expect("v1"),
        &key_of(&laptop),
    );
    let v2 = sign(
        v1.next(vec![listed(&laptop, "laptop"), listed(&desktop, "desktop")])
            .expect("v2"),
        &key_of(&laptop),
    );
    let answers = ask(&server, &laptop, vec![publish(&v1), publish(&v2), fetch()]).await;
    assert_eq!(answers[0], AccountResponse::Done, "{answers:?}");
    assert_eq!(answers[1], AccountResponse::Done, "{answers:?}");
    assert_eq!(held(&answers[2]), Some(v2.clone()));

    // The desktop removes the laptop (version 3). The laptop, removed, then tries to sign
    // itself back in; and v2 is replayed.
    let v3 = sign(
        v2.next(vec![listed(&desktop, "desktop")]).expect("v3"),
        &key_of(&desktop),
    );
    // The same version signed by the laptop but handed in by the desktop: a device publishes
    // only what it signed itself.
    let relayed = sign(
        v2.next(vec![listed(&desktop, "desktop")]).expect("v3"),
        &key_of(&laptop),
    );
    let answers = ask(&server, &desktop, vec![publish(&relayed), publish(&v3)]).await;
    assert_eq!(code(&answers[0]), "device_list_refused", "{answers:?}");
    assert_eq!(answers[1], AccountResponse::Done, "{answers:?}");
    let comeback = sign(
        v3.next(vec![listed(&desktop, "desktop"), listed(&laptop, "laptop")])
            .expect("v4"),
        &key_of(&laptop),
    );
    let answers = ask(&server, &laptop, vec![publish(&comeback), publish(&v2)]).await;
    assert_eq!(code(&answers[0]), "device_list_refused");
    assert_eq!(code(&answers[1]), "device_list_refused");

    // A list signed by a key that is no device of bob's, published by the desktop: refused
    // (it is not the publishing device's signature either).
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let planted = sign(
        v3.next(vec![listed(&desktop, "desktop")]).expect("v4"),
        &stranger,
    );
    // The desktop's own v4 naming a key enrolled as eve: refused, naming the device.
    let with_eve = sign(
        v3.next(vec![listed(&desktop, "desktop"), listed(&eve, "eve's")])
            .expect("v4"),
        &key_of(&desktop),
    );
    // Any byte changed breaks the signature.
    let mut renamed = sign(
        v3.next(vec![listed(&desktop, "desktop")]).expect("v4"),
        &key_of(&desktop),
    );
    renamed.devices[0].name = "phone".into();
    let garbage = AccountRequest::PublishDevices {
        list: "bm90IGEgbGlzdA==".into(),
        meta: Default::default(),
    };
    let answers = ask(
        &server,
        &desktop,
        vec![
            publish(&planted),
            publish(&with_eve),
            publish(&renamed),
            garbage,
        ],
    )
    .await;
    assert_eq!(code(&answers[0]), "device_list_refused", "{answers:?}");
    assert_eq!(code(&answers[1]), "device_not_enrolled", "{answers:?}");
    assert_eq!(code(&answers[2]), "device_list_refused", "{answers:?}");
    assert_eq!(code(&answers[3]), "malformed", "{answers:?}");

    // eve cannot publish bob's list, nor read it: her connection is her account.
    let answers = ask(&server, &eve, vec![publish(&v3), fetch()]).await;
    assert_eq!(code(&answers[0]), "device_list_refused", "{answers:?}");
    assert_eq!(held(&answers[1]), None, "eve's own account has no list");

    // A device the CA signed outside enrollment (its key bound to nobody) is not heard.
    let forged = common::forged(&data, "bob", &laptop.ca);
    let answers = ask(&server, &forged, vec![fetch()]).await;
    assert_eq!(code(&answers[0]), "key_not_bound", "{answers:?}");

    // What was kept survives a restart, unchanged.
    assert!(server.stop().success());
    let server = common::start(&data, &[]);
    let answers = ask(&server, &desktop, vec![fetch()]).await;
    assert_eq!(held(&answers[0]), Some(v3));
}
