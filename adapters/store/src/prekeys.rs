//! [`PrekeySecrets`] on the `prekeys` tree: this device's signed X25519 and ML-KEM-768 prekeys
//! and its one-time prekeys, each value sealed like every other.
//!
//! ```text
//! "state"        → next_id:u32 ‖ signed_id:u32 ‖ signed_at:i64 ‖ kem_id:u32 ‖ kem_at:i64
//! "spk" ‖ id:u32 → made_at:i64 ‖ secret:[32]
//! "kem" ‖ id:u32 → made_at:i64 ‖ public:[1184] ‖ secret (ML-KEM-768 keys)
//! "opk" ‖ id:u32 → secret:[32]
//! ```
//!
//! The signed and KEM prekeys are replaced after [`ROTATE_AFTER_MS`]; a replaced one is kept
//! for [`KEEP_REPLACED_MS`] more (a first message made from it may wait that long in a
//! mailbox), then deleted. A one-time prekey is deleted in the same write that stores the
//! first message it opened (`messages::insert_transaction`).

use parley_domain::Timestamp;
use parley_domain::agreement::{KEM_PUBLIC_LEN, KemPublicKey};
use parley_domain::ratchet::{Key32, KeyPair};
use parley_envelope::Sealer;
use parley_usecases::ports::{
    IdentityStore, PrekeySecrets, PrekeyUpload, ResponderSecrets, StoreError,
};
use zeroize::Zeroizing;

use crate::records::corrupt;
use crate::{Store, unavailable};

pub(crate) const TREE: &str = "prekeys";
const STATE: &[u8] = b"state";
/// A signed or KEM prekey is replaced once this old (7 days).
pub const ROTATE_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;
/// A replaced one is kept this much longer (37 days: the mailbox's longest hold and a week).
pub const KEEP_REPLACED_MS: i64 = 37 * 24 * 3600 * 1000;

/// The key of a prekey record.
pub(crate) fn record_key(kind: &[u8; 3], id: u32) -> [u8; 7] {
    let mut key = [0u8; 7];
    key[..3].copy_from_slice(kind);
    key[3..].copy_from_slice(&id.to_be_bytes());
    key
}

#[derive(Debug, Clone, Copy)]
struct State {
    next_id: u32,
    signed: (u32, i64),
    kem: (u32, i64),
}

impl State {
    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28);
        out.extend_from_slice(&self.next_id.to_be_bytes());
        out.extend_from_slice(&self.signed.0.to_be_bytes());
        out.extend_from_slice(&self.signed.1.to_be_bytes());
        out.extend_from_slice(&self.kem.0.to_be_bytes());
        out.extend_from_slice(&self.kem.1.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)?
                .try_into()
                .ok()
                .map(u32::from_be_bytes)
        };
        let i64_at = |at: usize| {
            bytes
                .get(at..at + 8)?
                .try_into()
                .ok()
                .map(i64::from_be_bytes)
        };
        (bytes.len() == 28).then_some(())?;
        Some(Self {
            next_id: u32_at(0)?,
            signed: (u32_at(4)?, i64_at(8)?),
            kem: (u32_at(16)?, i64_at(20)?),
        })
    }
}

impl Store {
    fn prekey_value(&self, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        match self.prekeys.get(key) {
            Ok(Some(value)) => Ok(Some(Zeroizing::new(
                self.keys.open_value(TREE, key, &value)?,
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read the prekeys", e)),
        }
    }

    fn prekey_state(&self) -> Result<Option<State>, StoreError> {
        self.prekey_value(STATE)?
            .map(|plain| {
                State::decode(plain.as_slice())
                    .ok_or_else(|| corrupt(TREE, "the prekey state is malformed"))
            })
            .transpose()
    }

    /// The secret of a signed or one-time X25519 prekey.
    fn x25519_prekey(&self, key: &[u8], timed: bool) -> Result<Option<KeyPair>, StoreError> {
        let Some(plain) = self.prekey_value(key)? else {
            return Ok(None);
        };
        let secret = plain
            .get(if timed { 8.. } else { 0.. })
            .and_then(|s| <[u8; 32]>::try_from(s).ok())
            .ok_or_else(|| corrupt(TREE, "a prekey record is malformed"))?;
        Ok(Some(KeyPair::from_secret(Key32::new(secret))))
    }

    fn sealer(&self) -> Result<Sealer, StoreError> {
        let identity = self.identity()?.ok_or_else(|| {
            StoreError::Unavailable("this device is not enrolled, so it has no prekeys".into())
        })?;
        Ok(Sealer::new(&identity.ed25519, &identity.x25519))
    }
}

fn timed_value(at: i64, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + secret.len()));
    out.extend_from_slice(&at.to_be_bytes());
    out.extend_from_slice(secret);
    out
}

fn agree_failed(e: &parley_envelope::v2::AgreeError) -> StoreError {
    StoreError::Unavailable(format!("a prekey could not be made: {e}"))
}

impl PrekeySecrets for Store {
    #[tracing::instrument(
        name = "store.prepare_prekeys",
        level = "debug",
        skip_all,
        fields(one_time),
        err(Display)
    )]
    fn prepare_upload(&self, one_time: u32, now: Timestamp) -> Result<PrekeyUpload, StoreError> {
        let sealer = self.sealer()?;
        let mut batch = sled::Batch::default();
        let mut seal = |key: &[u8], plain: &[u8]| -> Result<(), StoreError> {
            batch.insert(key, self.keys.seal_value(TREE, key, plain)?);
            Ok(())
        };
        let old = self.prekey_state()?;
        let mut state = old.unwrap_or(State {
            next_id: 1,
            signed: (0, i64::MIN),
            kem: (0, i64::MIN),
        });
        let mut take_id = || {
            let id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1).max(1);
            id
        };
        let due = |at: i64| old.is_none() || now.0.saturating_sub(at) >= ROTATE_AFTER_MS;
        let signed = if due(state.signed.1) {
            let id = take_id();
            let (pair, public) = sealer.new_signed_prekey(id).map_err(|e| agree_failed(&e))?;
            seal(
                &record_key(b"spk", id),
                &timed_value(now.0, pair.secret().expose()),
            )?;
            state.signed = (id, now.0);
            public
        } else {
            let pair = self
                .x25519_prekey(&record_key(b"spk", state.signed.0), true)?
                .ok_or_else(|| corrupt(TREE, "the current signed prekey is missing"))?;
            sealer.sign_prekey(state.signed.0, &pair)
        };
        let kem = if due(state.kem.1) {
            let id = take_id();
            let (secret, public) = sealer.new_kem_prekey(id).map_err(|e| agree_failed(&e))?;
            let mut keys = Zeroizing::new(public.key.as_bytes().to_vec());
            keys.extend_from_slice(&secret);
            seal(&record_key(b"kem", id), &timed_value(now.0, &keys))?;
            state.kem = (id, now.0);
            public
        } else {
            let plain = self
                .prekey_value(&record_key(b"kem", state.kem.0))?
                .ok_or_else(|| corrupt(TREE, "the current KEM prekey is missing"))?;
            let public = plain
                .get(8..8 + KEM_PUBLIC_LEN)
                .and_then(|b| KemPublicKey::parse(b).ok())
                .ok_or_else(|| corrupt(TREE, "a KEM prekey record is malformed"))?;
            sealer.sign_kem_prekey(state.kem.0, public)
        };
        let mut fresh = Vec::with_capacity(usize::try_from(one_time).unwrap_or(0));
        for _ in 0..one_time {
            let id = take_id();
            let (pair, public) = Sealer::new_one_time_prekey(id).map_err(|e| agree_failed(&e))?;
            seal(&record_key(b"opk", id), pair.secret().expose())?;
            fresh.push(public);
        }
        seal(STATE, &state.encode())?;
        // Replaced prekeys past their keeping time go (they were replaced at least a week
        // before the one replacing them now, so the check is by their own age).
        for entry in self
            .prekeys
            .scan_prefix(b"spk")
            .chain(self.prekeys.scan_prefix(b"kem"))
        {
            let (key, value) = entry.map_err(|e| unavailable("read the prekeys", e))?;
            let current = [
                record_key(b"spk", state.signed.0),
                record_key(b"kem", state.kem.0),
            ];
            if current.iter().any(|c| c[..] == key[..]) {
                continue;
            }
            let plain = Zeroizing::new(self.keys.open_value(TREE, &key, &value)?);
            let made = plain
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MIN, i64::from_be_bytes);
            if now.0.saturating_sub(made) >= ROTATE_AFTER_MS + KEEP_REPLACED_MS {
                batch.remove(key);
            }
        }
        self.prekeys
            .apply_batch(batch)
            .map_err(|e| unavailable("keep the new prekeys", e))?;
        self.flush()?;
        Ok(PrekeyUpload {
            signed_prekey: signed,
            kem_prekey: kem,
            one_time: fresh,
        })
    }

    #[tracing::instrument(
        name = "store.responder_secrets",
        level = "debug",
        skip_all,
        err(Display)
    )]
    fn responder_secrets(
        &self,
        signed_prekey: u32,
        one_time_prekey: Option<u32>,
        kem_prekey: u32,
    ) -> Result<Option<ResponderSecrets>, StoreError> {
        let Some(signed) = self.x25519_prekey(&record_key(b"spk", signed_prekey), true)? else {
            return Ok(None);
        };
        let Some(kem) = self.prekey_value(&record_key(b"kem", kem_prekey))? else {
            return Ok(None);
        };
        let one_time = match one_time_prekey {
            Some(id) => self.x25519_prekey(&record_key(b"opk", id), false)?,
            None => None,
        };
        Ok(Some(ResponderSecrets {
            signed_prekey: signed,
            one_time_prekey: one_time,
            kem_secret: Zeroizing::new(kem.get(8 + KEM_PUBLIC_LEN..).unwrap_or_default().to_vec()),
        }))
    }
}
