use super::*;

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
