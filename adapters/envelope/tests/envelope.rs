//! The envelope through its public API: round trips, tampering, wrong keys, weak keys, limits.

use std::ops::Range;

use ed25519_dalek::{Signer, SigningKey};
use parley_domain::{
    AttachmentKey, AttachmentRef, Body, Digest, Header, MessageId, MessageText, Secret32,
    Timestamp, Ttl, Username,
};
use parley_envelope::{
    MAX_ENVELOPE_BYTES, OpenError, SealError, Sealer, digest, new_attachment_key, open_attachment,
    seal_attachment,
};
use sha2::{Digest as _, Sha256};

struct Device {
    sealer: Sealer,
    ed25519: Secret32,
}

fn device(seed: u8) -> Device {
    let ed25519 = Secret32::new([seed; 32]);
    let x25519 = Secret32::new([seed.wrapping_add(100); 32]);
    Device {
        sealer: Sealer::new(&ed25519, &x25519),
        ed25519,
    }
}

fn alice() -> Device {
    device(1)
}

fn bob() -> Device {
    device(2)
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

fn header(seq: u64, prev: Digest) -> Header {
    Header {
        id: MessageId::from_bytes([seq as u8; 16]),
        from: user("alice"),
        to: user("bob"),
        sent_at: Timestamp(1_700_000_000_000 + seq as i64),
        ttl: None,
        seq,
        prev,
        attachments: Vec::new(),
    }
}

fn body(text: &str) -> Body {
    Body {
        text: MessageText::parse(text).expect("valid text"),
        attachment_keys: Vec::new(),
    }
}

/// A message with a TTL and two attachments, so every header field is exercised.
fn rich() -> (Header, Body) {
    let mut h = header(7, Digest([0x42; 32]));
    h.ttl = Some(Ttl::from_millis(3_600_000));
    let mut b = body("a message with attachments");
    for (i, name) in ["photo.jpg", "notes — été.txt"].into_iter().enumerate() {
        h.attachments.push(AttachmentRef {
            name: name.into(),
            size: 1000 + i as u64,
            sha256: Digest([i as u8; 32]),
        });
        b.attachment_keys.push(AttachmentKey {
            key: Secret32::new([0xa0 + i as u8; 32]),
            plain_sha256: Digest([0x20 + i as u8; 32]),
        });
    }
    (h, b)
}

fn seal_rich() -> Vec<u8> {
    let (h, b) = rich();
    alice()
        .sealer
        .seal(&h, &b, &bob().sealer.x25519_public())
        .expect("seals")
        .bytes
}

fn open_as_bob(bytes: &[u8]) -> Result<parley_envelope::Opened, OpenError> {
    bob().sealer.open(bytes, &alice().sealer.ed25519_public())
}

/// Where each part of a (well-formed) envelope lies.
struct Layout {
    header: Range<usize>,
    eph: Range<usize>,
    nonce: Range<usize>,
    ciphertext: Range<usize>,
    signature: Range<usize>,
}

fn be32(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

fn layout(bytes: &[u8]) -> Layout {
    let header = 5..5 + be32(bytes, 1);
    let eph = header.end..header.end + 32;
    let nonce = eph.end..eph.end + 12;
    let ciphertext = nonce.end + 4..nonce.end + 4 + be32(bytes, nonce.end);
    let signature = ciphertext.end..ciphertext.end + 64;
    assert_eq!(signature.end, bytes.len());
    Layout {
        header,
        eph,
        nonce,
        ciphertext,
        signature,
    }
}

/// Replaces the signature with one by `key` over the (possibly altered) rest.
fn resign(unsigned: &[u8], key: &Secret32) -> Vec<u8> {
    let mut message = b"parley/envelope/v1/signature".to_vec();
    message.extend_from_slice(unsigned);
    let signature = SigningKey::from_bytes(key.expose()).sign(&message);
    let mut out = unsigned.to_vec();
    out.extend_from_slice(&signature.to_bytes());
    out
}

fn without_signature(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len() - 64]
}

// 1. Round trips.

#[test]
fn a_plain_message_round_trips() {
    let (a, b) = (alice(), bob());
    let (h, m) = (header(1, Digest::GENESIS), body("hello, bob"));
    let sealed = a
        .sealer
        .seal(&h, &m, &b.sealer.x25519_public())
        .expect("seals");
    assert_eq!(sealed.bytes[0], 1, "version");
    assert_eq!(sealed.digest, digest(&sealed.bytes));
    assert_eq!(
        sealed.digest.0,
        <[u8; 32]>::from(Sha256::digest(&sealed.bytes))
    );

    let opened = b
        .sealer
        .open(&sealed.bytes, &a.sealer.ed25519_public())
        .expect("opens");
    assert_eq!(opened.header, h);
    assert_eq!(opened.body, m);
    assert_eq!(opened.digest, sealed.digest);
}

#[test]
fn a_message_with_ttl_and_attachments_round_trips() {
    let (h, m) = rich();
    let opened = open_as_bob(&seal_rich()).expect("opens");
    assert_eq!(opened.header, h);
    assert_eq!(opened.body, m);
    assert_eq!(opened.header.ttl.map(Ttl::millis), Some(3_600_000));
}

#[test]
fn a_sealed_attachment_travels_by_its_key_in_the_body() {
    let file: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let key = new_attachment_key();
    let mut encrypted = Vec::new();
    let sealed = seal_attachment(&key, &file[..], &mut encrypted).expect("seals");

    let mut h = header(1, Digest::GENESIS);
    h.attachments.push(AttachmentRef {
        name: "data.bin".into(),
        size: sealed.size,
        sha256: sealed.sha256,
    });
    let mut m = body("see attached");
    m.attachment_keys.push(AttachmentKey {
        key,
        plain_sha256: sealed.plain_sha256,
    });
    let envelope = alice()
        .sealer
        .seal(&h, &m, &bob().sealer.x25519_public())
        .expect("seals");
    let opened = open_as_bob(&envelope.bytes).expect("opens");

    let meta = &opened.header.attachments[0];
    assert_eq!(meta.size, encrypted.len() as u64);
    assert_eq!(meta.sha256.0, <[u8; 32]>::from(Sha256::digest(&encrypted)));
    let k = &opened.body.attachment_keys[0];
    let mut plain = Vec::new();
    let n = open_attachment(&k.key, &encrypted[..], &mut plain, &k.plain_sha256).expect("opens");
    assert_eq!((n, plain), (file.len() as u64, file));
}

#[test]
fn every_seal_is_fresh_and_chains_by_digest() {
    let (a, b) = (alice(), bob());
    let (h1, m) = (header(1, Digest::GENESIS), body("same"));
    let first = a
        .sealer
        .seal(&h1, &m, &b.sealer.x25519_public())
        .expect("seals");
    let again = a
        .sealer
        .seal(&h1, &m, &b.sealer.x25519_public())
        .expect("seals");
    let (l1, l2) = (layout(&first.bytes), layout(&again.bytes));
    assert_ne!(
        first.bytes[l1.eph.clone()],
        again.bytes[l2.eph],
        "ephemeral key reused"
    );
    assert_ne!(first.bytes[l1.nonce], again.bytes[l2.nonce]);
    assert_ne!(first.bytes[l1.ciphertext], again.bytes[l2.ciphertext]);
    assert_ne!(first.digest, again.digest);

    let h2 = header(2, first.digest);
    let second = a
        .sealer
        .seal(&h2, &m, &b.sealer.x25519_public())
        .expect("seals");
    let opened = b
        .sealer
        .open(&second.bytes, &a.sealer.ed25519_public())
        .expect("opens");
    assert_eq!(opened.header.prev, first.digest);
}

// 2. Tampering.

#[test]
fn every_single_byte_change_is_refused() {
    let bytes = seal_rich();
    assert!(open_as_bob(&bytes).is_ok());
    let mut tried = 0;
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut spoilt = bytes.clone();
            spoilt[at] ^= mask;
            let result = open_as_bob(&spoilt);
            assert!(result.is_err(), "byte {at} ^ {mask:#04x} was accepted");
            tried += 1;
        }
    }
    assert_eq!(tried, bytes.len() * 3);
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_multi_byte_changes_are_refused() {
    let bytes = seal_rich();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..400 {
        let mut spoilt = bytes.clone();
        let changes = 2 + rng.below(8);
        for _ in 0..changes {
            let at = rng.below(spoilt.len());
            spoilt[at] ^= 1 + rng.below(255) as u8;
        }
        if spoilt == bytes {
            continue;
        }
        assert!(open_as_bob(&spoilt).is_err(), "round {round} was accepted");
    }
    // Random garbage of every plausible length, and garbage behind a plausible version byte.
    for len in [0, 1, 5, 64, 200, bytes.len(), MAX_ENVELOPE_BYTES] {
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(open_as_bob(&garbage).is_err());
        if let Some(first) = garbage.first_mut() {
            *first = 1;
            assert!(open_as_bob(&garbage).is_err());
        }
    }
}

#[test]
fn every_truncation_and_an_appended_byte_are_refused() {
    let bytes = seal_rich();
    for len in 0..bytes.len() {
        assert!(open_as_bob(&bytes[..len]).is_err(), "truncated to {len}");
    }
    for extra in [0u8, 1, 0xff] {
        let mut longer = bytes.clone();
        longer.push(extra);
        assert_eq!(
            open_as_bob(&longer).map(|_| ()),
            Err(OpenError::Malformed("trailing bytes after the signature"))
        );
    }
}

// 3. Wrong keys, re-signing, splicing.

#[test]
fn the_wrong_recipient_cannot_decrypt() {
    let bytes = seal_rich();
    let eve = device(3);
    assert_eq!(
        eve.sealer
            .open(&bytes, &alice().sealer.ed25519_public())
            .map(|_| ()),
        Err(OpenError::Undecryptable)
    );
}

#[test]
fn the_wrong_sender_key_fails_the_signature() {
    let bytes = seal_rich();
    let eve = device(3);
    assert_eq!(
        bob()
            .sealer
            .open(&bytes, &eve.sealer.ed25519_public())
            .map(|_| ()),
        Err(OpenError::BadSignature)
    );
    // Not a point at all (y = 2 does not decompress), and a small-order point.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for key in [not_a_point, identity] {
        assert_eq!(
            bob().sealer.open(&bytes, &key).map(|_| ()),
            Err(OpenError::BadSignature)
        );
    }
}

#[test]
fn an_envelope_re_signed_by_another_key_is_refused() {
    let bytes = seal_rich();
    let eve = device(3);
    let forged = resign(without_signature(&bytes), &eve.ed25519);
    assert_eq!(
        open_as_bob(&forged).map(|_| ()),
        Err(OpenError::BadSignature)
    );
    // The same re-signing with the legitimate key gives back a valid envelope: the test
    // helper is faithful, so the refusals elsewhere are the envelope's doing.
    let same = resign(without_signature(&bytes), &alice().ed25519);
    assert!(open_as_bob(&same).is_ok());
}

#[test]
fn a_header_spliced_onto_another_ciphertext_is_undecryptable() {
    let (a, b) = (alice(), bob());
    let one = a
        .sealer
        .seal(
            &header(1, Digest::GENESIS),
            &body("first"),
            &b.sealer.x25519_public(),
        )
        .expect("seals")
        .bytes;
    let two = seal_rich();
    let (l1, l2) = (layout(&one), layout(&two));

    // Header (with framing) of `one`, then the key, nonce and ciphertext of `two`.
    let mut spliced = one[..l1.header.end].to_vec();
    spliced.extend_from_slice(&two[l2.eph.start..l2.signature.start]);
    let spliced = resign(&spliced, &a.ed25519);
    assert_eq!(
        open_as_bob(&spliced).map(|_| ()),
        Err(OpenError::Undecryptable)
    );

    // Only the ephemeral key of `two`, everything else `one`'s.
    let mut swapped = one[..l1.signature.start].to_vec();
    swapped[l1.eph.clone()].copy_from_slice(&two[l2.eph]);
    let swapped = resign(&swapped, &a.ed25519);
    assert_eq!(
        open_as_bob(&swapped).map(|_| ()),
        Err(OpenError::Undecryptable)
    );

    // A header byte changed and re-signed: the AAD still refuses it.
    let mut edited = one[..l1.signature.start].to_vec();
    let seq_last_byte = l1.header.start + 16 + 1 + 5 + 1 + 3 + 8 + 8 + 7;
    edited[seq_last_byte] = 9;
    let edited = resign(&edited, &a.ed25519);
    assert_eq!(
        open_as_bob(&edited).map(|_| ()),
        Err(OpenError::Undecryptable)
    );
}

// 4. Weak keys.

/// The X25519 public keys of small order (and their non-canonical encodings), after
/// libsodium's list.
fn low_order_points() -> Vec<[u8; 32]> {
    let hex = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];
    let mut points: Vec<[u8; 32]> = hex
        .iter()
        .map(|h| {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
            }
            out
        })
        .collect();
    // The same points with the (ignored) top bit set.
    let high: Vec<[u8; 32]> = points
        .iter()
        .map(|p| {
            let mut q = *p;
            q[31] |= 0x80;
            q
        })
        .collect();
    points.extend(high);
    points
}

#[test]
fn a_low_order_recipient_key_is_refused_when_sealing() {
    let (h, m) = (header(1, Digest::GENESIS), body("hi"));
    for point in low_order_points() {
        assert_eq!(
            alice().sealer.seal(&h, &m, &point),
            Err(SealError::WeakRecipientKey),
            "{point:02x?}"
        );
    }
}

#[test]
fn a_low_order_ephemeral_key_is_refused_when_opening() {
    let bytes = seal_rich();
    let l = layout(&bytes);
    for point in low_order_points() {
        let mut spoilt = bytes[..l.signature.start].to_vec();
        spoilt[l.eph.clone()].copy_from_slice(&point);
        let spoilt = resign(&spoilt, &alice().ed25519);
        assert_eq!(
            open_as_bob(&spoilt).map(|_| ()),
            Err(OpenError::WeakKey),
            "{point:02x?}"
        );
    }
}

// 5. Limits.

#[test]
fn an_oversized_envelope_is_refused_before_anything_else() {
    let mut bytes = seal_rich();
    bytes.resize(MAX_ENVELOPE_BYTES + 1, 0);
    assert_eq!(open_as_bob(&bytes).map(|_| ()), Err(OpenError::TooLarge));
    let garbage = vec![0xffu8; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(open_as_bob(&garbage).map(|_| ()), Err(OpenError::TooLarge));
}

#[test]
fn an_unknown_version_is_refused() {
    let bytes = seal_rich();
    for version in [0u8, 2, 0xff] {
        let mut other = bytes.clone();
        other[0] = version;
        assert_eq!(
            open_as_bob(&other).map(|_| ()),
            Err(OpenError::UnsupportedVersion(version))
        );
    }
}

#[test]
fn framing_lengths_that_lie_are_malformed() {
    let bytes = seal_rich();
    let l = layout(&bytes);
    let mut long_header = bytes.clone();
    long_header[1..5].copy_from_slice(&4097u32.to_be_bytes());
    assert_eq!(
        open_as_bob(&long_header).map(|_| ()),
        Err(OpenError::Malformed("the header is longer than 4096 bytes"))
    );
    let mut huge_ct = bytes.clone();
    huge_ct[l.nonce.end..l.nonce.end + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        open_as_bob(&huge_ct).map(|_| ()),
        Err(OpenError::Malformed("the envelope ends too early"))
    );
    // A header one byte longer than its fields: the header decoder sees trailing bytes.
    let mut padded = bytes[..l.header.end].to_vec();
    padded[1..5].copy_from_slice(&((l.header.len() + 1) as u32).to_be_bytes());
    padded.push(0);
    padded.extend_from_slice(&bytes[l.eph.start..]);
    assert_eq!(
        open_as_bob(&padded).map(|_| ()),
        Err(OpenError::Malformed(
            "trailing bytes after the header's last field"
        ))
    );
}

#[test]
fn sealing_refuses_what_the_rules_forbid() {
    let recipient = bob().sealer.x25519_public();
    let seal = |h: &Header, b: &Body| alice().sealer.seal(h, b, &recipient).map(|_| ());

    let zero = header(0, Digest::GENESIS);
    assert_eq!(
        seal(&zero, &body("x")),
        Err(SealError::Invalid("the sequence number must be at least 1"))
    );

    let (h, mut m) = rich();
    m.attachment_keys.pop();
    assert_eq!(
        seal(&h, &m),
        Err(SealError::Invalid(
            "the body does not carry exactly one key per attachment"
        ))
    );

    let (mut h, m) = rich();
    h.attachments[1].name = "../../.ssh/authorized_keys".into();
    assert_eq!(
        seal(&h, &m),
        Err(SealError::Invalid(
            "an attachment name is not a valid file name"
        ))
    );

    let (mut h, mut m) = rich();
    while h.attachments.len() <= parley_domain::envelope::MAX_ATTACHMENTS {
        h.attachments.push(h.attachments[0].clone());
        m.attachment_keys.push(m.attachment_keys[0].clone());
    }
    assert_eq!(
        seal(&h, &m),
        Err(SealError::Invalid("there are too many attachments"))
    );
}

// Errors.

#[test]
fn error_codes_are_stable_distinct_and_messages_are_one_sentence() {
    let open = [
        OpenError::TooLarge,
        OpenError::Malformed("the envelope ends too early"),
        OpenError::UnsupportedVersion(9),
        OpenError::BadSignature,
        OpenError::WeakKey,
        OpenError::Undecryptable,
        OpenError::InvalidHeader("the sender is not a valid username"),
        OpenError::InvalidBody("the text is not UTF-8"),
    ];
    let codes: Vec<&str> = open.iter().map(OpenError::code).collect();
    assert_eq!(
        codes,
        [
            "too_large",
            "malformed",
            "unsupported_version",
            "bad_signature",
            "weak_key",
            "undecryptable",
            "invalid_header",
            "invalid_body"
        ]
    );
    let seal = [
        SealError::WeakRecipientKey,
        SealError::TooLarge,
        SealError::Invalid("there are too many attachments"),
        SealError::Randomness,
    ];
    let seal_codes: Vec<&str> = seal.iter().map(SealError::code).collect();
    assert_eq!(
        seal_codes,
        ["weak_recipient_key", "too_large", "invalid", "randomness"]
    );
    let messages = open
        .iter()
        .map(ToString::to_string)
        .chain(seal.iter().map(ToString::to_string));
    for message in messages {
        assert!(!message.is_empty());
        assert!(!message.contains(". "), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn debug_output_shows_neither_text_nor_keys() {
    let opened = open_as_bob(&seal_rich()).expect("opens");
    let shown = format!("{opened:?} {:?}", alice().sealer);
    assert!(!shown.contains("a message with attachments"), "{shown}");
    // The attachment keys are 0xa0 × 32 and 0xa1 × 32.
    for key in ["160, 160", "161, 161", "a0a0a0a0", "a1a1a1a1"] {
        assert!(!shown.contains(key), "{shown}");
    }
}

#[test]
fn the_sender_can_read_back_its_own_header_but_nothing_else() {
    let (alice, bob) = (alice(), bob());
    let h = header(3, Digest([7; 32]));
    let sealed = alice
        .sealer
        .seal(&h, &body("resealed later"), &bob.sealer.x25519_public())
        .expect("seals");
    assert_eq!(parley_envelope::read_header(&sealed.bytes), Ok(h));
    assert!(parley_envelope::read_header(&sealed.bytes[..40]).is_err());
    assert!(parley_envelope::read_header(b"not an envelope").is_err());
}
