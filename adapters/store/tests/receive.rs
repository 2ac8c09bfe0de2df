//! The receiving use case over real parts: real envelopes (`parley-envelope`) into a real
//! encrypted sled store, closed and reopened between steps. Only the network is absent.

use std::path::Path;
use std::sync::Arc;

use parley_domain::{
    Body, ChainState, Digest, Header, MessageId, MessageText, PeerKeys, Secret32, Timestamp, Ttl,
    Username,
};
use parley_envelope::Sealer;
use parley_store::{Store, Unlock};
use parley_usecases::commands::{Messaging, ReceiveError, ReceiveMessage, Received};
use parley_usecases::fakes::{
    FixedClock, InMemoryDirectory, InMemoryMailbox, InMemoryTransport, RecordingEvents,
};
use parley_usecases::ports::{Chains, Clock, Conversations, Expiry};
use parley_usecases::queries;
use tempfile::TempDir;

type Bob = Messaging<
    Arc<Store>,
    InMemoryDirectory,
    InMemoryTransport,
    Arc<FixedClock>,
    RecordingEvents,
    Sealer,
    InMemoryMailbox,
>;

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid")
}

fn alice() -> Sealer {
    Sealer::new(&Secret32::new([1; 32]), &Secret32::new([2; 32]))
}

fn bob_sealer() -> Sealer {
    Sealer::new(&Secret32::new([3; 32]), &Secret32::new([4; 32]))
}

fn alice_keys() -> PeerKeys {
    let a = alice();
    PeerKeys {
        ed25519: a.ed25519_public(),
        x25519: Some(a.x25519_public()),
    }
}

/// Bob's device on the store in `dir`, at time `now`.
fn bob(dir: &Path, clock: &Arc<FixedClock>) -> (Bob, Arc<Store>) {
    let store = Arc::new(Store::open(dir, Unlock::KeyFile).expect("opens"));
    let messaging = Messaging::new(
        user("bob"),
        store.clone(),
        InMemoryDirectory::default(),
        InMemoryTransport::default(),
        clock.clone(),
        RecordingEvents::default(),
        bob_sealer(),
        InMemoryMailbox {
            me: user("bob"),
            hub: Arc::default(),
        },
    );
    (messaging, store)
}

/// Alice's envelope `n` at position `seq` after `prev`.
fn envelope(n: u8, seq: u64, prev: Digest, ttl: Option<Ttl>) -> (Vec<u8>, Digest) {
    let header = Header {
        id: MessageId::from_bytes([n; 16]),
        from: user("alice"),
        to: user("bob"),
        sent_at: Timestamp(1_000),
        ttl,
        seq,
        prev,
        attachments: vec![],
    };
    let body = Body {
        text: MessageText::parse(format!("message {n}")).expect("text"),
        attachment_keys: vec![],
    };
    let sealed = alice()
        .seal(&header, &body, &bob_sealer().x25519_public())
        .expect("sealed");
    (sealed.bytes, sealed.digest)
}

fn from_alice(bytes: &[u8]) -> ReceiveMessage {
    ReceiveMessage {
        from: user("alice"),
        keys: alice_keys(),
        envelope: bytes.to_vec(),
    }
}

fn texts(store: &Store, now: Timestamp) -> Vec<String> {
    store
        .history(&user("alice"), now)
        .expect("history")
        .iter()
        .map(|m| m.text.as_str().to_owned())
        .collect()
}

#[test]
fn replays_gaps_forks_and_altered_bytes_are_told_apart_across_restarts() {
    let dir = TempDir::new().expect("tmp");
    let clock = Arc::new(FixedClock::at(2_000));
    let (e1, d1) = envelope(1, 1, Digest::GENESIS, None);
    let (e2, d2) = envelope(2, 2, d1, None);
    let (e3, _) = envelope(3, 3, d2, None);

    let (messaging, _store) = bob(dir.path(), &clock);
    assert_eq!(messaging.receive(from_alice(&e1)), Ok(Received::Verified));
    assert_eq!(messaging.receive(from_alice(&e3)), Ok(Received::Verified));
    drop((messaging, _store));

    // A restart: the replay of 1 is still known, the gap at 2 is still reported.
    let (messaging, store) = bob(dir.path(), &clock);
    assert_eq!(messaging.receive(from_alice(&e1)), Ok(Received::Duplicate));
    assert_eq!(
        store.chain_state(&user("alice")),
        Ok(ChainState::Gap {
            last: 3,
            missing: vec![(2, 2)]
        })
    );
    // Every single altered byte of the late message is refused, and nothing is kept.
    for at in [0, 5, e2.len() / 2, e2.len() - 1] {
        let mut altered = e2.clone();
        altered[at] ^= 0x40;
        let err = messaging
            .receive(from_alice(&altered))
            .expect_err("altered");
        assert!(
            matches!(err, ReceiveError::Envelope(_)),
            "byte {at}: {err:?}"
        );
    }
    assert_eq!(texts(&store, clock.now()), ["message 1", "message 3"]);
    assert_eq!(messaging.receive(from_alice(&e2)), Ok(Received::Verified));
    assert_eq!(
        store.chain_state(&user("alice")),
        Ok(ChainState::Intact { last: 3 })
    );

    // A second message at position 2: a fork, kept but never verified, also after a restart.
    let (fork, _) = envelope(9, 2, d1, None);
    assert_eq!(
        messaging.receive(from_alice(&fork)),
        Ok(Received::Unverified)
    );
    drop((messaging, store));
    let (_messaging, store) = bob(dir.path(), &clock);
    let history = store.history(&user("alice"), clock.now()).expect("history");
    let verified: Vec<bool> = history
        .iter()
        .map(|m| m.verification.is_verified())
        .collect();
    assert_eq!(verified, [true, true, true, false]);
    let history = queries::history(&*store, &user("alice"), clock.now()).expect("history");
    assert_eq!(history.incoming, ChainState::Faulty { last: 3, faults: 1 });
}

#[test]
fn a_message_past_its_ttl_is_gone_after_a_restart_and_its_replay_does_not_revive_it() {
    let dir = TempDir::new().expect("tmp");
    let clock = Arc::new(FixedClock::at(2_000));
    let hour = Ttl::parse("1h").expect("ttl");
    let (e1, _) = envelope(1, 1, Digest::GENESIS, Some(hour));
    let (messaging, store) = bob(dir.path(), &clock);
    assert_eq!(messaging.receive(from_alice(&e1)), Ok(Received::Verified));
    assert_eq!(texts(&store, clock.now()), ["message 1"]);
    drop((messaging, store));

    // Two hours later (the header says 1 000 ms, so it lived from then), the device restarts.
    *clock.0.lock().expect("lock") = 2_000 + 2 * 3_600_000;
    let (messaging, store) = bob(dir.path(), &clock);
    assert_eq!(
        store.purge_expired(clock.now()),
        Ok(1),
        "purged at start-up"
    );
    assert!(texts(&store, Timestamp(0)).is_empty(), "gone, not hidden");
    assert_eq!(messaging.receive(from_alice(&e1)), Ok(Received::Duplicate));
    assert!(
        texts(&store, Timestamp(0)).is_empty(),
        "a replay does not revive it"
    );
}
