//! The mailbox's store in sled, in `<data>/mailbox` (its own database, with a small cache so
//! that a full mailbox stays on disk rather than in memory).
//!
//! Four trees, every change to them in one transaction:
//! - `meta`: recipient `/` [`MailId`] → deposited at, expires at (ms, i64 big-endian), size
//!   (u64 big-endian): a recipient's entries sort by deposit time;
//! - `bytes`: [`MailId`] → the sealed envelope and the attachment files;
//! - `expiry`: expires at (u64 big-endian) ++ [`MailId`] → recipient, for the purge;
//! - `usage`: recipient → entries and bytes held (u64 big-endian each).
//!
//! The recipient is stored by username (usernames never contain `/`); the sender is not stored
//! at all. Writes are synced before they return.

use std::path::Path;

use parley_domain::{MailId, Timestamp, Usage, Username};
use parley_usecases::ports::{HeldEntry, HeldMeta, MailboxStore, MailboxStoreError};
use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

/// Name of the sled folder inside the data folder.
pub const DB_DIR: &str = "mailbox";
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

/// The sled-backed mailbox store.
pub struct SledMailbox {
    db: sled::Db,
    meta: sled::Tree,
    bytes: sled::Tree,
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

/// The sealed envelope and files as one value: each part as a u32 big-endian length and its
/// bytes, the sealed envelope first.
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

/// Deletes `recipient`'s entry `id` inside a transaction over the four trees; its bookkeeping
/// if it was there.
fn remove_in(
    meta: &TransactionalTree,
    bytes: &TransactionalTree,
    expiry: &TransactionalTree,
    usage: &TransactionalTree,
    recipient: &Username,
    id: MailId,
) -> Result<Option<HeldMeta>, ConflictableTransactionError<MailboxStoreError>> {
    let Some(value) = meta.remove(meta_key(recipient, &id))? else {
        return Ok(None);
    };
    let held = decode_meta(id, &value).map_err(ConflictableTransactionError::Abort)?;
    bytes.remove(&id.0)?;
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
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// [`MailboxStoreError`] when sled cannot open it (for example, another process holds it).
    pub fn open(dir: &Path) -> Result<Self, MailboxStoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(fail)?;
        Ok(Self {
            meta: db.open_tree("meta").map_err(fail)?,
            bytes: db.open_tree("bytes").map_err(fail)?,
            expiry: db.open_tree("expiry").map_err(fail)?,
            usage: db.open_tree("usage").map_err(fail)?,
            db,
        })
    }

    fn trees(&self) -> (&sled::Tree, &sled::Tree, &sled::Tree, &sled::Tree) {
        (&self.meta, &self.bytes, &self.expiry, &self.usage)
    }

    fn sync(&self) -> Result<(), MailboxStoreError> {
        self.db.flush().map(|_| ()).map_err(fail)
    }

    fn put_one(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
        let key = meta_key(recipient, &entry.meta.id);
        let parts = encode_parts(entry)?;
        let meta_value = encode_meta(&entry.meta);
        let name = recipient.as_str().as_bytes();
        self.trees()
            .transaction(|(meta, bytes, expiry, usage)| {
                if meta.get(&key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(fail(
                        "an entry with this id is already held",
                    )));
                }
                meta.insert(key.as_slice(), meta_value.as_slice())?;
                bytes.insert(&entry.meta.id.0, parts.as_slice())?;
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
            .transaction(|(meta, bytes, expiry, usage)| {
                remove_in(meta, bytes, expiry, usage, recipient, id)
            })
            .map_err(tx_fail)
    }
}

impl MailboxStore for SledMailbox {
    fn put(&self, recipient: &Username, entry: &HeldEntry) -> Result<(), MailboxStoreError> {
        self.put_one(recipient, entry)?;
        self.sync()
    }

    fn put_batch(&self, batch: &[(Username, HeldEntry)]) -> Vec<Result<(), MailboxStoreError>> {
        let mut results: Vec<_> = batch
            .iter()
            .map(|(recipient, entry)| self.put_one(recipient, entry))
            .collect();
        if let Err(e) = self.sync() {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(e.clone());
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
            let parts = self
                .bytes
                .get(id.0)
                .map_err(fail)?
                .ok_or_else(|| corrupt("an entry without its bytes"))?;
            let (sealed, files) = decode_parts(&parts)?;
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
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledMailbox::open(dir.path()).expect("open");
        let bob = name("bob");
        let held = entry(1_000, 1, 5_000, &[]);
        store.put(&bob, &held).expect("put");
        store
            .bytes
            .insert(held.meta.id.0, &[0, 0, 0, 9, 1][..])
            .expect("corrupt");
        assert!(store.oldest(&bob, Timestamp(1), 10, 1 << 20).is_err());
        store.usage.insert("bob", &[1][..]).expect("corrupt");
        assert!(store.usage(&bob).is_err());
        assert!(store.totals().is_err());
    }
}
