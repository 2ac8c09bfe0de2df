use super::*;

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

fn send_patiently(w: &World, n: u8, to: &str) -> Result<Sent, SendError> {
    block_on(w.messaging.send_patiently(SendMessage {
        id: id(n),
        to: user(to),
        text: text("hello"),
        ttl: None,
        attachments: vec![],
    }))
}

#[test]
fn given_a_name_the_directory_lists_a_moment_later_when_sending_patiently_then_it_is_delivered() {
    let w = alice_world();
    w.directory.set_online_from_lookup(&user("bob"), 3);

    send_patiently(&w, 1, "bob").expect("delivered once listed");

    assert_eq!(*w.directory.lookups.lock().expect("lock"), 3);
    assert_eq!(w.clock.now(), Timestamp(1_500), "two waits of 250 ms");
    assert_eq!(w.delivered_texts(0), ["hello"], "sent once");
}

#[test]
fn given_a_name_never_listed_when_sending_patiently_then_it_gives_up_after_three_seconds() {
    let w = alice_world();

    let err = send_patiently(&w, 1, "nobody").expect_err("unknown");

    assert_eq!(err, SendError::UnknownUser(user("nobody")));
    assert_eq!(w.clock.now(), Timestamp(4_000), "three seconds of waiting");
    assert_eq!(
        *w.directory.lookups.lock().expect("lock"),
        13,
        "one try at once and one every 250 ms"
    );
    assert!(w.store.all().is_empty(), "nothing kept by any try");
}

#[test]
fn given_the_directory_down_when_sending_patiently_to_a_stranger_then_it_retries_then_gives_up() {
    let w = alice_world();
    w.directory.set_unavailable(true);

    let err = send_patiently(&w, 1, "bob").expect_err("unavailable");

    assert!(matches!(
        err,
        SendError::DirectoryUnavailable { queued: false, .. }
    ));
    assert_eq!(w.clock.now(), Timestamp(4_000));
    assert!(w.store.all().is_empty());
}

#[test]
fn given_a_refusal_that_kept_the_message_when_sending_patiently_then_it_is_not_tried_again() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 1, "bob", "pins bob").expect("first contact");
    w.directory.set_offline(&user("bob"));
    let before = *w.directory.lookups.lock().expect("lock");

    assert_eq!(
        send_patiently(&w, 2, "bob"),
        Err(SendError::Offline(user("bob")))
    );
    assert_eq!(*w.directory.lookups.lock().expect("lock"), before + 1);
    assert_eq!(w.clock.now(), Timestamp(1_000), "no waiting");
    assert_eq!(w.outbox_ids(), [id(2)], "kept once");
}
