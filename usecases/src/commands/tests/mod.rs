use std::path::PathBuf;
use std::sync::Arc;

use futures::executor::block_on;
use parley_domain::{
    Body, CaFingerprint, ChainFault, ChainHead, ChainState, Delivery, DeviceIdentity, Digest,
    Direction, Header, MessageId, MessageText, PeerKeys, Secret32, Timestamp, Ttl, Username,
    Verification, identity::Password,
};

use super::*;
use crate::fakes::*;
use crate::ports::{
    AttachmentError, AttachmentFiles, AttachmentSource, Chains, Clock, Contacts, EnrollError,
    EnrollRequest, EnvelopeError, Envelopes, Event, IdentityStore, OutboxStore, StoreError,
    TransportError,
};
use crate::queries;

fn user(name: &str) -> Username {
    Username::parse(name).expect("test names are valid")
}

fn text(t: &str) -> MessageText {
    MessageText::parse(t).expect("test texts are valid")
}

fn id(n: u8) -> MessageId {
    MessageId::from_bytes([n; 16])
}

/// Alice's keys; bob's certificate carries `keys(0)` unless told otherwise.
const ALICE: u8 = 1;

type TestMessaging = Messaging<
    Arc<InMemoryStore>,
    Arc<InMemoryDirectory>,
    Arc<InMemoryTransport>,
    Arc<FixedClock>,
    Arc<RecordingEvents>,
    FakeEnvelopes,
    InMemoryMailbox,
>;

struct World {
    store: Arc<InMemoryStore>,
    directory: Arc<InMemoryDirectory>,
    transport: Arc<InMemoryTransport>,
    events: Arc<RecordingEvents>,
    clock: Arc<FixedClock>,
    registry: EnvelopeRegistry,
    mail: Arc<MailHub>,
    messaging: TestMessaging,
}

impl World {
    /// The keys "bob"'s certificate carries from now on.
    fn bob_presents(&self, presented: PeerKeys) {
        self.transport
            .keys
            .lock()
            .expect("lock")
            .insert(user("bob"), presented);
    }

    /// The envelopes of a device holding `seed`'s keys, in this world.
    fn device(&self, seed: u8) -> FakeEnvelopes {
        FakeEnvelopes::new(keys(seed), &self.registry)
    }

    /// What bob (holding `keys(seed)`) reads in the envelopes alice delivered.
    fn delivered_texts(&self, seed: u8) -> Vec<String> {
        let bob = self.device(seed);
        self.transport
            .delivered
            .lock()
            .expect("lock")
            .iter()
            .map(|e| {
                bob.open(&e.bytes, &keys(ALICE).ed25519)
                    .map(|o| o.body.text.as_str().to_owned())
                    .unwrap_or_else(|e| format!("unopenable: {}", e.code))
            })
            .collect()
    }

    fn set_time(&self, ms: i64) {
        *self.clock.0.lock().expect("lock") = ms;
    }

    fn history(&self, with: &str) -> Vec<parley_domain::StoredMessage> {
        queries::history(&*self.store, &user(with), self.clock.now())
            .expect("history")
            .messages
    }

    /// The envelope of our message `n` in the outbox.
    fn outbox_envelope(&self, n: u8) -> Vec<u8> {
        self.store
            .outbox(self.clock.now())
            .expect("outbox")
            .into_iter()
            .find(|e| e.message.id == id(n))
            .expect("in the outbox")
            .envelope
    }

    /// The digest the fakes give `bytes`.
    fn envelopes_digest(&self, bytes: &[u8]) -> Digest {
        digest_for_tests(bytes)
    }

    fn outbox_ids(&self) -> Vec<MessageId> {
        self.store
            .outbox(self.clock.now())
            .expect("outbox")
            .iter()
            .map(|e| e.message.id)
            .collect()
    }
}

/// Bob's keys (the fakes' `keys(0)`, what his certificate carries).
const BOB: u8 = 0;

/// Bob's device: his own store, events and transport; the world's directory, envelopes and
/// mail hub.
struct Bob {
    store: Arc<InMemoryStore>,
    events: Arc<RecordingEvents>,
    transport: Arc<InMemoryTransport>,
    messaging: TestMessaging,
}

fn bob(w: &World) -> Bob {
    let store = Arc::new(InMemoryStore::default());
    let events = Arc::new(RecordingEvents::default());
    let transport = Arc::new(InMemoryTransport::default());
    let messaging = Messaging::new(
        user("bob"),
        store.clone(),
        w.directory.clone(),
        transport.clone(),
        w.clock.clone(),
        events.clone(),
        w.device(BOB),
        InMemoryMailbox {
            me: user("bob"),
            hub: w.mail.clone(),
        },
    );
    Bob {
        store,
        events,
        transport,
        messaging,
    }
}

fn alice_world() -> World {
    let store = Arc::new(InMemoryStore::default());
    let directory = Arc::new(InMemoryDirectory::default());
    let transport = Arc::new(InMemoryTransport::default());
    let events = Arc::new(RecordingEvents::default());
    let clock = Arc::new(FixedClock::at(1_000));
    let registry = EnvelopeRegistry::default();
    // The mailbox is down unless a test brings it up: the outbox's own rules are tested
    // without it, the mailbox's in `tests/mailbox.rs`.
    let mail = Arc::new(MailHub::default());
    *mail.down.lock().expect("lock") = true;
    let messaging = Messaging::new(
        user("alice"),
        store.clone(),
        directory.clone(),
        transport.clone(),
        clock.clone(),
        events.clone(),
        FakeEnvelopes::new(keys(ALICE), &registry),
        InMemoryMailbox {
            me: user("alice"),
            hub: mail.clone(),
        },
    );
    World {
        store,
        directory,
        transport,
        events,
        clock,
        registry,
        mail,
        messaging,
    }
}

fn send(w: &World, n: u8, to: &str, t: &str) -> Result<Sent, SendError> {
    send_ttl(w, n, to, t, None)
}

fn send_ttl(w: &World, n: u8, to: &str, t: &str, ttl: Option<Ttl>) -> Result<Sent, SendError> {
    block_on(w.messaging.send(SendMessage {
        id: id(n),
        to: user(to),
        text: text(t),
        ttl,
        attachments: vec![],
    }))
}

fn send_with_files(w: &World, n: u8, files: &[(&str, &[u8])]) -> Result<Sent, SendError> {
    let attachments = files
        .iter()
        .map(|(name, bytes)| {
            let path = PathBuf::from(format!("/home/alice/{name}"));
            w.store
                .disk
                .lock()
                .expect("lock")
                .insert(path.clone(), bytes.to_vec());
            AttachmentSource {
                name: (*name).to_owned(),
                path,
            }
        })
        .collect();
    block_on(w.messaging.send(SendMessage {
        id: id(n),
        to: user("bob"),
        text: text("see attached"),
        ttl: None,
        attachments,
    }))
}

/// Bob (holding `keys(0)`) seals message `n` at position `seq` after `prev`.
fn sealed_by_bob(w: &World, n: u8, seq: u64, prev: Digest) -> (Vec<u8>, Digest) {
    sealed(w, 0, "bob", "alice", n, seq, prev, None)
}

#[allow(clippy::too_many_arguments)]
fn sealed(
    w: &World,
    seed: u8,
    from: &str,
    to: &str,
    n: u8,
    seq: u64,
    prev: Digest,
    ttl: Option<Ttl>,
) -> (Vec<u8>, Digest) {
    let header = Header {
        id: id(n),
        from: user(from),
        to: user(to),
        sent_at: Timestamp(5),
        ttl,
        seq,
        prev,
        attachments: vec![],
    };
    let body = Body {
        text: text(&format!("message {n}")),
        attachment_keys: vec![],
    };
    let recipient = keys(ALICE).x25519.expect("x25519");
    let s = w
        .device(seed)
        .seal(&header, &body, &recipient)
        .expect("sealed");
    (s.bytes, s.digest)
}

fn from_bob(envelope: Vec<u8>) -> ReceiveMessage {
    ReceiveMessage {
        from: user("bob"),
        keys: keys(0),
        envelope,
    }
}

/// Bob's chain of `count` envelopes, in order.
fn bob_chain(w: &World, count: u8) -> Vec<Vec<u8>> {
    let mut prev = Digest::GENESIS;
    (1..=count)
        .map(|n| {
            let (bytes, digest) = sealed_by_bob(w, n, u64::from(n), prev);
            prev = digest;
            bytes
        })
        .collect()
}

#[test]
fn the_in_memory_store_keeps_the_store_contract() {
    crate::contract::message_store(InMemoryStore::default);
}

mod attachments;
mod devices;
mod enroll;
mod mailbox;
mod own_devices;
mod receive;
mod send;
mod sessions;
mod trust;
mod upkeep;
