//! Envelopes of version 2 with the real primitives: prekeys, the hybrid agreement, the ratchet,
//! and what an attacker holding a device's state can and cannot open.

use parley_domain::agreement::PrekeyBundle;
use parley_domain::ratchet::SessionState;
use parley_domain::{Body, Digest, Header, MessageId, MessageText, Secret32, Timestamp, Username};
use parley_envelope::{OpenError, Sealer};
use parley_usecases::ports::ResponderSecrets;

fn sealer(seed: u8) -> Sealer {
    Sealer::new(
        &Secret32::new([seed; 32]),
        &Secret32::new([seed ^ 0x55; 32]),
    )
}

/// Bob's published bundle and the secrets his store keeps.
struct Prekeys {
    bundle: PrekeyBundle,
    secrets: ResponderSecrets,
}

fn prekeys(bob: &Sealer, one_time: bool) -> Prekeys {
    let (spk, signed_prekey) = bob.new_signed_prekey(1).expect("signed prekey");
    let (kem_secret, kem_prekey) = bob.new_kem_prekey(2).expect("kem prekey");
    let (opk, one_time_prekey) = Sealer::new_one_time_prekey(3).expect("one-time prekey");
    Prekeys {
        bundle: PrekeyBundle {
            identity: parley_domain::ratchet::PublicKey(bob.x25519_public()),
            signed_prekey,
            one_time_prekey: one_time.then_some(one_time_prekey),
            kem_prekey: Some(kem_prekey),
        },
        secrets: ResponderSecrets {
            signed_prekey: spk,
            one_time_prekey: one_time.then_some(opk),
            kem_secret,
        },
    }
}

fn header(n: u8, from: &str, to: &str) -> Header {
    Header {
        id: MessageId::from_bytes([n; 16]),
        from: Username::parse(from).expect("name"),
        to: Username::parse(to).expect("name"),
        sent_at: Timestamp(1_000),
        ttl: None,
        seq: u64::from(n),
        prev: Digest::GENESIS,
        attachments: vec![],
    }
}

fn body(text: &str) -> Body {
    Body {
        text: MessageText::parse(text).expect("text"),
        attachment_keys: vec![],
    }
}

/// Alice opens a session to bob and sends `text`; bob answers it.
fn first_contact(
    alice: &Sealer,
    bob: &Sealer,
    keys: &Prekeys,
) -> (SessionState, SessionState, Vec<u8>) {
    let mut a = alice
        .initiate(
            &keys.bundle,
            &bob.ed25519_public(),
            &bob.x25519_public(),
            Timestamp(1),
        )
        .expect("initiated");
    let sealed = alice
        .seal_in(
            &header(1, "alice", "bob"),
            &body("hello bob"),
            &mut a,
            Timestamp(1),
        )
        .expect("sealed");
    let named = parley_envelope::v2::session_of(&sealed.bytes)
        .expect("parses")
        .expect("version 2");
    let initial = named
        .initial
        .expect("the first message carries the agreement");
    let mut b = bob
        .respond(&initial, &keys.secrets, Timestamp(2))
        .expect("responded");
    let opened = bob
        .open_in(&sealed.bytes, &alice.ed25519_public(), &mut b, Timestamp(2))
        .expect("opens");
    assert_eq!(opened.body.text.as_str(), "hello bob");
    (a, b, sealed.bytes)
}

fn text_of(
    bob: &Sealer,
    alice: &Sealer,
    bytes: &[u8],
    session: &mut SessionState,
) -> Result<String, OpenError> {
    bob.open_in(bytes, &alice.ed25519_public(), session, Timestamp(3))
        .map(|o| o.body.text.as_str().to_owned())
}

#[test]
fn a_conversation_opens_both_ways_and_the_agreement_stops_once_answered() {
    let (alice, bob) = (sealer(1), sealer(2));
    let keys = prekeys(&bob, true);
    let (mut a, mut b, _) = first_contact(&alice, &bob, &keys);
    let reply = bob
        .seal_in(
            &header(1, "bob", "alice"),
            &body("hi alice"),
            &mut b,
            Timestamp(3),
        )
        .expect("sealed");
    assert!(
        parley_envelope::v2::session_of(&reply.bytes)
            .expect("parses")
            .expect("v2")
            .initial
            .is_none()
    );
    assert_eq!(
        text_of(&alice, &bob, &reply.bytes, &mut a).expect("opens"),
        "hi alice"
    );
    assert!(
        a.initial.is_none(),
        "alice heard back: no more agreement on the wire"
    );
    let next = alice
        .seal_in(
            &header(2, "alice", "bob"),
            &body("again"),
            &mut a,
            Timestamp(4),
        )
        .expect("sealed");
    assert!(
        parley_envelope::v2::session_of(&next.bytes)
            .expect("parses")
            .expect("v2")
            .initial
            .is_none()
    );
    assert_eq!(
        text_of(&bob, &alice, &next.bytes, &mut b).expect("opens"),
        "again"
    );
    assert!(a.ratchet.own_steps() >= 2 && b.ratchet.own_steps() >= 1);
}

#[test]
fn without_a_one_time_prekey_the_signed_prekey_alone_still_agrees() {
    let (alice, bob) = (sealer(1), sealer(2));
    let keys = prekeys(&bob, false);
    first_contact(&alice, &bob, &keys);
}

#[test]
fn a_replayed_envelope_is_refused_and_leaves_the_session_as_it_was() {
    let (alice, bob) = (sealer(1), sealer(2));
    let keys = prekeys(&bob, true);
    let (_, mut b, first) = first_contact(&alice, &bob, &keys);
    let before = b.clone();
    let again = text_of(&bob, &alice, &first, &mut b).expect_err("a replay");
    assert!(matches!(again, OpenError::Ratchet(_)), "{again:?}");
    assert_eq!(b.ratchet.encode(), before.ratchet.encode());
}

#[test]
fn a_tampered_or_forged_envelope_is_refused_before_the_session_moves() {
    let (alice, bob, mallory) = (sealer(1), sealer(2), sealer(3));
    let keys = prekeys(&bob, true);
    let (mut a, mut b, _) = first_contact(&alice, &bob, &keys);
    let sealed = alice
        .seal_in(
            &header(2, "alice", "bob"),
            &body("two"),
            &mut a,
            Timestamp(3),
        )
        .expect("sealed");
    // Every byte of the envelope is covered: flip each in turn.
    for i in 0..sealed.bytes.len() {
        let mut bytes = sealed.bytes.clone();
        bytes[i] ^= 0x01;
        let before = b.ratchet.encode();
        assert!(text_of(&bob, &alice, &bytes, &mut b).is_err(), "byte {i}");
        assert_eq!(b.ratchet.encode(), before, "byte {i} moved the session");
    }
    // Mallory seals in a copy of alice's session but signs with her own key.
    let mut stolen = a.clone();
    let forged = mallory
        .seal_in(
            &header(3, "alice", "bob"),
            &body("forged"),
            &mut stolen,
            Timestamp(3),
        )
        .expect("sealed");
    assert_eq!(
        text_of(&bob, &alice, &forged.bytes, &mut b).expect_err("forged"),
        OpenError::BadSignature
    );
    assert_eq!(
        text_of(&bob, &alice, &sealed.bytes, &mut b).expect("opens"),
        "two"
    );
}

#[test]
fn a_bundle_signed_by_another_key_or_for_another_device_is_refused() {
    let (alice, bob, mallory) = (sealer(1), sealer(2), sealer(3));
    // The rendezvous serves mallory's prekeys as bob's.
    let theirs = prekeys(&mallory, true);
    let e = alice
        .initiate(
            &theirs.bundle,
            &bob.ed25519_public(),
            &bob.x25519_public(),
            Timestamp(1),
        )
        .expect_err("another device's bundle");
    assert_eq!(e.code(), "prekey_wrong_identity");
    // Mallory's prekeys under bob's identity key: the signatures do not hold for bob's key.
    let mut forged = prekeys(&mallory, true).bundle;
    forged.identity = parley_domain::ratchet::PublicKey(bob.x25519_public());
    let e = alice
        .initiate(
            &forged,
            &bob.ed25519_public(),
            &bob.x25519_public(),
            Timestamp(1),
        )
        .expect_err("signed by another key");
    assert_eq!(e.code(), "prekey_bad_signature");
    // No post-quantum prekey: refused, never agreed with X25519 alone.
    let mut no_kem = prekeys(&bob, true).bundle;
    no_kem.kem_prekey = None;
    let e = alice
        .initiate(
            &no_kem,
            &bob.ed25519_public(),
            &bob.x25519_public(),
            Timestamp(1),
        )
        .expect_err("no KEM prekey");
    assert_eq!(e.code(), "prekey_no_kem");
}

/// Forward secrecy: an attacker records a conversation, then takes both devices' complete
/// current state (long-term keys, sessions, the prekey secrets still held). Nothing recorded
/// before the last DH steps opens.
#[test]
fn a_stolen_state_opens_nothing_recorded_before_the_last_steps() {
    let (alice, bob) = (sealer(1), sealer(2));
    let keys = prekeys(&bob, true);
    let (mut a, mut b, first) = first_contact(&alice, &bob, &keys);
    let mut recorded = vec![first];
    for round in 0..5u8 {
        let m = alice
            .seal_in(
                &header(10 + round, "alice", "bob"),
                &body("to bob"),
                &mut a,
                Timestamp(3),
            )
            .expect("sealed");
        text_of(&bob, &alice, &m.bytes, &mut b).expect("opens");
        recorded.push(m.bytes);
        let r = bob
            .seal_in(
                &header(20 + round, "bob", "alice"),
                &body("to alice"),
                &mut b,
                Timestamp(3),
            )
            .expect("sealed");
        text_of(&alice, &bob, &r.bytes, &mut a).expect("opens");
        recorded.push(r.bytes);
    }
    // The theft: both sessions as they are now, and both devices' long-term keys.
    let (stolen_a, stolen_b) = (a.clone(), b.clone());
    for (i, bytes) in recorded.iter().enumerate() {
        let mut sa = stolen_a.clone();
        let mut sb = stolen_b.clone();
        assert!(
            text_of(&bob, &alice, bytes, &mut sb).is_err(),
            "recorded {i} with bob's state"
        );
        assert!(
            text_of(&alice, &bob, bytes, &mut sa).is_err(),
            "recorded {i} with alice's state"
        );
        // The long-term keys open nothing of version 2.
        assert!(bob.open(bytes, &alice.ed25519_public()).is_err());
        assert!(alice.open(bytes, &bob.ed25519_public()).is_err());
    }
    // The signed and KEM prekeys are still held, the one-time prekey is gone (used): the first
    // message's agreement cannot be redone.
    let named = parley_envelope::v2::session_of(&recorded[0])
        .expect("parses")
        .expect("v2");
    let without_opk = ResponderSecrets {
        signed_prekey: keys.secrets.signed_prekey.clone(),
        one_time_prekey: None,
        kem_secret: keys.secrets.kem_secret.clone(),
    };
    let initial = named.initial.expect("agreement");
    assert!(bob.respond(&initial, &without_opk, Timestamp(9)).is_err());
}

/// Post-compromise security: a copy of bob's state taken at T opens what follows only until
/// both sides have stepped; after that it is locked out.
#[test]
fn a_copied_state_is_locked_out_after_the_next_steps() {
    let (alice, bob) = (sealer(1), sealer(2));
    let keys = prekeys(&bob, true);
    let (mut a, mut b, _) = first_contact(&alice, &bob, &keys);
    let copy = b.clone();
    // Bob speaks (his step, with a fresh key the copy does not know), alice answers (hers).
    let r = bob
        .seal_in(
            &header(2, "bob", "alice"),
            &body("fresh"),
            &mut b,
            Timestamp(3),
        )
        .expect("sealed");
    text_of(&alice, &bob, &r.bytes, &mut a).expect("opens");
    let m = alice
        .seal_in(
            &header(3, "alice", "bob"),
            &body("after the steps"),
            &mut a,
            Timestamp(3),
        )
        .expect("sealed");
    let mut attacker = copy.clone();
    assert!(text_of(&bob, &alice, &m.bytes, &mut attacker).is_err());
    assert_eq!(
        text_of(&bob, &alice, &m.bytes, &mut b).expect("opens"),
        "after the steps"
    );
}

/// Timed rekeying: with an interval of zero every message of one speaker steps.
#[test]
fn timed_rekeys_step_without_a_change_of_speaker() {
    let (alice, bob) = (
        sealer(1).with_rekey_every(std::time::Duration::ZERO, std::time::Duration::ZERO),
        sealer(2),
    );
    let keys = prekeys(&bob, true);
    let (mut a, mut b, _) = first_contact(&alice, &bob, &keys);
    let before = a.ratchet.own_steps();
    for n in 0..5u8 {
        let m = alice
            .seal_in(
                &header(30 + n, "alice", "bob"),
                &body("burst"),
                &mut a,
                Timestamp(10 + i64::from(n)),
            )
            .expect("sealed");
        text_of(&bob, &alice, &m.bytes, &mut b).expect("opens");
    }
    assert_eq!(a.ratchet.own_steps(), before + 5, "one step per message");
    assert!(a.last_step_at.is_some() && b.last_step_at.is_some());
}
