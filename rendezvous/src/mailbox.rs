//! The mailbox's store in `<data>/mailbox`: each held entry's bytes in a file of its own,
//! `entries/<id>` (the wrapped envelope and the attachment files, each as a u32 big-endian
//! length and its bytes), and the bookkeeping in a sled database, `index/` (its own, with a
//! small cache, so that a full mailbox stays on disk rather than in memory).
//!
//! Three trees, every change to them in one transaction:
//! - `meta`: recipient `/` [`MailId`] → deposited at, expires at (ms, i64 big-endian), size
//!   (u64 big-endian): a recipient's entries sort by deposit time;
//! - `expiry`: expires at (u64 big-endian) ++ [`MailId`] → recipient, for the purge;
//! - `usage`: recipient → entries and bytes held (u64 big-endian each).
//!
//! The recipient is stored by username (usernames never contain `/`); the sender is not stored
//! at all. A deposit's file is written and synced (then renamed into place, the folder synced)
//! before its bookkeeping, and the bookkeeping is synced before the deposit is answered; a
//! removal deletes the bookkeeping (synced) before the file. So a crash can leave a file
//! without bookkeeping, never the reverse; such files are deleted when the store opens.
//!
//! The bytes are kept as they came, without a checksum of the store's own: they are sealed,
//! and the recipient is the one who can tell whether they were altered. A file that cannot
//! even be framed any more is handed on as one opaque part, for the recipient to refuse.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parley_domain::{MailId, Timestamp, Usage, Username};
use parley_usecases::ports::{HeldEntry, HeldMeta, MailboxStore, MailboxStoreError};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

/// Name of the mailbox folder inside the data folder.
pub const DB_DIR: &str = "mailbox";
/// The folder of the entries' files, inside the mailbox folder.
pub const ENTRIES_DIR: &str = "entries";
/// The sled database of the bookkeeping, inside the mailbox folder.
const INDEX_DIR: &str = "index";
/// sled's page cache, in bytes: enough for the bookkeeping, not for the mail itself.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// At most this many expired entries go in one purge; the rest go in the next.
const PURGE_BATCH: usize = 4096;

fn fail(e: impl std::fmt::Display) -> MailboxStoreError {
    MailboxStoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> MailboxStoreError {
    MailboxStoreError::Unavailable(format!("corrupt mailbox record: {what}"))
}

fn tx_fail(e: TransactionError<MailboxStoreError>) -> MailboxStoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => fail(e),
    }
}

/// The mailbox store: files for the bytes, sled for the bookkeeping.
pub struct SledMailbox {
    db: sled::Db,
    entries: PathBuf,
    meta: sled::Tree,
    expiry: sled::Tree,
    usage: sled::Tree,
}

impl std::fmt::Debug for SledMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledMailbox").finish_non_exhaustive()
    }
}

fn prefix(recipient: &Username) -> Vec<u8> {
    let mut key = recipient.as_str().as_bytes().to_vec();
    key.push(b'/');
    key
}

fn meta_key(recipient: &Username, id: &MailId) -> Vec<u8> {
    let mut key = prefix(recipient);
    key.extend_from_slice(&id.0);
    key
}

fn expiry_key(expires_at: Timestamp, id: &MailId) -> Vec<u8> {
    let mut key = u64::try_from(expires_at.0)
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    key.extend_from_slice(&id.0);
    key
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

fn encode_meta(meta: &HeldMeta) -> Vec<u8> {
    let mut value = Vec::with_capacity(24);
    value.extend_from_slice(&meta.deposited_at.0.to_be_bytes());
    value.extend_from_slice(&meta.expires_at.0.to_be_bytes());
    value.extend_from_slice(&meta.size.to_be_bytes());
    value
}

fn decode_meta(id: MailId, value: &[u8]) -> Result<HeldMeta, MailboxStoreError> {
    if value.len() != 24 {
        return Err(corrupt("entry bookkeeping"));
    }
    let word = |at: usize| be_u64(&value[at..at + 8]).ok_or_else(|| corrupt("entry bookkeeping"));
    Ok(HeldMeta {
        id,
        deposited_at: Timestamp(i64::from_be_bytes(word(0)?.to_be_bytes())),
        expires_at: Timestamp(i64::from_be_bytes(word(8)?.to_be_bytes())),
        size: word(16)?,
    })
}

fn id_of(bytes: &[u8]) -> Result<MailId, MailboxStoreError> {
    bytes
        .try_into()
        .map(MailId)
        .map_err(|_| corrupt("entry id"))
}

fn encode_usage(usage: Usage) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&usage.entries.to_be_bytes());
    value[8..].copy_from_slice(&usage.bytes.to_be_bytes());
    value
}

fn decode_usage(value: Option<&[u8]>) -> Result<Usage, MailboxStoreError> {
    let Some(value) = value else {
        return Ok(Usage::default());
    };
    match (
        value.get(..8).and_then(be_u64),
        value.get(8..).and_then(be_u64),
    ) {
        (Some(entries), Some(bytes)) => Ok(Usage { entries, bytes }),
        _ => Err(corrupt("mailbox usage")),
    }
}

/// The sealed envelope and files as one file's bytes: each part as a u32 big-endian length and
/// its bytes, the sealed envelope first.
fn encode_parts(entry: &HeldEntry) -> Result<Vec<u8>, MailboxStoreError> {
    let mut value = Vec::with_capacity(usize::try_from(entry.meta.size).unwrap_or(0) + 40);
    for part in std::iter::once(&entry.sealed).chain(&entry.files) {
        let n = u32::try_from(part.len()).map_err(|_| fail("an entry part over 4 GiB"))?;
        value.extend_from_slice(&n.to_be_bytes());
        value.extend_from_slice(part);
    }
    Ok(value)
}

fn decode_parts(mut value: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), MailboxStoreError> {
    let mut parts = Vec::new();
    while !value.is_empty() {
        let (n, rest) = value
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("entry bytes"))?;
        let n = usize::try_from(u32::from_be_bytes(*n)).map_err(|_| corrupt("entry bytes"))?;
        if rest.len() < n {
            return Err(corrupt("entry bytes"));
        }
        parts.push(rest[..n].to_vec());
        value = &rest[n..];
    }
    if parts.is_empty() {
        return Err(corrupt("entry bytes"));
    }
    let sealed = parts.remove(0);
    Ok((sealed, parts))
}

/// Deletes `recipient`'s entry `id` inside a transaction over the three trees; its
/// bookkeeping if it was there.
fn remove_in(
    meta: &TransactionalTree,
    expiry: &TransactionalTree,
    usage: &TransactionalTree,
    recipient: &Username,
    id: MailId,
) -> Result<Option<HeldMeta>, ConflictableTransactionError<MailboxStoreError>> {
    let Some(value) = meta.remove(meta_key(recipient, &id))? else {
        return Ok(None);
    };
    let held = decode_meta(id, &value).map_err(ConflictableTransactionError::Abort)?;
    expiry.remove(expiry_key(held.expires_at, &id))?;
    let name = recipient.as_str().as_bytes();
    let now = decode_usage(usage.get(name)?.as_deref())
        .map_err(ConflictableTransactionError::Abort)?
        .minus(held.size);
    if now.entries == 0 {
        usage.remove(name)?;
    } else {
        usage.insert(name, &encode_usage(now))?;
    }
    Ok(Some(held))
}

impl SledMailbox {
    /// Opens (or creates) the store in `dir`, and deletes entry files that have no bookkeeping
    /// (a crash between writing one and recording it, or between the two steps of a removal).
    ///
    /// # Errors
    /// [`MailboxStoreError`] when sled cannot open it (for example, another process holds it)
    /// or the entries folder cannot be read.
    pub fn open(dir: &Path) -> Result<Self, MailboxStoreError> {
        let entries = dir.join(ENTRIES_DIR);
        fs::create_dir_all(&entries).map_err(fail)?;
        let db = sled::Config::new()
            .path(dir.join(INDEX_DIR))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(fail)?;
        let store = Self {
            meta: db.open_tree("meta").map_err(fail)?,
            expiry: db.open_tree("expiry").map_err(fail)?,
            usage: db.open_tree("usage").map_err(fail)?,
            entries,
            db,
        };
        store.sweep()?;
        Ok(store)
    }

    /// Deletes the files no entry names (and half-written ones).
    fn sweep(&self) -> Result<(), MailboxStoreError> {
        let mut held = HashSet::new();
        for record in &self.expiry {
            let (key, _) = record.map_err(fail)?;
            held.insert(id_of(key.get(8..).ok_or_else(|| corrupt("expiry key"))?)?.to_string());
        }
        for file in fs::read_dir(&self.entries).map_err(fail)? {
            let file = file.map_err(fail)?;
            let name = file.file_name().to_string_lossy().into_owned();
            if !held.contains(&name) {
                fs::remove_file(file.path()).map_err(fail)?;
            }
        }
        Ok(())
    }

    fn trees(&self) -> (&sled::Tree, &sled::Tree, &sled::Tree) {
        (&self.meta, &self.expiry, &self.usage)
    }

    fn sync(&self) -> Result<(), MailboxStoreError> {
        self.db.flush().map(|_| ()).map_err(fail)
    }

    fn file(&self, id: &MailId) -> PathBuf {
        self.entries.join(id.to_string())
    }

    /// Writes an entry's file under a temporary name, synced, and renames it into place (the
    /// folder is synced by the caller, once for a batch).
    fn write_file(&self, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
        let target = self.file(&entry.meta.id);
        let temp = self.entries.join(format!("{}.new", entry.meta.id));
        let written = (|| -> Result<(), MailboxStoreError> {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(fail)?;
            out.write_all(&encode_parts(entry)?).map_err(fail)?;
            out.sync_data().map_err(fail)?;
            fs::rename(&temp, &target).map_err(fail)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn sync_folder(&self) -> Result<(), MailboxStoreError> {
        File::open(&self.entries)
            .and_then(|folder| folder.sync_all())
            .map_err(fail)
    }

    /// Deletes an entry's file once its bookkeeping is gone (durably); a file already gone is
    /// fine.
    fn delete_file(&self, id: &MailId) {
        match fs::remove_file(self.file(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Left behind: the next open deletes it.
            Err(_) => {}
        }
    }

    /// Records an entry whose file is in place.
    fn record(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
        let key = meta_key(recipient, &entry.meta.id);
        let meta_value = encode_meta(&entry.meta);
        let name = recipient.as_str().as_bytes();
        self.trees()
            .transaction(|(meta, expiry, usage)| {
                if meta.get(&key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(fail(
                        "an entry with this id is already held",
                    )));
                }
                meta.insert(key.as_slice(), meta_value.as_slice())?;
                expiry.insert(expiry_key(entry.meta.expires_at, &entry.meta.id), name)?;
                let now = decode_usage(usage.get(name)?.as_deref())
                    .map_err(ConflictableTransactionError::Abort)?
                    .plus(entry.meta.size);
                usage.insert(name, &encode_usage(now))?;
                Ok(())
            })
            .map_err(tx_fail)
    }

    fn remove_one(
        &self,
        recipient: &Username,
        id: MailId,
    ) -> Result<Option<HeldMeta>, MailboxStoreError> {
        self.trees()
            .transaction(|(meta, expiry, usage)| remove_in(meta, expiry, usage, recipient, id))
            .map_err(tx_fail)
    }

    /// An entry's bytes. A file that cannot be framed is handed on whole, as its sealed part,
    /// and a file that is gone as an empty one: the recipient refuses either as altered and
    /// acknowledges it, so a damaged entry never blocks the mail behind it.
    fn read_file(&self, id: &MailId) -> Result<(Vec<u8>, Vec<Vec<u8>>), MailboxStoreError> {
        match fs::read(self.file(id)) {
            Ok(bytes) => Ok(decode_parts(&bytes).unwrap_or((bytes, Vec::new()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Vec::new(), Vec::new())),
            Err(e) => Err(fail(e)),
        }
    }
}

impl MailboxStore for SledMailbox {
    fn put(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
        self.put_batch(&[(recipient.clone(), entry.clone())])
            .pop()
            .unwrap_or_else(|| Err(fail("nothing was written")))
    }

    /// Every file is written and synced, the folder synced once, then every entry recorded and
    /// the bookkeeping synced once: one trip to the disk per file, and one for the batch.
    fn put_batch(&self, batch: &[(Username, HeldEntry)]) -> Vec<Result<(), MailboxStoreError>> {
        let mut results: Vec<_> = batch
            .iter()
            .map(|(_, entry)| self.write_file(entry))
            .collect();
        if let Err(e) = self.sync_folder() {
            for result in &mut results {
                *result = Err(e.clone());
            }
        }
        for ((recipient, entry), result) in batch.iter().zip(&mut results) {
            if result.is_ok() {
                *result = self.record(recipient, entry);
            }
        }
        if let Err(e) = self.sync() {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(e.clone());
                }
            }
        }
        for ((recipient, entry), result) in batch.iter().zip(&results) {
            if result.is_err() {
                // Never answered held: its file goes (the next open sweeps it if this fails).
                let recorded = self.meta.contains_key(meta_key(recipient, &entry.meta.id));
                if !matches!(recorded, Ok(true)) {
                    self.delete_file(&entry.meta.id);
                }
            }
        }
        results
    }

    fn oldest(
        &self,
        recipient: &Username,
        now: Timestamp,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<(Vec<HeldEntry>, bool), MailboxStoreError> {
        let start = prefix(recipient).len();
        let mut entries: Vec<HeldEntry> = Vec::new();
        let mut total = 0u64;
        for record in self.meta.scan_prefix(prefix(recipient)) {
            let (key, value) = record.map_err(fail)?;
            let id = id_of(&key[start..])?;
            let meta = decode_meta(id, &value)?;
            if meta.expires_at.0 <= now.0 {
                continue;
            }
            if entries.len() >= max_entries
                || (!entries.is_empty() && total.saturating_add(meta.size) > max_bytes)
            {
                return Ok((entries, true));
            }
            let (sealed, files) = self.read_file(&id)?;
            total = total.saturating_add(meta.size);
            entries.push(HeldEntry {
                meta,
                sealed,
                files,
            });
        }
        Ok((entries, false))
    }

    fn remove(
        &self,
        recipient: &Username,
        id: &MailId,
    ) -> Result<Option<HeldMeta>, MailboxStoreError> {
        let removed = self.remove_one(recipient, *id)?;
        if removed.is_some() {
            self.sync()?;
            self.delete_file(id);
        }
        Ok(removed)
    }

    fn remove_batch(
        &self,
        recipient: &Username,
        ids: &[MailId],
    ) -> Result<Vec<HeldMeta>, MailboxStoreError> {
        let mut removed = Vec::new();
        for id in ids {
            removed.extend(self.remove_one(recipient, *id)?);
        }
        if !removed.is_empty() {
            self.sync()?;
            for meta in &removed {
                self.delete_file(&meta.id);
            }
        }
        Ok(removed)
    }

    fn usage(&self, recipient: &Username) -> Result<Usage, MailboxStoreError> {
        decode_usage(self.usage.get(recipient.as_str()).map_err(fail)?.as_deref())
    }

    fn purge_expired(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(Username, HeldMeta)>, MailboxStoreError> {
        let mut upper = u64::try_from(now.0).unwrap_or(0).to_be_bytes().to_vec();
        upper.extend_from_slice(&[0xff; 16]);
        let mut due = Vec::new();
        for record in self.expiry.range(..=upper).take(PURGE_BATCH) {
            let (key, value) = record.map_err(fail)?;
            let id = id_of(key.get(8..).ok_or_else(|| corrupt("expiry key"))?)?;
            let name = std::str::from_utf8(&value).map_err(|_| corrupt("expiry recipient"))?;
            let recipient = Username::parse(name).map_err(|_| corrupt("expiry recipient"))?;
            due.push((key, recipient, id));
        }
        let mut gone = Vec::new();
        for (key, recipient, id) in due {
            match self.remove_one(&recipient, id)? {
                Some(meta) => gone.push((recipient, meta)),
                // An index entry whose entry is gone: drop it.
                None => {
                    self.expiry.remove(key).map_err(fail)?;
                }
            }
        }
        if !gone.is_empty() {
            self.sync()?;
            for (_, meta) in &gone {
                self.delete_file(&meta.id);
            }
        }
        Ok(gone)
    }

    fn totals(&self) -> Result<Usage, MailboxStoreError> {
        let mut total = Usage::default();
        for record in &self.usage {
            let (_, value) = record.map_err(fail)?;
            let usage = decode_usage(Some(&value))?;
            total.entries = total.entries.saturating_add(usage.entries);
            total.bytes = total.bytes.saturating_add(usage.bytes);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> Username {
        Username::parse(raw).expect("valid literal")
    }

    fn entry(at: i64, n: u8, expires: i64, files: &[&[u8]]) -> HeldEntry {
        let sealed = vec![n; 10];
        let files: Vec<Vec<u8>> = files.iter().map(|f| f.to_vec()).collect();
        let size = 10 + files.iter().map(|f| f.len() as u64).sum::<u64>();
        HeldEntry {
            meta: HeldMeta {
                id: MailId::new(Timestamp(at), [n; 8]),
                deposited_at: Timestamp(at),
                expires_at: Timestamp(expires),
                size,
            },
            sealed,
            files,
        }
    }

    #[test]
    fn entries_come_oldest_first_only_to_their_recipient_and_go_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledMailbox::open(dir.path()).expect("open");
        let (bob, eve) = (name("bob"), name("eve"));
        let late = entry(2_000, 2, 9_000, &[]);
        let early = entry(1_000, 1, 9_000, &[b"file-a", b""]);
        let results = store.put_batch(&[(bob.clone(), late.clone()), (bob.clone(), early.clone())]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        store.put(&eve, &entry(1_500, 3, 9_000, &[])).expect("put");
        assert_eq!(
            store.usage(&bob).expect("usage"),
            Usage {
                entries: 2,
                bytes: 26
            }
        );
        assert_eq!(store.totals().expect("totals").entries, 3);
        let (got, more) = store.oldest(&bob, Timestamp(1), 1, 1).expect("oldest");
        assert_eq!((got, more), (vec![early.clone()], true));
        let (got, more) = store
            .oldest(&bob, Timestamp(1), 10, 1 << 20)
            .expect("oldest");
        assert_eq!((got, more), (vec![early.clone(), late.clone()], false));
        assert_eq!(store.remove(&eve, &early.meta.id).expect("remove"), None);
        assert_eq!(
            store
                .remove_batch(&bob, &[early.meta.id, early.meta.id])
                .expect("remove"),
            vec![early.meta]
        );
        assert_eq!(
            store.usage(&bob).expect("usage"),
            Usage {
                entries: 1,
                bytes: 10
            }
        );
    }

    #[test]
    fn expired_entries_are_hidden_then_purged_and_survive_a_reopen_otherwise() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bob = name("bob");
        {
            let store = SledMailbox::open(dir.path()).expect("open");
            store.put(&bob, &entry(1_000, 1, 5_000, &[])).expect("put");
            store.put(&bob, &entry(1_001, 2, 50_000, &[])).expect("put");
        }
        let store = SledMailbox::open(dir.path()).expect("reopen");
        let (got, _) = store
            .oldest(&bob, Timestamp(6_000), 10, 1 << 20)
            .expect("oldest");
        assert_eq!(got.len(), 1);
        let gone = store.purge_expired(Timestamp(5_000)).expect("purge");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, bob);
        assert!(
            store
                .purge_expired(Timestamp(5_000))
                .expect("purge")
                .is_empty()
        );
        assert_eq!(
            store.totals().expect("totals"),
            Usage {
                entries: 1,
                bytes: 10
            }
        );
    }

    #[test]
    fn each_entry_is_a_file_and_files_without_bookkeeping_go_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bob = name("bob");
        let held = entry(1_000, 1, 50_000, &[b"attached"]);
        {
            let store = SledMailbox::open(dir.path()).expect("open");
            store.put(&bob, &held).expect("put");
            let bytes = std::fs::read(store.file(&held.meta.id)).expect("a file per entry");
            assert_eq!(bytes, encode_parts(&held).expect("encode"));
        }
        let entries = dir.path().join(ENTRIES_DIR);
        std::fs::write(entries.join("00000000000000000000000000000000"), b"orphan").expect("w");
        std::fs::write(entries.join(format!("{}.new", held.meta.id)), b"half").expect("w");
        let store = SledMailbox::open(dir.path()).expect("reopen");
        let names: Vec<String> = std::fs::read_dir(&entries)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [held.meta.id.to_string()]);
        store.remove(&bob, &held.meta.id).expect("remove");
        assert_eq!(std::fs::read_dir(&entries).expect("read").count(), 0);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledMailbox::open(dir.path()).expect("open");
        let bob = name("bob");
        let held = entry(1_000, 1, 5_000, &[]);
        store.put(&bob, &held).expect("put");
        // A file that cannot be framed is handed on whole, for the recipient to refuse.
        std::fs::write(store.file(&held.meta.id), [0, 0, 0, 9, 1]).expect("corrupt");
        let (got, _) = store
            .oldest(&bob, Timestamp(1), 10, 1 << 20)
            .expect("served");
        assert_eq!(got[0].sealed, [0, 0, 0, 9, 1]);
        assert!(got[0].files.is_empty());
        // A file gone is handed on empty, not a panic and not a stuck mailbox.
        std::fs::remove_file(store.file(&held.meta.id)).expect("remove");
        let (got, _) = store
            .oldest(&bob, Timestamp(1), 10, 1 << 20)
            .expect("served");
        assert!(got[0].sealed.is_empty());
        store.usage.insert("bob", &[1][..]).expect("corrupt");
        assert!(store.usage(&bob).is_err());
        assert!(store.totals().is_err());
    }
}
