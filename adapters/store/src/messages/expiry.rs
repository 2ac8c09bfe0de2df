//! [`Expiry`] on the `expiry` index: deleting disappearing messages, their keys and files, and
//! finishing a deletion a crash interrupted.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;

use parley_domain::Timestamp;
use parley_usecases::ports::{Expiry, StoreError};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{TxResult, slot_of};
use crate::keyring::sync_folder;
use crate::records::{
    MESSAGE_KEY_LEN, outbox_key, record_id, split_expiry_key, split_message_key, time_key,
};
use crate::{Store, unavailable};

/// The folder, in the store folder, whose files named after a message's record id go with it.
const ATTACHMENTS: &str = "attachments";

/// An `expiry` entry: its key, the `messages` key in it, its sealed value (the `seen` key).
pub(super) type ExpiryEntry = (sled::IVec, Vec<u8>, sled::IVec);

/// The first key after every `expiry` key of a time `<= now`.
fn expired_bound(now: Timestamp) -> Vec<u8> {
    let mut bound = time_key(now).to_vec();
    bound.extend_from_slice(&[0xff; MESSAGE_KEY_LEN + 1]);
    bound
}

impl Store {
    /// The `expiry` entries of messages expired at `now`: (expiry key, messages key, value).
    pub(super) fn expired_entries(&self, now: Timestamp) -> Result<Vec<ExpiryEntry>, StoreError> {
        self.expiry
            .range(..expired_bound(now))
            .map(|entry| {
                let (ekey, value) = entry.map_err(|e| unavailable("read the expiry index", e))?;
                let mkey = split_expiry_key(&ekey)?.1.to_vec();
                Ok((ekey, mkey, value))
            })
            .collect()
    }

    /// Deletes the files under `attachments/` whose names start with the record ids of these
    /// expiry entries' messages. An entry that does not decrypt is logged and passed over: its
    /// files, if any, are unreadable without the message's key anyway.
    fn remove_attachments(&self, entries: &[ExpiryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let folder = self.path.join(ATTACHMENTS);
        let listing = match fs::read_dir(&folder) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(unavailable("list the attachments", e)),
        };
        let prefixes: Vec<String> = entries
            .iter()
            .filter_map(|(ekey, _, value)| match self.keys.open_value("expiry", ekey, value) {
                Ok(skey) => Some(record_id(&skey)),
                Err(e) => {
                    tracing::warn!(error = %e, "store: an expired message's attachments could not be named");
                    None
                }
            })
            .collect();
        let mut removed = false;
        for entry in listing {
            let entry = entry.map_err(|e| unavailable("list the attachments", e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                let path = entry.path();
                let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                gone.map_err(|e| unavailable("delete an attachment of an expired message", e))?;
                removed = true;
            }
        }
        if removed {
            sync_folder(&folder).map_err(|e| unavailable("sync the attachments folder", e))?;
        }
        Ok(())
    }

    /// Removes messages whose slots are zero already, with their attachments, outbox and
    /// expiry entries. Returns how many records went.
    fn remove_records(&self, message_keys: &[Vec<u8>]) -> Result<u64, StoreError> {
        let wanted: HashSet<&[u8]> = message_keys.iter().map(Vec::as_slice).collect();
        let mut entries = Vec::new();
        for entry in &self.expiry {
            let (ekey, value) = entry.map_err(|e| unavailable("read the expiry index", e))?;
            if let Ok((_, mkey)) = split_expiry_key(&ekey)
                && wanted.contains(mkey)
            {
                let mkey = mkey.to_vec();
                entries.push((ekey, mkey, value));
            }
        }
        self.remove_attachments(&entries)?;
        let expiry_keys: Vec<sled::IVec> = entries.into_iter().map(|(ekey, ..)| ekey).collect();
        self.delete(message_keys, &expiry_keys)
    }

    /// One transaction: removes the messages, their outbox entries and these expiry keys.
    /// Returns how many message records were there.
    fn delete(
        &self,
        message_keys: &[Vec<u8>],
        expiry_keys: &[sled::IVec],
    ) -> Result<u64, StoreError> {
        let done = (&self.messages, &self.outbox, &self.expiry).transaction(
            |(messages, outbox, expiry)| -> TxResult<u64, StoreError> {
                let mut removed = 0;
                for mkey in message_keys {
                    if messages.remove(mkey.as_slice())?.is_some() {
                        removed += 1;
                    }
                    if let Ok((_, seq)) = split_message_key(mkey) {
                        outbox.remove(&outbox_key(seq))?;
                    }
                }
                for ekey in expiry_keys {
                    expiry.remove(ekey)?;
                }
                Ok(removed)
            },
        );
        let removed = match done {
            Ok(removed) => removed,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(unavailable("delete messages", e)),
        };
        self.flush()?;
        Ok(removed)
    }

    /// Clean-up at open, after a crash: records whose slot is zero (a deletion that zeroed the
    /// key and stopped) go, with their attachments; slots no record names (a write that stored
    /// a key and stopped before its transaction) are zeroed and freed.
    pub(crate) fn recover(&self, count: u64, used: &BTreeSet<u64>) -> Result<(), StoreError> {
        let mut named = BTreeSet::new();
        let mut stale = Vec::new();
        for entry in &self.messages {
            let (mkey, value) = entry.map_err(|e| unavailable("read the messages", e))?;
            match slot_of(&value) {
                Some(slot) if used.contains(&slot) => {
                    named.insert(slot);
                }
                Some(slot) if slot < count => stale.push(mkey.to_vec()),
                // Too short, or beyond the file: corrupt, reported when read, never deleted.
                _ => {}
            }
        }
        if !stale.is_empty() {
            let removed = self.remove_records(&stale)?;
            tracing::info!(
                removed,
                "store: removed messages whose deletion was interrupted"
            );
        }
        let orphans: BTreeSet<u64> = used.difference(&named).copied().collect();
        if !orphans.is_empty() {
            self.slots.erase(&orphans)?;
            self.slots.release(&orphans);
            tracing::info!(
                slots = orphans.len(),
                "store: zeroed message keys of writes that did not complete"
            );
        }
        Ok(())
    }
}

impl Expiry for Store {
    /// Zeroes the expired messages' keys and syncs first, deletes their attachments, then
    /// removes their records, outbox and expiry entries in one transaction and flushes; the
    /// `seen` entries and chain links stay. One purge at a time.
    #[tracing::instrument(name = "store.purge_expired", level = "debug", skip_all, err(Display))]
    fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let _one_at_a_time = self
            .purging
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entries = self.expired_entries(now)?;
        if entries.is_empty() {
            self.flush()?;
            return Ok(0);
        }
        let mut slots = BTreeSet::new();
        let mut message_keys = Vec::with_capacity(entries.len());
        for (_, mkey, _) in &entries {
            match self.messages.get(mkey) {
                Ok(Some(value)) => {
                    // A record too short for a slot is removed all the same.
                    if let Some(slot) = slot_of(&value) {
                        slots.insert(slot);
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(unavailable("read an expired message", e)),
            }
            message_keys.push(mkey.clone());
        }
        self.slots.erase(&slots)?;
        self.remove_attachments(&entries)?;
        let expiry_keys: Vec<sled::IVec> = entries.into_iter().map(|(ekey, ..)| ekey).collect();
        let removed = self.delete(&message_keys, &expiry_keys)?;
        self.slots.release(&slots);
        tracing::debug!(removed, "store: expired messages purged");
        Ok(removed)
    }
}
