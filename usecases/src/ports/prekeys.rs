//! The prekey ports: the rendezvous's store of public prekeys as a peer uses it
//! ([`PrekeyService`]: publish this device's, fetch someone's bundle), and this device's own
//! prekey secrets ([`PrekeySecrets`], in the encrypted store).
//!
//! A first message to a device opens the ratchet from that device's prekey bundle with the
//! hybrid agreement ([`parley_domain::agreement`]), whether the device is online or not.

use std::future::Future;

use auto_impl::auto_impl;
use parley_domain::agreement::{KemPrekey, OneTimePrekey, PrekeyBundle, SignedPrekey};
use parley_domain::ratchet::KeyPair;
use parley_domain::{Timestamp, Username};
use zeroize::Zeroizing;

use super::StoreError;

/// A device keeps at least this many one-time prekeys at the rendezvous: below it, it
/// publishes a new batch.
pub const ONE_TIME_PREKEYS_LOW: u32 = 20;
/// A new batch tops the one-time prekeys held at the rendezvous up to this many.
pub const ONE_TIME_PREKEYS_BATCH: u32 = 100;

/// What a device publishes: its current signed X25519 and ML-KEM-768 prekeys (replacing the
/// ones held before) and new one-time prekeys (added to those still held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyUpload {
    /// The signed X25519 prekey.
    pub signed_prekey: SignedPrekey,
    /// The signed ML-KEM-768 prekey.
    pub kem_prekey: KemPrekey,
    /// New one-time prekeys (may be empty).
    pub one_time: Vec<OneTimePrekey>,
}

/// Why the rendezvous's prekey store could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrekeyError {
    /// The rendezvous could not be reached or did not answer.
    #[error("the rendezvous's prekey store is unreachable: {0}")]
    Unavailable(String),
    /// The rendezvous refused, with a stable code and one sentence.
    #[error("the rendezvous refused ({code}): {reason}")]
    Refused {
        /// A stable snake_case code.
        code: String,
        /// One sentence.
        reason: String,
    },
}

impl PrekeyError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Unavailable(_) => "rendezvous_unavailable",
            Self::Refused { code, .. } => code,
        }
    }
}

/// The rendezvous's prekey store, over this device's mutual-TLS link (every request is made
/// as this device's certificate; no request names its sender).
#[auto_impl(Arc)]
pub trait PrekeyService: Send + Sync {
    /// Publishes `upload` for this device. Resolves with the number of one-time prekeys the
    /// rendezvous holds for this device afterwards.
    ///
    /// # Errors
    /// [`PrekeyError`]; nothing was changed at the rendezvous.
    fn publish(
        &self,
        upload: &PrekeyUpload,
    ) -> impl Future<Output = Result<u32, PrekeyError>> + Send;

    /// How many one-time prekeys the rendezvous still holds for this device; `None` when this
    /// device has published none yet.
    ///
    /// # Errors
    /// [`PrekeyError`].
    fn remaining(&self) -> impl Future<Output = Result<Option<u32>, PrekeyError>> + Send;

    /// The prekey bundle of `user`'s device whose Ed25519 key is `device` (the one the caller
    /// pinned, or the CA certified), with one of its one-time prekeys (which the rendezvous
    /// hands out once and deletes) when any are left; `None` when that device has published
    /// no prekeys or is not `user`'s. Nothing in it is trusted: the caller checks the
    /// signatures against `device` and the identity key against the certified one.
    ///
    /// # Errors
    /// [`PrekeyError`].
    fn bundle(
        &self,
        user: &Username,
        device: &[u8; 32],
    ) -> impl Future<Output = Result<Option<PrekeyBundle>, PrekeyError>> + Send;
}

/// The secrets a first message needs on the responding side, looked up by the ids it names.
pub struct ResponderSecrets {
    /// The signed prekey the message names.
    pub signed_prekey: KeyPair,
    /// The one-time prekey it names, if this device still holds it. It is deleted in the same
    /// durable step that stores the message it opened.
    pub one_time_prekey: Option<KeyPair>,
    /// The ML-KEM-768 prekey's secret key, as the envelope adapter's KEM reads it.
    pub kem_secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ResponderSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponderSecrets")
            .field("one_time_prekey", &self.one_time_prekey.is_some())
            .finish_non_exhaustive()
    }
}

/// This device's prekey secrets, kept in the encrypted store.
#[auto_impl(Arc)]
pub trait PrekeySecrets: Send + Sync {
    /// The prekeys to publish now, with `one_time` new one-time prekeys: the signed and KEM
    /// prekeys are made at first use and again when they are due for rotation (the previous
    /// ones are kept for as long as a first message made from them may still arrive). Every
    /// secret is durable before this returns.
    ///
    /// # Errors
    /// [`StoreError`].
    fn prepare_upload(&self, one_time: u32, now: Timestamp) -> Result<PrekeyUpload, StoreError>;

    /// The secrets for a first message naming these prekeys; `None` when this device does not
    /// hold the signed or the KEM prekey (never made, or expired). A one-time prekey it no
    /// longer holds comes back as `None` in [`ResponderSecrets::one_time_prekey`].
    ///
    /// # Errors
    /// [`StoreError`].
    fn responder_secrets(
        &self,
        signed_prekey: u32,
        one_time_prekey: Option<u32>,
        kem_prekey: u32,
    ) -> Result<Option<ResponderSecrets>, StoreError>;
}
