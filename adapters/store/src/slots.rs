//! `message-keys`: one fixed 60-byte slot per live message, holding that message's own key
//! sealed under the slots sub-key (`nonce 12 ‖ AES-256-GCM(Km) 32 ‖ tag 16`, associated data
//! `parley/store/slot/v1 ‖ slot index (u64, big-endian)`).
//!
//! The file lives outside sled on purpose: sled is log-structured and keeps old pages until it
//! compacts them, so a deleted record's bytes may linger in `db`. A slot is overwritten in
//! place with zeros and synced, so once a message's slot is zero its record cannot be read by
//! anyone, whatever copies sled still holds. An all-zero slot is free.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aes_gcm::Aes256Gcm;
use parley_usecases::ports::StoreError;

use crate::crypto::{self, KEY_LEN, Key32};
use crate::keyring::{private_options, sync_folder};

/// The slot file's name in the store folder.
pub(crate) const SLOTS_FILE: &str = "message-keys";
/// Bytes of one slot.
pub(crate) const SLOT_LEN: u64 = 60;
/// The first part of a slot's associated data.
const SLOT_AAD: &[u8] = b"parley/store/slot/v1";

/// The slot file, shared by every thread.
pub(crate) struct Slots {
    path: PathBuf,
    file: File,
    cipher: Aes256Gcm,
    /// How many slots the file has, and which of them are free.
    book: Mutex<Book>,
    /// The first failed sync: after it the file's state on disk is unknown (a later sync may
    /// succeed without the lost writes), so every later write is refused.
    broken: std::sync::OnceLock<String>,
}

struct Book {
    count: u64,
    free: BTreeSet<u64>,
    /// Slots holding a fresh key already synced, waiting for a message.
    ready: Vec<(u64, Key32)>,
}

/// Fresh keys written and synced together: one `fdatasync` of the slot file for this many
/// messages instead of one each.
const POOL: usize = 32;

/// What the slot file held at open: for the store's clean-up of an interrupted write.
pub(crate) struct Census {
    /// How many slots there are.
    pub(crate) count: u64,
    /// The slots that hold a key.
    pub(crate) used: BTreeSet<u64>,
}

impl Slots {
    /// Opens (or creates, mode 0600) the slot file, drops a torn last slot, and notes which
    /// slots are free.
    pub(crate) fn open(path: &Path, cipher: Aes256Gcm) -> io::Result<(Self, Census)> {
        let created = !path.exists();
        let file = private_options().create(true).truncate(false).open(path)?;
        if created {
            file.sync_all()?;
            if let Some(folder) = path.parent() {
                sync_folder(folder)?;
            }
        }
        let len = file.metadata()?.len();
        let count = len / SLOT_LEN;
        if len % SLOT_LEN != 0 {
            // A slot whose write was cut short: no record can name it (the record is only
            // written after the slot is synced).
            file.set_len(count * SLOT_LEN)?;
            file.sync_all()?;
        }
        let mut used = BTreeSet::new();
        let mut free = BTreeSet::new();
        let mut slot = [0u8; SLOT_LEN as usize];
        for index in 0..count {
            read_at(&file, &mut slot, index * SLOT_LEN)?;
            if is_zero(&slot) {
                free.insert(index);
            } else {
                used.insert(index);
            }
        }
        let slots = Self {
            path: path.to_owned(),
            file,
            cipher,
            book: Mutex::new(Book {
                count,
                free,
                ready: Vec::new(),
            }),
            broken: std::sync::OnceLock::new(),
        };
        Ok((slots, Census { count, used }))
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot holding a fresh key, durably, for a new message: its index and the key.
    ///
    /// Keys are made and synced [`POOL`] at a time (a slot written ahead names no record, and
    /// the clean-up at the next open zeroes it if none ever does), so most messages get a key
    /// without waiting for the disk.
    pub(crate) fn allocate(&self) -> Result<(u64, Key32), StoreError> {
        self.check_writable()?;
        let mut book = self.book();
        if let Some(ready) = book.ready.pop() {
            return Ok(ready);
        }
        let mut fresh = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            let index = match book.free.pop_first() {
                Some(index) => index,
                None => {
                    book.count += 1;
                    book.count - 1
                }
            };
            fresh.push((index, Key32::random()?));
        }
        let written = fresh.iter().try_for_each(|(index, key)| {
            let sealed = crypto::seal(&self.cipher, &aad(*index), &key.0)?;
            write_at(&self.file, &sealed, index * SLOT_LEN)
                .map_err(|e| self.failed("write a message key", &e))
        });
        let synced = written.and_then(|()| {
            self.file
                .sync_data()
                .map_err(|e| self.broke("write a message key", &e))
        });
        // On failure, whatever reached the disk names no record; the next open zeroes it.
        synced?;
        // Handed out lowest index first.
        fresh.reverse();
        let first = fresh
            .pop()
            .ok_or_else(|| self.failed("make keys", &io::Error::other("none")))?;
        book.ready = fresh;
        Ok(first)
    }

    /// The key in slot `index`; `None` when the slot is zero (its message is deleted).
    pub(crate) fn key(&self, index: u64) -> Result<Option<Key32>, StoreError> {
        if index >= self.book().count {
            return Err(StoreError::Unavailable(
                "a message names a key slot beyond the end of message-keys (corrupt or altered)"
                    .into(),
            ));
        }
        let mut slot = [0u8; SLOT_LEN as usize];
        read_at(&self.file, &mut slot, index * SLOT_LEN)
            .map_err(|e| self.failed("read a message key", &e))?;
        if is_zero(&slot) {
            return Ok(None);
        }
        let key = crypto::open(&self.cipher, &aad(index), &slot)
            .and_then(|plain| <[u8; KEY_LEN]>::try_from(plain).ok())
            .ok_or_else(|| {
                StoreError::Unavailable(
                    "a message's key in message-keys could not be decrypted (corrupt or altered)"
                        .into(),
                )
            })?;
        Ok(Some(Key32(key)))
    }

    /// Overwrites the slots with zeros and syncs: their keys, and so their messages, are gone.
    /// The slots stay taken until [`Slots::release`].
    pub(crate) fn erase(&self, indices: &BTreeSet<u64>) -> Result<(), StoreError> {
        if indices.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let zeros = [0u8; SLOT_LEN as usize];
        indices
            .iter()
            .try_for_each(|&index| write_at(&self.file, &zeros, index * SLOT_LEN))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.broke("erase a message key", &e))
    }

    /// Makes erased slots free for new messages, once no record names them any more.
    pub(crate) fn release(&self, indices: &BTreeSet<u64>) {
        self.book().free.extend(indices.iter().copied());
    }

    /// Erases and releases a slot no record names (an insert that did not happen).
    pub(crate) fn discard(&self, index: u64) -> Result<(), StoreError> {
        let one = BTreeSet::from([index]);
        self.erase(&one)?;
        self.release(&one);
        Ok(())
    }

    /// Why the slot file refuses writes, once a sync of it failed.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.get().map(String::as_str)
    }

    /// Refuses a write once a sync failed.
    fn check_writable(&self) -> Result<(), StoreError> {
        match self.broken() {
            Some(why) => Err(StoreError::Unavailable(why.to_owned())),
            None => Ok(()),
        }
    }

    /// A failed sync: remembered, and every later write is refused.
    fn broke(&self, action: &str, e: &io::Error) -> StoreError {
        let error = self.failed(action, e);
        if let StoreError::Unavailable(why) = &error {
            let _ = self.broken.set(why.clone());
        }
        error
    }

    fn failed(&self, action: &str, e: &io::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "could not {action} in {}: {e}",
            self.path.display()
        ))
    }
}

fn aad(index: u64) -> Vec<u8> {
    let mut aad = SLOT_AAD.to_vec();
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

fn is_zero(slot: &[u8]) -> bool {
    slot.iter().all(|&b| b == 0)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(dir: &Path) -> (Slots, Census) {
        let cipher = Key32([7; KEY_LEN]).cipher();
        Slots::open(&dir.join(SLOTS_FILE), cipher).expect("opens")
    }

    #[test]
    fn given_keys_in_slots_when_erased_then_they_read_as_deleted_and_the_slot_is_reused() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let (slots, census) = slots(dir.path());
        assert_eq!(census.count, 0);
        let (a, _) = slots.allocate().expect("allocate");
        let (b, kb) = slots.allocate().expect("allocate");
        assert_eq!((a, b), (0, 1));
        assert_eq!(slots.key(b).expect("read"), Some(kb.clone()));
        let bytes = std::fs::read(dir.path().join(SLOTS_FILE)).expect("file");
        assert_eq!(
            bytes.len(),
            60 * POOL,
            "one batch of keys, written ahead and synced"
        );
        slots.erase(&BTreeSet::from([a])).expect("erase");
        assert_eq!(slots.key(a).expect("read"), None);
        let bytes = std::fs::read(dir.path().join(SLOTS_FILE)).expect("file");
        assert!(
            bytes[..60].iter().all(|&x| x == 0),
            "the slot is zeros on disk"
        );
        assert!(slots.key(POOL as u64).is_err(), "beyond the end");
        slots.release(&BTreeSet::from([a]));
        let rest: Vec<u64> = (2..POOL)
            .map(|_| slots.allocate().expect("allocate").0)
            .collect();
        assert_eq!(
            rest,
            (2..POOL as u64).collect::<Vec<_>>(),
            "the batch first"
        );
        let (again, ka) = slots.allocate().expect("allocate");
        assert_eq!(again, a, "a released slot is reused in the next batch");
        drop(slots);
        let (slots, census) = self::slots(dir.path());
        assert_eq!(census.count, 2 * POOL as u64 - 1);
        assert_eq!(slots.key(a).expect("read"), Some(ka));
        assert_eq!(slots.key(b).expect("read"), Some(kb));
    }

    #[test]
    fn given_a_torn_or_altered_slot_file_when_opened_then_the_torn_tail_goes_and_bad_keys_are_errors()
     {
        let dir = tempfile::TempDir::new().expect("tempdir");
        {
            let (slots, _) = slots(dir.path());
            slots.allocate().expect("allocate");
        }
        let path = dir.path().join(SLOTS_FILE);
        let mut bytes = std::fs::read(&path).expect("file");
        bytes[30] ^= 0x40;
        bytes.extend_from_slice(&[9; 17]);
        std::fs::write(&path, &bytes).expect("write");
        let (slots, census) = slots(dir.path());
        assert_eq!(census.count, POOL as u64);
        assert_eq!(
            std::fs::metadata(&path).expect("file").len(),
            60 * POOL as u64
        );
        let Err(StoreError::Unavailable(why)) = slots.key(0) else {
            panic!("an altered slot must not give a key");
        };
        assert!(why.contains("could not be decrypted"), "{why}");
    }
}
