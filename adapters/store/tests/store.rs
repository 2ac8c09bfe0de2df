//! The sled store against the port contract, on real databases in temporary folders.
//! Closing a store is dropping it; reopening opens the same folder again. Most tests use a key
//! file (fast); the passphrase tests pay for Argon2id at every open.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use parley_domain::{
    CaFingerprint, ChainHead, ChainState, Contact, Delivery, DeviceIdentity, Digest, Direction,
    Link, MessageId, MessageText, PeerKeys, Secret32, StoredMessage, Timestamp, Username,
    Verification,
};
use parley_store::{Error, KeySource, Passphrase, Store, Unlock};
use parley_usecases::ports::{
    Chains, Contacts, Conversations, Expiry, IdentityStore, Inbox, OutboxEntry, OutboxStore,
    StoreError, Stored,
};
use tempfile::TempDir;

const ME: &str = "alice";
const NOW: Timestamp = Timestamp(1_000_000);
const SLOT: usize = 60;

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
        verification: Verification::Verified,
        ttl: None,
        expires_at: None,
        attachments: vec![],
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
        verification: Verification::Verified,
        ttl: None,
        expires_at: None,
        attachments: vec![],
    }
}

fn digest(n: u8) -> Digest {
    Digest([n; 32])
}

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
    format!("sealed envelope {n}").into_bytes()
}

fn send(store: &Store, message: &StoredMessage) {
    let n = message.id.as_bytes()[0];
    store
        .append_outgoing(message, &envelope(n), &head(n))
        .expect("append");
}

fn receive(store: &Store, message: &StoredMessage) -> Result<Stored, StoreError> {
    store.store_incoming(message, &link(message.id.as_bytes()[0]))
}

fn open(dir: &Path) -> Store {
    Store::open(dir, Unlock::KeyFile).expect("the store opens")
}

fn passphrase(words: &str) -> Unlock {
    Unlock::Passphrase(Passphrase::new(words.to_owned()))
}

fn ids(messages: &[StoredMessage]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

fn outbox_ids(entries: &[OutboxEntry]) -> Vec<MessageId> {
    entries.iter().map(|e| e.message.id).collect()
}

/// Every file under `dir` (recursively) with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` that hold `text` as UTF-8, UTF-16LE or UTF-16BE.
fn files_holding(dir: &Path, text: &str) -> Vec<PathBuf> {
    let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| {
            contains(bytes, text.as_bytes())
                || contains(bytes, &utf16le)
                || contains(bytes, &utf16be)
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn given_messages_in_two_conversations_when_reading_history_then_each_is_oldest_first_and_apart() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    // "bob" is a prefix of "bobby": the fixed-length name hash must keep them apart.
    send(&store, &outgoing("bob", 1, 10));
    receive(&store, &incoming("bobby", 2, 5)).expect("store");
    receive(&store, &incoming("bob", 3, 1)).expect("store");
    send(&store, &outgoing("bob", 4, 30));

    let bob = store.history(&user("bob"), NOW).expect("history");
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
        ids(&store.history(&user("bobby"), NOW).expect("history")),
        vec![id(2)]
    );
    assert!(
        store
            .history(&user("carol"), NOW)
            .expect("history")
            .is_empty()
    );
}

#[test]
fn given_a_stored_incoming_message_when_it_arrives_again_then_it_is_a_duplicate_kept_once() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(receive(&store, &incoming("bob", 1, 1)), Ok(Stored::New));
    assert_eq!(
        receive(&store, &incoming("bob", 1, 1)),
        Ok(Stored::Duplicate)
    );
    assert_eq!(
        store.store_incoming(&incoming("bob", 1, 1), &link(9)),
        Ok(Stored::Conflicting),
        "another digest under the same (sender, id)"
    );
    // The same id from another sender is another message.
    assert_eq!(receive(&store, &incoming("carol", 1, 1)), Ok(Stored::New));
    assert_eq!(store.history(&user("bob"), NOW).expect("history").len(), 1);
}

#[test]
fn given_a_stored_incoming_message_when_the_store_is_reopened_then_it_is_still_a_duplicate() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(receive(&store, &incoming("bob", 1, 1)), Ok(Stored::New));
    }
    let store = open(dir.path());
    assert_eq!(
        receive(&store, &incoming("bob", 1, 1)),
        Ok(Stored::Duplicate)
    );
    assert_eq!(receive(&store, &incoming("bob", 2, 2)), Ok(Stored::New));
    assert_eq!(
        ids(&store.history(&user("bob"), NOW).expect("history")),
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
                receive(&store, &incoming("bob", 7, 1))
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
    assert_eq!(store.history(&user("bob"), NOW).expect("history").len(), 1);
    drop(store);
    // The losers' message keys were zeroed, and the keys written ahead but never used are
    // zeroed at the next open: one slot in use.
    drop(open(dir.path()));
    let slots = std::fs::read(dir.path().join("message-keys")).expect("slots");
    let used = slots
        .chunks(SLOT)
        .filter(|slot| slot.iter().any(|&b| b != 0))
        .count();
    assert_eq!(used, 1);
}

#[test]
fn given_pending_messages_when_reading_the_outbox_then_only_outgoing_ones_oldest_first() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    send(&store, &outgoing("carol", 1, 50));
    receive(&store, &incoming("bob", 2, 1)).expect("store");
    send(&store, &outgoing("bob", 3, 10));
    send(&store, &outgoing("carol", 4, 5));
    let outbox = store.outbox(NOW).expect("outbox");
    assert_eq!(outbox_ids(&outbox), vec![id(1), id(3), id(4)]);
    assert_eq!(outbox[1].envelope, envelope(3), "with its envelope");
    assert_eq!(outbox[1].message, outgoing("bob", 3, 10));
}

#[test]
fn given_an_outgoing_message_when_appended_twice_then_it_is_kept_and_queued_once() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    send(&store, &outgoing("bob", 1, 1));
    store
        .append_outgoing(&outgoing("bob", 1, 1), &envelope(5), &head(5))
        .expect("append again");
    let outbox = store.outbox(NOW).expect("outbox");
    assert_eq!(outbox_ids(&outbox), vec![id(1)]);
    assert_eq!(outbox[0].envelope, envelope(1));
    assert_eq!(store.chain_head(&user("bob")), Ok(head(1)));
    assert_eq!(store.history(&user("bob"), NOW).expect("history").len(), 1);
}

#[test]
fn given_a_pending_message_when_marked_delivered_then_it_leaves_the_outbox_even_after_reopen() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        send(&store, &outgoing("bob", 1, 1));
        send(&store, &outgoing("bob", 2, 2));
        store.mark_delivered(&id(1), Timestamp(99)).expect("mark");
        assert_eq!(outbox_ids(&store.outbox(NOW).expect("outbox")), vec![id(2)]);
    }
    let store = open(dir.path());
    assert_eq!(outbox_ids(&store.outbox(NOW).expect("outbox")), vec![id(2)]);
    let history = store.history(&user("bob"), NOW).expect("history");
    assert_eq!(history[0].delivery, Delivery::Delivered(Timestamp(99)));
    assert_eq!(history[1].delivery, Delivery::Pending);
    assert_eq!(store.chain_head(&user("bob")), Ok(head(2)), "heads survive");
}

#[test]
fn given_a_delivered_or_unknown_id_when_marked_delivered_then_it_is_ok_and_nothing_changes() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    send(&store, &outgoing("bob", 1, 1));
    receive(&store, &incoming("bob", 2, 2)).expect("store");
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

    let history = store.history(&user("bob"), NOW).expect("history");
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
    assert!(store.outbox(NOW).expect("outbox").is_empty());
}

#[test]
fn given_three_conversations_when_listing_then_most_recent_first_with_counts() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    receive(&store, &incoming("bob", 1, 1)).expect("store");
    send(&store, &outgoing("carol", 2, 2));
    send(&store, &outgoing("bob", 3, 3));
    receive(&store, &incoming("dave", 4, 4)).expect("store");
    receive(&store, &incoming("carol", 5, 5)).expect("store");
    receive(&store, &incoming("carol", 6, 6)).expect("store");

    let list = store.conversations(NOW).expect("conversations");
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
    assert_eq!(store.conversations(NOW), Ok(vec![]));
    assert_eq!(store.outbox(NOW), Ok(vec![]));
    assert_eq!(store.history(&user("bob"), NOW), Ok(vec![]));
    assert_eq!(store.chain_head(&user("bob")), Ok(ChainHead::EMPTY));
    assert_eq!(store.chain_state(&user("bob")), Ok(ChainState::Empty));
    assert_eq!(store.purge_expired(NOW), Ok(0));
}

#[test]
fn given_messages_with_some_users_when_reading_histories_then_only_theirs_hold_messages() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    receive(&store, &incoming("bobby", 1, 1)).expect("store");
    send(&store, &outgoing("carol", 2, 2));
    assert_eq!(store.history(&user("bobby"), NOW).map(|h| h.len()), Ok(1));
    assert_eq!(store.history(&user("carol"), NOW).map(|h| h.len()), Ok(1));
    assert_eq!(
        store.history(&user("bob"), NOW),
        Ok(vec![]),
        "a prefix is no conversation"
    );
    assert_eq!(store.history(&user(ME), NOW), Ok(vec![]));
}

#[test]
fn given_chain_links_and_faults_when_the_store_reopens_then_the_chain_state_is_the_same() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        receive(&store, &incoming("bob", 1, 1)).expect("store");
        receive(&store, &incoming("bob", 3, 3)).expect("store");
        assert_eq!(
            store.chain_state(&user("bob")),
            Ok(ChainState::Gap {
                last: 3,
                missing: vec![(2, 2)]
            })
        );
        let broken = StoredMessage {
            verification: Verification::Failed(parley_domain::ChainFault::Broken { seq: 2 }),
            ..incoming("bob", 2, 2)
        };
        assert_eq!(receive(&store, &broken), Ok(Stored::New));
        receive(
            &store,
            &StoredMessage {
                id: id(4),
                ..broken
            },
        )
        .expect("store");
    }
    let store = open(dir.path());
    assert_eq!(
        store.chain_state(&user("bob")),
        Ok(ChainState::Faulty { last: 3, faults: 2 }),
        "two faults counted, position 2 still not taken"
    );
    let around = store.neighbours(&user("bob"), 2).expect("read");
    assert_eq!(
        (around.before, around.same, around.after),
        (Some(link(1)), None, Some(link(3)))
    );
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
    let second = Store::open(dir.path(), Unlock::KeyFile);
    assert!(matches!(second, Err(Error::InUse { .. })), "{second:?}");
    let sentence = second.map(drop).expect_err("refused").to_string();
    assert_eq!(
        sentence,
        format!(
            "the store at {} is in use by another Parley process (is a daemon running?)",
            dir.path().display()
        )
    );
    let port_error = StoreError::from(
        Store::open(dir.path(), Unlock::KeyFile)
            .map(drop)
            .expect_err("refused"),
    );
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

    let refused = Store::open(dir.path(), Unlock::KeyFile);
    assert!(matches!(refused, Err(Error::InUse { .. })), "{refused:?}");

    drop(child.stdin.take()); // lets the child finish
    assert!(child.wait().expect("child exits").success());
    Store::open(dir.path(), Unlock::KeyFile).expect("free again once the holder exited");
}

#[test]
fn given_garbage_or_a_moved_value_in_the_messages_tree_when_reading_then_the_store_is_unavailable_not_a_panic()
 {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        send(&store, &outgoing("bob", 1, 1));
        send(&store, &outgoing("bob", 2, 2));
    }
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let messages = raw.open_tree("messages").expect("tree");
        let (first, _) = messages.first().expect("read").expect("a message");
        let (_, second) = messages.last().expect("read").expect("a message");
        // The second record's value under the first's key: the associated data differs.
        messages.insert(first, second).expect("overwrite");
        raw.flush().expect("flush");
    }
    {
        let store = open(dir.path());
        let Err(StoreError::Unavailable(why)) = store.history(&user("bob"), NOW) else {
            panic!("a value moved to another key must not be read");
        };
        assert!(
            why.contains("could not be decrypted (corrupt or altered)"),
            "{why}"
        );
    }
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        let messages = raw.open_tree("messages").expect("tree");
        // The newest: the one `conversations` decrypts.
        let key = messages.last().expect("read").expect("the message").0;
        messages
            .insert(key, &[0xff, 0x00, 0x13][..])
            .expect("overwrite");
        raw.flush().expect("flush");
    }
    let store = open(dir.path());
    for (what, result) in [
        ("history", store.history(&user("bob"), NOW).map(drop)),
        ("outbox", store.outbox(NOW).map(drop)),
        ("conversations", store.conversations(NOW).map(drop)),
        ("mark_delivered", store.mark_delivered(&id(1), Timestamp(5))),
    ] {
        let Err(StoreError::Unavailable(why)) = result else {
            panic!("{what}: a corrupt record must make the store unavailable");
        };
        assert!(why.contains("corrupt"), "{what}: {why}");
    }
    assert_eq!(
        store.mark_read(&user("bob")),
        Ok(()),
        "keys alone are still readable"
    );
}

#[test]
fn given_a_flipped_byte_in_a_message_key_slot_when_reading_then_it_is_an_error_not_a_panic() {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        receive(&store, &incoming("bob", 1, 1)).expect("store");
    }
    let path = dir.path().join("message-keys");
    let mut slots = std::fs::read(&path).expect("slots");
    assert!(
        slots.len() >= SLOT && slots.len().is_multiple_of(SLOT),
        "keys are written ahead in whole slots; the message has the first"
    );
    slots[20] ^= 0x01;
    std::fs::write(&path, &slots).expect("write");
    let store = open(dir.path());
    for (what, result) in [
        ("history", store.history(&user("bob"), NOW).map(drop)),
        ("conversations", store.conversations(NOW).map(drop)),
    ] {
        let Err(StoreError::Unavailable(why)) = result else {
            panic!("{what}: an altered key must make the store unavailable");
        };
        assert!(why.contains("could not be decrypted"), "{what}: {why}");
    }
    assert_eq!(
        receive(&store, &incoming("bob", 1, 1)),
        Ok(Stored::Duplicate),
        "the rest of the store still works"
    );
}

#[test]
fn given_a_store_made_with_a_passphrase_when_reopened_with_it_then_everything_is_there() {
    let dir = TempDir::new().expect("tempdir");
    {
        assert!(!Store::exists(dir.path()));
        let store = Store::open(dir.path(), passphrase("correct horse")).expect("opens");
        assert!(Store::exists(dir.path()));
        assert_eq!(store.key_source(), KeySource::Passphrase);
        receive(&store, &incoming("bob", 1, 1)).expect("store");
        store.save_identity(&identity(ME)).expect("save");
    }
    assert!(
        !dir.path().join("store.key").exists(),
        "no key file for a passphrase store"
    );
    let store = Store::open(dir.path(), passphrase("correct horse")).expect("reopens");
    assert_eq!(
        store.history(&user("bob"), NOW).expect("history"),
        [incoming("bob", 1, 1)]
    );
    assert_eq!(store.identity(), Ok(Some(identity(ME))));
}

#[test]
fn given_a_passphrase_store_when_opened_with_a_wrong_passphrase_or_no_passphrase_then_it_is_refused_and_nothing_changes()
 {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = Store::open(dir.path(), passphrase("correct horse")).expect("opens");
        receive(&store, &incoming("bob", 1, 1)).expect("store");
    }
    let before = files(dir.path());
    let wrong = Store::open(dir.path(), passphrase("correct horse "));
    assert!(matches!(wrong, Err(Error::WrongPassphrase)), "{wrong:?}");
    assert_eq!(
        wrong.map(drop).expect_err("refused").to_string(),
        "the passphrase does not open this store; nothing was changed"
    );
    assert!(files(dir.path()) == before, "every file byte-identical");
    let none = Store::open(dir.path(), Unlock::KeyFile);
    assert!(matches!(none, Err(Error::PassphraseRequired)), "{none:?}");
    assert!(
        none.map(drop)
            .expect_err("refused")
            .to_string()
            .contains("PARLEY_PASSPHRASE")
    );
    assert!(files(dir.path()) == before, "every file byte-identical");
    assert!(
        !dir.path().join("store.key").exists(),
        "no key file was made"
    );
}

#[test]
fn given_a_key_file_store_when_opened_with_a_passphrase_or_without_its_key_then_it_is_refused_and_nothing_changes()
 {
    let dir = TempDir::new().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(store.key_source(), KeySource::KeyFile);
        receive(&store, &incoming("bob", 1, 1)).expect("store");
    }
    let before = files(dir.path());
    let with_passphrase = Store::open(dir.path(), passphrase("anything"));
    assert!(
        matches!(with_passphrase, Err(Error::KeyFileStore)),
        "{with_passphrase:?}"
    );
    assert!(
        with_passphrase
            .map(drop)
            .expect_err("refused")
            .to_string()
            .contains("unset PARLEY_PASSPHRASE")
    );
    assert!(files(dir.path()) == before, "every file byte-identical");

    let key_file = dir.path().join("store.key");
    let key = std::fs::read(&key_file).expect("key file");
    std::fs::write(&key_file, [0x5a; 32]).expect("replace the key");
    let other_key = Store::open(dir.path(), Unlock::KeyFile);
    assert!(
        matches!(other_key, Err(Error::KeyFile { .. })),
        "{other_key:?}"
    );
    std::fs::remove_file(&key_file).expect("remove the key");
    let missing = Store::open(dir.path(), Unlock::KeyFile);
    assert!(matches!(missing, Err(Error::KeyFile { .. })), "{missing:?}");
    assert!(
        missing
            .map(drop)
            .expect_err("refused")
            .to_string()
            .contains("store.key"),
        "names the file"
    );
    std::fs::write(&key_file, &key).expect("put the key back");
    assert!(files(dir.path()) == before, "every file byte-identical");
    let store = open(dir.path());
    assert_eq!(store.history(&user("bob"), NOW).expect("history").len(), 1);
}

#[cfg(unix)]
#[test]
fn given_a_new_key_file_store_then_its_key_keyring_and_message_keys_are_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    receive(&store, &incoming("bob", 1, 1)).expect("store");
    for name in ["store.key", "keyring.json", "message-keys"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("store.key"))
            .expect("key file")
            .len(),
        32
    );
    let keyring = std::fs::read_to_string(dir.path().join("keyring.json")).expect("keyring");
    assert!(keyring.contains("\"key_file\""), "{keyring}");
}

#[test]
fn given_a_plaintext_store_from_before_when_opened_then_it_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    {
        let raw = sled::open(dir.path()).expect("raw sled");
        raw.open_tree("messages")
            .expect("tree")
            .insert(b"bob\0\0\0\0\0\0\0\0\x01", &b"{}"[..])
            .expect("insert");
        raw.flush().expect("flush");
    }
    let before = files(dir.path());
    assert!(
        Store::exists(dir.path()),
        "a store, if not one this code can open"
    );
    let refused = Store::open(dir.path(), Unlock::KeyFile);
    let Err(Error::Unavailable { reason, .. }) = refused else {
        panic!("a database without a keyring must be refused: {refused:?}");
    };
    assert!(reason.contains("no keyring.json"), "{reason}");
    assert!(files(dir.path()) == before, "every file byte-identical");
}

#[test]
fn given_a_canary_text_and_a_distinctive_name_stored_then_no_file_in_the_folder_holds_them() {
    const CANARY: &str = "canary-7f3e-purple-walrus-quietly";
    const NAME: &str = "zanzibarquux";
    const SERVER: &str = "https://rendezvous.canary.example:8443";
    let dir = TempDir::new().expect("tempdir");
    let identity = DeviceIdentity {
        server: SERVER.into(),
        ..identity(ME)
    };
    let with_canary = |mut m: StoredMessage| {
        m.text = MessageText::parse(format!("{CANARY} {}", m.text.as_str())).expect("valid");
        m
    };
    {
        let store = open(dir.path());
        store.save_identity(&identity).expect("save");
        store
            .save_contact(&Contact::first(
                user(NAME),
                PeerKeys {
                    ed25519: [0x42; 32],
                    x25519: Some([0x43; 32]),
                },
                Timestamp(1),
            ))
            .expect("save");
        receive(&store, &with_canary(incoming(NAME, 1, 1))).expect("store");
        store
            .append_outgoing(
                &with_canary(outgoing(NAME, 2, 2)),
                format!("{CANARY} envelope").as_bytes(),
                &head(2),
            )
            .expect("append");
        for secret in [CANARY, NAME, SERVER] {
            assert_eq!(
                files_holding(dir.path(), secret),
                Vec::<PathBuf>::new(),
                "{secret} while open"
            );
        }
    }
    let store = open(dir.path());
    for secret in [CANARY, NAME, SERVER] {
        assert_eq!(
            files_holding(dir.path(), secret),
            Vec::<PathBuf>::new(),
            "{secret} after closing"
        );
    }
    let all = files(dir.path());
    for key in [[0x11u8; 32], [0xee; 32], [0x42; 32]] {
        assert!(
            !all.values().any(|bytes| contains(bytes, &key)),
            "no private or pinned key in the clear"
        );
    }
    // The test would pass on an empty store: make sure it is all there.
    let history = store.history(&user(NAME), NOW).expect("history");
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|m| m.text.as_str().starts_with(CANARY)));
    assert_eq!(store.identity(), Ok(Some(identity)));
    assert_eq!(
        store.outbox(NOW).expect("outbox")[0].envelope,
        format!("{CANARY} envelope").into_bytes()
    );
    assert!(
        store.contact(&user(NAME)).expect("read").is_some(),
        "the contact reads back"
    );
}

#[test]
fn given_an_expired_message_when_purged_then_its_key_slot_is_zeros_and_it_never_comes_back() {
    let dir = TempDir::new().expect("tempdir");
    let dying = StoredMessage {
        expires_at: Some(Timestamp(500)),
        ..incoming("bob", 1, 1)
    };
    {
        let store = open(dir.path());
        receive(&store, &dying).expect("store"); // slot 0
        receive(&store, &incoming("bob", 2, 2)).expect("store"); // slot 1
        let slots = std::fs::read(dir.path().join("message-keys")).expect("slots");
        assert!(slots[..SLOT].iter().any(|&b| b != 0), "slot 0 holds a key");
        assert_eq!(store.purge_expired(Timestamp(500)), Ok(1));
        let slots = std::fs::read(dir.path().join("message-keys")).expect("slots");
        assert!(slots[..SLOT].iter().all(|&b| b == 0), "slot 0 is zeros");
        assert!(
            slots[SLOT..2 * SLOT].iter().any(|&b| b != 0),
            "slot 1 is kept"
        );
        assert_eq!(
            ids(&store.history(&user("bob"), Timestamp(0)).expect("history")),
            vec![id(2)]
        );
    }
    let store = open(dir.path());
    assert_eq!(
        ids(&store.history(&user("bob"), Timestamp(0)).expect("history")),
        vec![id(2)],
        "reopening does not bring it back"
    );
    assert_eq!(
        receive(&store, &dying),
        Ok(Stored::Duplicate),
        "replay recognised"
    );
    let before = std::fs::read(dir.path().join("message-keys")).expect("slots");
    assert!(
        before
            .chunks(SLOT)
            .skip(2)
            .all(|s| s.iter().all(|&b| b == 0)),
        "keys written ahead and never used were zeroed at the open"
    );
    receive(&store, &incoming("bob", 3, 3)).expect("store");
    let slots = std::fs::read(dir.path().join("message-keys")).expect("slots");
    assert!(
        slots.len() <= before.len() + SLOT,
        "free slots are reused first"
    );
    assert!(slots[..SLOT].iter().any(|&b| b != 0), "slot 0 reused");
}

#[test]
fn given_a_crash_inside_a_write_or_a_deletion_when_reopened_then_the_leftovers_are_cleaned_up() {
    let dir = TempDir::new().expect("tempdir");
    let deleting = StoredMessage {
        expires_at: Some(Timestamp(500)),
        ..outgoing("bob", 1, 1)
    };
    {
        let store = open(dir.path());
        send(&store, &deleting); // slot 0
        send(&store, &outgoing("bob", 2, 2)); // slot 1
    }
    let path = dir.path().join("message-keys");
    let mut slots = std::fs::read(&path).expect("slots");
    // A deletion that zeroed the key of message 1 and stopped before its transaction.
    slots[..SLOT].fill(0);
    // A write that stored a key in a new slot and stopped before its transaction.
    slots.extend_from_slice(&[0x77; SLOT]);
    std::fs::write(&path, &slots).expect("write");
    {
        let store = open(dir.path());
        assert_eq!(
            ids(&store.history(&user("bob"), Timestamp(0)).expect("history")),
            vec![id(2)]
        );
        assert_eq!(
            outbox_ids(&store.outbox(Timestamp(0)).expect("outbox")),
            vec![id(2)]
        );
        assert_eq!(
            store.purge_expired(Timestamp(500)),
            Ok(0),
            "its expiry entry went too"
        );
    }
    let slots = std::fs::read(&path).expect("slots");
    assert!(
        slots[2 * SLOT..].iter().all(|&b| b == 0),
        "the key no record names is zeroed"
    );
    let raw = sled::open(dir.path()).expect("raw sled");
    for (tree, left) in [("messages", 1), ("outbox", 1), ("expiry", 0)] {
        assert_eq!(raw.open_tree(tree).expect("tree").len(), left, "{tree}");
    }
}

#[test]
fn given_an_expired_message_with_attachments_when_purged_then_its_files_go_and_others_stay() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(dir.path());
    let dying = StoredMessage {
        expires_at: Some(Timestamp(500)),
        ..incoming("bob", 1, 1)
    };
    let living = incoming("bob", 2, 2);
    receive(&store, &dying).expect("store");
    receive(&store, &living).expect("store");
    let folder = dir.path().join("attachments");
    std::fs::create_dir_all(&folder).expect("folder");
    let dying_id = store.record_id(&dying.from, &dying.id);
    let living_id = store.record_id(&living.from, &living.id);
    assert_eq!(dying_id.len(), 64);
    assert!(!dying_id.contains("626f62"), "no hex of the name");
    for name in [
        format!("{dying_id}-0"),
        format!("{dying_id}-1"),
        format!("{living_id}-0"),
        "unrelated".to_owned(),
    ] {
        std::fs::write(folder.join(name), b"encrypted bytes").expect("write");
    }
    assert_eq!(store.purge_expired(Timestamp(500)), Ok(1));
    let mut left: Vec<String> = std::fs::read_dir(&folder)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![format!("{living_id}-0"), "unrelated".to_owned()];
    expected.sort();
    assert_eq!(left, expected);
}

#[cfg(unix)]
#[test]
fn given_a_new_folder_when_the_store_opens_then_only_the_owner_may_enter_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("tempdir");
    let folder = dir.path().join("home").join("store");
    assert!(!Store::exists(&folder), "no folder, no store");
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
