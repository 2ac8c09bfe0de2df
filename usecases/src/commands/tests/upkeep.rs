use super::*;

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

#[test]
fn given_a_message_on_its_way_when_the_outbox_is_retried_then_it_is_not_sent_twice() {
    let w = alice_world();
    w.directory.set_online(&user("bob"));
    send(&w, 1, "bob", "first, to pin bob's keys").expect("delivered");
    let gate = Arc::new(Gate::default());
    w.transport.hold_next(gate.clone());

    let sending = w.messaging.send(SendMessage {
        id: id(2),
        to: user("bob"),
        text: text("held on its way"),
        ttl: None,
        attachments: vec![],
    });
    let retrying = async {
        // Once the send waits at the gate, its message is in the outbox and on its way.
        while *w.transport.held.lock().expect("lock") == 0 {
            yield_once().await;
        }
        assert_eq!(w.outbox_ids(), [id(2)]);
        w.messaging.retry_outbox().await.expect("retried");
        gate.open();
    };
    let (sent, ()) = block_on(futures::future::join(sending, retrying));

    sent.expect("delivered");
    assert_eq!(
        w.delivered_texts(0),
        ["first, to pin bob's keys", "held on its way"],
        "the outbox round left the message to the delivery under way"
    );
    assert!(w.outbox_ids().is_empty());
}

/// Gives the other future of a `join` its turn.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}
