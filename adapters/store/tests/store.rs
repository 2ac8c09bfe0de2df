//! The sled store against the port contract, on real databases in temporary folders.
//! Closing a store is dropping it; reopening opens the same folder again.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use parley_domain::{
    CaFingerprint, Contact, Delivery, DeviceIdentity, Direction, MessageId, MessageText, PeerKeys,
    Secret32, StoredMessage, Timestamp, Username,
};
use parley_store::{Error, Store};
use parley_usecases::ports::{IdentityStore, MessageStore, StoreError, Stored};
use tempfile::TempDir;

const ME: &str = "alice";

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid test username")
}

fn id(n: u8) -> MessageId {
    MessageId::from_bytes([n; 16])
}

fn incoming(from: &str, n: u8, at: i64) -> StoredMessage {
    StoredMessage {
        id: id(n),
        from: user(from),
        to: user(ME),
        text: MessageText::parse(format!("message {n} from {from}")).expect("valid text"),
        sent_at: Timestamp(at),
        direction: Direction::Incoming,
        delivery: Delivery::Received(Timestamp(at + 1)),
        verified: true,
    }
}

fn outgoing(to: &str, n: u8, at: i64) -> StoredMessage {
    StoredMessage {
        id: id(n),
        from: user(ME),
        to: user(to),
        text: MessageText::parse(format!("message {n} to {to}")).expect("valid text"),
        sent_at: Timestamp(at),
        direction: Direction::Outgoing,
        delivery: Delivery::Pending,
        verified: true,
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("the store opens")
}

fn ids(messages: &[StoredMessage]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

#[test]
fn given_messages_in_two_conversations_when_reading_history_then_each_is_oldest_first_and_apart() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    // "bob" is a prefix of "bobby": the 0x00 separator must keep them apart.
    store
        .append_outgoing(&outgoing("bob", 1, 10))
        .expect("append");
    store
        .store_incoming(&incoming("bobby", 2, 5))
        .expect("store");
    store.store_incoming(&incoming("bob", 3, 1)).expect("store");
    store
        .append_outgoing(&outgoing("bob", 4, 30))
        .expect("append");

    let bob = store.history(&user("bob")).expect("history");
    assert_eq!(
        ids(&bob),
        vec![id(1), id(3), id(4)],
        "local order, not sent_at order"
    );
    assert_eq!(
        bob[0],
        outgoing("bob", 1, 10),
        "a message reads back as it was written"
    );
    assert_eq!(bob[1], incoming("bob", 3, 1));
    assert_eq!(
        ids(&store.history(&user("bobby")).expect("history")),
        vec![id(2)]
    );
    assert!(store.history(&user("carol")).expect("history").is_empty());
}

#[test]
fn given_a_stored_incoming_message_when_it_arrives_again_then_it_is_a_duplicate_kept_once() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(
        store.store_incoming(&incoming("bob", 1, 1)),
        Ok(Stored::New)
    );
    assert_eq!(
        store.store_incoming(&incoming("bob", 1, 1)),
        Ok(Stored::Duplicate)
    );
    // The same id from another sender is another message.
    assert_eq!(
        store.store_incoming(&incoming("carol", 1, 1)),
        Ok(Stored::New)
    );
    assert_eq!(store.history(&user("bob")).expect("history").len(), 1);
}

#[test]
fn given_a_stored_incoming_message_when_the_store_is_reopened_then_it_is_still_a_duplicate() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(
            store.store_incoming(&incoming("bob", 1, 1)),
            Ok(Stored::New)
        );
    }
    let store = open(dir.path());
    assert_eq!(
        store.store_incoming(&incoming("bob", 1, 1)),
        Ok(Stored::Duplicate)
    );
    assert_eq!(
        store.store_incoming(&incoming("bob", 2, 2)),
        Ok(Stored::New)
    );
    assert_eq!(
        ids(&store.history(&user("bob")).expect("history")),
        vec![id(1), id(2)]
    );
}

#[test]
fn given_one_message_when_8_threads_store_it_at_once_then_exactly_one_is_new() {
    let dir = TempDir::new().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                store.store_incoming(&incoming("bob", 7, 1))
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread finishes"))
        .collect();
    let new = results.iter().filter(|r| **r == Ok(Stored::New)).count();
    let duplicate = results
        .iter()
        .filter(|r| **r == Ok(Stored::Duplicate))
        .count();
    assert_eq!((new, duplicate), (1, 7), "{results:?}");
    assert_eq!(store.history(&user("bob")).expect("history").len(), 1);
}

#[test]
fn given_pending_messages_when_reading_the_outbox_then_only_outgoing_ones_oldest_first() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store
        .append_outgoing(&outgoing("carol", 1, 50))
        .expect("append");
    store.store_incoming(&incoming("bob", 2, 1)).expect("store");
    store
        .append_outgoing(&outgoing("bob", 3, 10))
        .expect("append");
    store
        .append_outgoing(&outgoing("carol", 4, 5))
        .expect("append");
    assert_eq!(
        ids(&store.outbox().expect("outbox")),
        vec![id(1), id(3), id(4)]
    );
}

#[test]
fn given_an_outgoing_message_when_appended_twice_then_it_is_kept_and_queued_once() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store
        .append_outgoing(&outgoing("bob", 1, 1))
        .expect("append");
    store
        .append_outgoing(&outgoing("bob", 1, 1))
        .expect("append again");
    assert_eq!(ids(&store.outbox().expect("outbox")), vec![id(1)]);
    assert_eq!(store.history(&user("bob")).expect("history").len(), 1);
}

#[test]
fn given_a_pending_message_when_marked_delivered_then_it_leaves_the_outbox_even_after_reopen() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .append_outgoing(&outgoing("bob", 1, 1))
            .expect("append");
        store
            .append_outgoing(&outgoing("bob", 2, 2))
            .expect("append");
        store.mark_delivered(&id(1), Timestamp(99)).expect("mark");
        assert_eq!(ids(&store.outbox().expect("outbox")), vec![id(2)]);
    }
    let store = open(dir.path());
    assert_eq!(ids(&store.outbox().expect("outbox")), vec![id(2)]);
    let history = store.history(&user("bob")).expect("history");
    assert_eq!(history[0].delivery, Delivery::Delivered(Timestamp(99)));
    assert_eq!(history[1].delivery, Delivery::Pending);
}

#[test]
fn given_a_delivered_or_unknown_id_when_marked_delivered_then_it_is_ok_and_nothing_changes() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store
        .append_outgoing(&outgoing("bob", 1, 1))
        .expect("append");
    store.store_incoming(&incoming("bob", 2, 2)).expect("store");
    store
        .mark_delivered(&id(1), Timestamp(10))
        .expect("first receipt");
    store
        .mark_delivered(&id(1), Timestamp(20))
        .expect("second receipt");
    store
        .mark_delivered(&id(9), Timestamp(30))
        .expect("unknown id");
    store
        .mark_delivered(&id(2), Timestamp(40))
        .expect("an incoming id");

    let history = store.history(&user("bob")).expect("history");
    assert_eq!(
        history[0].delivery,
        Delivery::Delivered(Timestamp(10)),
        "first receipt kept"
    );
    assert_eq!(
        history[1].delivery,
        Delivery::Received(Timestamp(3)),
        "incoming untouched"
    );
    assert!(store.outbox().expect("outbox").is_empty());
}

#[test]
fn given_three_conversations_when_listing_then_most_recent_first_with_counts() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store.store_incoming(&incoming("bob", 1, 1)).expect("store");
    store
        .append_outgoing(&outgoing("carol", 2, 2))
        .expect("append");
    store
        .append_outgoing(&outgoing("bob", 3, 3))
        .expect("append");
    store
        .store_incoming(&incoming("dave", 4, 4))
        .expect("store");
    store
        .store_incoming(&incoming("carol", 5, 5))
        .expect("store");
    store
        .store_incoming(&incoming("carol", 6, 6))
        .expect("store");

    let list = store.conversations().expect("conversations");
    let shape: Vec<_> = list
        .iter()
        .map(|c| (c.with.as_str(), c.messages, c.last.id))
        .collect();
    assert_eq!(
        shape,
        vec![("carol", 3, id(6)), ("dave", 1, id(4)), ("bob", 2, id(3))]
    );
    assert_eq!(list[2].last, outgoing("bob", 3, 3));
}

#[test]
fn given_an_empty_store_when_listing_then_there_are_no_conversations_and_no_contacts() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.conversations(), Ok(vec![]));
    assert_eq!(store.outbox(), Ok(vec![]));
    assert_eq!(store.is_contact(&user("bob")), Ok(false));
}

#[test]
fn given_messages_with_some_users_when_asking_is_contact_then_only_they_are_contacts() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    store
        .store_incoming(&incoming("bobby", 1, 1))
        .expect("store");
    store
        .append_outgoing(&outgoing("carol", 2, 2))
        .expect("append");
    assert_eq!(store.is_contact(&user("bobby")), Ok(true));
    assert_eq!(store.is_contact(&user("carol")), Ok(true));
    assert_eq!(
        store.is_contact(&user("bob")),
        Ok(false),
        "a prefix is not a contact"
    );
    assert_eq!(store.is_contact(&user(ME)), Ok(false));
}

fn identity(name: &str) -> DeviceIdentity {
    DeviceIdentity {
        user: user(name),
        ed25519: Secret32::new([0x11; 32]),
        x25519: Secret32::new([0xee; 32]),
        certificate_der: vec![0x30, 0x82, 0x00, 0xff],
        ca_der: vec![0x30, 0x01, 0x02],
        ca_fingerprint: CaFingerprint::from_digest([0xab; 32]),
        server: "https://127.0.0.1:8443".into(),
        rendezvous_addrs: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW".into()],
    }
}

#[test]
fn given_a_saved_identity_when_read_back_and_after_reopen_then_it_is_the_same() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(store.identity(), Ok(None));
        store.save_identity(&identity("alice")).expect("save");
        assert_eq!(store.identity(), Ok(Some(identity("alice"))));
        store.save_identity(&identity("alice2")).expect("replace");
    }
    let store = open(dir.path());
    assert_eq!(store.identity(), Ok(Some(identity("alice2"))));
}

#[test]
fn given_a_pinned_contact_when_keys_change_and_the_store_reopens_then_pinned_and_pending_survive() {
    let dir = TempDir::new().expect("tempdir");
    let pinned = PeerKeys {
        ed25519: [1; 32],
        x25519: Some([2; 32]),
    };
    let seen = PeerKeys {
        ed25519: [3; 32],
        x25519: None,
    };
    {
        let store = open(dir.path());
        assert_eq!(store.contact(&user("bob")), Ok(None));
        let bob = Contact::first(user("bob"), pinned, Timestamp(5));
        store.save_contact(&bob).expect("pin");
        store
            .save_contact(&Contact {
                pending: Some(seen),
                ..bob
            })
            .expect("hold");
    }
    let store = open(dir.path());
    let bob = store.contact(&user("bob")).expect("read").expect("kept");
    assert_eq!(
        (bob.keys, bob.pending, bob.pinned_at),
        (pinned, Some(seen), Timestamp(5))
    );
    assert_eq!(
        store.contact(&user("bobby")),
        Ok(None),
        "names are exact keys"
    );
}

#[test]
fn given_an_open_store_when_the_same_folder_is_opened_again_then_it_is_in_use() {
    let dir = TempDir::new().expect("tempdir");
    let _first = open(dir.path());
    let second = Store::open(dir.path());
    assert!(matches!(second, Err(Error::InUse { .. })), "{second:?}");
    let sentence = second.map(drop).expect_err("refused").to_string();
    assert_eq!(
        sentence,
        format!(
            "the store at {} is in use by another Parley process (is a daemon running?)",
            dir.path().display()
        )
    );
    let port_error = StoreError::from(Store::open(dir.path()).map(drop).expect_err("refused"));
    assert!(
        port_error.to_string().contains("is a daemon running?"),
        "{port_error}"
    );
}

/// Set for the child process of the test below: the folder it holds open.
const HOLD_ENV: &str = "PARLEY_STORE_TEST_HOLD";
const HELD: &str = "PARLEY-STORE-HELD";

/// Not a test of its own: the child process of the next test. Without the variable it does
/// nothing; with it, it opens the store, says so, and holds it until its stdin closes.
#[test]
fn child_holds_the_store_named_in_the_environment() {
    let Some(folder) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let _store = open(Path::new(&folder));
    println!("{HELD}");
    std::io::stdout().flush().expect("stdout");
    let _ = std::io::stdin().read_line(&mut String::new());
}

#[test]
fn given_another_process_holds_the_store_when_opening_it_then_it_is_in_use_until_it_exits() {
    let dir = TempDir::new().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_holds_the_store_named_in_the_environment",
            "--nocapture",
        ])
        .env(HOLD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready, held) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(HELD) {
                let _ = ready.send(());
            }
        }
    });
    held.recv_timeout(Duration::from_secs(30))
        .expect("the child opened the store within 30 s");

    let refused = Store::open(dir.path());
    assert!(matches!(refused, Err(Error::InUse { .. })), "{refused:?}");

    drop(child.stdin.take()); // lets the child finish
    assert!(child.wait().expect("child exits").success());
    Store::open(dir.path()).expect("free again once the holder exited");
}

#[test]
fn given_garbage_in_the_messages_tree_when_reading_then_the_store_is_unavailable_not_a_panic() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .append_outgoing(&outgoing("bob", 1, 1))
            .expect("append");
    }
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let messages = raw.open_tree("messages").expect("tree");
        let key = messages.first().expect("read").expect("the message").0;
        messages
            .insert(key, &[0xff, 0x00, 0x13][..])
            .expect("overwrite");
        raw.flush().expect("flush");
    }
    let store = open(dir.path());
    for (what, result) in [
        ("history", store.history(&user("bob")).map(drop)),
        ("outbox", store.outbox().map(drop)),
        ("conversations", store.conversations().map(drop)),
        ("mark_delivered", store.mark_delivered(&id(1), Timestamp(5))),
    ] {
        let Err(StoreError::Unavailable(why)) = result else {
            panic!("{what}: a corrupt record must make the store unavailable");
        };
        assert!(why.contains("corrupt record"), "{what}: {why}");
    }
    assert_eq!(
        store.is_contact(&user("bob")),
        Ok(true),
        "keys alone are still readable"
    );
}

#[test]
fn given_records_that_break_domain_rules_when_reading_then_they_are_corrupt() {
    let dir = TempDir::new().expect("tempdir");
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let messages = raw.open_tree("messages").expect("tree");
        let empty_text = br#"{"id":"01010101010101010101010101010101","from":"bob","to":"alice","text":"","sent_at":1,"direction":"incoming","delivery":{"state":"received","at":2},"verified":true}"#;
        messages
            .insert(b"bob\0\0\0\0\0\0\0\0\x01", &empty_text[..])
            .expect("insert");
        messages
            .insert(b"no-separator", &b"{}"[..])
            .expect("insert");
        raw.open_tree("identity")
            .expect("tree")
            .insert(b"device", &br#"{"user":"Alice"}"#[..])
            .expect("insert");
        raw.flush().expect("flush");
    }
    let store = open(dir.path());
    let corrupt = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Unavailable(why)) if why.contains("corrupt record"));
    assert!(corrupt(store.history(&user("bob")).map(drop)), "empty text");
    assert!(
        corrupt(store.conversations().map(drop)),
        "a key without separator"
    );
    assert!(
        corrupt(store.identity().map(drop)),
        "an identity of the wrong shape"
    );
}

#[cfg(unix)]
#[test]
fn given_a_new_folder_when_the_store_opens_then_only_the_owner_may_enter_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("tempdir");
    let folder = dir.path().join("home").join("store");
    drop(open(&folder));
    let mode = std::fs::metadata(&folder)
        .expect("folder exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

#[test]
fn the_sled_store_keeps_the_store_contract() {
    let dirs = std::cell::RefCell::new(Vec::new());
    parley_usecases::contract::message_store(|| {
        let dir = TempDir::new().expect("tempdir");
        let store = open(dir.path());
        dirs.borrow_mut().push(dir);
        store
    });
}
