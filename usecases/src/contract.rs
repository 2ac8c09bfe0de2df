//! The contract every [`MessageStore`] must keep, as one suite run against each implementation
//! (the in-memory fake here, the sled store in `parley-store`), so the fake the use-case tests
//! rely on cannot drift from the real thing.

use parley_domain::{
    Contact, Delivery, Direction, MessageId, MessageText, PeerKeys, StoredMessage, Timestamp,
    Username,
};

use crate::ports::{MessageStore, Stored};

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
        verified: true,
    }
}

fn texts(messages: &[StoredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.text.as_str().to_owned())
        .collect()
}

/// Runs every rule against stores made fresh by `fresh` (the store of user `alice`).
///
/// # Panics
/// When `S` breaks a rule; the message names the rule.
pub fn message_store<S: MessageStore>(fresh: impl Fn() -> S) {
    conversations_keep_arrival_order_and_stay_apart(&fresh());
    an_incoming_message_is_stored_once_per_sender_and_id(&fresh());
    the_outbox_holds_pending_messages_oldest_first_until_delivered(&fresh());
    conversations_list_the_most_recent_first_with_counts(&fresh());
    contacts_keep_pinned_and_pending_keys(&fresh());
}

fn conversations_keep_arrival_order_and_stay_apart(store: &impl MessageStore) {
    store
        .append_outgoing(&message(Direction::Outgoing, "bob", 1))
        .expect("write");
    store
        .store_incoming(&message(Direction::Incoming, "bob", 2))
        .expect("write");
    store
        .append_outgoing(&message(Direction::Outgoing, "bobby", 3))
        .expect("write");
    store
        .append_outgoing(&message(Direction::Outgoing, "bob", 4))
        .expect("write");
    let bob = store.history(&user("bob")).expect("read");
    assert_eq!(
        texts(&bob),
        ["message 1", "message 2", "message 4"],
        "history, oldest first"
    );
    assert_eq!(
        texts(&store.history(&user("bobby")).expect("read")),
        ["message 3"]
    );
    assert!(
        store.is_contact(&user("bob")).expect("read"),
        "a conversation makes a contact"
    );
    assert!(
        !store.is_contact(&user("bobb")).expect("read"),
        "a prefix is not a contact"
    );
}

fn an_incoming_message_is_stored_once_per_sender_and_id(store: &impl MessageStore) {
    let first = message(Direction::Incoming, "bob", 7);
    assert_eq!(store.store_incoming(&first), Ok(Stored::New));
    assert_eq!(
        store.store_incoming(&first),
        Ok(Stored::Duplicate),
        "same sender and id"
    );
    let same_id_other_sender = message(Direction::Incoming, "carol", 7);
    assert_eq!(store.store_incoming(&same_id_other_sender), Ok(Stored::New));
    assert_eq!(store.history(&user("bob")).expect("read").len(), 1);
}

fn the_outbox_holds_pending_messages_oldest_first_until_delivered(store: &impl MessageStore) {
    for n in 1..=3 {
        store
            .append_outgoing(&message(Direction::Outgoing, "bob", n))
            .expect("write");
    }
    store
        .store_incoming(&message(Direction::Incoming, "bob", 9))
        .expect("write");
    assert_eq!(
        texts(&store.outbox().expect("read")),
        ["message 1", "message 2", "message 3"]
    );
    store
        .mark_delivered(&MessageId::from_bytes([2; 16]), Timestamp(50))
        .expect("write");
    store
        .mark_delivered(&MessageId::from_bytes([42; 16]), Timestamp(50))
        .expect("unknown is fine");
    assert_eq!(
        texts(&store.outbox().expect("read")),
        ["message 1", "message 3"]
    );
    let second = store.history(&user("bob")).expect("read").remove(1);
    assert_eq!(second.delivery, Delivery::Delivered(Timestamp(50)));
}

fn conversations_list_the_most_recent_first_with_counts(store: &impl MessageStore) {
    let order = |store: &dyn Fn() -> Vec<parley_domain::ConversationSummary>| {
        store()
            .iter()
            .map(|c| (c.with.to_string(), c.messages))
            .collect::<Vec<_>>()
    };
    let list = || store.conversations().expect("read");
    assert!(list().is_empty());
    store
        .append_outgoing(&message(Direction::Outgoing, "bob", 1))
        .expect("write");
    store
        .append_outgoing(&message(Direction::Outgoing, "carol", 2))
        .expect("write");
    assert_eq!(
        order(&list),
        [("carol".to_owned(), 1), ("bob".to_owned(), 1)],
        "most recent first"
    );
    store
        .store_incoming(&message(Direction::Incoming, "bob", 3))
        .expect("write");
    assert_eq!(
        order(&list),
        [("bob".to_owned(), 2), ("carol".to_owned(), 1)],
        "most recent first"
    );
    assert_eq!(list()[0].last.text.as_str(), "message 3");
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
