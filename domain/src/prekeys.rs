//! The rendezvous's rules for the public prekeys it holds per device: what a publication must
//! prove, how many one-time prekeys one device may keep there, and which one is handed out
//! next. Pure: the device key, the held prekeys and the publication come in as arguments.
//!
//! A publication replaces the device's signed X25519 and ML-KEM-768 prekeys and adds its
//! one-time prekeys to those held, one per id: a one-time prekey published again under an id
//! already held replaces it, so a publication sent twice holds nothing twice. A fetch hands out
//! the held one-time prekey with the lowest id, once.

use std::collections::BTreeMap;
use std::fmt;

use crate::agreement::{KemPrekey, OneTimePrekey, SignedPrekey};
use crate::ratchet::PublicKey;

/// At most this many one-time prekeys in one publication.
pub const MAX_ONE_TIME_PER_PUBLISH: usize = 100;
/// At most this many one-time prekeys held for one device.
pub const MAX_ONE_TIME_HELD: usize = 200;

/// Why a publication (or a request about prekeys) is refused. Each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrekeyRefusal {
    /// A prekey's signature does not hold for the publishing device's certified key.
    #[error("a prekey's signature does not verify against this device's certified key")]
    BadSignature,
    /// More one-time prekeys in one publication than [`MAX_ONE_TIME_PER_PUBLISH`].
    #[error("a publication carries at most {MAX_ONE_TIME_PER_PUBLISH} one-time prekeys")]
    BatchTooLarge,
    /// One publication names the same one-time prekey id twice.
    #[error("a publication names each one-time prekey id once")]
    DuplicateId,
    /// The device would hold more one-time prekeys than [`MAX_ONE_TIME_HELD`].
    #[error("a device holds at most {MAX_ONE_TIME_HELD} one-time prekeys at the rendezvous")]
    TooManyHeld,
    /// The request does not follow the protocol.
    #[error("the prekey request is malformed")]
    Malformed,
    /// Too many requests: retry later.
    #[error("too many prekey requests; retry later")]
    RateLimited,
    /// This rendezvous keeps no prekeys.
    #[error("this rendezvous keeps no prekeys")]
    Disabled,
    /// The rendezvous's store failed; nothing was changed.
    #[error("the rendezvous cannot keep prekeys now; retry later")]
    Unavailable,
}

impl PrekeyRefusal {
    /// A stable snake_case name, as the protocol carries it.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::BadSignature => "prekey_bad_signature",
            Self::BatchTooLarge => "prekey_batch_too_large",
            Self::DuplicateId => "prekey_duplicate_id",
            Self::TooManyHeld => "prekey_store_full",
            Self::Malformed => "malformed",
            Self::RateLimited => "rate_limited",
            Self::Disabled => "prekeys_disabled",
            Self::Unavailable => "prekeys_unavailable",
        }
    }
}

/// Checks that both signed prekeys verify against `device`, the publishing device's Ed25519
/// key, and that the one-time prekeys are few enough and named once each.
///
/// # Errors
/// [`PrekeyRefusal::BadSignature`], [`PrekeyRefusal::BatchTooLarge`],
/// [`PrekeyRefusal::DuplicateId`].
pub fn check_publication(
    device: &[u8; 32],
    signed: &SignedPrekey,
    kem: &KemPrekey,
    one_time: &[OneTimePrekey],
) -> Result<(), PrekeyRefusal> {
    if !signed.verifies(device) || !kem.verifies(device) {
        return Err(PrekeyRefusal::BadSignature);
    }
    check_batch(one_time)
}

fn check_batch(one_time: &[OneTimePrekey]) -> Result<(), PrekeyRefusal> {
    if one_time.len() > MAX_ONE_TIME_PER_PUBLISH {
        return Err(PrekeyRefusal::BatchTooLarge);
    }
    let mut ids: Vec<u32> = one_time.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(PrekeyRefusal::DuplicateId);
    }
    Ok(())
}

/// What the rendezvous holds for one device.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldPrekeys {
    /// The current signed X25519 prekey.
    pub signed: SignedPrekey,
    /// The current signed ML-KEM-768 prekey.
    pub kem: KemPrekey,
    one_time: BTreeMap<u32, PublicKey>,
}

impl HeldPrekeys {
    /// What is held after `current` takes a publication (checked by [`check_publication`]):
    /// the signed prekeys replaced, the one-time prekeys added, one per id.
    ///
    /// # Errors
    /// [`PrekeyRefusal::TooManyHeld`] when the device would hold more than
    /// [`MAX_ONE_TIME_HELD`]; [`PrekeyRefusal::BatchTooLarge`] and
    /// [`PrekeyRefusal::DuplicateId`] as [`check_publication`]. `current` is unchanged then.
    pub fn publish(
        current: Option<&Self>,
        signed: SignedPrekey,
        kem: KemPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<Self, PrekeyRefusal> {
        check_batch(one_time)?;
        let mut held = current.map(|c| c.one_time.clone()).unwrap_or_default();
        held.extend(one_time.iter().map(|k| (k.id, k.key)));
        if held.len() > MAX_ONE_TIME_HELD {
            return Err(PrekeyRefusal::TooManyHeld);
        }
        Ok(Self {
            signed,
            kem,
            one_time: held,
        })
    }

    /// What was held, as a store read it back (not checked again: the store only keeps what a
    /// publication admitted).
    #[must_use]
    pub fn from_parts(
        signed: SignedPrekey,
        kem: KemPrekey,
        one_time: impl IntoIterator<Item = OneTimePrekey>,
    ) -> Self {
        Self {
            signed,
            kem,
            one_time: one_time.into_iter().map(|k| (k.id, k.key)).collect(),
        }
    }

    /// How many one-time prekeys are held.
    #[must_use]
    pub fn one_time_count(&self) -> u32 {
        u32::try_from(self.one_time.len()).unwrap_or(u32::MAX)
    }

    /// The one-time prekeys held, by id.
    pub fn one_time(&self) -> impl Iterator<Item = OneTimePrekey> + '_ {
        self.one_time
            .iter()
            .map(|(&id, &key)| OneTimePrekey { id, key })
    }

    /// Takes the one-time prekey to hand out next (the lowest id), if any is left; it is no
    /// longer held.
    pub fn take_one_time(&mut self) -> Option<OneTimePrekey> {
        self.one_time
            .pop_first()
            .map(|(id, key)| OneTimePrekey { id, key })
    }
}

impl fmt::Debug for HeldPrekeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldPrekeys")
            .field("signed", &self.signed.id)
            .field("kem", &self.kem.id)
            .field("one_time", &self.one_time.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::agreement::{KEM_PUBLIC_LEN, KemPublicKey};

    fn device(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(by: &SigningKey, id: u32) -> SignedPrekey {
        let key = PublicKey([9; 32]);
        let signature = by.sign(&SignedPrekey::signed_message(id, &key)).to_bytes();
        SignedPrekey { id, key, signature }
    }

    fn kem(by: &SigningKey, id: u32) -> KemPrekey {
        let key = KemPublicKey::parse(&[7; KEM_PUBLIC_LEN]).expect("a KEM key's length");
        let signature = by.sign(&KemPrekey::signed_message(id, &key)).to_bytes();
        KemPrekey { id, key, signature }
    }

    fn one_time(ids: impl IntoIterator<Item = u32>) -> Vec<OneTimePrekey> {
        ids.into_iter()
            .map(|id| OneTimePrekey {
                id,
                key: PublicKey([u8::try_from(id % 250).unwrap_or(0); 32]),
            })
            .collect()
    }

    /// Publishes `ids` on `current` as device 1 and says what is held, or why not.
    fn check(
        current: Option<&HeldPrekeys>,
        ids: impl IntoIterator<Item = u32>,
    ) -> Result<HeldPrekeys, PrekeyRefusal> {
        let me = device(1);
        let (signed, kem, one_time) = (signed(&me, 1), kem(&me, 1), one_time(ids));
        check_publication(&me.verifying_key().to_bytes(), &signed, &kem, &one_time)?;
        HeldPrekeys::publish(current, signed, kem, &one_time)
    }

    #[test]
    fn a_publication_signed_by_the_device_is_held() {
        let held = check(None, 1..=3).expect("held");
        assert_eq!(held.one_time_count(), 3);
    }

    #[test]
    fn a_prekey_signed_by_another_key_is_refused() {
        let me = device(1).verifying_key().to_bytes();
        let other = device(2);
        assert_eq!(
            check_publication(&me, &signed(&other, 1), &kem(&device(1), 1), &[]),
            Err(PrekeyRefusal::BadSignature)
        );
        assert_eq!(
            check_publication(&me, &signed(&device(1), 1), &kem(&other, 1), &[]),
            Err(PrekeyRefusal::BadSignature)
        );
        let mut altered = signed(&device(1), 1);
        altered.id = 2;
        assert_eq!(
            check_publication(&me, &altered, &kem(&device(1), 1), &[]),
            Err(PrekeyRefusal::BadSignature)
        );
    }

    #[test]
    fn a_batch_over_the_limit_or_naming_an_id_twice_is_refused() {
        let limit = u32::try_from(MAX_ONE_TIME_PER_PUBLISH).expect("small");
        assert!(check(None, 1..=limit).is_ok());
        assert_eq!(
            check(None, 1..=limit + 1),
            Err(PrekeyRefusal::BatchTooLarge)
        );
        assert_eq!(check(None, [4, 5, 4]), Err(PrekeyRefusal::DuplicateId));
    }

    #[test]
    fn one_time_prekeys_add_up_once_per_id_and_stop_at_the_cap() {
        let first = check(None, 1..=100).expect("held");
        let again = check(Some(&first), 51..=150).expect("held");
        assert_eq!(again.one_time_count(), 150, "ids 51 to 100 are held once");
        let full = check(Some(&again), 151..=200).expect("held");
        assert_eq!(full.one_time_count(), 200);
        assert_eq!(check(Some(&full), [201]), Err(PrekeyRefusal::TooManyHeld));
        assert!(check(Some(&full), [5]).is_ok(), "a held id replaces itself");
    }

    #[test]
    fn the_signed_prekeys_are_replaced_and_one_time_prekeys_handed_out_lowest_id_first() {
        let me = device(1);
        let first = check(None, [30, 10, 20]).expect("held");
        let mut held =
            HeldPrekeys::publish(Some(&first), signed(&me, 2), kem(&me, 2), &[]).expect("held");
        assert_eq!((held.signed.id, held.kem.id), (2, 2));
        let taken: Vec<u32> = std::iter::from_fn(|| held.take_one_time())
            .map(|k| k.id)
            .collect();
        assert_eq!(taken, [10, 20, 30]);
        assert_eq!(held.take_one_time(), None);
    }

    #[test]
    fn every_refusal_has_its_own_code() {
        let all = [
            PrekeyRefusal::BadSignature,
            PrekeyRefusal::BatchTooLarge,
            PrekeyRefusal::DuplicateId,
            PrekeyRefusal::TooManyHeld,
            PrekeyRefusal::Malformed,
            PrekeyRefusal::RateLimited,
            PrekeyRefusal::Disabled,
            PrekeyRefusal::Unavailable,
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
    }
}
