//! The hybrid first-contact agreement, after Signal's PQXDH: four (or three) X25519 agreements
//! and one ML-KEM-768 encapsulation, through HKDF into the ratchet's root key.
//!
//! ```text
//! DH1 = X25519(IK_a, SPK_b)   DH2 = X25519(EK_a, IK_b)   DH3 = X25519(EK_a, SPK_b)
//! DH4 = X25519(EK_a, OPK_b)   (only when the bundle had a one-time prekey)
//! SS  = ML-KEM-768 shared secret, encapsulated to PQSPK_b
//! root = HKDF-SHA256(salt = 32 zero bytes, ikm = 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS,
//!                    info = "parley/pqxdh/v1/x25519+ml-kem-768" ‖ IK_a ‖ IK_b)
//! ```
//!
//! The 32 bytes of `0xFF` are Signal's domain separation from XEdDSA; binding both identity
//! keys into `info` ties the root to the pair of devices. The initiator's ratchet then steps
//! against `SPK_b`, which the responder's ratchet holds as its first key pair.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::bundle::PrekeyBundle;
use super::kem::{Decapsulate, Encapsulate, KemCiphertext, KemError};
use crate::ratchet::encoding::Reader;
use crate::ratchet::{DecodeError, Key32, KeyPair, PublicKey};

const INFO: &[u8] = b"parley/pqxdh/v1/x25519+ml-kem-768";

/// Why no root key could be agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgreementError {
    /// The signed X25519 prekey's signature does not verify with the device key.
    #[error("the signed prekey's signature does not verify with the device's key")]
    BadPrekeySignature,
    /// The ML-KEM-768 prekey's signature does not verify with the device key.
    #[error("the post-quantum prekey's signature does not verify with the device's key")]
    BadKemPrekeySignature,
    /// The bundle has no ML-KEM-768 prekey: refused rather than agreed without it.
    #[error("the prekey bundle has no post-quantum prekey")]
    MissingKemPrekey,
    /// The first message names a one-time prekey the responder does not hold (used or never
    /// issued), or the responder holds one the message does not name.
    #[error("the one-time prekey the message names is not available")]
    OneTimePrekeyMismatch,
    /// A public key is of low order: an agreement with it is not contributory.
    #[error("a key of the agreement is weak")]
    WeakKey,
    /// The KEM refused a key or ciphertext, or failed.
    #[error(transparent)]
    Kem(#[from] KemError),
}

/// What the initiator sends with its first ratchet message, in the clear (and authenticated
/// as that message's associated data by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMessage {
    /// The initiator's X25519 identity key. The responder's caller checks that it is the key
    /// the initiator's certificate names (and the contact's pinned key) before responding.
    pub identity: PublicKey,
    /// Its ephemeral key.
    pub ephemeral: PublicKey,
    /// Which signed prekey of the responder's it used.
    pub signed_prekey_id: u32,
    /// Which one-time prekey, if the bundle had one.
    pub one_time_prekey_id: Option<u32>,
    /// Which ML-KEM-768 prekey.
    pub kem_prekey_id: u32,
    /// The KEM ciphertext.
    pub kem_ciphertext: KemCiphertext,
}

/// The initiator's result: the root for [`Ratchet::initiator`](crate::ratchet::Ratchet::initiator)
/// with [`Initiated::responder_ratchet`], and the message that lets the responder agree too.
#[derive(Debug)]
pub struct Initiated {
    /// The agreed root key.
    pub root: Key32,
    /// The responder's first ratchet key (its signed prekey).
    pub responder_ratchet: PublicKey,
    /// What to send.
    pub message: InitialMessage,
}

/// The initiator's side. `device` is the responder's Ed25519 device key, taken from its
/// certificate (checked by the caller against the pinned contact); `ephemeral` is 32 fresh
/// random bytes.
///
/// # Errors
/// [`AgreementError`]: a prekey's signature fails, the KEM prekey is missing, a key is weak,
/// or the KEM fails.
pub fn initiate(
    identity: &KeyPair,
    ephemeral: Key32,
    bundle: &PrekeyBundle,
    device: &[u8; 32],
    kem: &impl Encapsulate,
) -> Result<Initiated, AgreementError> {
    if !bundle.signed_prekey.verifies(device) {
        return Err(AgreementError::BadPrekeySignature);
    }
    let kem_prekey = bundle
        .kem_prekey
        .as_ref()
        .ok_or(AgreementError::MissingKemPrekey)?;
    if !kem_prekey.verifies(device) {
        return Err(AgreementError::BadKemPrekeySignature);
    }
    let ephemeral = KeyPair::from_secret(ephemeral);
    let spk = &bundle.signed_prekey.key;
    let dh1 = agree(identity, spk)?;
    let dh2 = agree(&ephemeral, &bundle.identity)?;
    let dh3 = agree(&ephemeral, spk)?;
    let dh4 = bundle
        .one_time_prekey
        .map(|opk| agree(&ephemeral, &opk.key))
        .transpose()?;
    let (kem_ciphertext, shared) = kem.encapsulate(&kem_prekey.key)?;
    let root = derive(
        [&dh1, &dh2, &dh3],
        dh4.as_ref(),
        &shared,
        &identity.public(),
        &bundle.identity,
    );
    Ok(Initiated {
        root,
        responder_ratchet: *spk,
        message: InitialMessage {
            identity: identity.public(),
            ephemeral: ephemeral.public(),
            signed_prekey_id: bundle.signed_prekey.id,
            one_time_prekey_id: bundle.one_time_prekey.map(|opk| opk.id),
            kem_prekey_id: kem_prekey.id,
            kem_ciphertext,
        },
    })
}

/// The responder's secrets for one first message, looked up by the ids it names.
pub struct ResponderKeys<'a, D: Decapsulate> {
    /// Our X25519 identity key pair.
    pub identity: &'a KeyPair,
    /// The signed prekey the message names.
    pub signed_prekey: &'a KeyPair,
    /// The one-time prekey it names, if we still hold it (the caller deletes it once used).
    pub one_time_prekey: Option<&'a KeyPair>,
    /// The ML-KEM-768 prekey it names.
    pub kem_prekey: &'a D,
}

/// The responder's side: the same root as the initiator's.
///
/// # Errors
/// [`AgreementError::OneTimePrekeyMismatch`] when the message names a one-time prekey and
/// none is given (or the reverse), [`AgreementError::WeakKey`], or the KEM's refusal.
pub fn respond<D: Decapsulate>(
    keys: &ResponderKeys<'_, D>,
    message: &InitialMessage,
) -> Result<Key32, AgreementError> {
    if message.one_time_prekey_id.is_some() != keys.one_time_prekey.is_some() {
        return Err(AgreementError::OneTimePrekeyMismatch);
    }
    let dh1 = agree(keys.signed_prekey, &message.identity)?;
    let dh2 = agree(keys.identity, &message.ephemeral)?;
    let dh3 = agree(keys.signed_prekey, &message.ephemeral)?;
    let dh4 = keys
        .one_time_prekey
        .map(|opk| agree(opk, &message.ephemeral))
        .transpose()?;
    let shared = keys.kem_prekey.decapsulate(&message.kem_ciphertext)?;
    Ok(derive(
        [&dh1, &dh2, &dh3],
        dh4.as_ref(),
        &shared,
        &message.identity,
        &keys.identity.public(),
    ))
}

fn agree(ours: &KeyPair, theirs: &PublicKey) -> Result<Key32, AgreementError> {
    ours.agree(theirs).ok_or(AgreementError::WeakKey)
}

fn derive(
    dh: [&Key32; 3],
    dh4: Option<&Key32>,
    kem: &Key32,
    initiator: &PublicKey,
    responder: &PublicKey,
) -> Key32 {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xff; 32]);
    for k in dh.into_iter().chain(dh4) {
        ikm.extend_from_slice(k.expose());
    }
    ikm.extend_from_slice(kem.expose());
    let mut info = Vec::with_capacity(INFO.len() + 64);
    info.extend_from_slice(INFO);
    info.extend_from_slice(&initiator.0);
    info.extend_from_slice(&responder.0);
    let mut root = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm).expand(&info, &mut root);
    Key32::new(root)
}

impl InitialMessage {
    /// The encoded length with a one-time prekey (without one it is 4 bytes shorter).
    pub const MAX_LEN: usize = 32 + 32 + 4 + 1 + 4 + 4 + super::kem::KEM_CIPHERTEXT_LEN;

    /// Appends the message's bytes:
    /// `identity:[32] ‖ ephemeral:[32] ‖ signed_prekey_id:u32 ‖ has_one_time:u8
    /// ‖ [one_time_prekey_id:u32] ‖ kem_prekey_id:u32 ‖ kem_ciphertext:[1088]`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.identity.0);
        out.extend_from_slice(&self.ephemeral.0);
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        match self.one_time_prekey_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.kem_prekey_id.to_be_bytes());
        out.extend_from_slice(self.kem_ciphertext.as_bytes());
    }

    /// Reads one message written by [`InitialMessage::encode_into`] from the front of `bytes`;
    /// returns it and the number of bytes it took.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes end early or a field is malformed.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader(bytes);
        let message = Self::decode_from(&mut r)?;
        Ok((message, bytes.len() - r.0.len()))
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let identity = PublicKey(r.array()?);
        let ephemeral = PublicKey(r.array()?);
        let signed_prekey_id = r.u32()?;
        let one_time_prekey_id = if r.flag()? { Some(r.u32()?) } else { None };
        let kem_prekey_id = r.u32()?;
        let kem_ciphertext = KemCiphertext::parse(r.take(super::kem::KEM_CIPHERTEXT_LEN)?)
            .map_err(|_| DecodeError::Malformed("the KEM ciphertext is malformed"))?;
        Ok(Self {
            identity,
            ephemeral,
            signed_prekey_id,
            one_time_prekey_id,
            kem_prekey_id,
            kem_ciphertext,
        })
    }
}
