//! Prekeys at the real binary: devices enrolled over HTTPS and a real node for each, speaking
//! `/parley/prekeys/1` through the `PrekeyService` port. What a device published, and which
//! one-time prekeys were handed out, outlive a restart of the rendezvous (its sled store in
//! `<data>/prekeys`); a bundle names the X25519 key of the device's certificate and its
//! signatures hold for the device's certified Ed25519 key.

mod common;

use std::time::Duration;

use common::{Enrolled, enroll, start};
use parley_domain::{
    Username,
    agreement::{KEM_PUBLIC_LEN, KemPrekey, KemPublicKey, OneTimePrekey, SignedPrekey},
    ratchet::PublicKey,
};
use parley_p2p::{Credentials, Multiaddr, Node, NodeConfig};
use parley_testkit::Rendezvous;
use parley_usecases::ports::{PrekeyService, PrekeyUpload};

fn user(name: &str) -> Username {
    Username::parse(name).expect("a valid username")
}

/// `name`'s node (the enrolled device), once its prekey requests reach the rendezvous.
async fn device(server: &Rendezvous, enrolled: &Enrolled, name: &str) -> Node {
    let credentials = Credentials::new(
        &enrolled.secret,
        enrolled.certificate.clone(),
        enrolled.ca.clone(),
    )
    .expect("credentials");
    let (node, _inbound) = Node::start(NodeConfig {
        credentials,
        user: user(name),
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr"),
        rendezvous: vec![server.p2p.parse::<Multiaddr>().expect("the p2p line")],
        inbound_queue: 16,
        attachments: None,
        renew: true,
        tls_refresh: parley_p2p::refresh::DEFAULT_TLS_REFRESH,
    })
    .await
    .expect("the node starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.remaining().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}'s connection to the rendezvous"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node
}

/// The device's certified keys: Ed25519, and the X25519 key its certificate carries.
fn certified(enrolled: &Enrolled) -> ([u8; 32], [u8; 32]) {
    let peer = parley_p2p::pki::inspect(&enrolled.certificate).expect("our certificate");
    (
        peer.ed25519,
        peer.x25519.expect("enrolled with an X25519 key"),
    )
}

/// A publication signed by the enrolled device: prekeys `rotation`, one-time prekeys `ids`.
fn upload(enrolled: &Enrolled, rotation: u32, ids: impl IntoIterator<Item = u32>) -> PrekeyUpload {
    let mut secret = *enrolled.secret.expose();
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).expect("a key");
    let sign = |message: &[u8]| -> [u8; 64] {
        keypair
            .sign(message)
            .expect("signing")
            .try_into()
            .expect("64 bytes")
    };
    let key = PublicKey([0x40; 32]);
    let kem = KemPublicKey::parse(&[0x4b; KEM_PUBLIC_LEN]).expect("a KEM key's length");
    PrekeyUpload {
        signed_prekey: SignedPrekey {
            id: rotation,
            key,
            signature: sign(&SignedPrekey::signed_message(rotation, &key)),
        },
        kem_prekey: KemPrekey {
            id: rotation,
            signature: sign(&KemPrekey::signed_message(rotation, &kem)),
            key: kem,
        },
        one_time: ids
            .into_iter()
            .map(|id| OneTimePrekey {
                id,
                key: PublicKey([u8::try_from(id).expect("small"); 32]),
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn published_prekeys_and_handed_out_ones_outlive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path(), &[]);
    let alice_keys = enroll(&server, "alice").await;
    let bob_keys = enroll(&server, "bob").await;
    let alice = device(&server, &alice_keys, "alice").await;
    assert_eq!(alice.remaining().await.expect("an answer"), None);
    assert_eq!(
        alice
            .publish(&upload(&alice_keys, 1, 1..=3))
            .await
            .expect("published"),
        3
    );
    let bob = device(&server, &bob_keys, "bob").await;
    let (alice_device, _) = certified(&alice_keys);
    let first = bob
        .bundle(&user("alice"), &alice_device)
        .await
        .expect("an answer")
        .expect("a bundle");
    assert_eq!(first.one_time_prekey.map(|k| k.id), Some(1));
    alice.shutdown().await;
    bob.shutdown().await;
    assert!(server.stop().success(), "the rendezvous stops cleanly");

    let server = start(dir.path(), &[]);
    let bob = device(&server, &bob_keys, "bob").await;
    let bundle = bob
        .bundle(&user("alice"), &alice_device)
        .await
        .expect("an answer")
        .expect("a bundle after the restart");
    let (ed25519, x25519) = certified(&alice_keys);
    assert!(bundle.signed_prekey.verifies(&ed25519));
    assert!(
        bundle
            .kem_prekey
            .as_ref()
            .expect("a KEM prekey")
            .verifies(&ed25519)
    );
    assert_eq!(bundle.identity, PublicKey(x25519));
    assert_eq!(
        bundle.one_time_prekey.map(|k| k.id),
        Some(2),
        "the one handed out before the restart is gone for good"
    );
    let alice = device(&server, &alice_keys, "alice").await;
    assert_eq!(alice.remaining().await.expect("an answer"), Some(1));
    // A publication signed by another device's key is refused over alice's connection.
    let refused = alice
        .publish(&upload(&bob_keys, 2, [9]))
        .await
        .expect_err("bob's signature on alice's prekeys");
    assert_eq!(refused.code(), "prekey_bad_signature", "{refused}");
    assert_eq!(
        bob.bundle(&user("nobody"), &alice_device)
            .await
            .expect("an answer"),
        None,
        "nobody by that name"
    );
}
