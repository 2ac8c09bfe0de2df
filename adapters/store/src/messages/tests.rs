use std::collections::BTreeSet;

use parley_domain::{
    Delivery, Direction, Link, MessageId, MessageText, StoredMessage, Timestamp, Username,
    Verification,
};
use parley_usecases::ports::{Conversations, Durability, Inbox, Stored};

use super::*;
use crate::records::split_message_key;
use crate::{Store, Unlock};

fn message(expires_at: Option<Timestamp>) -> StoredMessage {
    let user = |name| Username::parse(name).expect("valid literal");
    StoredMessage {
        id: MessageId::from_bytes([1; 16]),
        from: user("bob"),
        to: user("alice"),
        text: MessageText::parse("hello").expect("valid literal"),
        sent_at: Timestamp(1),
        direction: Direction::Incoming,
        delivery: Delivery::Received(Timestamp(2)),
        verification: Verification::Verified,
        ttl: None,
        expires_at,
        attachments: vec![],
    }
}

#[test]
fn given_a_stored_message_then_only_its_own_key_opens_it_and_a_zeroed_slot_deletes_it() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens");
    let link = Link {
        seq: 1,
        digest: Digest([1; 32]),
        prev: Digest::GENESIS,
    };
    assert_eq!(store.store_incoming(&message(None), &link), Ok(Stored::New));
    let (mkey, value) = store.messages.first().expect("read").expect("one record");
    let slot = slot_of(&value).expect("a slot");
    let km = store.slots.key(slot).expect("read").expect("a key");
    assert_eq!(
        Store::open_with(&mkey, slot, &km, &value),
        Ok(message(None))
    );
    assert!(
        store
            .keys
            .open_value("messages", &mkey, &value[8..])
            .is_err(),
        "not under the store's values key"
    );
    let other = Key32::random().expect("random");
    assert!(Store::open_with(&mkey, slot, &other, &value).is_err());
    assert!(
        Store::open_with(&mkey, slot + 1, &km, &value).is_err(),
        "bound to its slot"
    );
    store.slots.erase(&BTreeSet::from([slot])).expect("erase");
    assert_eq!(store.open_message(&mkey, &value), Ok(None), "deleted");
    assert_eq!(store.history(&message(None).from, Timestamp(0)), Ok(vec![]));
}

#[test]
fn given_a_read_mark_then_it_is_sealed_under_the_name_hash_and_outlives_a_reopen() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let bob = message(None).from;
    let link = Link {
        seq: 1,
        digest: Digest([1; 32]),
        prev: Digest::GENESIS,
    };
    let unread = |store: &Store| {
        store
            .conversations(Timestamp(0))
            .expect("read")
            .iter()
            .map(|c| c.unread)
            .collect::<Vec<_>>()
    };
    {
        let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens");
        store.store_incoming(&message(None), &link).expect("write");
        store.mark_read(&bob).expect("write");
        assert_eq!(unread(&store), [0]);
        let (rkey, value) = store.read.first().expect("read").expect("one mark");
        assert_eq!(rkey.as_ref(), store.name(&bob), "keyed by the name hash");
        let (_, seq) = split_message_key(&store.messages.first().expect("read").expect("one").0)
            .expect("a message key");
        assert_ne!(value.as_ref(), seq.to_be_bytes(), "sealed");
        assert_eq!(
            store.keys.open_value("read", &rkey, &value),
            Ok(seq.to_be_bytes().to_vec())
        );
        store.sync().expect("flush");
    }
    {
        let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens again");
        assert_eq!(unread(&store), [0], "the mark outlives a reopen");
        // A store from before read marks: no `read` tree at all.
        store.db.drop_tree("read").expect("drop");
        store.sync().expect("flush");
    }
    let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens without the tree");
    assert_eq!(unread(&store), [1], "never marked: unread");
    store.mark_read(&bob).expect("write");
    assert_eq!(unread(&store), [0]);
}
