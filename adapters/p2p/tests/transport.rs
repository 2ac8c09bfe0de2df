//! Real connections on loopback: the happy path, and every refusal from the attacker's side.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{Ca, directory, eventually, node, node_with};
use parley_domain::{Digest, MessageId, PeerKeys, Username};
use parley_p2p::AttachmentConfig;

/// Stages as `<sender>-<digest>` in `folder` (the store stages under a keyed hash).
fn staged_path(folder: &std::path::Path, from: &Username, sha256: &Digest) -> std::path::PathBuf {
    folder.join(format!("{from}-{sha256}"))
}
use parley_p2p::{Inbound, Node, PeerAddress};
use parley_usecases::ports::{
    Directory, DirectoryError, OutgoingEnvelope, Transport, TransportError,
};
use tokio::sync::{Mutex, mpsc};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// The transport carries envelopes as opaque bytes (opening them is the use case's work).
fn message(to: &str, n: u8) -> OutgoingEnvelope {
    OutgoingEnvelope {
        id: MessageId::from_bytes([n; 16]),
        to: user(to),
        bytes: format!("message {n}").into_bytes(),
        attachments: vec![],
    }
}

/// Accepts every inbound message and keeps (sender, text).
fn accept_all(mut rx: mpsc::Receiver<Inbound>) -> Arc<Mutex<Vec<(String, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    tokio::spawn(async move {
        while let Some(inbound) = rx.recv().await {
            keep.lock().await.push((
                inbound.from.to_string(),
                String::from_utf8_lossy(&inbound.envelope).into_owned(),
            ));
            inbound.accept();
        }
    });
    got
}

/// `from` delivers `message` to the user `to`, dialling the node `at`.
async fn deliver(
    from: &Node,
    to: &str,
    at: &Node,
    message: OutgoingEnvelope,
    pinned: Option<&PeerKeys>,
) -> Result<PeerKeys, TransportError> {
    from.deliver(&user(to), &address_of(at).await, &message, pinned)
        .await
}

async fn address_of(node: &Node) -> PeerAddress {
    let snapshot = parley_usecases::ports::NodeInfo::snapshot(node);
    PeerAddress {
        peer: snapshot.peer_id.parse().expect("the node's own peer id"),
        addrs: snapshot
            .listen_addrs
            .iter()
            .map(|a| a.parse().expect("the node's own address"))
            .collect(),
    }
}

async fn online(looker: &Node, name: &str) -> PeerAddress {
    let mut found = Vec::new();
    eventually(&format!("{name} to be online"), async || {
        found = looker.lookup(&user(name)).await.unwrap_or_default();
        !found.is_empty()
    })
    .await;
    found.remove(0)
}

#[tokio::test]
async fn enrolled_peers_find_each_other_and_get_a_receipt() {
    let ca = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let (alice, _) = node(ca.user("alice", 1), "alice", dir.addresses()).await;
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", dir.addresses()).await;
    let got = accept_all(bob_rx);

    let at = online(&alice, "bob").await;
    assert_eq!(at.peer, address_of(&bob).await.peer);
    alice
        .deliver(&user("bob"), &at, &message("bob", 1), None)
        .await
        .unwrap();

    assert_eq!(
        *got.lock().await,
        vec![("alice".to_owned(), "message 1".to_owned())]
    );
    alice.shutdown().await;
    bob.shutdown().await;
    dir.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_as_dialer_and_as_listener() {
    let ca = Ca::new("Parley CA");
    let rogue = Ca::new("Parley CA"); // same name, other key
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let bob_got = accept_all(bob_rx);
    // Eve holds a "bob" certificate from the rogue CA but trusts the real CA, so only the
    // victim's own verification can refuse her.
    let (eve, eve_rx) = node(rogue.user_trusting("bob", 3, &ca.der), "bob", vec![]).await;
    let eve_got = accept_all(eve_rx);
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;

    // Eve dials Bob: Bob's server refuses her client certificate.
    let err = deliver(&eve, "bob", &bob, message("bob", 1), None).await;
    assert!(err.is_err(), "bob accepted a rogue certificate: {err:?}");
    // Alice dials Eve, believing she is Bob: Alice's client refuses the server certificate.
    let err = deliver(&alice, "bob", &eve, message("bob", 2), None).await;
    assert!(
        matches!(err, Err(TransportError::Unreachable(_))),
        "{err:?}"
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        bob_got.lock().await.is_empty(),
        "no application byte may reach bob"
    );
    assert!(
        eve_got.lock().await.is_empty(),
        "no application byte may reach eve"
    );
}

#[tokio::test]
async fn mallory_cannot_be_reached_as_bob_nor_speak_as_bob() {
    let ca = Ca::new("Parley CA");
    let (alice, alice_rx) = node(ca.user("alice", 1), "alice", vec![]).await;
    let alice_got = accept_all(alice_rx);
    let (mallory, mallory_rx) = node(ca.user("mallory", 9), "mallory", vec![]).await;
    let mallory_got = accept_all(mallory_rx);

    // A lying directory sends Alice to Mallory's peer id for "bob".
    let err = deliver(&alice, "bob", &mallory, message("bob", 1), None).await;
    assert_eq!(
        err,
        Err(TransportError::WrongIdentity {
            expected: user("bob")
        })
    );
    assert!(mallory_got.lock().await.is_empty());

    // Mallory writes to Alice: the message is filed under mallory, whatever it claims.
    deliver(&mallory, "alice", &alice, message("alice", 2), None)
        .await
        .unwrap();
    assert_eq!(
        *alice_got.lock().await,
        vec![("mallory".to_owned(), "message 2".to_owned())]
    );

    // Now connected, Alice still refuses to treat Mallory's connection as Bob's.
    let err = deliver(&alice, "bob", &mallory, message("bob", 3), None).await;
    assert_eq!(
        err,
        Err(TransportError::WrongIdentity {
            expected: user("bob")
        })
    );
}

#[tokio::test]
async fn a_first_contact_learns_the_keys_from_the_certificate_and_no_one_else_s() {
    let ca = Ca::new("Parley CA");
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let got = accept_all(bob_rx);
    let keys = alice
        .keys_of(&user("bob"), &address_of(&bob).await)
        .await
        .unwrap();
    let delivered = deliver(&alice, "bob", &bob, message("bob", 1), Some(&keys))
        .await
        .unwrap();
    assert_eq!(
        delivered, keys,
        "the keys a delivery sees are the probed ones"
    );
    assert_ne!(keys.x25519, None, "the certificate carries the sealing key");
    assert_eq!(got.lock().await.len(), 1, "probing sent no message");

    let (mallory, _) = node(ca.user("mallory", 3), "mallory", vec![]).await;
    let err = alice
        .keys_of(&user("carol"), &address_of(&mallory).await)
        .await;
    assert_eq!(
        err,
        Err(TransportError::WrongIdentity {
            expected: user("carol")
        })
    );
    let nowhere = PeerAddress {
        peer: address_of(&mallory).await.peer,
        addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().expect("an address")],
    };
    mallory.shutdown().await;
    let err = alice.keys_of(&user("mallory"), &nowhere).await;
    assert!(
        matches!(err, Err(TransportError::Unreachable(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_directory_files_addresses_under_the_certificate_name_and_forgets_on_disconnect() {
    let ca = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let (alice, _) = node(ca.user("alice", 1), "alice", dir.addresses()).await;
    let (carol, _) = node(ca.user("carol", 4), "carol", dir.addresses()).await;
    let at = online(&alice, "carol").await;
    assert_eq!(at.peer, address_of(&carol).await.peer);
    assert!(
        at.addrs
            .iter()
            .all(|a| a.to_string().ends_with(&format!("/p2p/{}", at.peer)))
    );

    carol.shutdown().await;
    eventually("carol to be offline", async || {
        alice
            .lookup(&user("carol"))
            .await
            .is_ok_and(|found| found.is_empty())
    })
    .await;
    // Unknown and offline: the same answer.
    assert_eq!(alice.lookup(&user("nobody")).await, Ok(Vec::new()));
    assert_eq!(alice.lookup(&user("carol")).await, Ok(Vec::new()));
}

#[tokio::test]
async fn a_second_certificate_of_a_name_is_a_second_device_and_its_leaving_leaves_the_first() {
    let ca = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let (alice, _) = node(ca.user("alice", 1), "alice", dir.addresses()).await;
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", dir.addresses()).await;
    let got = accept_all(bob_rx);
    let real = address_of(&bob).await.peer;
    online(&alice, "bob").await;

    // Someone with bob's password has the CA certify a key of their own as bob's.
    let (impostor, _) = node(ca.user("bob", 9), "bob", dir.addresses()).await;
    let posing = address_of(&impostor).await.peer;
    let mut listed = Vec::new();
    eventually("both certificates of bob to be listed", async || {
        listed = alice
            .lookup(&user("bob"))
            .await
            .unwrap_or_default()
            .iter()
            .map(|a| a.peer)
            .collect();
        listed.len() == 2
    })
    .await;
    assert_eq!(listed, [posing, real], "the newest publication first");

    impostor.shutdown().await;
    eventually("the impostor to leave the directory", async || {
        alice
            .lookup(&user("bob"))
            .await
            .is_ok_and(|found| found.len() == 1)
    })
    .await;
    let found = alice.lookup(&user("bob")).await.unwrap();
    assert_eq!(found[0].peer, real, "the real bob is still listed");
    alice
        .deliver(&user("bob"), &found[0], &message("bob", 1), None)
        .await
        .unwrap();
    assert_eq!(got.lock().await.len(), 1);
    let connected: Vec<_> = alice
        .connected(&user("bob"))
        .await
        .iter()
        .map(|a| a.peer)
        .collect();
    assert_eq!(
        connected,
        [real],
        "the connection alice holds to bob, named"
    );
    assert!(alice.connected(&user("carol")).await.is_empty());
}

#[tokio::test]
async fn directory_lookups_need_an_enrolled_certificate() {
    let ca = Ca::new("Parley CA");
    let rogue = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let (_bob, _) = node(ca.user("bob", 2), "bob", dir.addresses()).await;
    let (eve, _) = node(
        rogue.user_trusting("eve", 3, &ca.der),
        "eve",
        dir.addresses(),
    )
    .await;
    let answer = eve.lookup(&user("bob")).await;
    assert!(
        matches!(answer, Err(DirectoryError::Unavailable(_))),
        "{answer:?}"
    );
    let stats = dir.stats().snapshot();
    assert!(stats.refused_connections >= 1, "{stats:?}");
    assert_eq!(
        stats.lookups, 0,
        "eve's look-up never reached the directory"
    );
}

#[tokio::test]
async fn directory_lookups_are_rate_limited() {
    let ca = Ca::new("Parley CA");
    let dir = directory(&ca).await;
    let (alice, _) = node(ca.user("alice", 1), "alice", dir.addresses()).await;
    let mut limited = 0;
    for i in 0..60 {
        match alice.lookup(&user(&format!("user{i:03}"))).await {
            Ok(found) if found.is_empty() => {}
            Err(DirectoryError::Refused(reason)) => {
                assert!(reason.contains("too many"), "{reason}");
                limited += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(limited > 0, "60 look-ups in a burst must meet the limit");
    let stats = dir.stats().snapshot();
    assert_eq!(stats.rate_limited, limited);
    assert_eq!(stats.lookups, 60 - limited);
}

#[tokio::test]
async fn a_peer_with_the_right_name_but_other_keys_is_refused_before_any_byte() {
    let ca = Ca::new("Parley CA");
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let bob_got = accept_all(bob_rx);
    // A second, CA-valid "bob" certificate for another key: what a compromised rendezvous
    // could issue.
    let (new_bob, new_bob_rx) = node(ca.user("bob", 5), "bob", vec![]).await;
    let new_bob_got = accept_all(new_bob_rx);

    let pinned = deliver(&alice, "bob", &bob, message("bob", 1), None)
        .await
        .expect("first contact");
    let err = deliver(&alice, "bob", &new_bob, message("bob", 2), Some(&pinned)).await;
    let Err(TransportError::KeysChanged { presented }) = err else {
        panic!("expected a key change, got {err:?}");
    };
    assert_ne!(presented, pinned);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        new_bob_got.lock().await.is_empty(),
        "no application byte may reach the new key"
    );

    // On the open connection to the real bob, a wrong pin is refused as well.
    let err = deliver(&alice, "bob", &bob, message("bob", 3), Some(&presented)).await;
    assert_eq!(err, Err(TransportError::KeysChanged { presented: pinned }));
    assert_eq!(bob_got.lock().await.len(), 1);

    // Once the user accepts the new keys, they are the pin.
    let accepted = deliver(&alice, "bob", &new_bob, message("bob", 4), Some(&presented)).await;
    assert_eq!(accepted, Ok(presented));
}

fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest(sha2::Sha256::digest(bytes).into())
}

/// A file for alice to send, and the envelope naming it (digest as given).
fn with_file(dir: &std::path::Path, name: &str, bytes: &[u8], digest: Digest) -> OutgoingEnvelope {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    OutgoingEnvelope {
        attachments: vec![parley_usecases::ports::OutgoingFile {
            locator: path.to_string_lossy().into_owned(),
            sha256: digest,
            size: bytes.len() as u64,
        }],
        ..message("bob", 9)
    }
}

#[tokio::test]
async fn attachments_travel_ahead_of_the_envelope_within_the_cap_and_unaltered() {
    let ca = Ca::new("Parley CA");
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging");
    let folder = staging.clone();
    let config = AttachmentConfig {
        staging: Arc::new(move |from: &Username, sha256: &Digest| {
            staged_path(&folder, from, sha256)
        }),
        max_bytes: 300_000,
    };
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    let (bob, bob_rx) = node_with(ca.user("bob", 2), "bob", vec![], Some(config)).await;
    let got = accept_all(bob_rx);
    let keys = alice
        .keys_of(&user("bob"), &address_of(&bob).await)
        .await
        .unwrap();

    // Over 64 KiB, so it crosses several writes; exactly what was sent is staged.
    let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let envelope = with_file(dir.path(), "big.bin", &file, sha256(&file));
    deliver(&alice, "bob", &bob, envelope, Some(&keys))
        .await
        .unwrap();
    let staged = staged_path(&staging, &user("alice"), &sha256(&file));
    assert_eq!(std::fs::read(&staged).unwrap(), file);
    assert_eq!(got.lock().await.len(), 1, "then the envelope");

    // Over the cap: refused before a byte is stored, with the cap in the sentence.
    let huge = vec![7u8; 300_001];
    let err = deliver(
        &alice,
        "bob",
        &bob,
        with_file(dir.path(), "huge", &huge, sha256(&huge)),
        Some(&keys),
    )
    .await;
    match err {
        Err(TransportError::Rejected(reason)) => assert!(reason.contains("300000"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Bytes that are not the ones the digest names: refused, nothing staged.
    let lie = sha256(b"something else");
    let err = deliver(
        &alice,
        "bob",
        &bob,
        with_file(dir.path(), "lie", b"these bytes", lie),
        Some(&keys),
    )
    .await;
    assert!(matches!(err, Err(TransportError::Refused(_))), "{err:?}");
    assert!(!staged_path(&staging, &user("alice"), &lie).exists());
    assert!(!staged_path(&staging, &user("alice"), &sha256(b"these bytes")).exists());
    assert_eq!(
        got.lock().await.len(),
        1,
        "no envelope after a refused attachment"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no partial files: {leftovers:?}");
}

#[tokio::test]
async fn a_peer_that_takes_no_attachments_refuses_them() {
    let ca = Ca::new("Parley CA");
    let dir = tempfile::tempdir().unwrap();
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let got = accept_all(bob_rx);
    let err = deliver(
        &alice,
        "bob",
        &bob,
        with_file(dir.path(), "f", b"x", sha256(b"x")),
        None,
    )
    .await;
    assert!(
        matches!(err, Err(TransportError::Unreachable(_))),
        "{err:?}"
    );
    assert!(got.lock().await.is_empty());
}

#[tokio::test]
async fn a_refusal_for_good_and_a_refusal_for_now_reach_the_sender_apart() {
    let ca = Ca::new("Parley CA");
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    let (bob, mut bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(inbound) = bob_rx.recv().await {
            n += 1;
            if n == 1 {
                inbound.reject_for_good("forged".into());
            } else {
                inbound.refuse_for_now("busy".into());
            }
        }
    });
    let err = deliver(&alice, "bob", &bob, message("bob", 1), None).await;
    assert_eq!(err, Err(TransportError::Rejected("forged".into())));
    let err = deliver(&alice, "bob", &bob, message("bob", 2), None).await;
    assert_eq!(err, Err(TransportError::Refused("busy".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_refresh_their_tls_traffic_keys_on_the_timer_and_messages_arrive_intact() {
    let ca = Ca::new("Parley CA");
    let every = (Duration::from_millis(200), Duration::from_millis(400));
    let start = |credentials, name: &'static str| async move {
        let config = parley_p2p::NodeConfig {
            tls_refresh: every,
            ..common::config(credentials, name, vec![], None)
        };
        Node::start(config).await.unwrap()
    };
    let (alice, alice_rx) = start(ca.user("alice", 1), "alice").await;
    let (bob, bob_rx) = start(ca.user("bob", 2), "bob").await;
    let alice_got = accept_all(alice_rx);
    let bob_got = accept_all(bob_rx);
    let (to_bob, to_alice) = (address_of(&bob).await, address_of(&alice).await);
    let before = (alice.tls_refreshes(), bob.tls_refreshes());

    // About 3 s of conversation, both ways, on one connection.
    let mut sent = Vec::new();
    for n in 0..30u8 {
        let text = format!("message {n}");
        alice
            .deliver(&user("bob"), &to_bob, &message("bob", n), None)
            .await
            .unwrap_or_else(|e| panic!("alice's message {n}: {e}"));
        bob.deliver(&user("alice"), &to_alice, &message("alice", n), None)
            .await
            .unwrap_or_else(|e| panic!("bob's message {n}: {e}"));
        sent.push(text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let refreshed = (
        alice.tls_refreshes() - before.0,
        bob.tls_refreshes() - before.1,
    );
    println!(
        "traffic-key refreshes: alice {}, bob {}",
        refreshed.0, refreshed.1
    );
    assert!(refreshed.0 >= 3, "alice refreshed {} times", refreshed.0);
    assert!(refreshed.1 >= 3, "bob refreshed {} times", refreshed.1);
    let texts = |got: &[(String, String)], from: &str| -> Vec<String> {
        got.iter()
            .inspect(|(sender, _)| assert_eq!(sender, from))
            .map(|(_, text)| text.clone())
            .collect()
    };
    assert_eq!(texts(&bob_got.lock().await, "alice"), sent);
    assert_eq!(texts(&alice_got.lock().await, "bob"), sent);
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_to_one_contact_share_one_stream_with_several_in_flight() {
    let ca = Ca::new("Parley CA");
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    // The daemon's queue for messages waiting for the store.
    let config = parley_p2p::NodeConfig {
        inbound_queue: 256,
        ..common::config(ca.user("bob", 2), "bob", vec![], None)
    };
    let (bob, mut bob_rx) = Node::start(config).await.unwrap();
    // Bob's application answers each message a little later, in an order of its own, so
    // that answers come back out of order and many wait at once.
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    {
        let (in_flight, most, got) = (in_flight.clone(), most.clone(), got.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(inbound) = bob_rx.recv().await {
                use std::sync::atomic::Ordering::SeqCst;
                let now = in_flight.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                got.lock()
                    .await
                    .push(String::from_utf8_lossy(&inbound.envelope).into_owned());
                let (in_flight, delay) = (in_flight.clone(), 5 + (n * 7919) % 40);
                n += 1;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    in_flight.fetch_sub(1, SeqCst);
                    inbound.accept();
                });
            }
        });
    }
    let at = address_of(&bob).await;
    let alice = Arc::new(alice);
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..200u16 {
        let (alice, at) = (alice.clone(), at.clone());
        sends.spawn(async move {
            let message = OutgoingEnvelope {
                id: MessageId::from_bytes([0; 16]),
                to: user("bob"),
                bytes: format!("message {n}").into_bytes(),
                attachments: vec![],
            };
            alice
                .deliver(&user("bob"), &at, &message, None)
                .await
                .map_err(|e| format!("message {n}: {e}"))
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }

    assert_eq!(
        alice.message_streams_opened(),
        1,
        "one stream for 200 messages"
    );
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    println!("at most {most} messages waited for their answer at once");
    assert!(most >= 4, "only {most} in flight at once");
    let mut got = got.lock().await.clone();
    got.sort();
    let mut sent: Vec<String> = (0..200).map(|n| format!("message {n}")).collect();
    sent.sort();
    assert_eq!(got, sent, "every message arrived once, intact");
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_fails_what_waits_on_it_as_no_receipt_and_the_next_message_opens_another() {
    let ca = Ca::new("Parley CA");
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    // Bob takes the message but never answers, then goes away.
    let (bob, mut bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let held = tokio::spawn(async move { bob_rx.recv().await });
    let at = address_of(&bob).await;
    let waiting = {
        let alice = alice.clone();
        let at = at.clone();
        tokio::spawn(async move {
            alice
                .deliver(&user("bob"), &at, &message("bob", 1), None)
                .await
        })
    };
    let inbound = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the message reached bob")
        .unwrap()
        .expect("one message");
    bob.shutdown().await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the delivery ended when the stream broke")
        .unwrap();
    assert!(
        matches!(outcome, Err(TransportError::NoReceipt(_))),
        "{outcome:?}"
    );
    drop(inbound);
    assert_eq!(alice.message_streams_opened(), 1);
    eventually("alice to see bob gone", async || {
        alice.connected(&user("bob")).await.is_empty()
    })
    .await;

    // Bob comes back (same device, another port): the next message opens a new stream.
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let got = accept_all(bob_rx);
    deliver(&alice, "bob", &bob, message("bob", 2), None)
        .await
        .unwrap();
    assert_eq!(alice.message_streams_opened(), 2);
    assert_eq!(
        *got.lock().await,
        vec![("alice".to_owned(), "message 2".to_owned())]
    );
    alice.shutdown().await;
    bob.shutdown().await;
}
