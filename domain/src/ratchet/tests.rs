#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::message::Timestamp;

const T0: Timestamp = Timestamp(1_800_000_000_000);

/// Deterministic "random" bytes for the tests: a counter, never twice the same.
struct Entropy(u64);

impl Entropy {
    fn fresh(&mut self) -> Key32 {
        self.0 += 1;
        let mut bytes = [0x5au8; 32];
        bytes[..8].copy_from_slice(&self.0.to_be_bytes());
        Key32::new(bytes)
    }
}

struct Pair {
    alice: Ratchet,
    bob: Ratchet,
    rng: Entropy,
}

fn pair() -> Pair {
    let root = Key32::new([7; 32]);
    let prekey = KeyPair::from_secret(Key32::new([9; 32]));
    Pair {
        alice: Ratchet::initiator(&root, prekey.public()),
        bob: Ratchet::responder(&root, prekey),
        rng: Entropy(0),
    }
}

impl Pair {
    fn alice_seals(&mut self, text: &str) -> Sealed {
        self.alice
            .seal(self.rng.fresh(), text.as_bytes(), b"ad")
            .unwrap()
    }

    fn bob_seals(&mut self, text: &str) -> Sealed {
        self.bob
            .seal(self.rng.fresh(), text.as_bytes(), b"ad")
            .unwrap()
    }
}

fn open(r: &mut Ratchet, sealed: &Sealed) -> Result<String, OpenError> {
    r.open(&sealed.header, &sealed.ciphertext, b"ad", T0)
        .map(|p| String::from_utf8(p).unwrap())
}

/// Opens and checks the text.
fn check(r: &mut Ratchet, sealed: &Sealed, text: &str) {
    assert_eq!(open(r, sealed).as_deref(), Ok(text));
}

#[test]
fn messages_go_both_ways_with_a_dh_step_on_every_change_of_speaker() {
    let mut p = pair();
    assert_eq!(
        p.bob.seal(p.rng.fresh(), b"too early", b"ad"),
        Err(SealError::NothingReceived)
    );
    for round in 0..5 {
        let a1 = p.alice_seals(&format!("a{round}.1"));
        let a2 = p.alice_seals(&format!("a{round}.2"));
        check(&mut p.bob, &a1, &format!("a{round}.1"));
        check(&mut p.bob, &a2, &format!("a{round}.2"));
        let b1 = p.bob_seals(&format!("b{round}"));
        check(&mut p.alice, &b1, &format!("b{round}"));
        assert_ne!(a1.header.ratchet, b1.header.ratchet);
    }
    // Each side stepped on each of its 5 turns and followed each of the other's 5.
    assert_eq!(p.alice.dh_steps(), 10);
    assert_eq!(p.bob.dh_steps(), 10);
}

#[test]
fn out_of_order_and_skipped_messages_open_within_the_bound() {
    let mut p = pair();
    let sent: Vec<_> = (0..10).map(|i| p.alice_seals(&format!("m{i}"))).collect();
    check(&mut p.bob, &sent[7], "m7");
    check(&mut p.bob, &sent[2], "m2");
    check(&mut p.bob, &sent[9], "m9");
    // A reply, then a new chain of alice's: the rest of her first chain still opens.
    let reply = p.bob_seals("ok");
    check(&mut p.alice, &reply, "ok");
    let later = p.alice_seals("later");
    check(&mut p.bob, &later, "later");
    for i in [0, 1, 3, 4, 5, 6, 8] {
        check(&mut p.bob, &sent[i], &format!("m{i}"));
    }
}

#[test]
fn a_message_beyond_the_skip_bound_is_refused_and_changes_nothing() {
    let mut p = pair();
    let first = p.alice_seals("first");
    let mut last = first.clone();
    for _ in 0..=MAX_SKIP {
        last = p.alice_seals("x");
    }
    let before = p.bob.encode();
    assert_eq!(open(&mut p.bob, &last), Err(OpenError::TooFarAhead));
    assert_eq!(p.bob.encode(), before);
    check(&mut p.bob, &first, "first");
}

#[test]
fn a_replay_is_refused() {
    let mut p = pair();
    let a = p.alice_seals("once");
    let b = p.alice_seals("twice");
    check(&mut p.bob, &b, "twice");
    check(&mut p.bob, &a, "once");
    let before = p.bob.encode();
    assert_eq!(open(&mut p.bob, &a), Err(OpenError::KeyGone));
    assert_eq!(open(&mut p.bob, &b), Err(OpenError::KeyGone));
    assert_eq!(p.bob.encode(), before);
}

#[test]
fn tampered_header_ciphertext_or_associated_data_is_refused_and_changes_nothing() {
    let mut p = pair();
    let warmup = p.alice_seals("warm up");
    check(&mut p.bob, &warmup, "warm up");
    let reply = p.bob_seals("reply");
    check(&mut p.alice, &reply, "reply");
    let m = p.alice_seals("genuine");
    let before = p.bob.encode();

    let mut bad = m.clone();
    bad.header.n += 1;
    assert_eq!(open(&mut p.bob, &bad), Err(OpenError::Undecryptable));
    let mut bad = m.clone();
    bad.header.step += 1;
    assert_eq!(open(&mut p.bob, &bad), Err(OpenError::EarlierStepMissing));
    let mut bad = m.clone();
    bad.header.previous += 1;
    assert!(open(&mut p.bob, &bad).is_err());
    let mut bad = m.clone();
    bad.header.ratchet.0[0] ^= 1;
    assert!(open(&mut p.bob, &bad).is_err());
    let mut bad = m.clone();
    bad.ciphertext[0] ^= 1;
    assert_eq!(open(&mut p.bob, &bad), Err(OpenError::Undecryptable));
    let mut bad = m.clone();
    bad.ciphertext.truncate(3);
    assert_eq!(open(&mut p.bob, &bad), Err(OpenError::Undecryptable));
    assert_eq!(
        p.bob.open(&m.header, &m.ciphertext, b"other ad", T0),
        Err(OpenError::Undecryptable)
    );
    let mut low_order = m.clone();
    low_order.header.ratchet = PublicKey([0; 32]);
    assert_eq!(open(&mut p.bob, &low_order), Err(OpenError::WeakKey));

    assert_eq!(p.bob.encode(), before, "no refusal changed the state");
    check(&mut p.bob, &m, "genuine");
}

#[test]
fn a_copy_of_the_current_state_cannot_open_earlier_messages() {
    let mut p = pair();
    let mut recorded = Vec::new();
    for round in 0..3 {
        let a = p.alice_seals(&format!("a{round}"));
        check(&mut p.bob, &a, &format!("a{round}"));
        let b = p.bob_seals(&format!("b{round}"));
        check(&mut p.alice, &b, &format!("b{round}"));
        recorded.push(a);
        recorded.push(b);
    }
    let mut stolen_bob = p.bob.clone();
    let mut stolen_alice = p.alice.clone();
    for sealed in &recorded {
        assert!(open(&mut stolen_bob, sealed).is_err());
        assert!(open(&mut stolen_alice, sealed).is_err());
    }
}

#[test]
fn a_copy_of_bobs_state_is_locked_out_after_fresh_steps_on_both_sides() {
    let mut p = pair();
    let a = p.alice_seals("hello");
    check(&mut p.bob, &a, "hello");
    let mut copy = p.bob.clone();
    // The copy follows what it can: it holds bob's current key, so a step of alice's against
    // that key is open to it...
    p.alice.rekey();
    let a = p.alice_seals("alice rekeys");
    check(&mut p.bob, &a, "alice rekeys");
    check(&mut copy, &a, "alice rekeys");
    let b = p.bob_seals("bob steps");
    check(&mut p.alice, &b, "bob steps");
    let a = p.alice_seals("alice steps");
    check(&mut p.bob, &a, "alice steps");
    let b = p.bob_seals("bob steps again");
    check(&mut p.alice, &b, "bob steps again");
    // ...but after fresh steps on both sides, made from randomness it never saw, it is out.
    let a = p.alice_seals("after the steps");
    check(&mut p.bob, &a, "after the steps");
    assert!(open(&mut copy, &a).is_err());
}

#[test]
fn a_rekey_without_a_change_of_speaker_is_an_ordinary_dh_step_for_the_receiver() {
    let mut p = pair();
    let a1 = p.alice_seals("one");
    check(&mut p.bob, &a1, "one");
    let (alice_steps, bob_steps) = (p.alice.dh_steps(), p.bob.dh_steps());
    p.alice.rekey();
    assert!(p.alice.rekey_due());
    let a2 = p.alice_seals("two");
    assert!(!p.alice.rekey_due());
    assert_eq!(p.alice.dh_steps(), alice_steps + 1);
    assert_ne!(a2.header.ratchet, a1.header.ratchet);
    assert_eq!(a2.header.previous, 1);
    p.alice.rekey();
    let a3 = p.alice_seals("three");
    check(&mut p.bob, &a2, "two");
    check(&mut p.bob, &a3, "three");
    assert_eq!(p.bob.dh_steps(), bob_steps + 2);
    let b = p.bob_seals("back");
    check(&mut p.alice, &b, "back");
}

#[test]
fn rekeys_on_both_sides_at_once_cross_without_harm() {
    let mut p = pair();
    let a = p.alice_seals("start");
    check(&mut p.bob, &a, "start");
    let b = p.bob_seals("reply");
    check(&mut p.alice, &b, "reply");
    for round in 0..4 {
        p.alice.rekey();
        p.bob.rekey();
        let a = p.alice_seals(&format!("a{round}"));
        let b = p.bob_seals(&format!("b{round}"));
        check(&mut p.bob, &a, &format!("a{round}"));
        check(&mut p.alice, &b, &format!("b{round}"));
    }
    // A reply that crosses a rekey is just as harmless.
    p.alice.rekey();
    let a = p.alice_seals("rekeyed");
    let b = p.bob_seals("meanwhile");
    check(&mut p.alice, &b, "meanwhile");
    check(&mut p.bob, &a, "rekeyed");
}

#[test]
fn a_skipped_key_older_than_the_age_bound_is_refused() {
    let mut p = pair();
    let late = p.alice_seals("late");
    let next = p.alice_seals("next");
    check(&mut p.bob, &next, "next");
    let too_late = Timestamp(T0.0 + MAX_SKIPPED_AGE_MS + 1);
    let before = p.bob.encode();
    assert_eq!(
        p.bob.open(&late.header, &late.ciphertext, b"ad", too_late),
        Err(OpenError::Expired)
    );
    assert_eq!(p.bob.encode(), before);
    // Any later success drops the expired keys for good.
    let fresh = p.alice_seals("fresh");
    assert!(
        p.bob
            .open(&fresh.header, &fresh.ciphertext, b"ad", too_late)
            .is_ok()
    );
    assert_eq!(
        p.bob.open(&late.header, &late.ciphertext, b"ad", too_late),
        Err(OpenError::KeyGone)
    );
}

#[test]
fn skipped_keys_are_bounded_in_number() {
    let mut p = pair();
    let mut first_chain = Vec::new();
    for _ in 0..3 {
        let sealed: Vec<_> = (0..600).map(|_| p.alice_seals("x")).collect();
        let last = sealed.last().unwrap().clone();
        check(&mut p.bob, &last, "x");
        first_chain.push(sealed[0].clone());
        p.alice.rekey();
    }
    assert!(p.bob.skipped.entries.len() <= MAX_SKIP);
    assert!(matches!(
        open(&mut p.bob, &first_chain[0]),
        Err(OpenError::KeyGone)
    ));
    check(&mut p.bob, &first_chain[2], "x");
}

#[test]
fn a_long_conversation_with_steps_every_few_messages_stays_in_step() {
    let mut p = pair();
    for i in 0..3000u32 {
        let text = format!("{i}");
        if i % 7 == 0 {
            p.alice.rekey();
        }
        if i % 5 < 3 {
            let s = p.alice_seals(&text);
            check(&mut p.bob, &s, &text);
        } else {
            let s = p.bob_seals(&text);
            check(&mut p.alice, &s, &text);
        }
    }
    assert!(p.alice.dh_steps() > 1000);
}

#[test]
fn debug_shows_no_key() {
    let p = pair();
    let shown = format!("{:?} {:?}", p.alice, Key32::new([0xab; 32]));
    assert!(!shown.contains("171") && !shown.contains("ab,"), "{shown}");
}

#[test]
fn the_encoding_round_trips_and_the_decoded_state_carries_on() {
    let mut p = pair();
    assert_eq!(
        *Ratchet::decode(&p.bob.encode()).unwrap().encode(),
        *p.bob.encode()
    );
    let skipped = p.alice_seals("skipped");
    let a = p.alice_seals("a");
    check(&mut p.bob, &a, "a");
    let b = p.bob_seals("b");
    check(&mut p.alice, &b, "b");
    for r in [&mut p.alice, &mut p.bob] {
        let bytes = r.encode();
        let decoded = Ratchet::decode(&bytes).unwrap();
        assert_eq!(*decoded.encode(), *bytes);
        assert_eq!(decoded.dh_steps(), r.dh_steps());
        *r = decoded;
    }
    check(&mut p.bob, &skipped, "skipped");
    let a = p.alice_seals("after");
    check(&mut p.bob, &a, "after");
}

#[test]
fn decoding_refuses_malformed_truncated_or_unknown_input() {
    let mut p = pair();
    let a = p.alice_seals("a");
    let _ = p.alice_seals("gap");
    let a2 = p.alice_seals("a2");
    check(&mut p.bob, &a2, "a2");
    check(&mut p.bob, &a, "a");
    let bytes = p.bob.encode().to_vec();
    for len in 0..bytes.len() {
        assert!(Ratchet::decode(&bytes[..len]).is_err(), "length {len}");
    }
    assert_eq!(Ratchet::decode(&[]).err(), Some(DecodeError::Truncated));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(
        Ratchet::decode(&v2).err(),
        Some(DecodeError::UnsupportedVersion(2))
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Ratchet::decode(&long).err(),
        Some(DecodeError::TrailingBytes)
    );
    let mut many = bytes.clone();
    many[1 + 64 + 8 + 4] = 200;
    assert!(matches!(
        Ratchet::decode(&many),
        Err(DecodeError::Malformed(_))
    ));
    let mut flag = bytes;
    flag[1 + 64 + 8 + 4 + 1 + 32] = 7;
    assert!(matches!(
        Ratchet::decode(&flag),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn a_chain_seen_before_its_predecessor_is_refused_until_the_predecessor_arrives() {
    let mut p = pair();
    let a1 = p.alice_seals("one");
    check(&mut p.bob, &a1, "one");
    p.alice.rekey();
    let a2 = p.alice_seals("two");
    p.alice.rekey();
    let a3 = p.alice_seals("three");
    let before = p.bob.encode();
    assert_eq!(open(&mut p.bob, &a3), Err(OpenError::EarlierStepMissing));
    assert_eq!(p.bob.encode(), before);
    check(&mut p.bob, &a2, "two");
    check(&mut p.bob, &a3, "three");
    assert_eq!(
        open(&mut p.bob, &a1),
        Err(OpenError::KeyGone),
        "an older chain's replay"
    );
}

#[test]
fn a_header_round_trips_and_only_44_bytes_parse() {
    let header = Header {
        ratchet: PublicKey([1; 32]),
        step: 2,
        previous: 3,
        n: 4,
    };
    assert_eq!(Header::decode(&header.encode()), Ok(header));
    assert_eq!(Header::decode(&[0; HEADER_LEN - 1]), Err(HeaderError));
    assert_eq!(Header::decode(&[0; HEADER_LEN + 1]), Err(HeaderError));
}

/// A small deterministic generator for the simulation below (xorshift64*).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x % n as u64).unwrap()
    }
}

#[test]
fn rekeys_replies_and_reordering_in_any_interleaving_lose_nothing() {
    for seed in 1..=20u64 {
        let mut p = pair();
        let mut dice = Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // In flight: (text, sealed), per direction.
        let mut to_bob: Vec<(String, Sealed)> = Vec::new();
        let mut to_alice: Vec<(String, Sealed)> = Vec::new();
        let mut opened = 0usize;
        let mut sent = 0usize;
        let first = p.alice_seals("first");
        check(&mut p.bob, &first, "first");
        for i in 0..600 {
            match dice.below(8) {
                0 => p.alice.rekey(),
                1 => p.bob.rekey(),
                2 | 3 => {
                    let text = format!("a{i}");
                    to_bob.push((text.clone(), p.alice_seals(&text)));
                    sent += 1;
                }
                4 | 5 => {
                    let text = format!("b{i}");
                    to_alice.push((text.clone(), p.bob_seals(&text)));
                    sent += 1;
                }
                6 => opened += deliver(&mut dice, &mut p.bob, &mut to_bob),
                _ => opened += deliver(&mut dice, &mut p.alice, &mut to_alice),
            }
        }
        while !to_bob.is_empty() || !to_alice.is_empty() {
            opened += deliver(&mut dice, &mut p.bob, &mut to_bob);
            opened += deliver(&mut dice, &mut p.alice, &mut to_alice);
        }
        assert_eq!(opened, sent, "seed {seed}");
    }
}

/// Delivers one in-flight message, usually the oldest, sometimes a later one; a message
/// whose earlier chain has not been opened yet goes back in flight. Returns how many opened.
fn deliver(dice: &mut Dice, to: &mut Ratchet, in_flight: &mut Vec<(String, Sealed)>) -> usize {
    if in_flight.is_empty() {
        return 0;
    }
    let index = if dice.below(4) == 0 {
        dice.below(in_flight.len())
    } else {
        0
    };
    let (text, sealed) = in_flight.remove(index);
    match open(to, &sealed) {
        Ok(got) => {
            assert_eq!(got, text);
            assert_eq!(open(to, &sealed), Err(OpenError::KeyGone), "no second time");
            1
        }
        Err(OpenError::EarlierStepMissing) => {
            in_flight.insert(index.min(in_flight.len()), (text, sealed));
            0
        }
        Err(e) => panic!("{text}: {e:?}"),
    }
}

#[test]
fn sealing_to_a_weak_ratchet_key_is_refused_and_changes_nothing() {
    let mut alice = Ratchet::initiator(&Key32::new([7; 32]), PublicKey([0; 32]));
    let before = alice.encode();
    assert_eq!(
        alice.seal(Key32::new([1; 32]), b"x", b""),
        Err(SealError::WeakKey)
    );
    assert_eq!(alice.encode(), before);
    assert_eq!(alice.dh_steps(), 0);
}

#[test]
fn in_a_long_monologue_rekeys_wait_at_the_own_key_bound_and_resume_once_the_peer_answers() {
    let mut p = pair();
    let mut sent = Vec::new();
    for i in 0..2 * MAX_OWN_KEYS {
        p.alice.rekey();
        sent.push(p.alice_seals(&format!("{i}")));
    }
    assert_eq!(
        p.alice.dh_steps(),
        MAX_OWN_KEYS as u64,
        "steps wait at the bound"
    );
    assert!(p.alice.rekey_due());
    for (i, s) in sent.iter().enumerate() {
        check(&mut p.bob, s, &format!("{i}"));
    }
    let answer = p.bob_seals("caught up");
    check(&mut p.alice, &answer, "caught up");
    let before = p.alice.dh_steps();
    let after = p.alice_seals("stepping again");
    assert_eq!(p.alice.dh_steps(), before + 1);
    check(&mut p.bob, &after, "stepping again");
}
