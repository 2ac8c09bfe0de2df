use std::sync::Arc;

use futures::executor::block_on;
use parley_domain::{
    CaFingerprint, ChainFault, ChainState, Delivery, DeviceIdentity, Digest, Direction, Header,
    MessageId, MessageText, PeerKeys, Secret32, Timestamp, Ttl, Username, identity::Password,
};

use super::*;
use crate::fakes::*;
use crate::ports::{
    AttachmentError, AttachmentSource, EnrollRequest, EnvelopeError, StoreError, TransportError,
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

type AliceMessaging = Messaging<
    Arc<InMemoryStore>,
    Arc<InMemoryDirectory>,
    Arc<InMemoryTransport>,
    Arc<FixedClock>,
    Arc<RecordingEvents>,
    FakeEnvelopes,
>;

struct World {
    store: Arc<InMemoryStore>,
    directory: Arc<InMemoryDirectory>,
    transport: Arc<InMemoryTransport>,
    events: Arc<RecordingEvents>,
    clock: Arc<FixedClock>,
    registry: EnvelopeRegistry,
    messaging: AliceMessaging,
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

    fn outbox_ids(&self) -> Vec<MessageId> {
        self.store
            .outbox(self.clock.now())
            .expect("outbox")
            .iter()
            .map(|e| e.message.id)
            .collect()
    }
}

fn alice_world() -> World {
    let store = Arc::new(InMemoryStore::default());
    let directory = Arc::new(InMemoryDirectory::default());
    let transport = Arc::new(InMemoryTransport::default());
    let events = Arc::new(RecordingEvents::default());
    let clock = Arc::new(FixedClock::at(1_000));
    let registry = EnvelopeRegistry::default();
    let messaging = Messaging::new(
        user("alice"),
        store.clone(),
        directory.clone(),
        transport.clone(),
        clock.clone(),
        events.clone(),
        FakeEnvelopes::new(keys(ALICE), &registry),
    );
    World {
        store,
        directory,
        transport,
        events,
        clock,
        registry,
        messaging,
    }
}

fn send(w: &World, n: u8, to: &str, t: &str) -> Result<(), SendError> {
    send_ttl(w, n, to, t, None)
}

fn send_ttl(w: &World, n: u8, to: &str, t: &str, ttl: Option<Ttl>) -> Result<(), SendError> {
    block_on(w.messaging.send(SendMessage {
        id: id(n),
        to: user(to),
        text: text(t),
        ttl,
        attachments: vec![],
    }))
}

fn send_with_files(w: &World, n: u8, files: &[(&str, &[u8])]) -> Result<(), SendError> {
    let attachments = files
        .iter()
        .map(|(name, bytes)| {
            let path = format!("/home/alice/{name}");
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

#[test]
fn given_an_online_recipient_when_sending_then_a_sealed_envelope_is_delivered_and_marked() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));

    send(&w, 1, "bob", "salut bob").expect("delivered");

    assert_eq!(w.delivered_texts(0), ["salut bob"], "sealed to bob's key");
    assert_eq!(
        w.delivered_texts(5),
        ["unopenable: undecryptable"],
        "and to nobody else's"
    );
    let history = w.history("bob");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].delivery, Delivery::Delivered(Timestamp(1_000)));
    assert!(w.outbox_ids().is_empty());
    let events = w.events.0.lock().expect("lock").clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], Event::MessageSent(m) if m.delivery == Delivery::Pending && m.text.as_str() == "salut bob"),
        "the window shows the message as soon as it is stored: {events:?}"
    );
    assert!(matches!(&events[1], Event::MessageDelivered { to, .. } if *to == user("bob")));
}

#[test]
fn given_an_unknown_name_when_sending_then_nothing_is_kept() {
    let w = alice_world();

    let err = send(&w, 1, "nobody", "hello").expect_err("unknown");

    assert_eq!(err, SendError::UnknownUser(user("nobody")));
    assert!(
        w.store.all().is_empty(),
        "nothing may be kept for a name never seen"
    );
}

#[test]
fn given_a_contact_offline_when_sending_then_it_waits_in_the_outbox_and_retry_delivers_in_order() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 1, "bob", "first").expect("delivered");
    w.directory.set_offline(&user("bob"));

    assert_eq!(
        send(&w, 2, "bob", "second"),
        Err(SendError::Offline(user("bob")))
    );
    assert_eq!(
        send(&w, 3, "bob", "third"),
        Err(SendError::Offline(user("bob")))
    );
    assert_eq!(w.outbox_ids().len(), 2);

    block_on(w.messaging.retry_outbox()).expect("retry while offline");
    assert_eq!(w.outbox_ids().len(), 2, "still offline: still queued");

    w.directory.set_online(&user("bob"));
    block_on(w.messaging.retry_outbox()).expect("retry");
    assert_eq!(w.delivered_texts(0), ["first", "second", "third"]);
    assert!(w.outbox_ids().is_empty());
    assert_eq!(
        *w.directory.lookups.lock().expect("lock"),
        5,
        "one look-up per retry round"
    );
}

#[test]
fn given_queued_messages_when_the_contact_is_back_and_a_new_one_is_sent_then_it_goes_out_behind_them()
 {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 1, "bob", "first").expect("delivered");
    w.directory.set_offline(&user("bob"));
    for (n, t) in [(2, "second"), (3, "third")] {
        assert_eq!(send(&w, n, "bob", t), Err(SendError::Offline(user("bob"))));
    }

    w.directory.set_online(&user("bob"));
    send(&w, 4, "bob", "fourth").expect("delivered after the older ones");

    assert_eq!(
        w.delivered_texts(0),
        ["first", "second", "third", "fourth"],
        "a new message must not overtake the ones waiting in the outbox"
    );
    assert!(w.outbox_ids().is_empty());
    send(&w, 5, "bob", "fifth").expect("delivered directly once the backlog is gone");
    assert_eq!(w.delivered_texts(0).len(), 5, "nothing is delivered twice");
}

#[test]
fn given_a_queued_message_when_a_new_send_cannot_deliver_it_then_the_new_one_waits_behind_it() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 9, "bob", "pins bob").expect("first contact");
    w.transport
        .fail_with(Some(TransportError::Unreachable("down".into())));
    assert!(send(&w, 1, "bob", "one").is_err_and(|e| e.queued()));
    w.transport.fail_with(None);
    w.transport.fail_call_at(3); // call 2 failed above; from call 3 ("one" again) on, all fail

    assert!(
        send(&w, 2, "bob", "two").is_err_and(|e| e.queued()),
        "'two' reports that it is kept"
    );
    assert_eq!(
        w.outbox_ids(),
        [id(1), id(2)],
        "'two' must not overtake 'one'"
    );

    w.transport.fail_call_at(usize::MAX);
    block_on(w.messaging.retry_outbox()).expect("retry");
    assert_eq!(w.delivered_texts(0), ["pins bob", "one", "two"]);
}

#[test]
fn given_several_sends_then_each_envelope_follows_the_previous_one_in_the_chain() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    for n in 1..=3 {
        send(&w, n, "bob", "hi").expect("delivered");
    }
    let bob = w.device(0);
    let delivered = w.transport.delivered.lock().expect("lock").clone();
    let mut prev = Digest::GENESIS;
    for (i, envelope) in delivered.iter().enumerate() {
        let opened = bob
            .open(&envelope.bytes, &keys(ALICE).ed25519)
            .expect("opens");
        assert_eq!(opened.header.seq, i as u64 + 1);
        assert_eq!(
            opened.header.prev,
            prev,
            "message {} names its predecessor",
            i + 1
        );
        prev = opened.digest;
    }
    assert_eq!(
        w.store.chain_head(&user("bob")).expect("head"),
        ChainHead {
            seq: 3,
            digest: prev
        }
    );
}

#[test]
fn given_delivery_fails_midway_when_retrying_then_later_messages_wait_for_earlier_ones() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 9, "bob", "pins bob").expect("first contact");
    w.transport
        .fail_with(Some(TransportError::Unreachable("down".into())));
    for (n, t) in [(1, "one"), (2, "two"), (3, "three")] {
        assert!(matches!(
            send(&w, n, "bob", t),
            Err(SendError::Unreachable { queued: true, .. })
        ));
    }
    w.transport.fail_with(None);
    w.transport.fail_call_at(6); // calls 2-4 failed above; call 5 succeeds, call 6 fails

    block_on(w.messaging.retry_outbox()).expect("retry");

    assert_eq!(
        w.outbox_ids(),
        [id(2), id(3)],
        "'three' must not overtake 'two'"
    );
}

#[test]
fn given_a_refusal_for_good_when_delivering_then_the_message_leaves_the_outbox_as_rejected() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 9, "bob", "pins bob").expect("first contact");
    w.transport
        .fail_with(Some(TransportError::Rejected("too large".into())));
    let err = send(&w, 1, "bob", "big").expect_err("rejected");
    assert_eq!(err.code(), "rejected");
    assert!(w.outbox_ids().is_empty(), "never retried");
    w.transport.fail_with(None);
    send(&w, 2, "bob", "later ones still go").expect("not blocked");
    let states: Vec<_> = w.history("bob").iter().map(|m| m.delivery).collect();
    assert_eq!(states[1], Delivery::Rejected(Timestamp(1_000)));
}

#[test]
fn given_a_stranger_online_but_unreachable_when_sending_then_nothing_is_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.transport
        .fail_with(Some(TransportError::Unreachable("down".into())));

    let err = send(&w, 1, "bob", "hello").expect_err("unreachable");

    assert!(matches!(err, SendError::Unreachable { queued: false, .. }));
    assert!(
        w.store.all().is_empty(),
        "no keys, so nothing sealed or kept"
    );
}

#[test]
fn given_the_store_fails_when_sending_then_nothing_goes_on_the_wire() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.store.fail_write_at(1);

    let err = send(&w, 1, "bob", "hello").expect_err("store down");

    assert!(matches!(err, SendError::Store(_)));
    assert!(
        w.transport.delivered.lock().expect("lock").is_empty(),
        "persist before send"
    );
}

#[test]
fn given_the_disk_cannot_sync_then_nothing_is_sent_and_no_receipt_is_given() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 9, "bob", "pins bob").expect("first contact");
    assert_eq!(
        *w.store.unsynced.lock().expect("lock"),
        0,
        "every write synced"
    );
    *w.store.fail_sync.lock().expect("lock") = true;
    assert!(matches!(
        send(&w, 1, "bob", "not durable"),
        Err(SendError::Store(_))
    ));
    assert_eq!(
        w.transport.delivered.lock().expect("lock").len(),
        1,
        "nothing more sent"
    );
    let (envelope, _) = sealed_by_bob(&w, 5, 1, Digest::GENESIS);
    assert!(matches!(
        w.messaging.receive(from_bob(envelope)),
        Err(ReceiveError::Store(_))
    ));
}

#[test]
fn given_the_receipt_cannot_be_recorded_when_sending_then_the_message_stays_queued() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.store.fail_write_at(3); // contact pinned, append succeeds, mark_delivered fails

    assert!(matches!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::Store(_))
    ));
    assert_eq!(w.outbox_ids().len(), 1);
}

#[test]
fn given_the_directory_is_down_when_sending_to_a_stranger_then_nothing_is_kept() {
    let w = alice_world();
    w.directory.set_unavailable(true);

    let err = send(&w, 1, "bob", "hello").expect_err("directory down");

    assert!(matches!(
        err,
        SendError::DirectoryUnavailable { queued: false, .. }
    ));
    assert!(w.store.all().is_empty());
}

#[test]
fn given_a_wrong_identity_when_sending_then_it_is_reported_and_nothing_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.transport.fail_with(Some(TransportError::WrongIdentity {
        expected: user("bob"),
    }));

    assert_eq!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::WrongIdentity(user("bob")))
    );
    assert!(w.outbox_ids().is_empty());
}

#[test]
fn given_a_contact_without_an_encryption_key_when_sending_then_it_is_refused() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.bob_presents(PeerKeys {
        ed25519: [3; 32],
        x25519: None,
    });
    assert_eq!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::NoEncryptionKey(user("bob")))
    );
    assert!(w.store.all().is_empty());
}

#[test]
fn given_a_message_to_oneself_when_sending_then_it_is_refused() {
    let w = alice_world();
    assert_eq!(send(&w, 1, "alice", "me"), Err(SendError::ToSelf));
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
fn given_a_message_delivered_twice_when_receiving_then_it_is_stored_once() {
    let w = alice_world();
    let envelope = bob_chain(&w, 1).remove(0);

    assert_eq!(
        w.messaging.receive(from_bob(envelope.clone())),
        Ok(Received::Verified)
    );
    assert_eq!(
        w.messaging.receive(from_bob(envelope)),
        Ok(Received::Duplicate),
        "a replay is acknowledged and ignored"
    );

    let history = w.history("bob");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].direction, Direction::Incoming);
    assert!(history[0].verification.is_verified());
    assert_eq!(
        w.events.0.lock().expect("lock").len(),
        1,
        "one event for one message"
    );
}

#[test]
fn given_an_altered_or_forged_envelope_when_receiving_then_it_is_refused_and_nothing_kept() {
    let w = alice_world();
    let mut altered = bob_chain(&w, 1).remove(0);
    altered.push(b'0');
    let err = w.messaging.receive(from_bob(altered)).expect_err("altered");
    assert!(matches!(err, ReceiveError::Envelope(_)), "{err:?}");

    // Signed by someone else than the certificate's key.
    let (forged, _) = sealed(&w, 6, "bob", "alice", 2, 1, Digest::GENESIS, None);
    let err = w.messaging.receive(from_bob(forged)).expect_err("forged");
    assert_eq!(err.code(), "bad_signature");
    assert!(w.store.all().is_empty());
    let refused = w
        .events
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| matches!(e, Event::MessageRefused { from, .. } if *from == user("bob")))
        .count();
    assert_eq!(refused, 2, "each refusal is told to whoever watches");
}

#[test]
fn given_a_spliced_envelope_when_receiving_then_the_names_in_its_header_refuse_it() {
    let w = alice_world();
    // Bob's genuine envelope to carol, replayed to alice by someone in between.
    let (to_carol, _) = sealed(&w, 0, "bob", "carol", 1, 1, Digest::GENESIS, None);
    assert!(w.messaging.receive(from_bob(to_carol)).is_err());
    // Mallory's envelope claiming to come from bob, on mallory's own connection.
    let (claims_bob, _) = sealed(&w, 4, "bob", "alice", 2, 1, Digest::GENESIS, None);
    let err = w
        .messaging
        .receive(ReceiveMessage {
            from: user("mallory"),
            keys: keys(4),
            envelope: claims_bob,
        })
        .expect_err("wrong sender");
    assert_eq!(
        err,
        ReceiveError::WrongSender {
            claimed: user("bob"),
            actual: user("mallory")
        }
    );
    assert!(w.store.all().is_empty());
}

#[test]
fn given_a_gap_then_the_late_message_when_receiving_then_the_chain_reports_then_heals() {
    let w = alice_world();
    let chain = bob_chain(&w, 3);
    w.messaging.receive(from_bob(chain[0].clone())).expect("1");
    w.messaging.receive(from_bob(chain[2].clone())).expect("3");

    let h = queries::history(&*w.store, &user("bob"), w.clock.now()).expect("history");
    assert_eq!(
        h.incoming,
        ChainState::Gap {
            last: 3,
            missing: vec![(2, 2)]
        }
    );
    assert_eq!(
        w.messaging.receive(from_bob(chain[1].clone())),
        Ok(Received::Verified),
        "the late message fits between its neighbours"
    );
    let h = queries::history(&*w.store, &user("bob"), w.clock.now()).expect("history");
    assert_eq!(h.incoming, ChainState::Intact { last: 3 });
}

#[test]
fn given_a_fork_or_a_break_when_receiving_then_it_is_kept_but_never_shown_verified() {
    let w = alice_world();
    let chain = bob_chain(&w, 1);
    w.messaging.receive(from_bob(chain[0].clone())).expect("1");
    // A second message at position 1: bob's chain forked.
    let (rival, _) = sealed_by_bob(&w, 7, 1, Digest::GENESIS);
    assert_eq!(
        w.messaging.receive(from_bob(rival)),
        Ok(Received::Unverified)
    );
    // Position 2 naming a predecessor bob never sent to alice.
    let (broken, _) = sealed_by_bob(&w, 8, 2, Digest([9; 32]));
    assert_eq!(
        w.messaging.receive(from_bob(broken)),
        Ok(Received::Unverified)
    );

    let history = w.history("bob");
    let states: Vec<_> = history.iter().map(|m| m.verification).collect();
    assert_eq!(
        states,
        [
            Verification::Verified,
            Verification::Failed(ChainFault::Fork { seq: 1 }),
            Verification::Failed(ChainFault::Broken { seq: 2 }),
        ]
    );
    let h = queries::history(&*w.store, &user("bob"), w.clock.now()).expect("history");
    assert_eq!(h.incoming, ChainState::Faulty { last: 1, faults: 2 });
}

#[test]
fn given_unread_messages_when_marking_the_conversation_read_then_only_later_ones_count() {
    let w = alice_world();
    let chain = bob_chain(&w, 3);
    let unread = |w: &World| {
        queries::conversations(&*w.store, w.clock.now())
            .expect("list")
            .iter()
            .map(|c| (c.with.to_string(), c.unread))
            .collect::<Vec<_>>()
    };
    for envelope in &chain[..2] {
        w.messaging
            .receive(from_bob(envelope.clone()))
            .expect("stored");
    }
    assert_eq!(unread(&w), [("bob".to_owned(), 2)]);

    assert_eq!(w.messaging.mark_read(&user("bob")), Ok(()));
    assert_eq!(unread(&w), [("bob".to_owned(), 0)]);
    w.messaging
        .receive(from_bob(chain[2].clone()))
        .expect("stored");
    assert_eq!(unread(&w), [("bob".to_owned(), 1)], "a new message counts");
    assert_eq!(
        w.messaging.mark_read(&user("carol")),
        Ok(()),
        "no conversation is fine"
    );

    w.store.fail_write_at(1);
    assert!(matches!(
        w.messaging.mark_read(&user("bob")),
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(unread(&w), [("bob".to_owned(), 1)], "nothing marked");
}

#[test]
fn given_the_same_id_from_another_sender_when_receiving_then_both_are_kept() {
    let w = alice_world();
    let (from_bob_1, _) = sealed_by_bob(&w, 7, 1, Digest::GENESIS);
    let (from_mallory, _) = sealed(&w, 4, "mallory", "alice", 7, 1, Digest::GENESIS, None);
    w.messaging.receive(from_bob(from_bob_1)).expect("bob");
    w.messaging
        .receive(ReceiveMessage {
            from: user("mallory"),
            keys: keys(4),
            envelope: from_mallory,
        })
        .expect("mallory");
    assert_eq!(
        w.store.all().len(),
        2,
        "a sender cannot suppress another's message by id"
    );
}

#[test]
fn refusals_that_a_retry_cannot_change_are_for_good_and_the_others_are_for_now() {
    let permanent = [
        ReceiveError::NotForMe(user("carol")),
        ReceiveError::Conflicting(id(1)),
        ReceiveError::AttachmentMissing { index: 0 },
        ReceiveError::Envelope(EnvelopeError {
            code: "bad_signature",
            message: "forged".into(),
        }),
    ];
    assert!(permanent.iter().all(ReceiveError::is_permanent));
    let for_now = [
        ReceiveError::KeysChanged(user("bob")),
        ReceiveError::Store(StoreError::Unavailable("disk".into())),
    ];
    assert!(!for_now.iter().any(ReceiveError::is_permanent));
}

#[test]
fn given_another_envelope_under_a_known_id_when_receiving_then_it_is_refused() {
    let w = alice_world();
    let (first, _) = sealed_by_bob(&w, 7, 1, Digest::GENESIS);
    let (same_id, _) = sealed_by_bob(&w, 7, 2, Digest::GENESIS);
    w.messaging.receive(from_bob(first)).expect("first");
    assert_eq!(
        w.messaging.receive(from_bob(same_id)),
        Err(ReceiveError::Conflicting(id(7)))
    );
    assert_eq!(w.store.all().len(), 1);
}

#[test]
fn given_the_store_fails_when_receiving_then_no_receipt_may_be_given() {
    let w = alice_world();
    let envelope = bob_chain(&w, 1).remove(0);
    w.store.fail_write_at(2); // the contact is pinned, the message cannot be stored
    assert!(matches!(
        w.messaging.receive(from_bob(envelope)),
        Err(ReceiveError::Store(_))
    ));
    assert!(w.events.0.lock().expect("lock").is_empty());
}

#[test]
fn given_a_ttl_when_time_passes_then_both_sides_stop_showing_and_purge_the_message() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let minute = Ttl::parse("1m").expect("ttl");
    send_ttl(&w, 1, "bob", "vanishing", Some(minute)).expect("delivered");
    let (incoming, _) = sealed(&w, 0, "bob", "alice", 2, 1, Digest::GENESIS, Some(minute));
    w.set_time(1_000);
    w.messaging.receive(from_bob(incoming)).expect("stored");
    assert_eq!(w.history("bob").len(), 2);

    // Bob's message says it was written at 5: it lives from then, not from its arrival.
    w.set_time(5 + 60_000 - 1);
    assert_eq!(w.history("bob").len(), 2);
    assert_eq!(w.messaging.purge_expired(), Ok(0));
    w.set_time(5 + 60_000);
    assert_eq!(w.history("bob").len(), 1, "bob's copy expired first");
    assert_eq!(w.messaging.purge_expired(), Ok(1));

    w.set_time(1_000 + 60_000);
    assert!(w.history("bob").is_empty(), "never shown once expired");
    assert!(
        queries::conversations(&*w.store, w.clock.now())
            .expect("list")
            .is_empty()
    );
    assert_eq!(w.messaging.purge_expired(), Ok(1));
    assert!(w.store.all().is_empty(), "deleted, not just hidden");
    let expired: Vec<u64> = w
        .events
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|e| match e {
            Event::MessagesExpired { count } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(expired, [1, 1], "each purge that deleted something says so");
}

#[test]
fn given_a_sender_clock_far_ahead_then_the_message_lives_no_longer_than_its_ttl() {
    let w = alice_world();
    let hour = Ttl::parse("1h").expect("ttl");
    let header = Header {
        id: id(1),
        from: user("bob"),
        to: user("alice"),
        sent_at: Timestamp(1_000 + 365 * 24 * 3_600_000),
        ttl: Some(hour),
        seq: 1,
        prev: Digest::GENESIS,
        attachments: vec![],
    };
    let body = Body {
        text: text("from the future"),
        attachment_keys: vec![],
    };
    let bytes = w
        .device(0)
        .seal(&header, &body, &keys(ALICE).x25519.expect("x"))
        .expect("sealed")
        .bytes;
    w.messaging.receive(from_bob(bytes)).expect("stored");
    w.set_time(1_000 + 3_600_000);
    assert!(w.history("bob").is_empty(), "gone one hour after arrival");
}

#[test]
fn given_an_expired_unsent_message_then_it_leaves_the_outbox() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 9, "bob", "pins bob").expect("first contact");
    w.directory.set_offline(&user("bob"));
    let ttl = Ttl::parse("30s").expect("ttl");
    assert!(send_ttl(&w, 1, "bob", "too late", Some(ttl)).is_err());
    assert_eq!(w.outbox_ids(), [id(1)]);
    w.set_time(1_000 + 30_000);
    assert!(w.outbox_ids().is_empty());
    w.directory.set_online(&user("bob"));
    block_on(w.messaging.retry_outbox()).expect("retry");
    assert_eq!(
        w.delivered_texts(0),
        ["pins bob"],
        "never delivered after expiry"
    );
}

fn identity(name: &str) -> DeviceIdentity {
    DeviceIdentity {
        user: user(name),
        ed25519: Secret32::new([1; 32]),
        x25519: Secret32::new([2; 32]),
        certificate_der: vec![3],
        ca_der: vec![4],
        ca_fingerprint: CaFingerprint::from_digest([5; 32]),
        server: "https://127.0.0.1:1".into(),
        rendezvous_addrs: vec![],
    }
}

fn request(name: &str) -> EnrollRequest {
    EnrollRequest {
        server: "https://127.0.0.1:1".into(),
        user: user(name),
        password: Password::new("pw".into()),
        ca_pin: None,
        keys: None,
    }
}

#[test]
fn given_a_fresh_home_when_enrolling_then_the_identity_is_kept() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("enrolled");
    assert_eq!(store.identity().expect("read"), Some(identity("bob")));
}

#[test]
fn given_a_home_of_another_user_when_enrolling_then_it_is_refused() {
    let store = InMemoryStore::default();
    store.save_identity(&identity("alice")).expect("seed");
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("refused");
    assert_eq!(err, EnrollCommandError::OtherUser(user("alice")));
    assert_eq!(store.identity().expect("read"), Some(identity("alice")));
}

#[test]
fn given_the_rendezvous_refuses_when_enrolling_then_nothing_is_kept() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Err(EnrollError::InvalidCredentials));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("refused");
    assert_eq!(
        err,
        EnrollCommandError::Enrollment(EnrollError::InvalidCredentials)
    );
    assert_eq!(store.identity().expect("read"), None);
}

#[test]
fn given_the_store_fails_when_enrolling_then_the_error_is_reported() {
    let store = InMemoryStore::default();
    store.fail_write_at(1);
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    let err = block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect_err("store");
    assert!(matches!(err, EnrollCommandError::Store(_)));
}

#[test]
fn given_attachments_when_sending_then_each_is_sealed_named_in_the_header_and_sent_ahead() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));

    send_with_files(&w, 1, &[("a.txt", b"first file"), ("b.bin", &[0, 1, 2])]).expect("sent");

    let delivered = w.transport.delivered.lock().expect("lock").clone();
    let opened = w
        .device(0)
        .open(&delivered[0].bytes, &keys(ALICE).ed25519)
        .expect("opens");
    let names: Vec<&str> = opened
        .header
        .attachments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["a.txt", "b.bin"]);
    assert_eq!(opened.body.attachment_keys.len(), 2, "keys travel sealed");
    for (i, file) in delivered[0].attachments.iter().enumerate() {
        let sealed = w.store.sealed_file(&file.locator).expect("kept sealed");
        assert_eq!(file.sha256, opened.header.attachments[i].sha256);
        assert_ne!(sealed, b"first file", "never kept in the clear");
    }
}

#[test]
fn given_an_attachment_over_the_cap_or_unreadable_when_sending_then_nothing_is_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    *w.store.max_attachment.lock().expect("lock") = 4;
    let err = send_with_files(&w, 1, &[("big.bin", b"12345")]).expect_err("too large");
    assert_eq!(err.code(), "attachment_too_large");
    let err = block_on(w.messaging.send(SendMessage {
        id: id(2),
        to: user("bob"),
        text: text("missing"),
        ttl: None,
        attachments: vec![AttachmentSource {
            name: "gone".into(),
            path: "/nowhere".into(),
        }],
    }))
    .expect_err("unreadable");
    assert_eq!(
        err,
        SendError::Attachment(AttachmentError::Unreadable("/nowhere".into()))
    );
    assert!(w.store.all().is_empty());
    // A second file that fails takes the first one's sealed copy with it.
    *w.store.max_attachment.lock().expect("lock") = 0;
    let err = block_on(w.messaging.send(SendMessage {
        id: id(3),
        to: user("bob"),
        text: text("two files"),
        ttl: None,
        attachments: vec![
            AttachmentSource {
                name: "ok".into(),
                path: "/home/alice/big.bin".into(),
            },
            AttachmentSource {
                name: "gone".into(),
                path: "/nowhere".into(),
            },
        ],
    }));
    assert!(err.is_err());
    assert_eq!(
        w.store
            .sealed_file(&w.store.locator(&user("alice"), &id(3), 0)),
        None
    );
}

/// Bob seals message `n` with one attachment (`sealed`, already encrypted) to alice.
fn bob_with_attachment(w: &World, n: u8, sealed: &[u8], named: &[u8]) -> Vec<u8> {
    let header = Header {
        id: id(n),
        from: user("bob"),
        to: user("alice"),
        sent_at: Timestamp(5),
        ttl: None,
        seq: 1,
        prev: Digest::GENESIS,
        attachments: vec![parley_domain::AttachmentRef {
            name: "photo.jpg".into(),
            size: named.len() as u64,
            sha256: crate::fakes::digest_for_tests(named),
        }],
    };
    let key = Secret32::new([0x11; 32]);
    let plain: Vec<u8> = sealed.iter().map(|b| b ^ 0x11).collect();
    let body = Body {
        text: text("a photo"),
        attachment_keys: vec![parley_domain::AttachmentKey {
            key,
            plain_sha256: crate::fakes::digest_for_tests(&plain),
        }],
    };
    w.device(0)
        .seal(&header, &body, &keys(ALICE).x25519.expect("x"))
        .expect("sealed")
        .bytes
}

#[test]
fn given_an_attachment_ahead_of_its_envelope_when_receiving_then_it_is_kept_and_can_be_saved() {
    let w = alice_world();
    let sealed = b"\x61\x62encrypted-bytes";
    w.store.stage(&user("bob"), sealed);

    w.messaging
        .receive(from_bob(bob_with_attachment(&w, 1, sealed, sealed)))
        .expect("stored with its attachment");

    let written = w
        .messaging
        .save_attachment(&user("bob"), &id(1), 0, "/tmp/photo.jpg")
        .expect("saved");
    assert_eq!(written, sealed.len() as u64);
    let saved = w
        .store
        .saved
        .lock()
        .expect("lock")
        .get("/tmp/photo.jpg")
        .cloned();
    let expected: Vec<u8> = sealed.iter().map(|b| b ^ 0x11).collect();
    assert_eq!(saved, Some(expected));
    assert!(matches!(
        w.messaging
            .save_attachment(&user("bob"), &id(1), 1, "/tmp/x"),
        Err(SaveError::NoAttachment { count: 1, .. })
    ));
    assert!(matches!(
        w.messaging
            .save_attachment(&user("bob"), &id(1), 0, "/tmp/photo.jpg"),
        Err(SaveError::Attachment(AttachmentError::Destination(_)))
    ));
}

#[test]
fn given_a_missing_or_swapped_attachment_when_receiving_then_the_message_is_refused() {
    let w = alice_world();
    let named = b"what the header names";
    // Nothing arrived ahead of the envelope.
    let err = w
        .messaging
        .receive(from_bob(bob_with_attachment(&w, 1, named, named)))
        .expect_err("missing");
    assert_eq!(err, ReceiveError::AttachmentMissing { index: 0 });
    // Other bytes arrived: their digest is not the one signed in the header.
    w.store.stage(&user("bob"), b"swapped bytes");
    let err = w
        .messaging
        .receive(from_bob(bob_with_attachment(&w, 2, named, named)))
        .expect_err("swapped");
    assert_eq!(err, ReceiveError::AttachmentMissing { index: 0 });
    // Staged by someone else than the sender.
    w.store.stage(&user("mallory"), named);
    assert!(
        w.messaging
            .receive(from_bob(bob_with_attachment(&w, 3, named, named)))
            .is_err()
    );
    assert!(w.store.all().is_empty(), "nothing kept, so no receipt");
}

#[test]
fn given_a_first_delivery_when_the_receipt_comes_then_the_recipient_keys_are_pinned() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.bob_presents(keys(2));

    send(&w, 1, "bob", "hello").expect("delivered");

    let bob = w
        .store
        .contact(&user("bob"))
        .expect("read")
        .expect("pinned");
    assert_eq!(bob.keys, keys(2));
    assert_eq!(bob.pending, None);
    assert_eq!(w.delivered_texts(2), ["hello"]);
}

#[test]
fn given_pinned_keys_when_the_recipient_presents_others_then_nothing_goes_until_trusted() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.bob_presents(keys(2));
    send(&w, 1, "bob", "first").expect("delivered");
    // The rendezvous now vouches for other keys under the name bob.
    w.bob_presents(keys(9));

    assert_eq!(
        send(&w, 2, "bob", "second"),
        Err(SendError::KeysChanged(user("bob")))
    );
    assert_eq!(
        w.transport.delivered.lock().expect("lock").len(),
        1,
        "nothing more went out"
    );
    assert_eq!(w.outbox_ids().len(), 1, "kept for later");
    let bob = w
        .store
        .contact(&user("bob"))
        .expect("read")
        .expect("contact");
    assert_eq!((bob.keys, bob.pending), (keys(2), Some(keys(9))));
    assert!(
        w.events
            .0
            .lock()
            .expect("lock")
            .contains(&Event::KeysChanged { user: user("bob") })
    );

    block_on(w.messaging.retry_outbox()).expect("retry");
    assert_eq!(
        w.transport.delivered.lock().expect("lock").len(),
        1,
        "retries wait for the user"
    );

    w.messaging.trust_new_keys(&user("bob")).expect("accepted");
    block_on(w.messaging.retry_outbox()).expect("retry");
    let delivered = w.transport.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), 2);
    let resealed = w
        .device(9)
        .open(&delivered[1].bytes, &keys(ALICE).ed25519)
        .expect("sealed again to the accepted keys");
    assert_eq!(
        (resealed.header.seq, resealed.header.prev),
        (1, Digest::GENESIS),
        "a new device's chain starts afresh"
    );
    assert!(w.outbox_ids().is_empty());
    assert_eq!(
        w.store.chain_head(&user("bob")).expect("head"),
        ChainHead {
            seq: 1,
            digest: resealed.digest
        }
    );
}

#[test]
fn given_a_pinned_sender_when_it_arrives_with_other_keys_then_it_is_refused_until_trusted() {
    let w = alice_world();
    let chain = bob_chain(&w, 1);
    w.messaging
        .receive(from_bob(chain[0].clone()))
        .expect("first contact pins keys(0)");
    let (new_device, first_digest) = sealed(&w, 7, "bob", "alice", 2, 1, Digest::GENESIS, None);
    let impostor = ReceiveMessage {
        from: user("bob"),
        keys: keys(7),
        envelope: new_device,
    };

    let err = w
        .messaging
        .receive(impostor.clone())
        .expect_err("changed keys");

    assert_eq!(err, ReceiveError::KeysChanged(user("bob")));
    assert_eq!(w.store.all().len(), 1, "nothing stored, so no receipt");
    w.messaging.trust_new_keys(&user("bob")).expect("accepted");
    assert_eq!(
        w.messaging.receive(impostor),
        Ok(Received::Verified),
        "now the pinned keys, and a chain of its own"
    );
    assert_eq!(w.store.all().len(), 2);
    // The new device's chain started at 1 and goes on: it fits, no fork of the old one.
    let (fresh, _) = sealed(&w, 7, "bob", "alice", 3, 2, first_digest, None);
    let new_device = ReceiveMessage {
        from: user("bob"),
        keys: keys(7),
        envelope: fresh,
    };
    assert_eq!(w.messaging.receive(new_device), Ok(Received::Verified));
}

#[test]
fn given_no_change_when_trusting_then_it_says_why() {
    let w = alice_world();
    assert_eq!(
        w.messaging.trust_new_keys(&user("bob")),
        Err(TrustError::UnknownContact(user("bob")))
    );
    w.messaging
        .receive(from_bob(bob_chain(&w, 1).remove(0)))
        .expect("pins");
    assert_eq!(
        w.messaging.trust_new_keys(&user("bob")),
        Err(TrustError::NothingPending(user("bob")))
    );
}

#[test]
fn given_a_contact_when_asking_then_both_safety_numbers_are_shown() {
    let w = alice_world();
    w.messaging
        .receive(from_bob(bob_chain(&w, 1).remove(0)))
        .expect("pins keys(0)");
    let (changed, _) = sealed(&w, 7, "bob", "alice", 2, 2, Digest::GENESIS, None);
    let _ = w.messaging.receive(ReceiveMessage {
        from: user("bob"),
        keys: keys(7),
        envelope: changed,
    });

    let view = queries::contact(&*w.store, &user("alice"), &keys(1), &user("bob"))
        .expect("read")
        .expect("a contact");

    let expected =
        parley_domain::SafetyNumber::of((&user("alice"), &keys(1)), (&user("bob"), &keys(0)));
    assert_eq!(view.safety_number, expected);
    assert!(view.pending_safety_number.is_some_and(|p| p != expected));
    assert_eq!(
        queries::contact(&*w.store, &user("alice"), &keys(1), &user("carol")),
        Ok(None)
    );
}

#[test]
fn the_in_memory_store_keeps_the_store_contract() {
    crate::contract::message_store(InMemoryStore::default);
}

#[test]
fn given_an_enrolled_home_when_enrolling_again_then_the_same_keys_are_renewed() {
    let store = InMemoryStore::default();
    let first = identity("bob");
    store.save_identity(&first).expect("seed");
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));

    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("renewed");

    let sent = enrollment.requests.lock().expect("lock");
    assert_eq!(
        sent[0].keys,
        Some((first.ed25519.clone(), first.x25519.clone()))
    );
}

#[test]
fn given_a_fresh_home_when_enrolling_then_fresh_keys_are_asked_for() {
    let store = InMemoryStore::default();
    let enrollment = InMemoryEnrollment::answering(Ok(identity("bob")));
    block_on(Enroll::new(&enrollment, &store).run(&request("bob"))).expect("enrolled");
    assert_eq!(enrollment.requests.lock().expect("lock")[0].keys, None);
}
