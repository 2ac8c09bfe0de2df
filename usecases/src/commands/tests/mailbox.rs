//! The mailbox, between two devices of one world: alice's messaging and bob's, sharing the
//! envelope registry and the rendezvous's hub.

use super::*;
use crate::ports::{Deposit, Mailbox, MailboxError};

/// Mallory, enrolled, deposits `sealed` for `to` as it is, with no files and no expiry.
fn mallory_deposits(w: &World, to: &str, sealed: Vec<u8>) {
    block_on(
        InMemoryMailbox {
            me: user("mallory"),
            hub: w.mail.clone(),
        }
        .deposit(
            &user(to),
            &Deposit {
                sealed,
                files: vec![],
                expires_at: None,
            },
        ),
    )
    .expect("held");
}

/// A world whose mailbox is up, where the CA certified alice, bob and carol.
fn mail_world() -> World {
    let w = alice_world();
    *w.mail.down.lock().expect("lock") = false;
    let mut certified = w.mail.certified.lock().expect("lock");
    certified.insert(user("alice"), keys(ALICE));
    certified.insert(user("bob"), keys(BOB));
    certified.insert(user("carol"), keys(7));
    drop(certified);
    w
}

/// Alice meets bob (pins his keys), then bob goes offline.
fn met_then_offline(w: &World) {
    w.directory.set_online(&user("bob"));
    send(w, 9, "bob", "hello while you are here").expect("delivered");
    w.directory.set_offline(&user("bob"));
}

fn delivery_of(w: &World, n: u8) -> Delivery {
    w.history("bob")
        .iter()
        .find(|m| m.id == id(n))
        .map(|m| m.delivery)
        .expect("in alice's history")
}

#[test]
fn given_a_contact_offline_when_sending_then_the_rendezvous_holds_it_and_it_stays_queued() {
    let w = mail_world();
    met_then_offline(&w);

    assert_eq!(send(&w, 1, "bob", "are you there"), Ok(Sent::Queued));

    assert_eq!(w.mail.held_for(&user("bob")), 1);
    assert!(matches!(delivery_of(&w, 1), Delivery::Queued(_)));
    assert_eq!(w.outbox_ids(), vec![id(1)], "queued stays in the outbox");
    assert!(
        w.events
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|e| matches!(e, Event::MessageQueued { id: i, .. } if *i == id(1)))
    );
    // The outbox round does not deposit it a second time.
    block_on(w.messaging.retry_outbox()).expect("round");
    assert_eq!(w.mail.held_for(&user("bob")), 1);
}

#[test]
fn given_a_connection_that_breaks_before_the_receipt_then_the_rendezvous_holds_it() {
    let w = mail_world();
    met_then_offline(&w);
    w.directory.set_online(&user("bob"));
    w.transport.fail_with(Some(TransportError::NoReceipt(
        "the connection closed before the answer".into(),
    )));

    assert_eq!(send(&w, 1, "bob", "are you there"), Ok(Sent::Queued));

    assert_eq!(w.mail.held_for(&user("bob")), 1);
    assert!(matches!(delivery_of(&w, 1), Delivery::Queued(_)));
    assert_eq!(w.outbox_ids(), vec![id(1)], "queued stays in the outbox");
}

#[test]
fn given_a_device_that_refuses_the_message_then_nothing_is_deposited() {
    let w = mail_world();
    met_then_offline(&w);
    w.directory.set_online(&user("bob"));
    w.transport
        .fail_with(Some(TransportError::Refused("busy".into())));

    assert!(matches!(
        send(&w, 1, "bob", "are you there"),
        Err(SendError::Unreachable { .. })
    ));
    assert_eq!(w.mail.held_for(&user("bob")), 0, "a refusal stands");
}

#[test]
fn given_mail_held_when_the_recipient_collects_then_it_is_stored_once_acknowledged_and_the_receipt_comes_back()
 {
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "are you there").expect("queued");
    send(&w, 2, "bob", "hello?").expect("queued");
    let b = bob(&w);
    // Bob met alice: her first message came while he was online (in this world, directly).
    b.store
        .save_contact(&parley_domain::Contact::first(
            user("alice"),
            keys(ALICE),
            Timestamp(1),
        ))
        .expect("pin");

    let collected = block_on(b.messaging.collect_mail()).expect("collect");

    assert_eq!(collected.stored, 2);
    assert_eq!(w.mail.held_for(&user("bob")), 0, "acknowledged, so deleted");
    let texts: Vec<String> = queries::history(&*b.store, &user("alice"), w.clock.now())
        .expect("history")
        .messages
        .iter()
        .map(|m| m.text.as_str().to_owned())
        .collect();
    assert_eq!(texts, ["are you there", "hello?"]);
    assert_eq!(w.mail.held_for(&user("alice")), 2, "two receipts for alice");

    // Collecting again finds nothing: nothing is stored twice.
    assert_eq!(
        block_on(b.messaging.collect_mail()).expect("again").stored,
        0
    );

    let back = block_on(w.messaging.collect_mail()).expect("alice collects");
    assert_eq!(back.receipts, 2);
    assert!(matches!(delivery_of(&w, 1), Delivery::Delivered(_)));
    assert!(matches!(delivery_of(&w, 2), Delivery::Delivered(_)));
    assert!(w.outbox_ids().is_empty());
}

#[test]
fn given_a_stranger_offline_when_sending_patiently_then_their_certified_keys_are_pinned_and_the_message_is_queued()
 {
    let w = mail_world();

    let sent = block_on(w.messaging.send_patiently(SendMessage {
        id: id(1),
        to: user("carol"),
        text: text("we have not met"),
        ttl: None,
        attachments: vec![],
    }));

    assert_eq!(sent, Ok(Sent::Queued));
    let pinned = w
        .store
        .contact(&user("carol"))
        .expect("read")
        .expect("pinned");
    assert_eq!(pinned.keys, keys(7));
    assert_eq!(w.mail.held_for(&user("carol")), 1);
}

#[test]
fn given_a_name_nobody_enrolled_when_sending_patiently_then_it_is_unknown_and_nothing_is_kept() {
    let w = mail_world();
    let sent = block_on(w.messaging.send_patiently(SendMessage {
        id: id(1),
        to: user("nobody"),
        text: text("hello"),
        ttl: None,
        attachments: vec![],
    }));
    assert_eq!(sent, Err(SendError::UnknownUser(user("nobody"))));
    assert!(w.store.all().is_empty());
    assert_eq!(w.mail.held_for(&user("nobody")), 0);
}

#[test]
fn given_a_full_mailbox_when_sending_then_the_refusal_code_is_reported_and_the_outbox_keeps_it() {
    let w = mail_world();
    met_then_offline(&w);
    *w.mail.refuse.lock().expect("lock") = Some(MailboxError::Refused {
        code: "mailbox_full".into(),
        reason: "full".into(),
        permanent: false,
    });

    let err = send(&w, 1, "bob", "no room").expect_err("refused");

    assert_eq!(err.code(), "mailbox_full");
    assert!(err.queued());
    assert_eq!(delivery_of(&w, 1), Delivery::Pending);
    assert_eq!(w.outbox_ids(), vec![id(1)]);

    // Once there is room again, the outbox round deposits it (after the back-off).
    *w.mail.refuse.lock().expect("lock") = None;
    block_on(w.messaging.retry_outbox()).expect("round");
    assert_eq!(w.mail.held_for(&user("bob")), 0, "backing off");
    w.set_time(1_000 + 31_000);
    block_on(w.messaging.retry_outbox()).expect("round");
    assert_eq!(w.mail.held_for(&user("bob")), 1);
    assert!(matches!(delivery_of(&w, 1), Delivery::Queued(_)));
}

#[test]
fn given_an_unknown_refusal_code_then_it_is_reported_as_a_mailbox_refusal() {
    let w = mail_world();
    met_then_offline(&w);
    *w.mail.refuse.lock().expect("lock") = Some(MailboxError::Refused {
        code: "something_new".into(),
        reason: "a newer rendezvous".into(),
        permanent: false,
    });
    let err = send(&w, 1, "bob", "x").expect_err("refused");
    assert_eq!(err.code(), "mailbox_refused");
}

#[test]
fn given_the_mailbox_down_when_sending_to_an_offline_contact_then_it_is_offline_and_kept() {
    let w = mail_world();
    met_then_offline(&w);
    *w.mail.down.lock().expect("lock") = true;
    assert_eq!(
        send(&w, 1, "bob", "later"),
        Err(SendError::Offline(user("bob")))
    );
    *w.mail.down.lock().expect("lock") = false;
    block_on(w.messaging.retry_outbox()).expect("round");
    assert_eq!(
        w.mail.held_for(&user("bob")),
        1,
        "deposited once it is back"
    );
}

#[test]
fn given_an_altered_entry_when_collecting_then_it_is_refused_dropped_and_nothing_is_shown() {
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "secret").expect("queued");
    {
        let mut held = w.mail.held.lock().expect("lock");
        let (_, deposit) = &mut held.get_mut(&user("bob")).expect("held")[0];
        let last = deposit.sealed.len() - 1;
        deposit.sealed[last] ^= 0x01;
    }
    let b = bob(&w);

    let collected = block_on(b.messaging.collect_mail()).expect("collect");

    assert_eq!(collected.stored, 0);
    assert_eq!(collected.refused, 1);
    assert!(b.store.all().is_empty());
    assert_eq!(
        w.mail.held_for(&user("bob")),
        0,
        "dropped: it can never be taken"
    );
    assert_eq!(w.mail.held_for(&user("alice")), 0, "no receipt for it");
}

#[test]
fn given_an_entry_wrapped_for_someone_else_when_collecting_then_it_is_refused() {
    let w = mail_world();
    met_then_offline(&w);
    // Mallory deposits for bob something wrapped to carol's key.
    let wrapped = w
        .device(ALICE)
        .wrap(b"\x01not for bob", &[7; 32])
        .expect("wrap");
    mallory_deposits(&w, "bob", wrapped);
    let b = bob(&w);
    assert_eq!(
        block_on(b.messaging.collect_mail())
            .expect("collect")
            .refused,
        1
    );
    assert!(b.store.all().is_empty());
}

#[test]
fn given_a_message_from_a_stranger_in_the_mail_then_the_sender_is_held_to_the_certified_keys() {
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "from alice").expect("queued");
    // Bob never met alice: her keys come from the CA's book.
    let b = bob(&w);
    assert_eq!(
        block_on(b.messaging.collect_mail())
            .expect("collect")
            .stored,
        1
    );
    let pinned = b
        .store
        .contact(&user("alice"))
        .expect("read")
        .expect("pinned");
    assert_eq!(pinned.keys, keys(ALICE));

    // A forgery: mallory seals "from alice" with her own key; the book says alice's keys are
    // keys(ALICE), so the signature fails and nothing is stored.
    let forger = w.device(5);
    let header = parley_domain::Header {
        id: id(2),
        from: user("alice"),
        to: user("bob"),
        sent_at: Timestamp(1_000),
        ttl: None,
        seq: 2,
        prev: Digest([0; 32]),
        attachments: vec![],
    };
    let body = Body {
        text: text("forged"),
        attachment_keys: vec![],
    };
    let forged = forger.seal(&header, &body, &[BOB; 32]).expect("seal");
    let wrapped = forger
        .wrap(
            &parley_domain::mailbox::Parcel::Envelope(forged.bytes).encode(),
            &[BOB; 32],
        )
        .expect("wrap");
    mallory_deposits(&w, "bob", wrapped);
    let collected = block_on(b.messaging.collect_mail()).expect("collect");
    assert_eq!((collected.stored, collected.refused), (0, 1));
    assert!(
        b.events
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|e| matches!(e, Event::MessageRefused { .. }))
    );
}

#[test]
fn given_a_message_delivered_directly_and_by_mail_then_it_is_stored_once() {
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "twice").expect("queued");
    let b = bob(&w);
    let envelope = w.store.envelope(&id(1)).expect("in the outbox");
    // The direct copy first (alice's outbox round met bob online).
    b.messaging
        .receive(ReceiveMessage {
            from: user("alice"),
            keys: keys(ALICE),
            envelope,
        })
        .expect("stored");

    let collected = block_on(b.messaging.collect_mail()).expect("collect");

    assert_eq!(collected.stored, 0, "the mail copy is a duplicate");
    assert_eq!(b.store.all().len(), 1);
    assert_eq!(w.mail.held_for(&user("bob")), 0);
    assert_eq!(w.mail.held_for(&user("alice")), 1, "the receipt still goes");
}

#[test]
fn given_a_receipt_naming_another_envelope_then_the_message_stays_queued() {
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "hi").expect("queued");
    let receipt = parley_domain::mailbox::Parcel::Receipt {
        id: id(1),
        digest: Digest([9; 32]),
        signature: w.device(BOB).sign_receipt(&Digest([9; 32])),
    };
    let wrapped = w
        .device(5)
        .wrap(&receipt.encode(), &[ALICE; 32])
        .expect("wrap");
    mallory_deposits(&w, "alice", wrapped);
    assert_eq!(
        block_on(w.messaging.collect_mail())
            .expect("collect")
            .receipts,
        0
    );
    assert!(matches!(delivery_of(&w, 1), Delivery::Queued(_)));
}

#[test]
fn given_attachments_when_queued_then_the_encrypted_files_travel_and_are_claimed() {
    let w = mail_world();
    met_then_offline(&w);
    send_with_files(&w, 1, &[("a.txt", b"file by mail")]).expect("queued");
    let held = w.mail.held.lock().expect("lock")[&user("bob")][0].1.clone();
    assert_eq!(held.files.len(), 1);
    let b = bob(&w);
    assert_eq!(
        block_on(b.messaging.collect_mail())
            .expect("collect")
            .stored,
        1
    );
    let message = &b.store.all()[0];
    assert_eq!(message.attachments.len(), 1);
    let locator = b.store.locator(&user("alice"), &id(1), 0);
    assert_eq!(b.store.sealed_file(&locator), Some(held.files[0].clone()));
}

#[test]
fn given_a_mailbox_entry_with_swapped_files_then_the_message_is_refused() {
    let w = mail_world();
    met_then_offline(&w);
    send_with_files(&w, 1, &[("a.txt", b"the real file")]).expect("queued");
    w.mail
        .held
        .lock()
        .expect("lock")
        .get_mut(&user("bob"))
        .expect("held")[0]
        .1
        .files[0] = b"other bytes".to_vec();
    let b = bob(&w);
    let collected = block_on(b.messaging.collect_mail()).expect("collect");
    assert_eq!((collected.stored, collected.refused), (0, 1));
    assert!(b.store.all().is_empty());
}

#[test]
fn given_a_receipt_not_signed_by_the_recipients_device_then_it_is_ignored_and_a_signed_one_counts()
{
    let w = mail_world();
    met_then_offline(&w);
    send(&w, 1, "bob", "hi").expect("queued");
    let digest = w.envelopes_digest(&w.outbox_envelope(1));
    let deposit = |signer: u8| {
        let receipt = parley_domain::mailbox::Parcel::Receipt {
            id: id(1),
            digest,
            signature: w.device(signer).sign_receipt(&digest),
        };
        let wrapped = w
            .device(5)
            .wrap(&receipt.encode(), &[ALICE; 32])
            .expect("wrap");
        mallory_deposits(&w, "alice", wrapped);
    };
    // Mallory learnt the digest somehow, and signs with her own device.
    deposit(5);
    assert_eq!(
        block_on(w.messaging.collect_mail())
            .expect("collect")
            .receipts,
        0
    );
    assert!(matches!(delivery_of(&w, 1), Delivery::Queued(_)));
    // Bob's device signs it: delivered.
    deposit(BOB);
    assert_eq!(
        block_on(w.messaging.collect_mail())
            .expect("collect")
            .receipts,
        1
    );
    assert!(matches!(delivery_of(&w, 1), Delivery::Delivered(_)));
}
