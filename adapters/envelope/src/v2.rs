//! Envelopes of version 2: sealed with the next key of the conversation's ratchet instead of
//! an ephemeral agreement with the recipient's long-term key, so that a device stolen later
//! opens nothing from before its last DH step.
//!
//! ```text
//! envelope v2 = version:u8 (= 2) ‖ header_len:u32 ‖ header ‖ session:[32] ‖ ratchet:[44]
//!               ‖ has_initial:u8 ‖ [initial] ‖ ct_len:u32 ‖ ciphertext ‖ signature:[64]
//! ```
//!
//! `header` and the plaintext body are as in version 1. `session` names the ratchet session
//! (the initiator's ephemeral key of its first-contact agreement), `ratchet` is the ratchet's
//! header (its current public key, DH step, previous chain length and position), `initial` the
//! first-contact agreement ([`InitialMessage::encode_into`]) that the initiator sends until it
//! hears back. The ciphertext is AES-256-GCM under the ratchet's message key, with the
//! associated data `"parley/envelope/v2" ‖ every byte from the version to the end of the
//! initial part` (the ratchet adds its own header); the signature is Ed25519 by the sender's
//! device key over `"parley/envelope/v2/signature" ‖ every byte before it`, checked before
//! anything is agreed or decrypted.

use std::time::Duration;

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use parley_domain::agreement::{
    InitialMessage, KemPrekey, KemPublicKey, OneTimePrekey, PrekeyBundle, ResponderKeys,
    SignedPrekey, initiate, respond,
};
use parley_domain::ratchet::{
    HEADER_LEN, Header as RatchetHeader, Key32, KeyPair, Ratchet, SessionState,
};
use parley_domain::{Body, Header, Timestamp};
use parley_usecases::ports::{EnvelopeSession, ResponderSecrets};

use crate::kem::{MlKem768, MlKem768Prekey};
use crate::wire::{RawBody, RawHeader, Reader};
use crate::{
    MAX_ENVELOPE_BYTES, MAX_HEADER_BYTES, OpenError, Opened, SealError, Sealed, Sealer, digest,
    random,
};

/// The version this module writes and reads.
pub const VERSION_2: u8 = 2;

const AAD_CONTEXT: &[u8] = b"parley/envelope/v2";
const SIGNATURE_CONTEXT: &[u8] = b"parley/envelope/v2/signature";
const SIGNATURE_LEN: usize = 64;
const TAG_LEN: usize = 16;

/// The default interval of timed DH steps (see [`Sealer::with_rekey_every`]).
pub const DEFAULT_REKEY_EVERY: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(120));

/// Why no session could be agreed from a prekey bundle or a first message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgreeError {
    /// The bundle's identity key is not the device's certified one.
    #[error("the prekey bundle is for another device than the one pinned")]
    WrongIdentity,
    /// The agreement refused (a signature, a missing KEM prekey, a weak key, the KEM).
    #[error("the key agreement failed: {0}")]
    Agreement(#[from] parley_domain::agreement::AgreementError),
    /// The stored KEM secret could not be read.
    #[error("this device's post-quantum prekey could not be read")]
    KemSecret,
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed")]
    Randomness,
}

impl AgreeError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &'static str {
        use parley_domain::agreement::AgreementError as A;
        match self {
            Self::WrongIdentity => "prekey_wrong_identity",
            Self::Agreement(A::BadPrekeySignature | A::BadKemPrekeySignature) => {
                "prekey_bad_signature"
            }
            Self::Agreement(A::MissingKemPrekey) => "prekey_no_kem",
            Self::Agreement(A::OneTimePrekeyMismatch) => "unknown_prekey",
            Self::Agreement(A::WeakKey) => "weak_key",
            Self::Agreement(_) => "agreement_failed",
            Self::KemSecret => "kem_secret_unreadable",
            Self::Randomness => "randomness",
        }
    }
}

/// The parts of a version-2 envelope, borrowed from its bytes, after the structure held.
pub(crate) struct Parts2<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) session: [u8; 32],
    pub(crate) ratchet: RatchetHeader,
    pub(crate) initial: Option<InitialMessage>,
    /// Every byte from the version to the end of the initial part.
    pub(crate) bound: &'a [u8],
    /// Where the ratchet header starts in them.
    pub(crate) ratchet_at: usize,
    pub(crate) ciphertext: &'a [u8],
    pub(crate) signed: &'a [u8],
    pub(crate) signature: [u8; SIGNATURE_LEN],
}

impl<'a> Parts2<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, OpenError> {
        const TRUNCATED: OpenError = OpenError::Malformed("the envelope ends too early");
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(OpenError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        let version = r.u8().ok_or(TRUNCATED)?;
        if version != VERSION_2 {
            return Err(OpenError::UnsupportedVersion(version));
        }
        let header_len = usize::try_from(r.u32().ok_or(TRUNCATED)?)
            .ok()
            .filter(|&n| n <= MAX_HEADER_BYTES)
            .ok_or(OpenError::Malformed("the header is longer than 4096 bytes"))?;
        let header = r.take(header_len).ok_or(TRUNCATED)?;
        let session = r.array().ok_or(TRUNCATED)?;
        let ratchet_at = bytes.len() - r.rest().len();
        let ratchet = RatchetHeader::decode(r.take(HEADER_LEN).ok_or(TRUNCATED)?)
            .map_err(|_| OpenError::Malformed("the ratchet header is malformed"))?;
        let initial = match r.u8().ok_or(TRUNCATED)? {
            0 => None,
            1 => {
                let rest = r.rest();
                let (initial, used) = InitialMessage::decode(rest)
                    .map_err(|_| OpenError::Malformed("the key agreement is malformed"))?;
                r.take(used).ok_or(TRUNCATED)?;
                Some(initial)
            }
            _ => {
                return Err(OpenError::Malformed(
                    "an optional field's flag is neither 0 nor 1",
                ));
            }
        };
        let bound_len = bytes.len() - r.rest().len();
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
        if initial.as_ref().is_some_and(|i| i.ephemeral.0 != session) {
            return Err(OpenError::Malformed(
                "the key agreement does not name the envelope's session",
            ));
        }
        Ok(Self {
            header,
            session,
            ratchet,
            initial,
            bound: bytes.get(..bound_len).ok_or(TRUNCATED)?,
            ratchet_at,
            ciphertext,
            signed: bytes.get(..bytes.len() - SIGNATURE_LEN).ok_or(TRUNCATED)?,
            signature,
        })
    }
}

fn associated(bound: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AAD_CONTEXT.len() + bound.len());
    ad.extend_from_slice(AAD_CONTEXT);
    ad.extend_from_slice(bound);
    ad
}

fn signed_message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + signed.len());
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(signed);
    m
}

/// Which session a version-2 envelope names; `None` for another version.
///
/// # Errors
/// [`OpenError`] when the bytes are a malformed version-2 envelope.
pub fn session_of(bytes: &[u8]) -> Result<Option<EnvelopeSession>, OpenError> {
    if bytes.first() != Some(&VERSION_2) {
        return Ok(None);
    }
    let parts = Parts2::parse(bytes)?;
    Ok(Some(EnvelopeSession {
        id: parts.session,
        initial: parts.initial,
    }))
}

/// A uniform draw in `[min, max]` milliseconds from 8 random bytes.
fn draw(range: (Duration, Duration), random: [u8; 8]) -> i64 {
    let min = u64::try_from(range.0.as_millis()).unwrap_or(u64::MAX);
    let max = u64::try_from(range.1.as_millis())
        .unwrap_or(u64::MAX)
        .max(min);
    let span = max - min;
    let offset = if span == u64::MAX {
        u64::from_be_bytes(random)
    } else {
        u64::from_be_bytes(random) % (span + 1)
    };
    i64::try_from(min.saturating_add(offset)).unwrap_or(i64::MAX)
}

impl Sealer {
    /// Sets the interval from which each session's next timed DH step is drawn (default
    /// [`DEFAULT_REKEY_EVERY`]).
    #[must_use]
    pub fn with_rekey_every(mut self, min: Duration, max: Duration) -> Self {
        self.rekey_every = (min, max.max(min));
        self
    }

    /// Opens a session to the device whose prekey bundle this is (the hybrid agreement),
    /// holding it to the device keys the caller pinned or the CA certified.
    ///
    /// # Errors
    /// [`AgreeError`].
    pub fn initiate(
        &self,
        bundle: &PrekeyBundle,
        device_ed25519: &[u8; 32],
        device_x25519: &[u8; 32],
        now: Timestamp,
    ) -> Result<SessionState, AgreeError> {
        if bundle.identity.0 != *device_x25519 {
            return Err(AgreeError::WrongIdentity);
        }
        let identity = self.identity_pair();
        let ephemeral = Key32::new(random::<32>().map_err(|_| AgreeError::Randomness)?);
        let agreed = initiate(&identity, ephemeral, bundle, device_ed25519, &MlKem768)?;
        let ratchet = Ratchet::initiator(&agreed.root, agreed.responder_ratchet);
        Ok(SessionState::opened(ratchet, agreed.message, now))
    }

    /// The responding side of a session the peer opened with `initial`.
    ///
    /// # Errors
    /// [`AgreeError`].
    pub fn respond(
        &self,
        initial: &InitialMessage,
        secrets: &ResponderSecrets,
        now: Timestamp,
    ) -> Result<SessionState, AgreeError> {
        let kem = MlKem768Prekey::from_secret_bytes(&secrets.kem_secret)
            .map_err(|_| AgreeError::KemSecret)?;
        let identity = self.identity_pair();
        let keys = ResponderKeys {
            identity: &identity,
            signed_prekey: &secrets.signed_prekey,
            one_time_prekey: secrets.one_time_prekey.as_ref(),
            kem_prekey: &kem,
        };
        let root = respond(&keys, initial)?;
        let ratchet = Ratchet::responder(&root, secrets.signed_prekey.clone());
        Ok(SessionState::answered(ratchet, initial, now))
    }

    /// A new signed X25519 prekey `id`: its key pair (for the store) and its public half,
    /// signed by this device's key (for the rendezvous).
    ///
    /// # Errors
    /// [`AgreeError::Randomness`].
    pub fn new_signed_prekey(&self, id: u32) -> Result<(KeyPair, SignedPrekey), AgreeError> {
        let pair = KeyPair::from_secret(Key32::new(
            random::<32>().map_err(|_| AgreeError::Randomness)?,
        ));
        let public = self.sign_prekey(id, &pair);
        Ok((pair, public))
    }

    /// The public half of the signed prekey `id` held as `pair`, signed by this device's key
    /// (Ed25519 signatures are deterministic: the same bytes every time).
    #[must_use]
    pub fn sign_prekey(&self, id: u32, pair: &KeyPair) -> SignedPrekey {
        let key = pair.public();
        let signature = self
            .signing
            .sign(&SignedPrekey::signed_message(id, &key))
            .to_bytes();
        SignedPrekey { id, key, signature }
    }

    /// A new ML-KEM-768 prekey `id`: its secret key's bytes (for the store) and its public
    /// half, signed by this device's key.
    ///
    /// # Errors
    /// [`AgreeError::KemSecret`] when the KEM cannot make or export one.
    pub fn new_kem_prekey(
        &self,
        id: u32,
    ) -> Result<(zeroize::Zeroizing<Vec<u8>>, KemPrekey), AgreeError> {
        let secret = MlKem768Prekey::generate().map_err(|_| AgreeError::KemSecret)?;
        let bytes = secret.secret_bytes().map_err(|_| AgreeError::KemSecret)?;
        let key = secret.public().map_err(|_| AgreeError::KemSecret)?;
        Ok((bytes, self.sign_kem_prekey(id, key)))
    }

    /// The ML-KEM-768 prekey `id` with the public key `key`, signed by this device's key.
    #[must_use]
    pub fn sign_kem_prekey(&self, id: u32, key: KemPublicKey) -> KemPrekey {
        let signature = self
            .signing
            .sign(&KemPrekey::signed_message(id, &key))
            .to_bytes();
        KemPrekey { id, key, signature }
    }

    /// A new one-time X25519 prekey `id` (unsigned, as in Signal).
    ///
    /// # Errors
    /// [`AgreeError::Randomness`].
    pub fn new_one_time_prekey(id: u32) -> Result<(KeyPair, OneTimePrekey), AgreeError> {
        let pair = KeyPair::from_secret(Key32::new(
            random::<32>().map_err(|_| AgreeError::Randomness)?,
        ));
        let key = pair.public();
        Ok((pair, OneTimePrekey { id, key }))
    }

    fn identity_pair(&self) -> KeyPair {
        KeyPair::from_secret(Key32::new(self.x25519.to_bytes()))
    }

    /// Seals `body` under `header` in `session` (see the module docs), taking a timed DH step
    /// first when one is due; the session moves on only when this succeeds.
    ///
    /// # Errors
    /// [`SealError`].
    pub fn seal_in(
        &self,
        header: &Header,
        body: &Body,
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Sealed, SealError> {
        Self::check(header, body)?;
        let header = RawHeader::from_header(header)
            .encode()
            .map_err(SealError::Invalid)?;
        let body = zeroize::Zeroizing::new(
            RawBody::from_body(body)
                .encode()
                .map_err(SealError::Invalid)?,
        );
        self.seal_bytes_in(&header, &body, session, now)
    }

    pub(crate) fn seal_bytes_in(
        &self,
        header: &[u8],
        body: &[u8],
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Sealed, SealError> {
        if header.len() > MAX_HEADER_BYTES {
            return Err(SealError::TooLarge);
        }
        let mut next = session.clone();
        let due = next.rekey_at.is_none_or(|at| at <= now);
        if due {
            if next.rekey_at.is_some() {
                next.ratchet.rekey();
            }
            let wait = draw(self.rekey_every, random::<8>()?);
            next.rekey_at = Some(Timestamp(now.0.saturating_add(wait)));
        }
        let mut bound = Vec::with_capacity(header.len() + 128);
        bound.push(VERSION_2);
        bound.extend_from_slice(
            &u32::try_from(header.len())
                .map_err(|_| SealError::TooLarge)?
                .to_be_bytes(),
        );
        bound.extend_from_slice(header);
        bound.extend_from_slice(&next.id);
        // The ratchet header is only known once sealed: the associated data binds everything
        // else, and the ratchet binds its own header.
        let mut tail = Vec::with_capacity(InitialMessage::MAX_LEN + 1);
        match &next.initial {
            None => tail.push(0),
            Some(initial) => {
                tail.push(1);
                initial.encode_into(&mut tail);
            }
        }
        let mut ad_bound = bound.clone();
        ad_bound.extend_from_slice(&tail);
        let steps = next.ratchet.dh_steps();
        let fresh = Key32::new(random::<32>()?);
        let sealed = next
            .ratchet
            .seal(fresh, body, &associated(&ad_bound))
            .map_err(|e| match e {
                parley_domain::ratchet::SealError::TooLarge => SealError::TooLarge,
                _ => SealError::Invalid("the conversation's keys cannot seal another message"),
            })?;
        next.note(steps, false, now);
        let mut bytes = bound;
        bytes.extend_from_slice(&sealed.header.encode());
        bytes.extend_from_slice(&tail);
        let ct_len = u32::try_from(sealed.ciphertext.len()).map_err(|_| SealError::TooLarge)?;
        bytes.extend_from_slice(&ct_len.to_be_bytes());
        bytes.extend_from_slice(&sealed.ciphertext);
        let signature = self.signing.sign(&signed_message(&bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(SealError::TooLarge);
        }
        *session = next;
        Ok(Sealed {
            digest: digest(&bytes),
            bytes,
        })
    }

    /// Checks a version-2 envelope's structure and its signature by `sender_ed25519`, and
    /// nothing else (before a new session's agreement is run for it).
    ///
    /// # Errors
    /// [`OpenError`]: too large, malformed, another version, or [`OpenError::BadSignature`].
    pub fn check_signature(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
    ) -> Result<(), OpenError> {
        let parts = Parts2::parse(bytes)?;
        VerifyingKey::from_bytes(sender_ed25519)
            .map_err(|_| OpenError::BadSignature)?
            .verify_strict(
                &signed_message(parts.signed),
                &Signature::from_bytes(&parts.signature),
            )
            .map_err(|_| OpenError::BadSignature)
    }

    /// Opens a version-2 envelope signed by `sender_ed25519` with `session`: the signature
    /// first, then the ratchet, then the body's rules. The session moves on only when this
    /// succeeds.
    ///
    /// # Errors
    /// [`OpenError`], or the ratchet's refusal as [`OpenError::Ratchet`].
    pub fn open_in(
        &self,
        bytes: &[u8],
        sender_ed25519: &[u8; 32],
        session: &mut SessionState,
        now: Timestamp,
    ) -> Result<Opened, OpenError> {
        let parts = Parts2::parse(bytes)?;
        let header = RawHeader::decode(parts.header).map_err(OpenError::Malformed)?;
        VerifyingKey::from_bytes(sender_ed25519)
            .map_err(|_| OpenError::BadSignature)?
            .verify_strict(
                &signed_message(parts.signed),
                &Signature::from_bytes(&parts.signature),
            )
            .map_err(|_| OpenError::BadSignature)?;
        if parts.session != session.id {
            return Err(OpenError::Undecryptable);
        }
        // The associated data: the bound bytes without the ratchet header (which the ratchet
        // binds itself).
        let (before, rest) = parts.bound.split_at(parts.ratchet_at);
        let mut ad_bound = before.to_vec();
        ad_bound.extend_from_slice(rest.get(HEADER_LEN..).unwrap_or_default());
        let mut next = session.clone();
        let steps = next.ratchet.dh_steps();
        let plain = zeroize::Zeroizing::new(
            next.ratchet
                .open(
                    &parts.ratchet,
                    parts.ciphertext,
                    &associated(&ad_bound),
                    now,
                )
                .map_err(OpenError::Ratchet)?,
        );
        let body = RawBody::decode(&plain).map_err(OpenError::Malformed)?;
        let header = header.validate().map_err(OpenError::InvalidHeader)?;
        let body = body
            .validate(header.attachments.len())
            .map_err(OpenError::InvalidBody)?;
        next.note(steps, true, now);
        *session = next;
        Ok(Opened {
            header,
            body,
            digest: digest(bytes),
        })
    }
}
