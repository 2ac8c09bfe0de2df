use std::sync::Arc;

use futures::executor::block_on;
use parley_domain::{
    CaFingerprint, Delivery, DeviceIdentity, Direction, MessageId, MessageText, PeerKeys, Secret32,
    Username, identity::Password,
};

use super::*;
use crate::fakes::*;
use crate::ports::{EnrollRequest, OutgoingMessage, TransportError};
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

struct World {
    store: Arc<InMemoryStore>,
    directory: Arc<InMemoryDirectory>,
    transport: Arc<InMemoryTransport>,
    events: Arc<RecordingEvents>,
    messaging: Messaging<
        Arc<InMemoryStore>,
        Arc<InMemoryDirectory>,
        Arc<InMemoryTransport>,
        FixedClock,
        Arc<RecordingEvents>,
    >,
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
}

fn alice_world() -> World {
    let store = Arc::new(InMemoryStore::default());
    let directory = Arc::new(InMemoryDirectory::default());
    let transport = Arc::new(InMemoryTransport::default());
    let events = Arc::new(RecordingEvents::default());
    let messaging = Messaging::new(
        user("alice"),
        store.clone(),
        directory.clone(),
        transport.clone(),
        FixedClock::at(1_000),
        events.clone(),
    );
    World {
        store,
        directory,
        transport,
        events,
        messaging,
    }
}

fn send(w: &World, n: u8, to: &str, t: &str) -> Result<(), SendError> {
    block_on(w.messaging.send(SendMessage {
        id: id(n),
        to: user(to),
        text: text(t),
    }))
}

#[test]
fn given_an_online_recipient_when_sending_then_it_is_delivered_and_marked() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));

    send(&w, 1, "bob", "salut bob").expect("delivered");

    let delivered = w.transport.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].text.as_str(), "salut bob");
    let history = queries::history(&*w.store, &user("bob")).expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].delivery,
        Delivery::Delivered(parley_domain::Timestamp(1_000))
    );
    assert!(w.store.outbox().expect("outbox").is_empty());
    assert_eq!(w.events.0.lock().expect("lock").len(), 1);
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
    assert_eq!(w.store.outbox().expect("outbox").len(), 2);

    block_on(w.messaging.retry_outbox()).expect("retry while offline");
    assert_eq!(
        w.store.outbox().expect("outbox").len(),
        2,
        "still offline: still queued"
    );

    w.directory.set_online(&user("bob"));
    block_on(w.messaging.retry_outbox()).expect("retry");
    let texts: Vec<String> = w
        .transport
        .delivered
        .lock()
        .expect("lock")
        .iter()
        .map(|m| m.text.as_str().to_owned())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
    assert!(w.store.outbox().expect("outbox").is_empty());
    assert_eq!(
        *w.directory.lookups.lock().expect("lock"),
        5,
        "one look-up per retry round"
    );
}

#[test]
fn given_delivery_fails_midway_when_retrying_then_later_messages_wait_for_earlier_ones() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.transport
        .fail_with(Some(TransportError::Unreachable("down".into())));
    for (n, t) in [(1, "one"), (2, "two"), (3, "three")] {
        assert!(matches!(
            send(&w, n, "bob", t),
            Err(SendError::Unreachable { .. })
        ));
    }
    w.transport.fail_with(None);
    w.transport.fail_call_at(5); // calls 1-3 failed above; call 4 succeeds, call 5 fails

    block_on(w.messaging.retry_outbox()).expect("retry");

    let outbox: Vec<MessageId> = w
        .store
        .outbox()
        .expect("outbox")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(outbox, [id(2), id(3)], "'three' must not overtake 'two'");
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
fn given_the_receipt_cannot_be_recorded_when_sending_then_the_message_stays_queued() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.store.fail_write_at(2); // append succeeds, mark_delivered fails

    assert!(matches!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::Store(_))
    ));
    assert_eq!(w.store.outbox().expect("outbox").len(), 1);
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
fn given_a_wrong_identity_when_sending_then_it_is_reported_and_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.transport.fail_with(Some(TransportError::WrongIdentity {
        expected: user("bob"),
    }));

    assert_eq!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::WrongIdentity(user("bob")))
    );
    assert_eq!(w.store.outbox().expect("outbox").len(), 1);
}

#[test]
fn given_a_message_to_oneself_when_sending_then_it_is_refused() {
    let w = alice_world();
    assert_eq!(send(&w, 1, "alice", "me"), Err(SendError::ToSelf));
}

fn incoming(from: &str, to: &str, n: u8) -> ReceiveMessage {
    ReceiveMessage {
        from: user(from),
        keys: keys(0),
        message: OutgoingMessage {
            id: id(n),
            to: user(to),
            text: text("salut alice"),
            sent_at: parley_domain::Timestamp(5),
        },
    }
}

#[test]
fn given_a_message_delivered_twice_when_receiving_then_it_is_stored_once() {
    let w = alice_world();

    w.messaging
        .receive(incoming("bob", "alice", 7))
        .expect("first");
    w.messaging
        .receive(incoming("bob", "alice", 7))
        .expect("second is acknowledged too");

    let history = queries::history(&*w.store, &user("bob")).expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].direction, Direction::Incoming);
    assert_eq!(
        w.events.0.lock().expect("lock").len(),
        1,
        "one event for one message"
    );
}

#[test]
fn given_the_same_id_from_another_sender_when_receiving_then_both_are_kept() {
    let w = alice_world();
    w.messaging
        .receive(incoming("bob", "alice", 7))
        .expect("bob");
    w.messaging
        .receive(incoming("mallory", "alice", 7))
        .expect("mallory");
    assert_eq!(
        w.store.all().len(),
        2,
        "a sender cannot suppress another's message by id"
    );
}

#[test]
fn given_a_message_for_someone_else_when_receiving_then_it_is_refused() {
    let w = alice_world();
    let err = w
        .messaging
        .receive(incoming("bob", "carol", 1))
        .expect_err("not for me");
    assert_eq!(err, ReceiveError::NotForMe(user("carol")));
    assert!(w.store.all().is_empty());
}

#[test]
fn given_the_store_fails_when_receiving_then_no_receipt_may_be_given() {
    let w = alice_world();
    w.store.fail_write_at(1);
    assert!(matches!(
        w.messaging.receive(incoming("bob", "alice", 1)),
        Err(ReceiveError::Store(_))
    ));
    assert!(w.events.0.lock().expect("lock").is_empty());
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
    assert_eq!(w.store.outbox().expect("outbox").len(), 1, "kept for later");
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
    assert_eq!(w.transport.delivered.lock().expect("lock").len(), 2);
    assert!(w.store.outbox().expect("outbox").is_empty());
}

#[test]
fn given_a_pinned_sender_when_it_arrives_with_other_keys_then_it_is_refused_until_trusted() {
    let w = alice_world();
    w.messaging
        .receive(incoming("bob", "alice", 1))
        .expect("first contact pins keys(0)");
    let mut impostor = incoming("bob", "alice", 2);
    impostor.keys = keys(7);

    let err = w
        .messaging
        .receive(impostor.clone())
        .expect_err("changed keys");

    assert_eq!(err, ReceiveError::KeysChanged(user("bob")));
    assert_eq!(w.store.all().len(), 1, "nothing stored, so no receipt");
    w.messaging.trust_new_keys(&user("bob")).expect("accepted");
    w.messaging.receive(impostor).expect("now the pinned keys");
    assert_eq!(w.store.all().len(), 2);
}

#[test]
fn given_no_change_when_trusting_then_it_says_why() {
    let w = alice_world();
    assert_eq!(
        w.messaging.trust_new_keys(&user("bob")),
        Err(TrustError::UnknownContact(user("bob")))
    );
    w.messaging
        .receive(incoming("bob", "alice", 1))
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
        .receive(incoming("bob", "alice", 1))
        .expect("pins keys(0)");
    let mut changed = incoming("bob", "alice", 2);
    changed.keys = keys(7);
    let _ = w.messaging.receive(changed);

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
