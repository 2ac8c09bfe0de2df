//! The prekey store in `<data>/prekeys`: a sled database of its own with one tree, `devices`,
//! one record per device, keyed by the device's Ed25519 key (32 bytes):
//!
//! ```text
//! version:u8 (1) ‖ user_len:u8 ‖ user ‖ identity:[32] (the certificate's X25519 key)
//!   ‖ signed id:u32 ‖ key:[32] ‖ signature:[64]
//!   ‖ kem id:u32 ‖ key:[1184] ‖ signature:[64]
//!   ‖ count:u16 ‖ count × (one-time id:u32 ‖ key:[32])     (ids ascending)
//! ```
//!
//! Integers are big-endian. Every change is one transaction on the record and is flushed
//! before it returns, so a publication is durable before it is acknowledged and a one-time
//! prekey is gone before it is handed out. What is held is decided by the domain's rules
//! ([`parley_domain::prekeys::HeldPrekeys`]); this file is their encoding. The keys are public:
//! nothing here is secret, but who published when is the operator's only (the folder is
//! private).

use std::path::Path;

use parley_domain::{
    Username,
    agreement::{KEM_PUBLIC_LEN, KemPrekey, KemPublicKey, OneTimePrekey, SignedPrekey},
    prekeys::HeldPrekeys,
    ratchet::PublicKey,
};
use parley_p2p::{PrekeyStore, PrekeyStoreError, TakenPrekeys};
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Name of the prekey folder inside the data folder.
pub const DB_DIR: &str = "prekeys";
/// sled's page cache, in bytes: a record is under 9 KiB.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// The record format's version.
const VERSION: u8 = 1;

fn fail(e: impl std::fmt::Display) -> PrekeyStoreError {
    PrekeyStoreError::Unavailable(e.to_string())
}

fn corrupt() -> PrekeyStoreError {
    PrekeyStoreError::Unavailable("corrupt prekey record".into())
}

fn tx_fail(e: TransactionError<PrekeyStoreError>) -> PrekeyStoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => fail(e),
    }
}

/// The prekey store over sled.
pub struct SledPrekeys {
    db: sled::Db,
    devices: sled::Tree,
}

impl std::fmt::Debug for SledPrekeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledPrekeys").finish_non_exhaustive()
    }
}

/// A device's record: whose it is and what is held.
struct Record {
    user: Username,
    identity: [u8; 32],
    held: HeldPrekeys,
}

fn encode(record: &Record) -> Vec<u8> {
    let user = record.user.as_str().as_bytes();
    let held = &record.held;
    let mut out = Vec::with_capacity(2 + user.len() + 100 + 1252 + 2 + 36 * 200);
    out.push(VERSION);
    // A username is at most 32 bytes (`Username::parse`).
    out.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(user);
    out.extend_from_slice(&record.identity);
    out.extend_from_slice(&held.signed.id.to_be_bytes());
    out.extend_from_slice(&held.signed.key.0);
    out.extend_from_slice(&held.signed.signature);
    out.extend_from_slice(&held.kem.id.to_be_bytes());
    out.extend_from_slice(held.kem.key.as_bytes());
    out.extend_from_slice(&held.kem.signature);
    // At most MAX_ONE_TIME_HELD (200) one-time prekeys are held.
    out.extend_from_slice(
        &u16::try_from(held.one_time_count())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    for key in held.one_time() {
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&key.key.0);
    }
    out
}

/// Bounds-checked reads over a record's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PrekeyStoreError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PrekeyStoreError> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }

    fn u32(&mut self) -> Result<u32, PrekeyStoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

fn decode(bytes: &[u8]) -> Result<Record, PrekeyStoreError> {
    let mut r = Reader(bytes);
    if r.array::<1>()? != [VERSION] {
        return Err(corrupt());
    }
    let [n] = r.array::<1>()?;
    let user = std::str::from_utf8(r.take(usize::from(n))?)
        .ok()
        .and_then(|u| Username::parse(u).ok())
        .ok_or_else(corrupt)?;
    let identity = r.array()?;
    let signed = SignedPrekey {
        id: r.u32()?,
        key: PublicKey(r.array()?),
        signature: r.array()?,
    };
    let kem = KemPrekey {
        id: r.u32()?,
        key: KemPublicKey::parse(r.take(KEM_PUBLIC_LEN)?).map_err(|_| corrupt())?,
        signature: r.array()?,
    };
    let count = u16::from_be_bytes(r.array()?);
    let mut one_time = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        one_time.push(OneTimePrekey {
            id: r.u32()?,
            key: PublicKey(r.array()?),
        });
    }
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    Ok(Record {
        user,
        identity,
        held: HeldPrekeys::from_parts(signed, kem, one_time),
    })
}

impl SledPrekeys {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`PrekeyStoreError::Unavailable`] when sled cannot open it (for example, another process
    /// holds it).
    pub fn open(dir: &Path) -> Result<Self, PrekeyStoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(fail)?;
        Ok(Self {
            devices: db.open_tree("devices").map_err(fail)?,
            db,
        })
    }

    fn sync(&self) -> Result<(), PrekeyStoreError> {
        self.db.flush().map(|_| ()).map_err(fail)
    }

    /// The user whose device `device` is, as its last publication recorded.
    ///
    /// # Errors
    /// [`PrekeyStoreError::Unavailable`].
    pub fn user_of(&self, device: &[u8; 32]) -> Result<Option<Username>, PrekeyStoreError> {
        self.devices
            .get(device)
            .map_err(fail)?
            .map(|v| decode(&v).map(|r| r.user))
            .transpose()
    }
}

impl PrekeyStore for SledPrekeys {
    fn publish(
        &self,
        device: &[u8; 32],
        user: &Username,
        identity: &[u8; 32],
        signed: SignedPrekey,
        kem: KemPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<u32, PrekeyStoreError> {
        let held = self
            .devices
            .transaction(|tree| {
                let current = tree
                    .get(device)?
                    .map(|v| decode(&v))
                    .transpose()
                    .map_err(ConflictableTransactionError::Abort)?;
                let held = HeldPrekeys::publish(
                    current.as_ref().map(|r| &r.held),
                    signed.clone(),
                    kem.clone(),
                    one_time,
                )
                .map_err(|r| ConflictableTransactionError::Abort(PrekeyStoreError::Refused(r)))?;
                let count = held.one_time_count();
                let record = Record {
                    user: user.clone(),
                    identity: *identity,
                    held,
                };
                tree.insert(device.as_slice(), encode(&record))?;
                Ok(count)
            })
            .map_err(tx_fail)?;
        self.sync()?;
        Ok(held)
    }

    fn remaining(&self, device: &[u8; 32]) -> Result<Option<u32>, PrekeyStoreError> {
        self.devices
            .get(device)
            .map_err(fail)?
            .map(|v| decode(&v).map(|r| r.held.one_time_count()))
            .transpose()
    }

    fn take(
        &self,
        device: &[u8; 32],
        user: &Username,
    ) -> Result<Option<TakenPrekeys>, PrekeyStoreError> {
        let taken = self
            .devices
            .transaction(|tree| {
                let Some(value) = tree.get(device)? else {
                    return Ok(None);
                };
                let mut record = decode(&value).map_err(ConflictableTransactionError::Abort)?;
                if record.user != *user {
                    return Ok(None);
                }
                let one_time = record.held.take_one_time();
                if one_time.is_some() {
                    tree.insert(device.as_slice(), encode(&record))?;
                }
                Ok(Some(TakenPrekeys {
                    signed: record.held.signed,
                    kem: record.held.kem,
                    one_time,
                    identity: record.identity,
                }))
            })
            .map_err(tx_fail)?;
        if taken.as_ref().is_some_and(|t| t.one_time.is_some()) {
            self.sync()?;
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::prekeys::{MAX_ONE_TIME_HELD, PrekeyRefusal};

    use super::*;

    fn name(raw: &str) -> Username {
        Username::parse(raw).expect("valid literal")
    }

    fn signed(id: u32) -> SignedPrekey {
        SignedPrekey {
            id,
            key: PublicKey([2; 32]),
            signature: [3; 64],
        }
    }

    fn kem(id: u32) -> KemPrekey {
        KemPrekey {
            id,
            key: KemPublicKey::parse(&[5; KEM_PUBLIC_LEN]).expect("a KEM key's length"),
            signature: [6; 64],
        }
    }

    fn one_time(ids: impl IntoIterator<Item = u32>) -> Vec<OneTimePrekey> {
        ids.into_iter()
            .map(|id| OneTimePrekey {
                id,
                key: PublicKey(id.to_be_bytes().repeat(8).try_into().expect("32 bytes")),
            })
            .collect()
    }

    fn opened() -> (tempfile::TempDir, SledPrekeys) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledPrekeys::open(&dir.path().join(DB_DIR)).expect("open");
        (dir, store)
    }

    #[test]
    fn a_device_that_published_nothing_has_no_count_and_no_bundle() {
        let (_dir, store) = opened();
        assert_eq!(store.remaining(&[1; 32]), Ok(None));
        assert_eq!(store.take(&[1; 32], &name("alice")), Ok(None));
    }

    #[test]
    fn a_device_asked_for_under_another_name_hands_nothing_out() {
        let (_dir, store) = opened();
        store
            .publish(
                &[1; 32],
                &name("alice"),
                &[8; 32],
                signed(1),
                kem(1),
                &one_time([4]),
            )
            .expect("published");
        assert_eq!(store.take(&[1; 32], &name("bob")), Ok(None));
        let taken = store
            .take(&[1; 32], &name("alice"))
            .expect("read")
            .expect("alice's");
        assert_eq!(
            taken.identity, [8; 32],
            "the certificate's key, as published"
        );
        assert_eq!(
            taken.one_time.map(|k| k.id),
            Some(4),
            "still there for alice's"
        );
    }

    #[test]
    fn one_time_prekeys_are_handed_out_once_each_lowest_id_first_then_none() {
        let (_dir, store) = opened();
        let alice = name("alice");
        let held = store
            .publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(1),
                kem(1),
                &one_time([3, 1, 2]),
            )
            .expect("published");
        assert_eq!(held, 3);
        let mut ids = Vec::new();
        for _ in 0..4 {
            let taken = store
                .take(&[1; 32], &name("alice"))
                .expect("read")
                .expect("published");
            assert_eq!((taken.signed.id, taken.kem.id), (1, 1));
            ids.push(taken.one_time.map(|k| k.id));
        }
        assert_eq!(ids, [Some(1), Some(2), Some(3), None]);
        assert_eq!(store.remaining(&[1; 32]), Ok(Some(0)));
        assert_eq!(store.remaining(&[2; 32]), Ok(None), "devices are apart");
    }

    #[test]
    fn a_publication_replaces_the_signed_prekeys_and_adds_one_time_prekeys_once_per_id() {
        let (_dir, store) = opened();
        let alice = name("alice");
        store
            .publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(1),
                kem(1),
                &one_time(1..=10),
            )
            .expect("published");
        let held = store
            .publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(2),
                kem(3),
                &one_time(5..=15),
            )
            .expect("published");
        assert_eq!(held, 15);
        let taken = store
            .take(&[1; 32], &name("alice"))
            .expect("read")
            .expect("published");
        assert_eq!((taken.signed.id, taken.kem.id), (2, 3));
        assert_eq!(taken.one_time, one_time([1]).pop());
    }

    #[test]
    fn a_publication_over_the_cap_is_refused_and_changes_nothing() {
        let (_dir, store) = opened();
        let alice = name("alice");
        let cap = u32::try_from(MAX_ONE_TIME_HELD).expect("small");
        store
            .publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(1),
                kem(1),
                &one_time(1..=100),
            )
            .expect("published");
        store
            .publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(1),
                kem(1),
                &one_time(101..=cap),
            )
            .expect("published");
        assert_eq!(
            store.publish(
                &[1; 32],
                &alice,
                &[8; 32],
                signed(9),
                kem(9),
                &one_time([cap + 1])
            ),
            Err(PrekeyStoreError::Refused(PrekeyRefusal::TooManyHeld))
        );
        let taken = store
            .take(&[1; 32], &name("alice"))
            .expect("read")
            .expect("published");
        assert_eq!(
            taken.signed.id, 1,
            "the refused publication changed nothing"
        );
        assert_eq!(store.remaining(&[1; 32]), Ok(Some(cap - 1)));
    }

    #[test]
    fn what_was_published_and_taken_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(DB_DIR);
        {
            let store = SledPrekeys::open(&path).expect("open");
            store
                .publish(
                    &[1; 32],
                    &name("alice"),
                    &[8; 32],
                    signed(1),
                    kem(1),
                    &one_time(1..=3),
                )
                .expect("published");
            store.take(&[1; 32], &name("alice")).expect("taken");
        }
        let store = SledPrekeys::open(&path).expect("reopen");
        assert_eq!(store.remaining(&[1; 32]), Ok(Some(2)));
        assert_eq!(store.user_of(&[1; 32]), Ok(Some(name("alice"))));
        let taken = store
            .take(&[1; 32], &name("alice"))
            .expect("read")
            .expect("published");
        assert_eq!(taken.one_time.map(|k| k.id), Some(2));
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let (_dir, store) = opened();
        store
            .publish(
                &[1; 32],
                &name("alice"),
                &[8; 32],
                signed(1),
                kem(1),
                &one_time(1..=2),
            )
            .expect("published");
        let good = store.devices.get([1; 32]).expect("read").expect("held");
        for cut in [0, 1, 5, 40, good.len() - 1] {
            store
                .devices
                .insert([1; 32], &good[..cut])
                .expect("written");
            assert!(store.remaining(&[1; 32]).is_err(), "cut at {cut}");
            assert!(
                store.take(&[1; 32], &name("alice")).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = good.to_vec();
        longer.push(0);
        store.devices.insert([1; 32], longer).expect("written");
        assert!(store.remaining(&[1; 32]).is_err());
    }
}
