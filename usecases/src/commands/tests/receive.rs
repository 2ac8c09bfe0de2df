use super::*;

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
