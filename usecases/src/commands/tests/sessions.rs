//! Conversation keys between two devices of one world: a session is agreed from prekeys at
//! the first message, moves on with every change of speaker, and is written with the message
//! that moved it.

use super::*;
use crate::ports::Sessions;

/// The envelopes alice delivered so far.
fn delivered(w: &World) -> Vec<Vec<u8>> {
    w.transport
        .delivered
        .lock()
        .expect("lock")
        .iter()
        .map(|e| e.bytes.clone())
        .collect()
}

fn from_alice(envelope: Vec<u8>) -> ReceiveMessage {
    ReceiveMessage {
        from: user("alice"),
        keys: keys(ALICE),
        envelope,
    }
}

/// Bob answers alice directly; the envelope he delivered.
fn bob_answers(w: &World, b: &Bob, n: u8, t: &str) -> Vec<u8> {
    w.directory.set_online(&user("alice"));
    b.transport
        .keys
        .lock()
        .expect("lock")
        .insert(user("alice"), keys(ALICE));
    block_on(b.messaging.send(SendMessage {
        id: id(n),
        to: user("alice"),
        text: text(t),
        ttl: None,
        attachments: vec![],
    }))
    .expect("delivered");
    b.transport
        .delivered
        .lock()
        .expect("lock")
        .last()
        .expect("one")
        .bytes
        .clone()
}

fn alice_receives(w: &World, envelope: Vec<u8>) -> Result<Received, ReceiveError> {
    w.messaging.receive(ReceiveMessage {
        from: user("bob"),
        keys: keys(0),
        envelope,
    })
}

#[test]
fn given_a_contact_with_no_prekeys_when_sending_the_first_message_then_nothing_is_kept() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    w.mail.no_prekeys.lock().expect("lock").insert(user("bob"));

    assert_eq!(
        send(&w, 1, "bob", "hello"),
        Err(SendError::NoPrekeys(user("bob")))
    );
    assert!(
        w.outbox_ids().is_empty(),
        "no first message without forward secrecy"
    );
    assert!(w.transport.delivered.lock().expect("lock").is_empty());
}

#[test]
fn given_the_prekey_store_is_down_when_sending_the_first_message_then_it_says_so() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    *w.mail.prekeys_down.lock().expect("lock") = true;

    let e = send(&w, 1, "bob", "hello").expect_err("no prekeys to be had");
    assert_eq!(e.code(), "prekeys_unavailable");
    assert!(!e.queued() && w.outbox_ids().is_empty());
}

#[test]
fn given_a_conversation_then_each_side_keeps_its_session_with_the_messages_and_counts_its_steps() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    send(&w, 1, "bob", "one").expect("delivered");
    send(&w, 2, "bob", "two").expect("delivered");
    for envelope in delivered(&w) {
        assert_eq!(
            b.messaging.receive(from_alice(envelope)),
            Ok(Received::Verified)
        );
    }
    let alice_book = w.store.sessions(&user("bob")).expect("sessions");
    let bob_book = b.store.sessions(&user("alice")).expect("sessions");
    assert_eq!(
        alice_book.active, bob_book.active,
        "one session, both sides"
    );
    assert_eq!(w.store.rekeys().expect("rekeys"), 1, "alice's first step");
    assert_eq!(b.store.rekeys().expect("rekeys"), 0, "bob has not spoken");

    // Bob answers: his first step; alice follows it, and her next message steps again.
    let reply = bob_answers(&w, &b, 9, "hi alice");
    assert_eq!(alice_receives(&w, reply.clone()), Ok(Received::Verified));
    assert_eq!(b.store.rekeys().expect("rekeys"), 1);
    send(&w, 3, "bob", "three").expect("delivered");
    assert_eq!(
        w.store.rekeys().expect("rekeys"),
        2,
        "a change of speaker steps"
    );
    let third = delivered(&w).pop().expect("sent");
    assert_eq!(
        b.messaging.receive(from_alice(third)),
        Ok(Received::Verified)
    );

    // A retry of a stored envelope is a duplicate (its key is gone, but it is recognised
    // before its session is asked), and changes nothing.
    let before = w.store.sessions(&user("bob")).expect("sessions").encode();
    assert_eq!(alice_receives(&w, reply), Ok(Received::Duplicate));
    assert_eq!(
        w.store.sessions(&user("bob")).expect("sessions").encode(),
        before
    );
    let summary = queries::ratchet(&*w.store, &user("bob")).expect("summary");
    assert_eq!(summary.steps, 3, "alice's two steps and bob's one");
    assert!(summary.last_step_at.is_some());
}

#[test]
fn given_a_message_of_a_session_this_device_does_not_hold_then_it_is_refused_for_good() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    send(&w, 1, "bob", "one").expect("delivered");
    b.messaging
        .receive(from_alice(delivered(&w).remove(0)))
        .expect("opens");
    // Bob answers in the session, so alice's next message carries no agreement any more.
    let reply = bob_answers(&w, &b, 9, "hi");
    alice_receives(&w, reply).expect("alice opens bob's reply");
    send(&w, 2, "bob", "two").expect("delivered");
    let second = delivered(&w).pop().expect("sent");

    // A device of bob's that never had the session (its state lost) cannot open it.
    let stranger = bob(&w);
    let refused = stranger
        .messaging
        .receive(from_alice(second.clone()))
        .expect_err("no session");
    assert_eq!(refused, ReceiveError::UnknownSession);
    assert!(refused.is_permanent());
    assert_eq!(
        b.messaging.receive(from_alice(second)),
        Ok(Received::Verified),
        "bob's own device opens it"
    );
}

#[test]
fn given_a_first_message_whose_agreement_names_another_identity_then_it_is_refused() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    send(&w, 1, "bob", "one").expect("delivered");
    let envelope = delivered(&w).remove(0);
    // The connection's certificate says alice, but with another encryption key than the
    // agreement's identity key.
    let mut other = keys(ALICE);
    other.x25519 = keys(7).x25519;
    assert_eq!(
        b.messaging.receive(ReceiveMessage {
            from: user("alice"),
            keys: other,
            envelope,
        }),
        Err(ReceiveError::WrongIdentityKey)
    );
    assert!(
        b.store
            .sessions(&user("alice"))
            .expect("sessions")
            .sessions
            .is_empty()
    );
}

#[test]
fn given_first_messages_that_cross_then_both_sides_settle_on_one_session() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    // Each sends a first message before seeing the other's.
    send(&w, 1, "bob", "from alice").expect("delivered");
    let from_bob = bob_answers(&w, &b, 9, "from bob");
    b.messaging
        .receive(from_alice(delivered(&w).remove(0)))
        .expect("bob opens alice's");
    alice_receives(&w, from_bob).expect("alice opens bob's");
    let a = w.store.sessions(&user("bob")).expect("sessions");
    let bb = b.store.sessions(&user("alice")).expect("sessions");
    assert_eq!(a.sessions.len(), 2);
    assert_eq!(a.active, bb.active, "the same one on both sides");
    // And the conversation goes on in it, both ways.
    send(&w, 2, "bob", "again").expect("delivered");
    assert_eq!(
        b.messaging
            .receive(from_alice(delivered(&w).pop().expect("sent")))
            .map(|_| ()),
        Ok(())
    );
}

#[test]
fn given_a_first_message_signed_by_another_key_then_no_session_is_agreed_for_it() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    send(&w, 1, "bob", "one").expect("delivered");
    let envelope = delivered(&w).remove(0);
    // The certificate names alice's encryption key, but another signing key.
    let mut other = keys(ALICE);
    other.ed25519 = keys(7).ed25519;
    let refused = b
        .messaging
        .receive(ReceiveMessage {
            from: user("alice"),
            keys: other,
            envelope,
        })
        .expect_err("a forged first message");
    assert!(
        matches!(&refused, ReceiveError::Envelope(e) if e.code == "bad_signature"),
        "{refused:?}"
    );
    assert!(
        b.store
            .sessions(&user("alice"))
            .expect("sessions")
            .sessions
            .is_empty()
    );
}

#[test]
fn given_two_copies_of_an_envelope_arriving_at_once_then_one_is_stored_and_both_earn_a_receipt() {
    // A retry racing the first try, or the mailbox's copy racing the direct one: the second
    // copy must be recognised as a duplicate (a receipt), never refused because the first
    // used its message key meanwhile. Each round races two threads; the race is not forced,
    // so it is run often enough to be met.
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    let b = bob(&w);
    send(&w, 1, "bob", "hello").expect("delivered");
    let first = delivered(&w).pop().expect("sent");
    assert_eq!(
        b.messaging.receive(from_alice(first)),
        Ok(Received::Verified)
    );
    for n in 0..60u8 {
        let envelope = bob_answers(&w, &b, 10 + n, &format!("copy {n}"));
        let barrier = std::sync::Barrier::new(2);
        let outcomes: Vec<Result<Received, ReceiveError>> = std::thread::scope(|s| {
            let copies: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        alice_receives(&w, envelope.clone())
                    })
                })
                .collect();
            copies
                .into_iter()
                .map(|c| c.join().expect("the receiving thread"))
                .collect()
        });
        let mut outcomes = outcomes;
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            vec![Ok(Received::Duplicate), Ok(Received::Verified)],
            "round {n}"
        );
    }
    assert_eq!(w.history("bob").len(), 61);
}
