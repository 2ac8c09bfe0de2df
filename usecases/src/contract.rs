//! The contract every [`MessageStore`] must keep, as one suite run against each implementation
//! (the in-memory fake here, the sled store in `parley-store`), so the fake the use-case tests
//! rely on cannot drift from the real thing.

use parley_domain::{
    ChainFault, ChainHead, ChainState, Contact, Delivery, Digest, Direction, Link, MessageId,
    MessageText, Neighbours, PeerKeys, StoredMessage, Timestamp, Username, Verification,
};

use parley_domain::ratchet::SessionBook;

use crate::ports::{MessageStore, OutboxEntry, SessionUpdate, Stored};

/// The time every read of the suite happens at, unless a rule is about expiry.
const NOW: Timestamp = Timestamp(1_000);

fn user(name: &str) -> Username {
    Username::parse(name).expect("contract names are valid")
}

fn message(direction: Direction, other: &str, n: u8) -> StoredMessage {
    let (from, to, delivery) = match direction {
        Direction::Outgoing => (user("alice"), user(other), Delivery::Pending),
        Direction::Incoming => (user(other), user("alice"), Delivery::Received(Timestamp(9))),
    };
    StoredMessage {
        id: MessageId::from_bytes([n; 16]),
        from,
        to,
        text: MessageText::parse(format!("message {n}")).expect("valid text"),
        sent_at: Timestamp(i64::from(n)),
        direction,
        delivery,
        verification: Verification::Verified,
        ttl: None,
        expires_at: None,
        attachments: vec![],
    }
}

/// Message `n`, gone at `at`.
fn expiring(direction: Direction, other: &str, n: u8, at: i64) -> StoredMessage {
    StoredMessage {
        expires_at: Some(Timestamp(at)),
        ..message(direction, other, n)
    }
}

fn digest(n: u8) -> Digest {
    Digest([n; 32])
}

/// The place of message `n` in its sender's chain: position `n`, after message `n - 1`.
fn link(n: u8) -> Link {
    Link {
        seq: u64::from(n),
        digest: digest(n),
        prev: if n <= 1 {
            Digest::GENESIS
        } else {
            digest(n - 1)
        },
    }
}

fn head(n: u8) -> ChainHead {
    ChainHead {
        seq: u64::from(n),
        digest: digest(n),
    }
}

fn envelope(n: u8) -> Vec<u8> {
    format!("envelope {n}").into_bytes()
}

/// Appends `message` with the envelope and head of its number.
fn send(store: &impl MessageStore, message: &StoredMessage) {
    let n = message.id.as_bytes()[0];
    store
        .append_outgoing(message, &envelope(n), &head(n))
        .expect("append");
}

/// Stores `message` with the link of its number.
fn receive(store: &impl MessageStore, message: &StoredMessage) -> Stored {
    let n = message.id.as_bytes()[0];
    store.store_incoming(message, &link(n)).expect("store")
}

fn texts(messages: &[StoredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.text.as_str().to_owned())
        .collect()
}

fn outbox_texts(entries: &[OutboxEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.message.text.as_str().to_owned())
        .collect()
}

/// Runs every rule against stores made fresh by `fresh` (the store of user `alice`).
///
/// # Panics
/// When `S` breaks a rule; the message names the rule.
pub fn message_store<S: MessageStore>(fresh: impl Fn() -> S) {
    conversations_keep_arrival_order_and_stay_apart(&fresh());
    an_incoming_message_is_stored_once_per_sender_and_id(&fresh());
    a_replay_is_a_duplicate_and_another_envelope_under_the_id_conflicts(&fresh());
    the_outbox_holds_pending_messages_oldest_first_until_delivered(&fresh());
    a_queued_message_stays_in_the_outbox_until_its_receipt(&fresh());
    the_chain_head_moves_with_each_append_and_only_then(&fresh());
    a_resealed_message_keeps_its_place_with_the_new_envelope_and_head(&fresh());
    verified_messages_join_the_senders_chain_and_others_count_as_faults(&fresh());
    conversations_list_the_most_recent_first_with_counts(&fresh());
    expired_messages_are_never_returned(&fresh());
    unread_counts_incoming_messages_since_the_conversation_was_marked_read(&fresh());
    purged_messages_are_gone_but_their_replays_are_still_recognised(&fresh());
    contacts_keep_pinned_and_pending_keys(&fresh());
    sessions_are_written_with_their_message_and_only_then(&fresh());
    a_received_messages_sessions_go_with_it_and_a_duplicate_changes_none(&fresh());
    sessions_are_forgotten_on_reset_and_count_this_devices_steps(&fresh());
}

/// A book with one session of a given id, whose ratchet has taken `steps` own steps.
fn book(id: u8, own_steps: u32) -> SessionBook {
    use parley_domain::agreement::{InitialMessage, KEM_CIPHERTEXT_LEN, KemCiphertext};
    use parley_domain::ratchet::{Key32, KeyPair, PublicKey, Ratchet, SessionState};
    let responder = KeyPair::from_secret(Key32::new([id; 32]));
    let mut ours = Ratchet::initiator(&Key32::new([1; 32]), responder.public());
    let mut theirs = Ratchet::responder(&Key32::new([1; 32]), responder);
    for n in 0..own_steps {
        let mut fresh = [0x40; 32];
        fresh[1] = u8::try_from(n).unwrap_or(0);
        let sealed = ours.seal(Key32::new(fresh), b"m", b"").expect("seals");
        theirs
            .open(&sealed.header, &sealed.ciphertext, b"", Timestamp(1))
            .expect("opens");
        let mut back = [0x50; 32];
        back[1] = u8::try_from(n).unwrap_or(0);
        let reply = theirs.seal(Key32::new(back), b"r", b"").expect("seals");
        ours.open(&reply.header, &reply.ciphertext, b"", Timestamp(1))
            .expect("opens");
    }
    let initial = InitialMessage {
        identity: PublicKey([2; 32]),
        ephemeral: PublicKey([id; 32]),
        signed_prekey_id: 1,
        one_time_prekey_id: None,
        kem_prekey_id: 2,
        kem_ciphertext: KemCiphertext::parse(&[0; KEM_CIPHERTEXT_LEN]).expect("length"),
    };
    let mut book = SessionBook::default();
    book.open(SessionState::opened(ours, initial, Timestamp(1)));
    book
}

fn session_ids(store: &impl MessageStore, with: &str) -> Vec<[u8; 32]> {
    store
        .sessions(&user(with))
        .expect("sessions")
        .sessions
        .iter()
        .map(|s| s.id)
        .collect()
}

fn sessions_are_written_with_their_message_and_only_then(store: &impl MessageStore) {
    assert!(session_ids(store, "bob").is_empty(), "none before");
    let m = message(Direction::Outgoing, "bob", 1);
    let first = book(7, 1);
    store
        .append_outgoing_in_session_deferred(
            &m,
            &envelope(1),
            &head(1),
            &SessionUpdate {
                with: &user("bob"),
                book: &first,
                used_one_time_prekey: None,
            },
        )
        .expect("append");
    store.sync().expect("sync");
    assert_eq!(session_ids(store, "bob"), vec![[7; 32]]);
    assert!(session_ids(store, "carol").is_empty(), "kept per contact");
    // The same message again (a retried command): nothing changes, not even the sessions.
    store
        .append_outgoing_in_session_deferred(
            &m,
            &envelope(1),
            &head(1),
            &SessionUpdate {
                with: &user("bob"),
                book: &book(8, 1),
                used_one_time_prekey: None,
            },
        )
        .expect("append");
    store.sync().expect("sync");
    assert_eq!(
        session_ids(store, "bob"),
        vec![[7; 32]],
        "a repeat wrote nothing"
    );
    let back = store.sessions(&user("bob")).expect("sessions");
    assert_eq!(back.encode(), first.encode(), "read back as written");
}

fn a_received_messages_sessions_go_with_it_and_a_duplicate_changes_none(store: &impl MessageStore) {
    let m = message(Direction::Incoming, "bob", 1);
    let update = |b: &SessionBook| {
        store.store_incoming_in_session_deferred(
            &m,
            &link(1),
            &SessionUpdate {
                with: &user("bob"),
                book: b,
                used_one_time_prekey: Some(3),
            },
        )
    };
    assert_eq!(
        store.incoming_digest(&user("bob"), &m.id).expect("digest"),
        None
    );
    assert_eq!(update(&book(4, 0)).expect("stored"), Stored::New);
    store.sync().expect("sync");
    assert_eq!(
        store.incoming_digest(&user("bob"), &m.id).expect("digest"),
        Some(link(1).digest)
    );
    assert_eq!(update(&book(5, 0)).expect("stored"), Stored::Duplicate);
    assert_eq!(
        session_ids(store, "bob"),
        vec![[4; 32]],
        "a duplicate wrote nothing"
    );
}

fn sessions_are_forgotten_on_reset_and_count_this_devices_steps(store: &impl MessageStore) {
    for (n, (with, steps)) in [("bob", 3), ("carol", 2)].into_iter().enumerate() {
        let n = u8::try_from(n).expect("small") + 1;
        store
            .append_outgoing_in_session_deferred(
                &message(Direction::Outgoing, with, n),
                &envelope(n),
                &head(n),
                &SessionUpdate {
                    with: &user(with),
                    book: &book(n, steps),
                    used_one_time_prekey: None,
                },
            )
            .expect("append");
    }
    store.sync().expect("sync");
    assert_eq!(
        store.rekeys().expect("rekeys"),
        5,
        "own steps over all contacts"
    );
    store.reset_sessions(&user("bob")).expect("reset");
    assert!(session_ids(store, "bob").is_empty());
    assert_eq!(store.rekeys().expect("rekeys"), 2);
}

fn conversations_keep_arrival_order_and_stay_apart(store: &impl MessageStore) {
    send(store, &message(Direction::Outgoing, "bob", 1));
    receive(store, &message(Direction::Incoming, "bob", 2));
    send(store, &message(Direction::Outgoing, "bobby", 3));
    send(store, &message(Direction::Outgoing, "bob", 4));
    let bob = store.history(&user("bob"), NOW).expect("read");
    assert_eq!(
        texts(&bob),
        ["message 1", "message 2", "message 4"],
        "history, oldest first"
    );
    assert_eq!(
        bob[0],
        message(Direction::Outgoing, "bob", 1),
        "read back as written"
    );
    assert_eq!(
        texts(&store.history(&user("bobby"), NOW).expect("read")),
        ["message 3"]
    );
    assert!(
        store.history(&user("bobb"), NOW).expect("read").is_empty(),
        "a prefix is no conversation"
    );
}

fn an_incoming_message_is_stored_once_per_sender_and_id(store: &impl MessageStore) {
    let first = message(Direction::Incoming, "bob", 7);
    assert_eq!(receive(store, &first), Stored::New);
    assert_eq!(
        receive(store, &first),
        Stored::Duplicate,
        "same sender and id"
    );
    let same_id_other_sender = message(Direction::Incoming, "carol", 7);
    assert_eq!(receive(store, &same_id_other_sender), Stored::New);
    assert_eq!(store.history(&user("bob"), NOW).expect("read").len(), 1);
}

fn a_replay_is_a_duplicate_and_another_envelope_under_the_id_conflicts(store: &impl MessageStore) {
    let first = message(Direction::Incoming, "bob", 1);
    assert_eq!(store.store_incoming(&first, &link(1)), Ok(Stored::New));
    assert_eq!(
        store.store_incoming(&first, &link(1)),
        Ok(Stored::Duplicate),
        "the same envelope digest"
    );
    let rival = StoredMessage {
        text: MessageText::parse("not what bob wrote").expect("valid text"),
        ..first.clone()
    };
    let rival_link = Link {
        digest: digest(99),
        ..link(1)
    };
    assert_eq!(
        store.store_incoming(&rival, &rival_link),
        Ok(Stored::Conflicting),
        "another envelope under the same (sender, id)"
    );
    assert_eq!(
        store.history(&user("bob"), NOW).expect("read"),
        [first],
        "neither changed anything"
    );
    assert_eq!(
        store.neighbours(&user("bob"), 1).expect("read").same,
        Some(link(1)),
        "the chain keeps the first link"
    );
    assert_eq!(
        store.chain_state(&user("bob")),
        Ok(ChainState::Intact { last: 1 }),
        "a conflict is not counted as a fault"
    );
}

fn the_outbox_holds_pending_messages_oldest_first_until_delivered(store: &impl MessageStore) {
    for n in 1..=3 {
        send(store, &message(Direction::Outgoing, "bob", n));
    }
    receive(store, &message(Direction::Incoming, "bob", 9));
    let outbox = store.outbox(NOW).expect("read");
    assert_eq!(
        outbox_texts(&outbox),
        ["message 1", "message 2", "message 3"]
    );
    assert_eq!(
        outbox
            .iter()
            .map(|e| e.envelope.clone())
            .collect::<Vec<_>>(),
        [envelope(1), envelope(2), envelope(3)],
        "each with the envelope it was appended with"
    );
    store
        .mark_delivered(&MessageId::from_bytes([2; 16]), Timestamp(50))
        .expect("write");
    store
        .mark_delivered(&MessageId::from_bytes([42; 16]), Timestamp(50))
        .expect("unknown is fine");
    assert_eq!(
        outbox_texts(&store.outbox(NOW).expect("read")),
        ["message 1", "message 3"]
    );
    let second = store.history(&user("bob"), NOW).expect("read").remove(1);
    assert_eq!(second.delivery, Delivery::Delivered(Timestamp(50)));
    // A repeated append of a delivered message does not bring it back.
    send(store, &message(Direction::Outgoing, "bob", 2));
    assert_eq!(
        outbox_texts(&store.outbox(NOW).expect("read")),
        ["message 1", "message 3"]
    );
    // A refusal for good settles a message too, and a late receipt does not change it.
    store
        .mark_rejected(&MessageId::from_bytes([3; 16]), Timestamp(60))
        .expect("write");
    store
        .mark_delivered(&MessageId::from_bytes([3; 16]), Timestamp(70))
        .expect("write");
    assert_eq!(
        outbox_texts(&store.outbox(NOW).expect("read")),
        ["message 1"]
    );
    let third = store
        .history(&user("bob"), NOW)
        .expect("read")
        .into_iter()
        .find(|m| m.id == MessageId::from_bytes([3; 16]))
        .expect("kept");
    assert_eq!(third.delivery, Delivery::Rejected(Timestamp(60)));
}

fn a_queued_message_stays_in_the_outbox_until_its_receipt(store: &impl MessageStore) {
    let id = |n: u8| MessageId::from_bytes([n; 16]);
    let delivery = |n: u8| {
        store
            .history(&user("bob"), NOW)
            .expect("read")
            .into_iter()
            .find(|m| m.id == id(n))
            .expect("kept")
            .delivery
    };
    send(store, &message(Direction::Outgoing, "bob", 1));
    send(store, &message(Direction::Outgoing, "bob", 2));
    store.mark_queued(&id(1), Timestamp(40)).expect("write");
    assert_eq!(delivery(1), Delivery::Queued(Timestamp(40)));
    let outbox = store.outbox(NOW).expect("read");
    assert_eq!(outbox_texts(&outbox), ["message 1", "message 2"]);
    assert_eq!(
        outbox[0].envelope,
        envelope(1),
        "the envelope stays for a direct delivery"
    );
    // Queued twice keeps the first time; the receipt settles it.
    store.mark_queued(&id(1), Timestamp(45)).expect("write");
    assert_eq!(delivery(1), Delivery::Queued(Timestamp(40)));
    store.mark_delivered(&id(1), Timestamp(50)).expect("write");
    assert_eq!(delivery(1), Delivery::Delivered(Timestamp(50)));
    assert_eq!(
        outbox_texts(&store.outbox(NOW).expect("read")),
        ["message 2"]
    );
    // A message delivered already is not queued again (the receipt came first).
    store.mark_queued(&id(1), Timestamp(60)).expect("write");
    assert_eq!(delivery(1), Delivery::Delivered(Timestamp(50)));
}

fn the_chain_head_moves_with_each_append_and_only_then(store: &impl MessageStore) {
    assert_eq!(store.chain_head(&user("bob")), Ok(ChainHead::EMPTY));
    send(store, &message(Direction::Outgoing, "bob", 1));
    assert_eq!(store.chain_head(&user("bob")), Ok(head(1)));
    send(store, &message(Direction::Outgoing, "bob", 2));
    assert_eq!(store.chain_head(&user("bob")), Ok(head(2)));
    assert_eq!(
        store.chain_head(&user("bobby")),
        Ok(ChainHead::EMPTY),
        "one chain per recipient"
    );
    store
        .append_outgoing(
            &message(Direction::Outgoing, "bob", 1),
            &envelope(7),
            &head(7),
        )
        .expect("a repeated append is a no-op");
    assert_eq!(
        store.chain_head(&user("bob")),
        Ok(head(2)),
        "a repeated append leaves the head"
    );
    assert_eq!(
        store.outbox(NOW).expect("read")[0].envelope,
        envelope(1),
        "and the envelope"
    );
    receive(store, &message(Direction::Incoming, "bob", 5));
    assert_eq!(
        store.chain_head(&user("bob")),
        Ok(head(2)),
        "incoming messages belong to bob's chain, not ours"
    );
}

fn a_resealed_message_keeps_its_place_with_the_new_envelope_and_head(store: &impl MessageStore) {
    send(store, &message(Direction::Outgoing, "bob", 1));
    send(store, &message(Direction::Outgoing, "bob", 2));
    store
        .reseal(&MessageId::from_bytes([1; 16]), &envelope(11), &head(11))
        .expect("write");
    let outbox = store.outbox(NOW).expect("read");
    assert_eq!(
        outbox_texts(&outbox),
        ["message 1", "message 2"],
        "same order"
    );
    assert_eq!(outbox[0].envelope, envelope(11));
    assert_eq!(outbox[1].envelope, envelope(2));
    assert_eq!(store.chain_head(&user("bob")), Ok(head(11)));
    store
        .mark_delivered(&MessageId::from_bytes([2; 16]), Timestamp(50))
        .expect("write");
    for gone in [2, 42] {
        store
            .reseal(&MessageId::from_bytes([gone; 16]), &envelope(12), &head(12))
            .expect("not in the outbox is fine");
    }
    assert_eq!(
        store.chain_head(&user("bob")),
        Ok(head(11)),
        "nothing changes for an id not in the outbox"
    );
}

fn verified_messages_join_the_senders_chain_and_others_count_as_faults(store: &impl MessageStore) {
    let bob = user("bob");
    assert_eq!(store.chain_state(&bob), Ok(ChainState::Empty));
    assert_eq!(store.neighbours(&bob, 1), Ok(Neighbours::default()));
    receive(store, &message(Direction::Incoming, "bob", 1));
    receive(store, &message(Direction::Incoming, "bob", 2));
    receive(store, &message(Direction::Incoming, "bob", 4));
    assert_eq!(
        store.neighbours(&bob, 3),
        Ok(Neighbours {
            before: Some(link(2)),
            same: None,
            after: Some(link(4)),
        })
    );
    assert_eq!(
        store.neighbours(&bob, 1),
        Ok(Neighbours {
            before: None,
            same: Some(link(1)),
            after: Some(link(2)),
        })
    );
    assert_eq!(
        store.chain_state(&bob),
        Ok(ChainState::Gap {
            last: 4,
            missing: vec![(3, 3)]
        })
    );
    assert_eq!(
        store.chain_state(&user("carol")),
        Ok(ChainState::Empty),
        "one chain per sender"
    );
    let forged = StoredMessage {
        verification: Verification::Failed(ChainFault::Fork { seq: 2 }),
        ..message(Direction::Incoming, "bob", 5)
    };
    let forged_link = Link {
        seq: 2,
        digest: digest(50),
        prev: digest(1),
    };
    assert_eq!(store.store_incoming(&forged, &forged_link), Ok(Stored::New));
    assert_eq!(
        store.neighbours(&bob, 2).expect("read").same,
        Some(link(2)),
        "an unverified message does not join the chain"
    );
    assert_eq!(
        store.chain_state(&bob),
        Ok(ChainState::Faulty { last: 4, faults: 1 })
    );
    let shown = store.history(&bob, NOW).expect("read");
    assert_eq!(
        shown.last().map(|m| m.verification),
        Some(forged.verification),
        "it is kept, marked"
    );
    // A new device: both chains start again; the messages and the seen ids stay.
    send(store, &message(Direction::Outgoing, "bob", 6));
    send(store, &message(Direction::Outgoing, "carol", 7));
    store.reset_chains(&bob).expect("write");
    assert_eq!(store.chain_state(&bob), Ok(ChainState::Empty));
    assert_eq!(store.neighbours(&bob, 2), Ok(Neighbours::default()));
    assert_eq!(store.chain_head(&bob), Ok(ChainHead::EMPTY));
    assert_eq!(
        store.chain_head(&user("carol")),
        Ok(head(7)),
        "other chains stay"
    );
    assert_eq!(
        receive(store, &message(Direction::Incoming, "bob", 1)),
        Stored::Duplicate
    );
    assert_eq!(store.history(&bob, NOW).expect("read").len(), 5);
}

fn conversations_list_the_most_recent_first_with_counts(store: &impl MessageStore) {
    let order = |store: &dyn Fn() -> Vec<parley_domain::ConversationSummary>| {
        store()
            .iter()
            .map(|c| (c.with.to_string(), c.messages))
            .collect::<Vec<_>>()
    };
    let list = || store.conversations(NOW).expect("read");
    assert!(list().is_empty());
    send(store, &message(Direction::Outgoing, "bob", 1));
    send(store, &message(Direction::Outgoing, "carol", 2));
    assert_eq!(
        order(&list),
        [("carol".to_owned(), 1), ("bob".to_owned(), 1)],
        "most recent first"
    );
    receive(store, &message(Direction::Incoming, "bob", 3));
    assert_eq!(
        order(&list),
        [("bob".to_owned(), 2), ("carol".to_owned(), 1)],
        "most recent first"
    );
    assert_eq!(list()[0].last.text.as_str(), "message 3");
}

fn expired_messages_are_never_returned(store: &impl MessageStore) {
    send(store, &message(Direction::Outgoing, "bob", 1));
    send(store, &expiring(Direction::Outgoing, "bob", 2, 500));
    receive(store, &expiring(Direction::Incoming, "bob", 3, 500));
    receive(store, &expiring(Direction::Incoming, "carol", 4, 800));
    let before = Timestamp(499);
    assert_eq!(
        texts(&store.history(&user("bob"), before).expect("read")),
        ["message 1", "message 2", "message 3"]
    );
    assert_eq!(
        outbox_texts(&store.outbox(before).expect("read")),
        ["message 1", "message 2"]
    );
    let at = Timestamp(500);
    assert_eq!(
        texts(&store.history(&user("bob"), at).expect("read")),
        ["message 1"],
        "expired at its expiry time"
    );
    assert_eq!(
        outbox_texts(&store.outbox(at).expect("read")),
        ["message 1"]
    );
    let listed = store.conversations(at).expect("read");
    let shape: Vec<_> = listed
        .iter()
        .map(|c| {
            (
                c.with.to_string(),
                c.messages,
                c.last.text.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("carol".to_owned(), 1, "message 4".to_owned()),
            ("bob".to_owned(), 1, "message 1".to_owned()),
        ],
        "counts and the newest message are the live ones"
    );
    let later = Timestamp(800);
    let listed = store.conversations(later).expect("read");
    assert_eq!(
        listed
            .iter()
            .map(|c| c.with.to_string())
            .collect::<Vec<_>>(),
        ["bob"],
        "a conversation with no live message is not listed"
    );
    assert!(
        store
            .history(&user("carol"), later)
            .expect("read")
            .is_empty()
    );
}

fn purged_messages_are_gone_but_their_replays_are_still_recognised(store: &impl MessageStore) {
    send(store, &message(Direction::Outgoing, "bob", 1));
    send(store, &expiring(Direction::Outgoing, "bob", 2, 500));
    let replayed = expiring(Direction::Incoming, "bob", 3, 500);
    receive(store, &replayed);
    receive(store, &expiring(Direction::Incoming, "carol", 4, 800));
    assert_eq!(
        store.purge_expired(Timestamp(499)),
        Ok(0),
        "nothing expired yet"
    );
    assert_eq!(store.purge_expired(Timestamp(500)), Ok(2));
    assert_eq!(store.purge_expired(Timestamp(500)), Ok(0), "gone already");
    // Even read at a time before their expiry, purged messages are gone.
    let early = Timestamp(0);
    assert_eq!(
        texts(&store.history(&user("bob"), early).expect("read")),
        ["message 1"]
    );
    assert_eq!(
        outbox_texts(&store.outbox(early).expect("read")),
        ["message 1"]
    );
    assert_eq!(
        store.history(&user("carol"), early).expect("read").len(),
        1,
        "not expired yet, kept"
    );
    assert_eq!(
        store.store_incoming(&replayed, &link(3)),
        Ok(Stored::Duplicate),
        "a replay of a purged message is still recognised"
    );
    assert_eq!(
        store.history(&user("bob"), early).expect("read").len(),
        1,
        "and not stored again"
    );
    assert_eq!(
        store.neighbours(&user("bob"), 3).expect("read").same,
        Some(link(3)),
        "the chain keeps its place"
    );
    store
        .mark_delivered(&MessageId::from_bytes([2; 16]), Timestamp(600))
        .expect("a purged id is unknown, and fine");
}

fn contacts_keep_pinned_and_pending_keys(store: &impl MessageStore) {
    let pinned = PeerKeys {
        ed25519: [1; 32],
        x25519: Some([2; 32]),
    };
    assert_eq!(store.contact(&user("bob")), Ok(None));
    let bob = Contact::first(user("bob"), pinned, Timestamp(5));
    store.save_contact(&bob).expect("write");
    assert_eq!(store.contact(&user("bob")), Ok(Some(bob.clone())));
    let held = Contact {
        pending: Some(PeerKeys {
            ed25519: [3; 32],
            x25519: None,
        }),
        ..bob
    };
    store.save_contact(&held).expect("write");
    assert_eq!(store.contact(&user("bob")), Ok(Some(held)));
    assert_eq!(store.contact(&user("bobby")), Ok(None));
}

fn unread_counts_incoming_messages_since_the_conversation_was_marked_read(
    store: &impl MessageStore,
) {
    let unread = |at: Timestamp| {
        store
            .conversations(at)
            .expect("read")
            .iter()
            .map(|c| (c.with.to_string(), c.unread))
            .collect::<Vec<_>>()
    };
    let counts = |list: &[(&str, u64)]| {
        list.iter()
            .map(|(with, n)| ((*with).to_owned(), *n))
            .collect::<Vec<_>>()
    };
    store
        .mark_read(&user("dave"))
        .expect("marking an unknown conversation is fine");
    send(store, &message(Direction::Outgoing, "bob", 1));
    receive(store, &message(Direction::Incoming, "bob", 2));
    receive(store, &message(Direction::Incoming, "bob", 3));
    send(store, &message(Direction::Outgoing, "carol", 4));
    assert_eq!(
        unread(NOW),
        counts(&[("carol", 0), ("bob", 2)]),
        "never marked: every incoming message, and none of ours"
    );
    store.mark_read(&user("bob")).expect("write");
    assert_eq!(
        unread(NOW),
        counts(&[("carol", 0), ("bob", 0)]),
        "marked read"
    );
    assert_eq!(
        store.conversations(NOW).expect("read")[1].messages,
        3,
        "still all there"
    );
    receive(store, &message(Direction::Incoming, "bob", 5));
    send(store, &message(Direction::Outgoing, "bob", 6));
    receive(store, &message(Direction::Incoming, "carol", 7));
    assert_eq!(
        unread(NOW),
        counts(&[("carol", 1), ("bob", 1)]),
        "what arrives after the mark counts; our reply does not mark it read"
    );
    receive(store, &expiring(Direction::Incoming, "bob", 8, 500));
    assert_eq!(unread(Timestamp(499)), counts(&[("bob", 2), ("carol", 1)]));
    assert_eq!(
        unread(Timestamp(500)),
        counts(&[("carol", 1), ("bob", 1)]),
        "an expired message is not unread"
    );
    assert_eq!(store.purge_expired(Timestamp(500)), Ok(1));
    assert_eq!(
        unread(Timestamp(0)),
        counts(&[("carol", 1), ("bob", 1)]),
        "a purge leaves the counts"
    );
    store.mark_read(&user("bob")).expect("write");
    store.mark_read(&user("bob")).expect("again is fine");
    assert_eq!(
        unread(NOW),
        counts(&[("carol", 1), ("bob", 0)]),
        "one conversation's mark leaves the others"
    );
    receive(store, &message(Direction::Incoming, "bob", 9));
    assert_eq!(
        unread(NOW),
        counts(&[("bob", 1), ("carol", 1)]),
        "after a purge, new messages still count"
    );
    store.mark_read(&user("dave")).expect("still fine");
    assert!(
        !store
            .conversations(NOW)
            .expect("read")
            .iter()
            .any(|c| c.with == user("dave")),
        "marking makes no conversation"
    );
}
