//! What the fuzz targets share: fixed keys, envelopes built byte by byte as
//! `docs/protocol.md` describes them, a PEM and DER helper for CSRs, an in-memory byte
//! stream, and the invariants every decoded value must keep.
//!
//! The targets live in `fuzz_targets/`, the seeding program in `src/bin/seed.rs`; how to run
//! them is in `docs/fuzzing.md`.

use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use parley_domain::envelope::{MAX_ATTACHMENTS, check_attachment_name};
use parley_domain::message::MAX_TEXT_BYTES;
use parley_domain::{Body, Header, MessageText, Secret32, Ttl, Username};
use parley_envelope::Sealer;
use sha2::{Digest as _, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

/// The sender's Ed25519 secret in every envelope target.
pub const SENDER_ED25519: [u8; 32] = [0x5e; 32];
/// The sender's X25519 secret.
pub const SENDER_X25519: [u8; 32] = [0x5f; 32];
/// The recipient's Ed25519 secret.
pub const RECIPIENT_ED25519: [u8; 32] = [0x7e; 32];
/// The recipient's X25519 secret: the device that opens envelopes in the targets.
pub const RECIPIENT_X25519: [u8; 32] = [0x7f; 32];
/// The ephemeral X25519 secret of envelopes built by [`seal_parts`].
const EPHEMERAL: [u8; 32] = [0x3a; 32];
/// The AES-GCM nonce of envelopes built by [`seal_parts`].
const NONCE: [u8; 12] = [0x4b; 12];
/// The Ed25519 secret that signs CSRs built by [`signed_csr_pem`].
pub const CSR_ED25519: [u8; 32] = [0x2c; 32];

/// The sending device.
#[must_use]
pub fn sender() -> Sealer {
    Sealer::new(
        &Secret32::new(SENDER_ED25519),
        &Secret32::new(SENDER_X25519),
    )
}

/// The receiving device.
#[must_use]
pub fn recipient() -> Sealer {
    Sealer::new(
        &Secret32::new(RECIPIENT_ED25519),
        &Secret32::new(RECIPIENT_X25519),
    )
}

/// The AES-256-GCM cipher of an envelope, derived as the protocol documents it.
fn envelope_cipher(shared: &[u8; 32], eph_pub: &[u8; 32], recipient_pub: &[u8; 32]) -> Aes256Gcm {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(recipient_pub);
    let mut key = Key::<Aes256Gcm>::default();
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(b"parley/envelope/v1/aes-256-gcm", &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&key)
}

fn associated_data(header: &[u8], eph_pub: &[u8; 32]) -> Vec<u8> {
    [b"parley/envelope/v1".as_slice(), &[1], header, eph_pub].concat()
}

/// What every envelope built by [`seal_parts`] shares: the cipher (fixed ephemeral and
/// recipient keys), the ephemeral public key and the sender's signing key. Computed once: the
/// key agreement would otherwise cost more than the decoder under test.
struct Fixed {
    cipher: Aes256Gcm,
    eph_pub: [u8; 32],
    signing: SigningKey,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let eph = StaticSecret::from(EPHEMERAL);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let recipient_pub = PublicKey::from(&StaticSecret::from(RECIPIENT_X25519)).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(recipient_pub));
    Fixed {
        cipher: envelope_cipher(shared.as_bytes(), &eph_pub, &recipient_pub),
        eph_pub,
        signing: SigningKey::from_bytes(&SENDER_ED25519),
    }
});

/// An envelope (version 1) from [`sender`] to [`recipient`] around already-encoded header and
/// body bytes, built from `docs/protocol.md` alone: properly encrypted and signed whatever
/// the bytes say, so the decoder behind the signature check gets to read them.
#[must_use]
pub fn seal_parts(header: &[u8], body: &[u8]) -> Vec<u8> {
    let fixed = &*FIXED;
    let aad = associated_data(header, &fixed.eph_pub);
    let ciphertext = fixed
        .cipher
        .encrypt(
            &Nonce::<U12>::from(NONCE),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts any length a fuzz input can have");
    let mut bytes = vec![1];
    bytes.extend_from_slice(&len_u32(header.len()).to_be_bytes());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&fixed.eph_pub);
    bytes.extend_from_slice(&NONCE);
    bytes.extend_from_slice(&len_u32(ciphertext.len()).to_be_bytes());
    bytes.extend_from_slice(&ciphertext);
    let signed = [b"parley/envelope/v1/signature".as_slice(), &bytes].concat();
    bytes.extend_from_slice(&fixed.signing.sign(&signed).to_bytes());
    bytes
}

/// The header bytes and the decrypted body bytes of an envelope sealed to [`recipient`], read
/// as `docs/protocol.md` describes them (no signature check). `None` if it does not parse or
/// decrypt.
#[must_use]
pub fn open_parts(envelope: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let header_len =
        usize::try_from(u32::from_be_bytes(envelope.get(1..5)?.try_into().ok()?)).ok()?;
    let header = envelope.get(5..5 + header_len)?;
    let rest = envelope.get(5 + header_len..)?;
    let eph_pub: [u8; 32] = rest.get(..32)?.try_into().ok()?;
    let nonce: [u8; 12] = rest.get(32..44)?.try_into().ok()?;
    let ct_len = usize::try_from(u32::from_be_bytes(rest.get(44..48)?.try_into().ok()?)).ok()?;
    let ciphertext = rest.get(48..48 + ct_len)?;
    let secret = StaticSecret::from(RECIPIENT_X25519);
    let recipient_pub = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(eph_pub));
    let body = envelope_cipher(shared.as_bytes(), &eph_pub, &recipient_pub)
        .decrypt(
            &Nonce::<U12>::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &associated_data(header, &eph_pub),
            },
        )
        .ok()?;
    Some((header.to_vec(), body))
}

/// `header` in the framing of an envelope (zero keys, a 16-byte ciphertext, a zero
/// signature): what [`parley_envelope::read_header`] needs around a header.
#[must_use]
pub fn frame_header(header: &[u8]) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&len_u32(header.len()).to_be_bytes());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 32 + 12]);
    bytes.extend_from_slice(&16u32.to_be_bytes());
    bytes.extend_from_slice(&[0; 16 + 64]);
    bytes
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("fuzz inputs are far shorter than 4 GiB")
}

/// Splits a fuzz input into two parts: a big-endian `u16` length, that many bytes (or all
/// there are), and the rest.
#[must_use]
pub fn split_u16(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (data, &[]);
    };
    rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()))
}

/// The rules a decoded header keeps, whichever path produced it (`docs/protocol.md`,
/// Limits).
///
/// # Panics
/// When one is broken: that is a finding.
pub fn check_header(header: &Header) {
    for name in [&header.from, &header.to] {
        assert_eq!(
            Username::parse(name.as_str()).as_ref(),
            Ok(name),
            "a decoded username does not parse again"
        );
    }
    assert!(header.seq >= 1, "a decoded header has seq 0");
    if let Some(ttl) = header.ttl {
        assert!(
            (Ttl::MIN..=Ttl::MAX).contains(&ttl),
            "a decoded TTL is outside 1 s ..= 30 days"
        );
    }
    assert!(
        header.attachments.len() <= MAX_ATTACHMENTS,
        "a decoded header names more than {MAX_ATTACHMENTS} attachments"
    );
    for attachment in &header.attachments {
        assert!(
            check_attachment_name(&attachment.name).is_ok(),
            "a decoded attachment name breaks the rules"
        );
    }
}

/// The rules a decoded body keeps, given the header it came with.
///
/// # Panics
/// When one is broken: that is a finding.
pub fn check_body(header: &Header, body: &Body) {
    let text = body.text.as_str();
    assert!(
        !text.is_empty() && text.len() <= MAX_TEXT_BYTES,
        "a decoded text is empty or longer than 16 KiB"
    );
    assert!(
        MessageText::parse(text.to_owned()).is_ok(),
        "a decoded text does not parse again"
    );
    assert_eq!(
        body.attachment_keys.len(),
        header.attachments.len(),
        "a decoded body does not carry one key per attachment"
    );
}

/// SHA-256 of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A PEM block.
#[must_use]
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A DER element: `tag`, the definite length of `content`, `content`.
#[must_use]
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).expect("checked"));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).expect("at most 8 length bytes"));
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A PEM `CERTIFICATE REQUEST` around `info` (the DER of a CertificationRequestInfo), signed
/// with [`CSR_ED25519`]: valid whenever `info` is valid and names that key.
#[must_use]
pub fn signed_csr_pem(info: &[u8]) -> String {
    // AlgorithmIdentifier { id-Ed25519 (1.3.101.112) }, no parameters.
    const ED25519_ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_bytes(&CSR_ED25519));
    let signature = KEY.sign(info).to_bytes();
    let bit_string = der(0x03, &[&[0][..], &signature].concat());
    let csr = der(0x30, &[info, &ED25519_ALGORITHM, &bit_string].concat());
    pem("CERTIFICATE REQUEST", &csr)
}

/// A byte stream in memory: reads come from `input`, at most `chunk` bytes at a time, and
/// the stream ends with it; writes collect in `output`.
#[derive(Debug)]
pub struct Duplex<'a> {
    input: &'a [u8],
    chunk: usize,
    /// Everything written so far.
    pub output: Vec<u8>,
}

impl<'a> Duplex<'a> {
    /// A stream that reads `input` in pieces of at most `chunk` bytes (at least 1).
    #[must_use]
    pub fn new(input: &'a [u8], chunk: usize) -> Self {
        Self {
            input,
            chunk: chunk.max(1),
            output: Vec::new(),
        }
    }
}

impl futures::AsyncRead for Duplex<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.input.len()).min(self.chunk);
        let (head, tail) = self.input.split_at(n);
        buf[..n].copy_from_slice(head);
        self.input = tail;
        Poll::Ready(Ok(n))
    }
}

impl futures::AsyncWrite for Duplex<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Decodes `data` as JSON of a `T`; if it decodes, checks that encoding and decoding again
/// gives the same JSON.
pub fn json_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(
    data: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&json).expect("an encoded value decodes");
    assert_eq!(
        serde_json::to_vec(&again).expect("encodes"),
        json,
        "decode → encode → decode changed the value"
    );
    Some(value)
}

/// A ratchet session between the sender and the recipient, both sides, made without an
/// agreement (a fixed root and signed prekey): the same in every process, so that envelopes
/// sealed by the seeding program open in the target. `(sender's, recipient's)`.
#[must_use]
pub fn session_pair() -> (
    parley_domain::ratchet::SessionState,
    parley_domain::ratchet::SessionState,
) {
    use parley_domain::Timestamp;
    use parley_domain::agreement::{InitialMessage, KEM_CIPHERTEXT_LEN, KemCiphertext};
    use parley_domain::ratchet::{Key32, KeyPair, PublicKey as RatchetKey, Ratchet, SessionState};
    let root = Key32::new([0x61; 32]);
    let prekey = KeyPair::from_secret(Key32::new([0x62; 32]));
    let initial = InitialMessage {
        identity: RatchetKey(PublicKey::from(&StaticSecret::from(SENDER_X25519)).to_bytes()),
        ephemeral: RatchetKey([0x63; 32]),
        signed_prekey_id: 1,
        one_time_prekey_id: Some(2),
        kem_prekey_id: 3,
        kem_ciphertext: KemCiphertext::parse(&[0x64; KEM_CIPHERTEXT_LEN])
            .expect("a ciphertext of the right length"),
    };
    let ours = SessionState::opened(
        Ratchet::initiator(&root, prekey.public()),
        initial.clone(),
        Timestamp(1),
    );
    let theirs = SessionState::answered(Ratchet::responder(&root, prekey), &initial, Timestamp(1));
    (ours, theirs)
}
