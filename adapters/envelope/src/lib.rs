//! Parley's sealed, signed message envelope, and the encryption of attachments.
//!
//! A message travels as one envelope: a plaintext header (who, when, which chain position,
//! which attachments) that is signed and bound to the ciphertext, and a body (the text and the
//! attachment keys) that only the recipient device can decrypt. Attachments travel apart, each
//! encrypted under its own key (module [`attachment`]).
//!
//! # Wire format, version 1
//!
//! All integers are unsigned big-endian unless marked `i64` (two's complement, big-endian).
//!
//! ```text
//! envelope    = version:u8 (= 1) ‖ header_len:u32 ‖ header ‖ eph_pub:[32] ‖ nonce:[12]
//!               ‖ ct_len:u32 ‖ ciphertext (ct_len bytes, including the 16-byte tag)
//!               ‖ signature:[64]
//! header      = id:[16] ‖ from_len:u8 ‖ from ‖ to_len:u8 ‖ to ‖ sent_at:i64
//!               ‖ ttl_ms:u64 (0 = none) ‖ seq:u64 ‖ prev:[32] ‖ n_att:u8
//!               ‖ n_att × (name_len:u16 ‖ name ‖ size:u64 ‖ sha256:[32])
//! body(plain) = text_len:u32 ‖ text (UTF-8) ‖ n_keys:u8
//!               ‖ n_keys × (key:[32] ‖ plain_sha256:[32])
//! ```
//!
//! `sent_at` is milliseconds since the Unix epoch; `from`, `to` and the attachment names are
//! UTF-8. Nothing may follow the signature, the header's last field or the body's last field.
//!
//! # Cryptography
//!
//! * **Key agreement.** For every message the sender draws a fresh ephemeral X25519 secret
//!   from the operating system and computes `shared = X25519(eph, recipient_x25519_pub)`.
//!   A non-contributory result (a low-order public key, which makes `shared` all zeros) is
//!   refused on both sides: when sealing ([`SealError::WeakRecipientKey`]) and when opening
//!   ([`OpenError::WeakKey`]).
//! * **Key derivation.** `key = HKDF-SHA256(salt = eph_pub ‖ recipient_pub, ikm = shared,
//!   info = "parley/envelope/v1/aes-256-gcm")`, 32 bytes.
//! * **Encryption.** AES-256-GCM with a random 12-byte nonce and associated data
//!   `"parley/envelope/v1" ‖ version ‖ header ‖ eph_pub`, so the header and the ephemeral key
//!   cannot be moved onto another ciphertext. Because the ephemeral secret is fresh for every
//!   message, every AES key encrypts exactly one plaintext: a nonce can never repeat under one
//!   key (the random nonce is defence in depth, not what uniqueness rests on).
//! * **Signature.** Ed25519 by the sender's device key over
//!   `"parley/envelope/v1/signature" ‖ every envelope byte before the signature`, checked
//!   with `verify_strict` (no small-order keys or `R`, canonical `s`).
//! * **Digest.** The hash chain names an envelope by the SHA-256 of all its bytes
//!   ([`digest`]).
//!
//! # Limits
//!
//! An envelope is at most [`MAX_ENVELOPE_BYTES`] (checked before anything else), its header at
//! most [`MAX_HEADER_BYTES`]. Usernames must parse as [`Username`]s, attachments are at most
//! [`MAX_ATTACHMENTS`] with valid names, the body carries exactly one key per attachment of
//! the header, the text must parse as a [`MessageText`], `ttl_ms` becomes
//! [`Ttl::from_millis`] (0 = no TTL), `seq` is at least 1, and only version 1 is understood.
//!
//! # Opening
//!
//! In this order: size check → structure → signature (with the sender's Ed25519 key) →
//! key agreement (contributory) → decryption → body structure → the rules above. Nothing
//! is decrypted before the signature holds, and nothing is believed before it decrypts.
//!
//! The caller still has to check what only it knows: that `header.to` is this device's user,
//! that the key it passed belongs to `header.from`, and the chain position.
//!
//! [`Username`]: parley_domain::Username
//! [`MessageText`]: parley_domain::MessageText
//! [`Ttl::from_millis`]: parley_domain::Ttl::from_millis
//! [`MAX_ATTACHMENTS`]: parley_domain::envelope::MAX_ATTACHMENTS

pub mod attachment;
pub mod kem;
pub mod v2;
mod wire;
pub mod wrap;

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use parley_domain::envelope::{MAX_ATTACHMENTS, check_attachment_name};
use parley_domain::{Body, Digest, Header, Secret32};
use parley_usecases::ports::EnvelopeError;
use sha2::{Digest as _, Sha256};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};

pub use attachment::{
    AttachmentError, CHUNK, SealedAttachment, new_attachment_key, open_attachment, seal_attachment,
};

use wire::{RawBody, RawHeader, Reader};

/// The only envelope version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The largest envelope accepted, in bytes: checked before anything else.
pub const MAX_ENVELOPE_BYTES: usize = 24 * 1024;
/// The largest header accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 4096;

const AAD_CONTEXT: &[u8] = b"parley/envelope/v1";
const SIGNATURE_CONTEXT: &[u8] = b"parley/envelope/v1/signature";
const HKDF_INFO: &[u8] = b"parley/envelope/v1/aes-256-gcm";
const EPH_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SIGNATURE_LEN: usize = 64;
/// Every envelope byte that is not header or ciphertext.
const FRAMING: usize = 1 + 4 + EPH_LEN + NONCE_LEN + 4 + SIGNATURE_LEN;

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The recipient's X25519 public key is of low order, so no secret could be agreed.
    #[error("the recipient's encryption key is weak and cannot be used")]
    WeakRecipientKey,
    /// The envelope would exceed [`MAX_ENVELOPE_BYTES`] or its header [`MAX_HEADER_BYTES`].
    #[error("the message is too large to be sealed")]
    TooLarge,
    /// The header or body breaks a rule; the text says which.
    #[error("the message cannot be sealed because {0}")]
    Invalid(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed")]
    Randomness,
}

impl SealError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::WeakRecipientKey => "weak_recipient_key",
            Self::TooLarge => "too_large",
            Self::Invalid(_) => "invalid",
            Self::Randomness => "randomness",
        }
    }
}

/// Why an envelope could not be opened. The messages never contain key material or text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("the envelope is larger than 24 KiB")]
    TooLarge,
    /// The bytes do not have the structure of an envelope; the text says where.
    #[error("the envelope is malformed: {0}")]
    Malformed(&'static str),
    /// A version this crate does not understand.
    #[error("the envelope has unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The signature does not verify with the sender's key (or that key is not a valid
    /// Ed25519 key).
    #[error("the envelope's signature does not verify with the sender's key")]
    BadSignature,
    /// The envelope's ephemeral key is of low order.
    #[error("the envelope's ephemeral key is weak")]
    WeakKey,
    /// The ciphertext does not decrypt with this device's key and the signed header.
    #[error("the envelope cannot be decrypted by this device")]
    Undecryptable,
    /// The signed header breaks a rule; the text says which.
    #[error("the envelope's header is invalid because {0}")]
    InvalidHeader(&'static str),
    /// The decrypted body breaks a rule; the text says which.
    #[error("the envelope's body is invalid because {0}")]
    InvalidBody(&'static str),
    /// The conversation's ratchet refused it (a replay, a key gone or too old, too far ahead,
    /// an earlier DH step missing, or it does not decrypt).
    #[error("the conversation's keys refused the envelope: {0}")]
    Ratchet(parley_domain::ratchet::OpenError),
}

impl OpenError {
    /// A stable snake_case name for the error, for logs and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::BadSignature => "bad_signature",
            Self::WeakKey => "weak_key",
            Self::Undecryptable => "undecryptable",
            Self::InvalidHeader(_) => "invalid_header",
            Self::InvalidBody(_) => "invalid_body",
            Self::Ratchet(e) => e.code(),
        }
    }
}

/// A sealed envelope, ready to send, and its digest (the next message's `prev`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The envelope bytes.
    pub bytes: Vec<u8>,
    /// SHA-256 of [`Sealed::bytes`].
    pub digest: Digest,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("len", &self.bytes.len())
            .field("digest", &self.digest)
            .finish()
    }
}

/// An opened envelope: signature verified, body decrypted, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The signed header.
    pub header: Header,
    /// The decrypted body.
    pub body: Body,
    /// SHA-256 of the envelope bytes.
    pub digest: Digest,
}

/// The SHA-256 of an envelope's bytes: how the hash chain names it.
#[must_use]
pub fn digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// A device's keys for sealing and opening envelopes: its Ed25519 signing key and its X25519
/// static secret. `Debug` prints only the public keys.
pub struct Sealer {
    signing: SigningKey,
    x25519: StaticSecret,
    x25519_public: PublicKey,
    /// The interval each session's next timed DH step is drawn from.
    rekey_every: (std::time::Duration, std::time::Duration),
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("ed25519_public", &Hex(&self.ed25519_public()))
            .field("x25519_public", &Hex(self.x25519_public.as_bytes()))
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The parts of an envelope, borrowed from its bytes, after the structure has been checked.
struct Parts<'a> {
    version: u8,
    header: &'a [u8],
    eph_pub: [u8; EPH_LEN],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    signed: &'a [u8],
    signature: [u8; SIGNATURE_LEN],
}

impl<'a> Parts<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, OpenError> {
        const TRUNCATED: OpenError = OpenError::Malformed("the envelope ends too early");
        let mut r = Reader::new(bytes);
        let version = r.u8().ok_or(TRUNCATED)?;
        if version != VERSION {
            return Err(OpenError::UnsupportedVersion(version));
        }
        let header_len = r.u32().ok_or(TRUNCATED)?;
        let header_len = usize::try_from(header_len)
            .ok()
            .filter(|&n| n <= MAX_HEADER_BYTES)
            .ok_or(OpenError::Malformed("the header is longer than 4096 bytes"))?;
        let header = r.take(header_len).ok_or(TRUNCATED)?;
        let eph_pub = r.array().ok_or(TRUNCATED)?;
        let nonce = r.array().ok_or(TRUNCATED)?;
        let ciphertext = r.bytes_u32().ok_or(TRUNCATED)?;
        if ciphertext.len() < TAG_LEN {
            return Err(OpenError::Malformed(
                "the ciphertext is shorter than its tag",
            ));
        }
        let signature = r.array().ok_or(TRUNCATED)?;
        if !r.is_empty() {
            return Err(OpenError::Malformed("trailing bytes after the signature"));
        }
        let signed = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .and_then(|end| bytes.get(..end))
            .ok_or(TRUNCATED)?;
        Ok(Self {
            version,
            header,
            eph_pub,
            nonce,
            ciphertext,
            signed,
            signature,
        })
    }
}

fn associated_data(version: u8, header: &[u8], eph_pub: &[u8; EPH_LEN]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + 1 + header.len() + EPH_LEN);
    aad.extend_from_slice(AAD_CONTEXT);
    aad.push(version);
    aad.extend_from_slice(header);
    aad.extend_from_slice(eph_pub);
    aad
}

/// The AES-256-GCM cipher for one envelope; `None` only if HKDF refused 32 bytes of output,
/// which it never does.
fn envelope_cipher(
    shared: &SharedSecret,
    eph_pub: &[u8; EPH_LEN],
    recipient_pub: &[u8; 32],
) -> Option<Aes256Gcm> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(recipient_pub);
    let mut key = Key::<Aes256Gcm>::default();
    Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
        .expand(HKDF_INFO, &mut key)
        .ok()?;
    Some(Aes256Gcm::new(&key))
}

fn signed_message(signed: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + signed.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(signed);
    message
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| SealError::Randomness)?;
    Ok(out)
}

impl Sealer {
    /// A sealer with this device's Ed25519 signing key and X25519 static secret.
    #[must_use]
    pub fn new(ed25519: &Secret32, x25519: &Secret32) -> Self {
        let x25519 = StaticSecret::from(*x25519.expose());
        Self {
            signing: SigningKey::from_bytes(ed25519.expose()),
            x25519_public: PublicKey::from(&x25519),
            x25519,
            rekey_every: v2::DEFAULT_REKEY_EVERY,
        }
    }

    /// This device's signature on a receipt for the envelope `digest`: it stored it
    /// ([`parley_domain::receipt`]).
    #[must_use]
    pub fn sign_receipt(&self, digest: &Digest) -> [u8; 64] {
        self.signing
            .sign(&parley_domain::receipt::signed_message(digest))
            .to_bytes()
    }

    /// This device's Ed25519 public key: what senders' envelopes are checked against.
    #[must_use]
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// This device's X25519 public key: what others seal to.
    #[must_use]
    pub fn x25519_public(&self) -> [u8; 32] {
        self.x25519_public.to_bytes()
    }

    /// Seals `body` for the device whose X25519 public key is `recipient_x25519`, under the
    /// signed `header`.
    ///
    /// # Errors
    /// [`SealError::Invalid`] if `seq` is 0, there are more than [`MAX_ATTACHMENTS`]
    /// attachments, an attachment name is invalid or the body does not carry exactly one key
    /// per attachment; [`SealError::WeakRecipientKey`] for a low-order recipient key;
    /// [`SealError::TooLarge`]; [`SealError::Randomness`].
    pub fn seal(
        &self,
        header: &Header,
        body: &Body,
        recipient_x25519: &[u8; 32],
    ) -> Result<Sealed, SealError> {
        Self::check(header, body)?;
        let header = RawHeader::from_header(header)
            .encode()
            .map_err(SealError::Invalid)?;
        let body = RawBody::from_body(body)
            .encode()
            .map_err(SealError::Invalid)?;
        self.seal_bytes(&header, &body, recipient_x25519)
    }

    /// The rules a header and body must follow to be sealed.
    fn check(header: &Header, body: &Body) -> Result<(), SealError> {
        if header.seq == 0 {
            return Err(SealError::Invalid("the sequence number must be at least 1"));
        }
        if header.attachments.len() > MAX_ATTACHMENTS {
            return Err(SealError::Invalid("there are too many attachments"));
        }
        if header
            .attachments
            .iter()
            .any(|a| check_attachment_name(&a.name).is_err())
        {
            return Err(SealError::Invalid(
                "an attachment name is not a valid file name",
            ));
        }
        if body.attachment_keys.len() != header.attachments.len() {
            return Err(SealError::Invalid(
                "the body does not carry exactly one key per attachment",
            ));
        }
        Ok(())
    }

    /// Seals already-encoded header and body bytes. No rule is checked here beyond the sizes:
    /// [`Sealer::seal`] checks them, and tests use this to build envelopes that break them.
    fn seal_bytes(
        &self,
        header: &[u8],
        body: &[u8],
        recipient_x25519: &[u8; 32],
    ) -> Result<Sealed, SealError> {
        if header.len() > MAX_HEADER_BYTES
            || FRAMING + header.len() + body.len() + TAG_LEN > MAX_ENVELOPE_BYTES
        {
            return Err(SealError::TooLarge);
        }
        let recipient = PublicKey::from(*recipient_x25519);
        let eph = StaticSecret::from(random::<32>()?);
        let eph_pub = PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&recipient);
        if !shared.was_contributory() {
            return Err(SealError::WeakRecipientKey);
        }
        let cipher = envelope_cipher(&shared, &eph_pub, recipient_x25519)
            .ok_or(SealError::Invalid("the key could not be derived"))?;
        let nonce = random::<NONCE_LEN>()?;
        let aad = associated_data(VERSION, header, &eph_pub);
        let ciphertext = cipher
            .encrypt(
                &Nonce::<U12>::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLarge)?;
        self.assemble(VERSION, header, &eph_pub, &nonce, &ciphertext)
    }

    /// Frames the parts and signs them. Refuses only lengths that do not fit.
    fn assemble(
        &self,
        version: u8,
        header: &[u8],
        eph_pub: &[u8; EPH_LEN],
        nonce: &[u8; NONCE_LEN],
        ciphertext: &[u8],
    ) -> Result<Sealed, SealError> {
        let header_len = u32::try_from(header.len()).map_err(|_| SealError::TooLarge)?;
        let ct_len = u32::try_from(ciphertext.len()).map_err(|_| SealError::TooLarge)?;
        let mut bytes = Vec::with_capacity(FRAMING + header.len() + ciphertext.len());
        bytes.push(version);
        bytes.extend_from_slice(&header_len.to_be_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(eph_pub);
        bytes.extend_from_slice(nonce);
        bytes.extend_from_slice(&ct_len.to_be_bytes());
        bytes.extend_from_slice(ciphertext);
        let signature = self.signing.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(SealError::TooLarge);
        }
        Ok(Sealed {
            digest: digest(&bytes),
            bytes,
        })
    }

    /// Opens an envelope addressed to this device and signed by `sender_ed25519`.
    ///
    /// # Errors
    /// See [`OpenError`]; the checks run in the order given in the crate docs.
    pub fn open(&self, bytes: &[u8], sender_ed25519: &[u8; 32]) -> Result<Opened, OpenError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(OpenError::TooLarge);
        }
        let parts = Parts::parse(bytes)?;
        let header = RawHeader::decode(parts.header).map_err(OpenError::Malformed)?;

        let sender =
            VerifyingKey::from_bytes(sender_ed25519).map_err(|_| OpenError::BadSignature)?;
        sender
            .verify_strict(
                &signed_message(parts.signed),
                &Signature::from_bytes(&parts.signature),
            )
            .map_err(|_| OpenError::BadSignature)?;

        let shared = self.x25519.diffie_hellman(&PublicKey::from(parts.eph_pub));
        if !shared.was_contributory() {
            return Err(OpenError::WeakKey);
        }
        let cipher = envelope_cipher(&shared, &parts.eph_pub, self.x25519_public.as_bytes())
            .ok_or(OpenError::Undecryptable)?;
        let aad = associated_data(parts.version, parts.header, &parts.eph_pub);
        let plain = cipher
            .decrypt(
                &Nonce::<U12>::from(parts.nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Undecryptable)?;

        let body = RawBody::decode(&plain).map_err(OpenError::Malformed)?;
        let header = header.validate().map_err(OpenError::InvalidHeader)?;
        let body = body
            .validate(header.attachments.len())
            .map_err(OpenError::InvalidBody)?;
        Ok(Opened {
            header,
            body,
            digest: digest(bytes),
        })
    }
}

/// Reads the header of an envelope without checking its signature or decrypting anything:
/// for this device's own outgoing envelopes (to seal them again), never for incoming ones.
///
/// # Errors
/// [`OpenError`] when the bytes are no well-formed envelope.
pub fn read_header(bytes: &[u8]) -> Result<Header, OpenError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(OpenError::TooLarge);
    }
    let header = if bytes.first() == Some(&v2::VERSION_2) {
        v2::Parts2::parse(bytes)?.header
    } else {
        Parts::parse(bytes)?.header
    };
    RawHeader::decode(header)
        .map_err(OpenError::Malformed)?
        .validate()
        .map_err(OpenError::InvalidHeader)
}

/// The use cases' port, over this device's keys.
impl parley_usecases::ports::Envelopes for Sealer {
    fn seal(
        &self,
        header: &Header,
        body: &Body,
        recipient_x25519: &[u8; 32],
    ) -> Result<parley_usecases::ports::Sealed, EnvelopeError> {
        Sealer::seal(self, header, body, recipient_x25519)
            .map(|s| parley_usecases::ports::Sealed {
                bytes: s.bytes,
                digest: s.digest,
            })
            .map_err(|e| EnvelopeError {
                code: e.code(),
                message: e.to_string(),
            })
    }

    fn open(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
    ) -> Result<parley_usecases::ports::Opened, EnvelopeError> {
        Sealer::open(self, bytes, sender_ed25519)
            .map(|o| parley_usecases::ports::Opened {
                header: o.header,
                body: o.body,
                digest: o.digest,
            })
            .map_err(open_error)
    }

    fn header(&self, bytes: &[u8]) -> Result<Header, EnvelopeError> {
        read_header(bytes).map_err(open_error)
    }

    fn wrap(&self, inner: &[u8], recipient_x25519: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
        Sealer::wrap(self, inner, recipient_x25519).map_err(|e| EnvelopeError {
            code: e.code(),
            message: e.to_string(),
        })
    }

    fn unwrap(&self, bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        Sealer::unwrap(self, bytes).map_err(open_error)
    }

    fn digest(&self, bytes: &[u8]) -> Digest {
        digest(bytes)
    }

    fn sign_receipt(&self, digest: &Digest) -> [u8; 64] {
        Sealer::sign_receipt(self, digest)
    }

    fn verify_receipt(
        &self,
        digest: &Digest,
        signature: &[u8; 64],
        device_ed25519: &[u8; 32],
    ) -> bool {
        parley_domain::receipt::verifies(device_ed25519, digest, signature)
    }

    fn check_signature(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
    ) -> Result<(), EnvelopeError> {
        Sealer::check_signature(self, bytes, sender_ed25519).map_err(open_error)
    }

    fn session_of(
        &self,
        bytes: &[u8],
    ) -> Result<Option<parley_usecases::ports::EnvelopeSession>, EnvelopeError> {
        v2::session_of(bytes).map_err(open_error)
    }

    fn initiate(
        &self,
        bundle: &parley_domain::agreement::PrekeyBundle,
        device_ed25519: &[u8; 32],
        device_x25519: &[u8; 32],
        now: parley_domain::Timestamp,
    ) -> Result<parley_domain::ratchet::SessionState, EnvelopeError> {
        Sealer::initiate(self, bundle, device_ed25519, device_x25519, now).map_err(agree_error)
    }

    fn respond(
        &self,
        initial: &parley_domain::agreement::InitialMessage,
        secrets: &parley_usecases::ports::ResponderSecrets,
        now: parley_domain::Timestamp,
    ) -> Result<parley_domain::ratchet::SessionState, EnvelopeError> {
        Sealer::respond(self, initial, secrets, now).map_err(agree_error)
    }

    fn seal_in(
        &self,
        header: &Header,
        body: &Body,
        session: &mut parley_domain::ratchet::SessionState,
        now: parley_domain::Timestamp,
    ) -> Result<parley_usecases::ports::Sealed, EnvelopeError> {
        Sealer::seal_in(self, header, body, session, now)
            .map(|s| parley_usecases::ports::Sealed {
                bytes: s.bytes,
                digest: s.digest,
            })
            .map_err(|e| EnvelopeError {
                code: e.code(),
                message: e.to_string(),
            })
    }

    fn open_in(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
        session: &mut parley_domain::ratchet::SessionState,
        now: parley_domain::Timestamp,
    ) -> Result<parley_usecases::ports::Opened, EnvelopeError> {
        Sealer::open_in(self, bytes, sender_ed25519, session, now)
            .map(|o| parley_usecases::ports::Opened {
                header: o.header,
                body: o.body,
                digest: o.digest,
            })
            .map_err(open_error)
    }
}

fn agree_error(e: v2::AgreeError) -> EnvelopeError {
    EnvelopeError {
        code: e.code(),
        message: e.to_string(),
    }
}

fn open_error(e: OpenError) -> EnvelopeError {
    EnvelopeError {
        code: e.code(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;

impl parley_usecases::ports::ListSigner for Sealer {
    fn device_key(&self) -> [u8; 32] {
        self.ed25519_public()
    }

    /// Signed with the device key, over the list's own context-prefixed bytes
    /// (`parley/device-list/v1`), which no envelope or receipt signature can be.
    fn sign_device_list(
        &self,
        unsigned: parley_domain::devices::Unsigned,
    ) -> Result<parley_domain::devices::DeviceList, parley_domain::devices::ListRefusal> {
        let signer = self.ed25519_public();
        let bytes = unsigned.signed_bytes(&signer)?;
        Ok(unsigned.signed(self.signing.sign(&bytes).to_bytes(), signer))
    }
}
