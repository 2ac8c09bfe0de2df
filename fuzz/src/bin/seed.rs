//! Writes the seed corpus: valid inputs made by Parley's own code (the real sealer, the real
//! attachment cipher, the protocol types' own serialisation, a CSR made the way the
//! enrollment client makes it), and edge cases next to them. Every seed is named for what it
//! is; running it again rewrites the same files.
//!
//! `scripts/fuzz.sh --seed` runs it; `cargo run --features seed --bin seed -- DIR` also does.

use std::path::{Path, PathBuf};

use parley_domain::pki::user_uri;
use parley_domain::{
    AttachmentKey, AttachmentRef, Body, Digest, Header, MessageId, MessageText, Secret32,
    Timestamp, Ttl, Username,
};
use parley_envelope::seal_attachment;
use parley_fuzz::{CSR_ED25519, open_parts, recipient, seal_parts, sender, sha256};
use parley_p2p::message::{self, Answer, Request, Response};
use parley_p2p::protocol::{DirectoryRequest, DirectoryResponse, Meta, PeerRecord};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};

#[path = "../../../adapters/cli/src/control.rs"]
#[allow(dead_code)]
mod control;

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let folder = self.root.join(target);
        std::fs::create_dir_all(&folder).expect("the corpus folder can be made");
        std::fs::write(folder.join(format!("seed-{name}")), bytes).expect("a seed can be written");
    }

    fn put_json(&self, target: &str, name: &str, value: &impl serde::Serialize) {
        self.put(target, name, serde_json::to_vec(value).expect("JSON"));
    }
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("a valid username")
}

fn with(mode: u8, bytes: &[u8]) -> Vec<u8> {
    [&[mode][..], bytes].concat()
}

/// Real envelopes from the fixed sender to the fixed recipient.
/// The seeds' messages: plain, with a time to live, with attachments.
fn session_messages() -> Vec<(Header, Body)> {
    let header = Header {
        id: MessageId::from_bytes([0x11; 16]),
        from: user("alice"),
        to: user("bob"),
        sent_at: Timestamp(1_764_590_400_000),
        ttl: None,
        seq: 1,
        prev: Digest::GENESIS,
        attachments: vec![],
    };
    let text = |t: &str| MessageText::parse(t.to_owned()).expect("a valid text");
    let plain = Body {
        text: text("hello bob"),
        attachment_keys: vec![],
    };
    let with_ttl = Header {
        ttl: Some(Ttl::from_millis(3_600_000)),
        seq: 2,
        prev: Digest([0x22; 32]),
        ..header.clone()
    };
    let attachments = Header {
        seq: 3,
        prev: Digest([0x33; 32]),
        attachments: vec![
            AttachmentRef {
                name: "photo.jpg".to_owned(),
                size: 65_552,
                sha256: Digest([0x44; 32]),
            },
            AttachmentRef {
                name: "notes ünïcode.txt".to_owned(),
                size: 16,
                sha256: Digest([0x55; 32]),
            },
        ],
        ..header.clone()
    };
    let attachment_body = Body {
        text: text("two files"),
        attachment_keys: (0..2)
            .map(|i| AttachmentKey {
                key: Secret32::new([0x66 + i; 32]),
                plain_sha256: Digest([0x77 + i; 32]),
            })
            .collect(),
    };
    vec![
        (header, plain.clone()),
        (with_ttl, plain),
        (attachments, attachment_body),
    ]
}

fn envelopes() -> Vec<(&'static str, Vec<u8>)> {
    let (sender, recipient) = (sender(), recipient());
    ["text", "ttl", "attachments"]
        .into_iter()
        .zip(session_messages())
        .map(|(name, (h, b))| {
            let bytes = sender
                .seal(&h, &b, &recipient.x25519_public())
                .expect("seals")
                .bytes;
            (name, bytes)
        })
        .collect()
}

fn envelope_seeds(corpus: &Corpus) {
    for (name, envelope) in envelopes() {
        let (header, body) = open_parts(&envelope).expect("the documented layout reads it");
        let len = u16::try_from(header.len()).expect("a short header");
        let parts = [&len.to_be_bytes()[..], &header, &body].concat();
        // The parts rebuilt from the documentation open with the real code.
        let rebuilt = seal_parts(&header, &body);
        recipient()
            .open(&rebuilt, &sender().ed25519_public())
            .expect("the documented construction opens");
        corpus.put(
            "envelope_open",
            &format!("{name}-envelope"),
            with(0, &envelope),
        );
        corpus.put("envelope_open", &format!("{name}-parts"), with(1, &parts));
        corpus.put(
            "envelope_header",
            &format!("{name}-envelope"),
            with(0, &envelope),
        );
        corpus.put(
            "envelope_header",
            &format!("{name}-header"),
            with(1, &header),
        );
    }
    let (_, first) = &envelopes()[0];
    let mut version_2 = first.clone();
    version_2[0] = 2;
    corpus.put("envelope_open", "version-2", with(0, &version_2));
    corpus.put(
        "envelope_open",
        "truncated",
        with(0, &first[..first.len() / 2]),
    );
    corpus.put(
        "envelope_header",
        "huge-header-len",
        with(0, &[1, 0xff, 0xff, 0xff, 0xff]),
    );
    session_seeds(corpus);
}

/// Envelopes of version 2 the sender seals in [`parley_fuzz::session_pair`]: the first (with
/// the agreement) and ones after it, each of which opens in a fresh copy of the recipient's side.
fn session_seeds(corpus: &Corpus) {
    let (mut ours, theirs) = parley_fuzz::session_pair();
    let (sender, recipient) = (sender(), recipient());
    for (name, (header, body)) in ["text", "ttl", "attachments"]
        .into_iter()
        .zip(session_messages())
    {
        let sealed = sender
            .seal_in(&header, &body, &mut ours, parley_domain::Timestamp(2))
            .expect("seals");
        let mut copy = theirs.clone();
        recipient
            .open_in(
                &sealed.bytes,
                &sender.ed25519_public(),
                &mut copy,
                parley_domain::Timestamp(3),
            )
            .expect("a seed opens in the target's session");
        corpus.put("envelope_session", name, sealed.bytes);
    }
}

fn attachment_seeds(corpus: &Corpus) {
    let target = "attachment_cipher";
    let key = Secret32::new([0x61; 32]);
    let mut empty = Vec::new();
    seal_attachment(&key, &b""[..], &mut empty).expect("seals");
    corpus.put(target, "empty-file", with(0, &empty));
    let mut small = Vec::new();
    seal_attachment(&key, &b"a small file"[..], &mut small).expect("seals");
    corpus.put(target, "small-file", with(0, &small));
    // length u24, read size u16, edit, position u32, pattern.
    let plan = |len: u32, piece: u16, edit: u8, position: u32| {
        let mut seed = vec![1];
        seed.extend_from_slice(&len.to_be_bytes()[1..]);
        seed.extend_from_slice(&piece.to_be_bytes());
        seed.push(edit);
        seed.extend_from_slice(&position.to_be_bytes());
        seed.extend_from_slice(b"pattern");
        seed
    };
    let chunk = u32::try_from(parley_envelope::CHUNK).expect("64 KiB");
    for (name, len, piece, edit, position) in [
        ("intact-empty", 0, 1, 0, 0),
        ("intact-small", 100, 7, 0, 0),
        ("intact-one-chunk", chunk, 4096, 0, 0),
        ("intact-chunk-and-a-byte", chunk + 1, 65_535, 0, 0),
        ("flipped", 300, 64, 1, 150),
        ("cut", 2 * chunk + 5, 1000, 2, chunk + 16),
        ("extended", 50, 50, 3, 0),
        ("chunk-dropped", 3 * chunk, 8192, 4, 1),
        ("chunks-swapped", 3 * chunk + 9, 8192, 5, 1),
    ] {
        corpus.put(target, name, plan(len, piece, edit, position));
    }

    let target = "attachment_stream";
    let head = |version: u8, content: &[u8], size: u64| {
        let mut seed = vec![version];
        seed.extend_from_slice(&sha256(content));
        seed.extend_from_slice(&size.to_be_bytes());
        seed
    };
    let file = b"an encrypted file, as far as the stream can tell".as_slice();
    let size = file.len() as u64;
    let stream = |piece: u8, head: Vec<u8>, content: &[u8]| [&[piece][..], &head, content].concat();
    corpus.put(target, "stored", stream(255, head(1, file, size), file));
    corpus.put(
        target,
        "stored-one-byte-reads",
        stream(1, head(1, file, size), file),
    );
    corpus.put(target, "empty", stream(255, head(1, b"", 0), b""));
    corpus.put(
        target,
        "mismatch",
        stream(255, head(1, b"other", size), file),
    );
    corpus.put(
        target,
        "ends-early",
        stream(255, head(1, file, size), &file[..10]),
    );
    corpus.put(
        target,
        "too-large",
        stream(255, head(1, file, 1 << 40), b""),
    );
    corpus.put(target, "version-2", stream(255, head(2, file, size), file));
    corpus.put(
        target,
        "short-head",
        stream(255, head(1, file, size)[..20].to_vec(), b""),
    );
}

fn protocol_seeds(corpus: &Corpus) {
    let (_, envelope) = &envelopes()[0];
    let mut meta = Meta::new();
    meta.insert(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    );
    let target = "message_protocol";
    let request = Request {
        n: 0,
        envelope: envelope.clone(),
        meta: meta.clone(),
    };
    corpus.put(target, "request", message::frame(&request.encode()));
    let mut forged = minicbor::Encoder::new(Vec::new());
    forged
        .map(3)
        .and_then(|e| e.str("n")?.u64(1)?.str("envelope")?.bytes(envelope))
        .and_then(|e| e.str("from")?.str("bob"))
        .expect("CBOR");
    corpus.put(
        target,
        "request-forged-from",
        message::frame(&forged.into_writer()),
    );
    corpus.put(target, "request-oversized-length", u32::MAX.to_be_bytes());
    let digest = parley_envelope::digest(envelope).0;
    let answers = [
        ("receipt", Answer::Receipt { digest, sig: None }),
        (
            "receipt-signed",
            Answer::Receipt {
                digest,
                sig: Some([7; 64]),
            },
        ),
        (
            "refused-later",
            Answer::Refused {
                reason: "the recipient is busy; retry later".to_owned(),
                permanent: false,
            },
        ),
        (
            "refused-for-good",
            Answer::Refused {
                reason: "the envelope's signature does not verify".to_owned(),
                permanent: true,
            },
        ),
    ];
    for (name, answer) in answers {
        let response = Response { n: 3, answer };
        corpus.put(target, name, message::frame(&response.encode()));
    }

    let target = "directory_protocol";
    corpus.put_json(
        target,
        "publish",
        &DirectoryRequest::Publish {
            addrs: vec![
                "/ip4/127.0.0.1/tcp/4001".to_owned(),
                "/ip6/::1/tcp/4001".to_owned(),
                "/dns4/rendezvous.example/tcp/443".to_owned(),
            ],
            meta: meta.clone(),
        },
    );
    corpus.put_json(
        target,
        "lookup",
        &DirectoryRequest::Lookup {
            username: "bob".to_owned(),
            meta,
        },
    );
    let peer = parley_p2p::pki::peer_id(&sender().ed25519_public()).expect("a peer id");
    corpus.put_json(
        target,
        "found",
        &DirectoryResponse::Lookup {
            devices: vec![
                PeerRecord {
                    peer_id: peer.to_string(),
                    addrs: vec![format!("/ip4/192.0.2.7/tcp/4001/p2p/{peer}")],
                },
                PeerRecord {
                    peer_id: peer.to_string(),
                    addrs: Vec::new(),
                },
            ],
        },
    );
    corpus.put_json(
        target,
        "not-found",
        &DirectoryResponse::Lookup {
            devices: Vec::new(),
        },
    );
    corpus.put_json(target, "published", &DirectoryResponse::Published);
    corpus.put_json(
        target,
        "rate-limited",
        &DirectoryResponse::RateLimited {
            retry_after_ms: 200,
        },
    );
    corpus.put_json(
        target,
        "refused",
        &DirectoryResponse::Refused {
            reason: "metadata too large".to_owned(),
        },
    );
}

fn control_seeds(corpus: &Corpus) {
    use control::{Request, Response};
    let target = "control_socket";
    let requests = [
        (
            "send",
            Request::Send {
                to: user("bob"),
                text: MessageText::parse("hello").expect("a valid text"),
                ttl: Some(Ttl::parse("1h").expect("a valid TTL")),
                attachments: vec![PathBuf::from("/home/alice/photo.jpg")],
            },
        ),
        (
            "save-attachment",
            Request::SaveAttachment {
                with: user("bob"),
                id: MessageId::parse("0123456789abcdef0123456789ABCDEF").expect("a valid id"),
                index: 0,
                to: PathBuf::from("/tmp/new-file"),
            },
        ),
        (
            "history",
            Request::History {
                with: user("bob"),
            },
        ),
        ("conversations", Request::Conversations),
        ("status", Request::Status),
        (
            "contact",
            Request::Contact {
                user: user("bob"),
            },
        ),
        (
            "trust",
            Request::Trust {
                user: user("bob"),
            },
        ),
        ("subscribe", Request::Subscribe),
        ("totp-enable", Request::TotpEnable),
        ("devices", Request::Devices),
        (
            "totp-disable",
            Request::TotpDisable {
                code: "123456".to_owned(),
            },
        ),
    ];
    for (name, request) in &requests {
        let mut line = serde_json::to_vec(request).expect("JSON");
        line.push(b'\n');
        corpus.put(target, name, line);
    }
    corpus.put(
        target,
        "ttl-clamped",
        r#"{"cmd":"send","to":"bob","text":"x","ttl":"99999d"}"#,
    );
    let ok = Response::Ok {
        data: serde_json::json!({"id": "00112233445566778899aabbccddeeff", "to": "bob", "delivered": true}),
    };
    corpus.put_json(target, "response-ok", &ok);
    let error = Response::<serde_json::Value>::Error {
        error: "bob is offline".to_owned(),
        code: "offline".to_owned(),
    };
    corpus.put_json(target, "response-error", &error);
}

/// A CSR made the way the enrollment client makes it: CN and URI SAN name the user, the
/// X25519 key in a non-critical extension, signed by [`CSR_ED25519`]; `wishes` may ask for
/// more.
fn csr_der(
    name: &str,
    x25519: Option<[u8; 32]>,
    wishes: impl FnOnce(&mut CertificateParams),
) -> Vec<u8> {
    let key = parley_rendezvous::ca::key_pair(&Secret32::new(CSR_ED25519)).expect("a key pair");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::URI(
        Ia5String::try_from(user_uri(&user(name))).expect("ASCII"),
    )];
    if let Some(x25519) = x25519 {
        params
            .custom_extensions
            .push(parley_rendezvous::ca::x25519_extension(&x25519));
    }
    wishes(&mut params);
    params
        .serialize_request(&key)
        .expect("a CSR")
        .der()
        .to_vec()
}

/// The first DER element inside the outer SEQUENCE of `der`: a CSR's CertificationRequestInfo.
fn first_inner(der: &[u8]) -> &[u8] {
    fn header_len(der: &[u8]) -> (usize, usize) {
        match der[1] {
            n if n < 0x80 => (2, usize::from(n)),
            n => {
                let count = usize::from(n & 0x7f);
                let len = der[2..2 + count]
                    .iter()
                    .fold(0, |acc, &b| acc << 8 | usize::from(b));
                (2 + count, len)
            }
        }
    }
    let (outer, _) = header_len(der);
    let inner = &der[outer..];
    let (head, len) = header_len(inner);
    &inner[..head + len]
}

fn enrollment_seeds(corpus: &Corpus) {
    let alice = user("alice");
    let x25519 = recipient().x25519_public();
    let der = csr_der("alice", Some(x25519), |_| {});
    let pem = parley_fuzz::pem("CERTIFICATE REQUEST", &der);
    let keys = parley_rendezvous::csr::parse(&pem, &alice).expect("the client's CSR is valid");
    assert_eq!(keys.x25519, Some(x25519));

    let target = "enroll_csr";
    corpus.put(target, "pem", with(0, pem.as_bytes()));
    corpus.put(target, "der", with(1, &der));
    corpus.put(target, "info", with(2, first_inner(&der)));
    type Wish = fn(&mut CertificateParams);
    let wishes: [(&str, Wish); 6] = [
        ("without-x25519", |_| {}),
        ("not-ca", |p| p.is_ca = IsCa::ExplicitNoCa),
        ("ca", |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
        }),
        ("key-usages", |p| {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }),
        ("signs-certificates", |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign]
        }),
        ("two-names", |p| {
            p.subject_alt_names.push(SanType::DnsName(
                Ia5String::try_from("example.org").expect("ASCII"),
            ))
        }),
    ];
    for (name, wish) in wishes {
        let x25519 = (name != "without-x25519").then_some(x25519);
        let der = csr_der("alice", x25519, wish);
        corpus.put(target, &format!("info-{name}"), with(2, first_inner(&der)));
    }
    let other_user = csr_der("mallory", Some(x25519), |_| {});
    corpus.put(target, "info-other-user", with(2, first_inner(&other_user)));
    corpus.put(
        target,
        "not-a-csr",
        with(
            0,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
    );

    let target = "enroll_request";
    let body = |username: &str, password: &str, csr: &str| serde_json::json!({"username": username, "password": password, "csr_pem": csr});
    corpus.put_json(
        target,
        "valid",
        &body("alice", "correct horse battery staple", &pem),
    );
    corpus.put_json(target, "bad-username", &body("Alice", "pw", &pem));
    corpus.put_json(target, "empty-password", &body("alice", "", &pem));
    corpus.put_json(
        target,
        "bad-csr",
        &body("alice", "pw", "-----BEGIN CERTIFICATE REQUEST-----\n"),
    );
    corpus.put(
        target,
        "unknown-field",
        r#"{"username":"alice","password":"pw","csr_pem":"","admin":true}"#,
    );
}

/// A ratchet state on each side after alice's first message, and that message framed for
/// bob's state.
fn ratchet_seeds(corpus: &Corpus) {
    use parley_domain::ratchet::{Key32, KeyPair, Ratchet};
    let target = "ratchet_state";
    let root = Key32::new([0x07; 32]);
    let prekey = KeyPair::from_secret(Key32::new([0x09; 32]));
    let mut alice = Ratchet::initiator(&root, prekey.public());
    let bob = Ratchet::responder(&root, prekey);
    let sealed = alice
        .seal(Key32::new([0x03; 32]), b"hello", b"fuzz")
        .expect("a first message seals");
    corpus.put(target, "initiator", with(0, &alice.encode()));
    let state = bob.encode();
    corpus.put(target, "responder", with(0, &state));
    let len = u16::try_from(state.len()).expect("a fresh state is small");
    let framed = [
        &sealed.header.encode()[..],
        &len.to_be_bytes(),
        &state,
        &sealed.ciphertext,
    ]
    .concat();
    corpus.put(target, "first-message", with(1, &framed));
}

/// bob's first list, signed by its device; and a version 4 signed by the fuzz target's held
/// list's device 1 (its signature is not what the target checks against the held list).
fn device_list_seeds(corpus: &Corpus) {
    use ed25519_dalek::{Signer as _, SigningKey};
    use parley_domain::Timestamp;
    use parley_domain::devices::{ListedDevice, Unsigned};
    let target = "device_list";
    let key = SigningKey::from_bytes(&[1; 32]);
    let public = key.verifying_key().to_bytes();
    let device = |ed25519: [u8; 32], name: &str| ListedDevice {
        ed25519,
        added_at: Timestamp(1_800_000_000_000),
        name: name.to_owned(),
    };
    let sign = |unsigned: Unsigned, signer: [u8; 32]| {
        let bytes = unsigned.signed_bytes(&signer).expect("fits");
        unsigned.signed(key.sign(&bytes).to_bytes(), signer)
    };
    let first = sign(
        Unsigned::first(user("bob"), device(public, "laptop")).expect("a first list"),
        public,
    );
    corpus.put(target, "first", first.encode().expect("fits"));
    let next = sign(
        Unsigned {
            user: user("bob"),
            version: 4,
            devices: vec![device([1; 32], "device 1"), device([3; 32], "desktop")],
        },
        [1; 32],
    );
    corpus.put(target, "next", next.encode().expect("fits"));
}

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let corpus = Corpus { root };
    envelope_seeds(&corpus);
    attachment_seeds(&corpus);
    protocol_seeds(&corpus);
    control_seeds(&corpus);
    enrollment_seeds(&corpus);
    ratchet_seeds(&corpus);
    device_list_seeds(&corpus);
    println!("seeds written to {}", corpus.root.display());
}
