//! Tests that need the crate's internals: envelopes that are properly encrypted and signed but
//! whose header or body breaks a rule, which [`Sealer::seal`] itself refuses to produce.

use parley_domain::envelope::MAX_ATTACHMENT_NAME;
use parley_domain::{AttachmentKey, AttachmentRef, MessageId, MessageText, Timestamp, Username};

use super::*;
use crate::wire::RawAttachment;

fn sealer(seed: u8) -> Sealer {
    Sealer::new(
        &Secret32::new([seed; 32]),
        &Secret32::new([seed ^ 0x55; 32]),
    )
}

fn raw_header(n_att: usize) -> RawHeader {
    RawHeader {
        id: [1; 16],
        from: b"alice".to_vec(),
        to: b"bob".to_vec(),
        sent_at: 1_700_000_000_000,
        ttl_ms: 0,
        seq: 1,
        prev: [0; 32],
        attachments: (0..n_att)
            .map(|i| RawAttachment {
                name: format!("file-{i}.bin").into_bytes(),
                size: 16,
                sha256: [2; 32],
            })
            .collect(),
    }
}

fn raw_body(n_keys: usize) -> RawBody {
    RawBody {
        text: b"hello".to_vec(),
        keys: (0..n_keys)
            .map(|_| (Secret32::new([3; 32]), [4; 32]))
            .collect(),
    }
}

/// Seals hand-built parts from alice to bob and opens them as bob.
fn round(header: &RawHeader, body: &RawBody) -> Result<Opened, OpenError> {
    let (alice, bob) = (sealer(1), sealer(2));
    let sealed = alice
        .seal_bytes(
            &header.encode().expect("encodes"),
            &body.encode().expect("encodes"),
            &bob.x25519_public(),
        )
        .expect("seals");
    bob.open(&sealed.bytes, &alice.ed25519_public())
}

#[test]
fn hand_built_envelopes_that_follow_the_rules_open() {
    let opened = round(&raw_header(2), &raw_body(2)).expect("opens");
    assert_eq!(opened.header.attachments.len(), 2);
    assert_eq!(opened.body.text.as_str(), "hello");
}

#[test]
fn a_properly_signed_envelope_that_breaks_a_header_rule_is_refused() {
    type Spoil = fn(&mut RawHeader);
    let cases: [(Spoil, &str); 6] = [
        (
            |h| h.seq = 0,
            "the sequence number is 0 but chains start at 1",
        ),
        (
            |h| h.from = b"Alice".to_vec(),
            "the sender is not a valid username",
        ),
        (
            |h| h.from = vec![0xc3, 0x28, b'a'],
            "the sender is not a valid username",
        ),
        (
            |h| h.to = b"b\0b".to_vec(),
            "the recipient is not a valid username",
        ),
        (
            |h| h.attachments[0].name = b"../etc/passwd".to_vec(),
            "an attachment name is not a valid file name",
        ),
        (
            |h| h.attachments[0].name = vec![b'x'; MAX_ATTACHMENT_NAME + 1],
            "an attachment name is not a valid file name",
        ),
    ];
    for (spoil, why) in cases {
        let mut header = raw_header(1);
        spoil(&mut header);
        assert_eq!(
            round(&header, &raw_body(1)).map(|_| ()),
            Err(OpenError::InvalidHeader(why))
        );
    }
    let too_many = raw_header(MAX_ATTACHMENTS + 1);
    assert_eq!(
        round(&too_many, &raw_body(MAX_ATTACHMENTS + 1)).map(|_| ()),
        Err(OpenError::InvalidHeader(
            "there are more attachments than allowed"
        ))
    );
}

#[test]
fn a_properly_signed_envelope_that_breaks_a_body_rule_is_refused() {
    let mismatch = Err(OpenError::InvalidBody(
        "the number of attachment keys differs from the number of attachments",
    ));
    assert_eq!(round(&raw_header(1), &raw_body(0)).map(|_| ()), mismatch);
    assert_eq!(round(&raw_header(1), &raw_body(2)).map(|_| ()), mismatch);
    assert_eq!(round(&raw_header(0), &raw_body(1)).map(|_| ()), mismatch);

    let mut empty = raw_body(0);
    empty.text.clear();
    assert_eq!(
        round(&raw_header(0), &empty).map(|_| ()),
        Err(OpenError::InvalidBody("the text is empty or too long"))
    );
    let mut not_utf8 = raw_body(0);
    not_utf8.text = vec![0xff, 0xfe];
    assert_eq!(
        round(&raw_header(0), &not_utf8).map(|_| ()),
        Err(OpenError::InvalidBody("the text is not UTF-8"))
    );
}

#[test]
fn a_properly_encrypted_body_with_bad_structure_is_malformed() {
    let (alice, bob) = (sealer(1), sealer(2));
    let header = raw_header(0).encode().expect("encodes");
    let mut body = raw_body(0).encode().expect("encodes");
    body.push(0);
    let sealed = alice
        .seal_bytes(&header, &body, &bob.x25519_public())
        .expect("seals");
    assert_eq!(
        bob.open(&sealed.bytes, &alice.ed25519_public()).map(|_| ()),
        Err(OpenError::Malformed(
            "trailing bytes after the body's last field"
        ))
    );
}

#[test]
fn a_signed_envelope_of_another_version_is_refused_before_anything_else() {
    let (alice, bob) = (sealer(1), sealer(2));
    let header = raw_header(0).encode().expect("encodes");
    let sealed = alice
        .assemble(2, &header, &[9; 32], &[0; 12], &[0; 32])
        .expect("assembles");
    assert_eq!(
        bob.open(&sealed.bytes, &alice.ed25519_public()).map(|_| ()),
        Err(OpenError::UnsupportedVersion(2))
    );
}

#[test]
fn the_largest_valid_message_fits_well_under_the_limit() {
    let (alice, bob) = (sealer(1), sealer(2));
    let name = |c: char| Username::parse(&c.to_string().repeat(32)).expect("valid");
    let header = Header {
        id: MessageId::from_bytes([0xff; 16]),
        from: name('a'),
        to: name('b'),
        sent_at: Timestamp(i64::MAX),
        ttl: Some(parley_domain::Ttl::MAX),
        seq: u64::MAX,
        prev: Digest([0xff; 32]),
        attachments: (0..MAX_ATTACHMENTS)
            .map(|_| AttachmentRef {
                name: "n".repeat(MAX_ATTACHMENT_NAME),
                size: u64::MAX,
                sha256: Digest([0xff; 32]),
            })
            .collect(),
    };
    let body = Body {
        text: MessageText::parse("é".repeat(parley_domain::message::MAX_TEXT_BYTES / 2))
            .expect("valid"),
        attachment_keys: (0..MAX_ATTACHMENTS)
            .map(|_| AttachmentKey {
                key: Secret32::new([0xff; 32]),
                plain_sha256: Digest([0xff; 32]),
            })
            .collect(),
    };
    let sealed = alice
        .seal(&header, &body, &bob.x25519_public())
        .expect("seals");
    assert!(
        sealed.bytes.len() < MAX_ENVELOPE_BYTES - 4096,
        "{}",
        sealed.bytes.len()
    );
    let opened = bob
        .open(&sealed.bytes, &alice.ed25519_public())
        .expect("opens");
    assert_eq!((opened.header, opened.body), (header, body));
}

#[test]
fn oversized_parts_are_refused_when_sealing() {
    let (alice, bob) = (sealer(1), sealer(2));
    let header = raw_header(0).encode().expect("encodes");
    let body = vec![0u8; MAX_ENVELOPE_BYTES];
    assert_eq!(
        alice.seal_bytes(&header, &body, &bob.x25519_public()),
        Err(SealError::TooLarge)
    );
    assert_eq!(
        alice.seal_bytes(&[0; MAX_HEADER_BYTES + 1], b"x", &bob.x25519_public()),
        Err(SealError::TooLarge)
    );
}

#[test]
fn the_sealer_debug_shows_no_secret() {
    let shown = format!("{:?}", sealer(0xab));
    assert!(shown.contains("x25519_public"), "{shown}");
    // The Ed25519 secret is 0xab × 32, the X25519 one 0xfe × 32.
    for secret in [
        "ab".repeat(32),
        "fe".repeat(32),
        "[171".into(),
        "[254".into(),
    ] {
        assert!(!shown.contains(&secret), "{shown}");
    }
}
