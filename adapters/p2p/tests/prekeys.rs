//! `/parley/prekeys/1` end to end on loopback: a real directory server with its prekey service
//! (over an in-memory store that follows the domain's rules, and a book of the certificates the
//! test CA issued), and real nodes behind the real mutual-TLS upgrade, through the
//! `PrekeyService` port. A publication comes back to another device with signatures that hold
//! for the publisher's certified key; one-time prekeys are handed out once each; a publication
//! signed by another key or carrying too many one-time prekeys is refused with its code; a name
//! without prekeys answers no bundle; what was published outlives the server.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Ca, node};
use parley_domain::{
    Username,
    agreement::{KEM_PUBLIC_LEN, KemPrekey, KemPublicKey, OneTimePrekey, SignedPrekey},
    pki,
    prekeys::HeldPrekeys,
    ratchet::PublicKey,
};
use parley_p2p::{
    DirectoryServer, Multiaddr, Node, PrekeyOptions, PrekeyStore, PrekeyStoreError, ServerOptions,
    TakenPrekeys,
};
use parley_usecases::ports::{
    CertificateBook, MailboxStoreError, PrekeyError, PrekeyService, PrekeyUpload,
};

/// Seed of the rendezvous's key.
const RENDEZVOUS_SEED: u8 = 200;
/// The X25519 key the test CA puts in every certificate.
const CERTIFIED_X25519: [u8; 32] = [7; 32];

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Prekeys in memory, by the domain's rules (what the sled store encodes).
#[derive(Default)]
struct InMemoryPrekeys(Mutex<HashMap<[u8; 32], Held>>);

/// A device's record: its user, its certificate's X25519 key, and what it holds.
type Held = (Username, [u8; 32], HeldPrekeys);

impl PrekeyStore for InMemoryPrekeys {
    fn publish(
        &self,
        device: &[u8; 32],
        user: &Username,
        identity: &[u8; 32],
        signed: SignedPrekey,
        kem: KemPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<u32, PrekeyStoreError> {
        let mut held = self.0.lock().unwrap();
        let now = HeldPrekeys::publish(held.get(device).map(|(_, _, h)| h), signed, kem, one_time)
            .map_err(PrekeyStoreError::Refused)?;
        let count = now.one_time_count();
        held.insert(*device, (user.clone(), *identity, now));
        Ok(count)
    }

    fn remaining(&self, device: &[u8; 32]) -> Result<Option<u32>, PrekeyStoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(device)
            .map(|(_, _, h)| h.one_time_count()))
    }

    fn take(
        &self,
        device: &[u8; 32],
        user: &Username,
    ) -> Result<Option<TakenPrekeys>, PrekeyStoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get_mut(device)
            .filter(|(owner, _, _)| owner == user)
            .map(|(_, identity, held)| TakenPrekeys {
                one_time: held.take_one_time(),
                signed: held.signed.clone(),
                kem: held.kem.clone(),
                identity: *identity,
            }))
    }
}

/// The certificates the test CA issued, by name.
#[derive(Default)]
struct Book(Mutex<HashMap<Username, Vec<u8>>>);

impl CertificateBook for Book {
    fn certificate_of(&self, user: &Username) -> Result<Option<Vec<u8>>, MailboxStoreError> {
        Ok(self.0.lock().unwrap().get(user).cloned())
    }
}

/// One test's CA, book and store, and the server over them.
struct World {
    ca: Ca,
    book: Arc<Book>,
    store: Arc<InMemoryPrekeys>,
    server: DirectoryServer,
}

impl World {
    async fn new() -> Self {
        let ca = Ca::new("prekeys test CA");
        let book = Arc::new(Book::default());
        let store = Arc::new(InMemoryPrekeys::default());
        let server = serve(&ca, &store).await;
        Self {
            ca,
            book,
            store,
            server,
        }
    }

    /// Enrolls `name` with the key of `seed` (its certificate in the book) and starts its node,
    /// connected to the rendezvous.
    async fn device(&self, name: &str, seed: u8) -> Node {
        let uri = pki::user_uri(&user(name));
        self.book
            .0
            .lock()
            .unwrap()
            .insert(user(name), self.ca.issue(&common::secret(seed), &uri));
        connected(&self.ca, name, seed, self.server.addresses()).await
    }
}

async fn serve(ca: &Ca, store: &Arc<InMemoryPrekeys>) -> DirectoryServer {
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let options = ServerOptions {
        prekeys: Some(PrekeyOptions {
            store: store.clone(),
        }),
        ..ServerOptions::default()
    };
    DirectoryServer::start_with(ca.rendezvous(RENDEZVOUS_SEED), listen, options)
        .await
        .unwrap()
}

/// `name`'s node (key of `seed`), once its prekey requests reach the rendezvous.
async fn connected(ca: &Ca, name: &str, seed: u8, rendezvous: Vec<Multiaddr>) -> Node {
    let (node, _inbound) = node(ca.user(name, seed), name, rendezvous).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.remaining().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}'s connection to the rendezvous"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node
}

/// The device key of `seed`, and a signer with it.
fn device_key(seed: u8) -> ([u8; 32], impl Fn(&[u8]) -> [u8; 64]) {
    let mut secret = *common::secret(seed).expose();
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).unwrap();
    let public = keypair.public().try_into_ed25519().unwrap().to_bytes();
    (public, move |message: &[u8]| {
        keypair.sign(message).unwrap().try_into().unwrap()
    })
}

/// A publication signed with the key of `seed`: signed prekey `rotation`, one-time prekeys
/// `one_time`.
fn upload(seed: u8, rotation: u32, one_time: impl IntoIterator<Item = u32>) -> PrekeyUpload {
    let (_, sign) = device_key(seed);
    let key = PublicKey([rotation.to_be_bytes()[3].wrapping_add(40); 32]);
    let kem = KemPublicKey::parse(&[0x4b; KEM_PUBLIC_LEN]).unwrap();
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
        one_time: one_time
            .into_iter()
            .map(|id| OneTimePrekey {
                id,
                key: PublicKey([u8::try_from(id % 200).unwrap(); 32]),
            })
            .collect(),
    }
}

fn code(refused: &PrekeyError) -> &str {
    refused.code()
}

#[tokio::test]
async fn a_published_bundle_reaches_another_device_and_verifies_against_the_certified_key() {
    let world = World::new().await;
    let alice = world.device("alice", 1).await;
    let bob = world.device("bob", 2).await;
    assert_eq!(
        alice.remaining().await.unwrap(),
        None,
        "nothing published yet"
    );
    assert_eq!(alice.publish(&upload(1, 1, 1..=3)).await.unwrap(), 3);
    assert_eq!(alice.remaining().await.unwrap(), Some(3));

    let bundle = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .expect("a bundle");
    let (alice_key, _) = device_key(1);
    assert!(bundle.signed_prekey.verifies(&alice_key));
    assert!(bundle.kem_prekey.as_ref().unwrap().verifies(&alice_key));
    assert_eq!(bundle.identity, PublicKey(CERTIFIED_X25519));
    assert_eq!(bundle.one_time_prekey.map(|k| k.id), Some(1));
    assert_eq!(alice.remaining().await.unwrap(), Some(2));
    let (bob_key, _) = device_key(2);
    assert!(!bundle.signed_prekey.verifies(&bob_key));

    // A second publication replaces the signed prekeys and adds the new one-time prekeys.
    assert_eq!(alice.publish(&upload(1, 2, 3..=5)).await.unwrap(), 4);
    let bundle = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .expect("a bundle");
    assert_eq!(bundle.signed_prekey.id, 2);
    assert!(bundle.signed_prekey.verifies(&alice_key));
}

#[tokio::test]
async fn one_time_prekeys_are_handed_out_once_each_then_the_bundle_has_none() {
    let world = World::new().await;
    let alice = world.device("alice", 1).await;
    let bob = world.device("bob", 2).await;
    let carol = world.device("carol", 3).await;
    const N: u32 = 6;
    alice.publish(&upload(1, 1, 1..=N)).await.unwrap();
    let mut ids = BTreeSet::new();
    for round in 0..N {
        // Two fetchers in turn: a key handed to one is never handed to the other.
        let fetcher = if round % 2 == 0 { &bob } else { &carol };
        let bundle = fetcher
            .bundle(&user("alice"), &device_key(1).0)
            .await
            .unwrap()
            .unwrap();
        let id = bundle
            .one_time_prekey
            .expect("a one-time prekey is left")
            .id;
        assert!(ids.insert(id), "one-time prekey {id} handed out twice");
    }
    assert_eq!(ids, (1..=N).collect());
    let last = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        last.one_time_prekey, None,
        "none left: the signed prekey alone"
    );
    assert!(last.signed_prekey.verifies(&device_key(1).0));
    assert_eq!(alice.remaining().await.unwrap(), Some(0));
}

#[tokio::test]
async fn a_publication_signed_by_another_key_is_refused_and_changes_nothing() {
    let world = World::new().await;
    let alice = world.device("alice", 1).await;
    alice.publish(&upload(1, 1, 1..=2)).await.unwrap();
    // Signed by bob's key (seed 2), sent over alice's connection.
    let refused = alice.publish(&upload(2, 9, 10..=12)).await.unwrap_err();
    assert_eq!(code(&refused), "prekey_bad_signature", "{refused}");
    // Only the KEM prekey's signature wrong.
    let mut half = upload(1, 9, 10..=12);
    half.kem_prekey.signature = upload(2, 9, []).kem_prekey.signature;
    let refused = alice.publish(&half).await.unwrap_err();
    assert_eq!(code(&refused), "prekey_bad_signature", "{refused}");
    assert_eq!(alice.remaining().await.unwrap(), Some(2));
    let bob = world.device("bob", 2).await;
    let bundle = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bundle.signed_prekey.id, 1);
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_with_its_code() {
    let world = World::new().await;
    let alice = world.device("alice", 1).await;
    let refused = alice.publish(&upload(1, 1, 1..=101)).await.unwrap_err();
    assert_eq!(code(&refused), "prekey_batch_too_large", "{refused}");
    assert_eq!(alice.remaining().await.unwrap(), None);
    assert_eq!(alice.publish(&upload(1, 1, 1..=100)).await.unwrap(), 100);
    assert_eq!(alice.publish(&upload(1, 1, 101..=200)).await.unwrap(), 200);
    let refused = alice.publish(&upload(1, 1, [201])).await.unwrap_err();
    assert_eq!(code(&refused), "prekey_store_full", "{refused}");
}

#[tokio::test]
async fn a_name_without_prekeys_and_a_name_nobody_enrolled_answer_no_bundle_alike() {
    let world = World::new().await;
    let bob = world.device("bob", 2).await;
    let _carol = world.device("carol", 3).await;
    assert_eq!(
        bob.bundle(&user("carol"), &device_key(3).0).await.unwrap(),
        None
    );
    assert_eq!(
        bob.bundle(&user("nobody"), &device_key(9).0).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_bundle_is_that_of_the_device_asked_for_and_only_if_it_is_the_users() {
    let world = World::new().await;
    let old = world.device("alice", 1).await;
    old.publish(&upload(1, 1, 1..=2)).await.unwrap();
    let bob = world.device("bob", 2).await;
    bob.publish(&upload(2, 1, [5])).await.unwrap();
    // Alice enrolls a new device (seed 4); until it publishes, there is no bundle for it, and
    // the old device's is still the old device's.
    let new = world.device("alice", 4).await;
    assert_eq!(
        bob.bundle(&user("alice"), &device_key(4).0).await.unwrap(),
        None
    );
    new.publish(&upload(4, 1, [7])).await.unwrap();
    let bundle = bob
        .bundle(&user("alice"), &device_key(4).0)
        .await
        .unwrap()
        .unwrap();
    assert!(bundle.signed_prekey.verifies(&device_key(4).0));
    assert_eq!(bundle.one_time_prekey.map(|k| k.id), Some(7));
    let older = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .unwrap();
    assert!(older.signed_prekey.verifies(&device_key(1).0));
    // Bob's device asked for under alice's name: no bundle, and nothing of bob's handed out.
    assert_eq!(
        old.bundle(&user("alice"), &device_key(2).0).await.unwrap(),
        None
    );
    assert_eq!(bob.remaining().await.unwrap(), Some(1));
}

#[tokio::test]
async fn what_was_published_outlives_the_server() {
    let mut world = World::new().await;
    let alice = world.device("alice", 1).await;
    alice.publish(&upload(1, 1, 1..=3)).await.unwrap();
    alice.shutdown().await;
    // A new server over the same store: the swarm task keeps nothing of its own.
    let again = serve(&world.ca, &world.store).await;
    std::mem::replace(&mut world.server, again).shutdown().await;
    let bob = world.device("bob", 2).await;
    let bundle = bob
        .bundle(&user("alice"), &device_key(1).0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bundle.one_time_prekey.map(|k| k.id), Some(1));
    assert!(bundle.signed_prekey.verifies(&device_key(1).0));
}
