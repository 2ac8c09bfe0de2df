//! [`MessageStore`] on the `messages`, `seen`, `outbox`, `heads`, `links`, `faults`, `expiry`,
//! `contacts` and `read` trees, with one key per message in `message-keys`.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;

use parley_domain::{
    ChainHead, ChainState, Contact, ConversationSummary, Delivery, Digest, Direction, Link,
    MessageId, Neighbours, StoredMessage, Timestamp, Username,
};
use parley_usecases::ports::{MessageStore, OutboxEntry, StoreError, Stored};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::crypto::{self, Key32, NAME_LEN};
use crate::keyring::sync_folder;
use crate::records::{
    MESSAGE_KEY_LEN, Name, corrupt, decode_contact, decode_count, decode_head, decode_link,
    decode_message, decode_outbox, decode_seen, encode_contact, encode_head, encode_link,
    encode_message, encode_outbox, encode_seen, expiry_key, link_key, message_key, outbox_key,
    record_id, seen_key, split_expiry_key, split_message_key, time_key,
};
use crate::{Store, unavailable};

/// The folder, in the store folder, whose files named after a message's record id go with it.
const ATTACHMENTS: &str = "attachments";

/// Why an insert transaction stopped without writing.
enum Stop {
    /// The (sender, id) is stored already; its sealed `seen` value.
    Seen(sled::IVec),
    /// A record in the way could not be read.
    Failed(StoreError),
}

type TxResult<T, E> = Result<T, ConflictableTransactionError<E>>;

/// An `expiry` entry: its key, the `messages` key in it, its sealed value (the `seen` key).
type ExpiryEntry = (sled::IVec, Vec<u8>, sled::IVec);

fn abort<E>(error: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(error)
}

/// What goes with a new message besides its record and `seen` entry.
enum Extra<'a> {
    /// Ours: the envelope to keep in the outbox and our chain's new head.
    Outgoing {
        envelope: &'a [u8],
        head: &'a ChainHead,
    },
    /// The sender's: its place in their chain.
    Incoming { link: &'a Link },
}

/// A message record's slot index: its first 8 bytes.
fn slot_of(value: &[u8]) -> Option<u64> {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The associated data of a message record sealed under its own key.
fn message_aad(message_key: &[u8], slot: u64) -> Vec<u8> {
    let mut aad = crypto::record_aad("messages", message_key);
    aad.extend_from_slice(&slot.to_be_bytes());
    aad
}

/// The associated data of an outbox envelope sealed under its message's key.
fn envelope_aad(outbox_key: &[u8], slot: u64) -> Vec<u8> {
    let mut aad = crypto::record_aad("outbox/envelope", outbox_key);
    aad.extend_from_slice(&slot.to_be_bytes());
    aad
}

/// The first key after every `expiry` key of a time `<= now`.
fn expired_bound(now: Timestamp) -> Vec<u8> {
    let mut bound = time_key(now).to_vec();
    bound.extend_from_slice(&[0xff; MESSAGE_KEY_LEN + 1]);
    bound
}

impl Store {
    /// A fresh local sequence number; unique and increasing across restarts.
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.db
            .generate_id()
            .map_err(|e| unavailable("number a new message", e))
    }

    fn name(&self, user: &Username) -> Name {
        self.keys.name(user)
    }

    /// Seals a message under its own key `km`, kept in `slot`: `slot ‖ nonce ‖ ciphertext`.
    fn seal_message(
        message_key: &[u8],
        slot: u64,
        km: &Key32,
        message: &StoredMessage,
    ) -> Result<Vec<u8>, StoreError> {
        let sealed = crypto::seal(
            &km.cipher(),
            &message_aad(message_key, slot),
            &encode_message(message)?,
        )?;
        let mut value = slot.to_be_bytes().to_vec();
        value.extend_from_slice(&sealed);
        Ok(value)
    }

    /// Reads a message record: the message, its slot and key; `None` when its slot is zero
    /// (the message is deleted, or being deleted).
    fn open_message(
        &self,
        message_key: &[u8],
        value: &[u8],
    ) -> Result<Option<(StoredMessage, u64, Key32)>, StoreError> {
        let slot =
            slot_of(value).ok_or_else(|| corrupt("messages", "a record is shorter than a slot"))?;
        let Some(km) = self.slots.key(slot)? else {
            return Ok(None);
        };
        let message = Self::open_with(message_key, slot, &km, value)?;
        Ok(Some((message, slot, km)))
    }

    /// Decrypts a message record with its key.
    fn open_with(
        message_key: &[u8],
        slot: u64,
        km: &Key32,
        value: &[u8],
    ) -> Result<StoredMessage, StoreError> {
        let sealed = value.get(8..).unwrap_or_default();
        let plain = crypto::open(&km.cipher(), &message_aad(message_key, slot), sealed)
            .ok_or_else(|| crypto::undecryptable("messages"))?;
        decode_message(&plain)
    }

    /// The message an outbox entry names; `None` when it is deleted (or being deleted) and
    /// the entry with it.
    fn outbox_message(
        &self,
        outbox_key: &[u8],
        message_key: &[u8],
    ) -> Result<Option<(StoredMessage, u64, Key32)>, StoreError> {
        match self.messages.get(message_key) {
            Ok(Some(value)) => self.open_message(message_key, &value),
            // A purge removes the entry and the message together: gone both, or corrupt.
            Ok(None) => match self.outbox.contains_key(outbox_key) {
                Ok(false) => Ok(None),
                Ok(true) => Err(corrupt("outbox", "an entry points at a missing message")),
                Err(e) => Err(unavailable("read the outbox", e)),
            },
            Err(e) => Err(unavailable("read a message", e)),
        }
    }

    /// The read mark of the conversation whose contact hash is `contact`: the highest `seq`
    /// of its `messages` keys when it was last marked read; `None` when it never was.
    fn read_mark(&self, contact: &Name) -> Result<Option<u64>, StoreError> {
        match self.read.get(contact) {
            Ok(Some(value)) => {
                let plain = self.keys.open_value("read", contact, &value)?;
                let mark = <[u8; 8]>::try_from(plain.as_slice())
                    .map_err(|_| corrupt("read", "a value is not an 8-byte sequence"))?;
                Ok(Some(u64::from_be_bytes(mark)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read a read mark", e)),
        }
    }

    /// The digest `seen` remembers for (`sender`, `id`), if any.
    fn seen_digest(&self, skey: &[u8]) -> Result<Option<Digest>, StoreError> {
        match self.seen.get(skey) {
            Ok(Some(value)) => self.decode_seen_value(skey, &value).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read the seen messages", e)),
        }
    }

    fn decode_seen_value(&self, skey: &[u8], value: &[u8]) -> Result<Digest, StoreError> {
        decode_seen(&self.keys.open_value("seen", skey, value)?)
    }

    /// Inserts `message` under a new sequence, with a new key in a new slot, unless
    /// (`message.from`, `message.id`) is in `seen` — checked inside the transaction, so that
    /// concurrent calls store it once. With `durable`, syncs in both cases; without, the
    /// caller syncs (see [`Store::sync_all`]) before it relies on the write. `None` when it
    /// wrote; otherwise the digest remembered.
    fn insert_once(
        &self,
        message: &StoredMessage,
        extra: &Extra<'_>,
        durable: bool,
    ) -> Result<Option<Digest>, StoreError> {
        let sender = self.name(&message.from);
        let skey = seen_key(&sender, &message.id);
        // The common repeat: answered without spending a slot.
        if let Some(digest) = self.seen_digest(&skey)? {
            if durable {
                self.flush()?;
            }
            return Ok(Some(digest));
        }
        let seq = self.next_seq()?;
        let mkey = message_key(&self.name(message.contact()), seq);
        // A fresh key in a slot synced before the record that names it may reach the disk (sled
        // writes its log in the background too): a record without its key would be a message
        // lost. Keys are synced in batches ahead of need.
        let (slot, km) = self.slots.allocate()?;
        let written =
            self.insert_transaction(message, extra, &sender, &skey, seq, &mkey, slot, &km);
        let outcome = match written {
            Ok(()) => None,
            Err(TransactionError::Abort(Stop::Seen(value))) => {
                self.slots.discard(slot)?;
                Some(self.decode_seen_value(&skey, &value)?)
            }
            Err(TransactionError::Abort(Stop::Failed(e))) => {
                self.slots.discard(slot)?;
                return Err(e);
            }
            Err(TransactionError::Storage(e)) => {
                // Whether the record reached the disk is unknown: the slot stays as it is, and
                // the next open zeroes it if no record names it.
                return Err(unavailable("store a message", e));
            }
        };
        // Flush even for a duplicate: its first copy may come from another thread that has not
        // flushed yet, and our caller is about to give a receipt for it.
        if durable {
            self.flush()?;
        }
        Ok(outcome)
    }

    /// Makes every write so far durable (each message key was synced when it was written).
    /// Concurrent callers share the disk's work: sled's flush returns at once when another
    /// flush already covered this caller's writes, which is what turns many messages into one
    /// `fsync` of the database (group commit).
    pub(crate) fn sync_all(&self) -> Result<(), StoreError> {
        self.flush()
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_transaction(
        &self,
        message: &StoredMessage,
        extra: &Extra<'_>,
        sender: &Name,
        skey: &[u8],
        seq: u64,
        mkey: &[u8],
        slot: u64,
        km: &Key32,
    ) -> Result<(), TransactionError<Stop>> {
        let failed = |e: StoreError| TransactionError::Abort(Stop::Failed(e));
        let keys = &self.keys;
        let mvalue = Self::seal_message(mkey, slot, km, message).map_err(failed)?;
        let digest = match extra {
            Extra::Outgoing { head, .. } => head.digest,
            Extra::Incoming { link } => link.digest,
        };
        let svalue = keys
            .seal_value("seen", skey, &encode_seen(&digest, mkey))
            .map_err(failed)?;
        let expiry = message
            .expires_at
            .map(|at| {
                let ekey = expiry_key(at, mkey);
                keys.seal_value("expiry", &ekey, skey).map(|v| (ekey, v))
            })
            .transpose()
            .map_err(failed)?;
        let okey = outbox_key(seq);
        let (outbox_value, head_entry, link_entry, fault_key) = match extra {
            Extra::Outgoing { envelope, head } => {
                let sealed = crypto::seal(&km.cipher(), &envelope_aad(&okey, slot), envelope)
                    .map_err(failed)?;
                let ovalue = keys
                    .seal_value("outbox", &okey, &encode_outbox(mkey, &message.id, &sealed))
                    .map_err(failed)?;
                let hkey = self.name(&message.to);
                let hvalue = keys
                    .seal_value("heads", &hkey, &encode_head(head))
                    .map_err(failed)?;
                (Some(ovalue), Some((hkey, hvalue)), None, None)
            }
            Extra::Incoming { link } if message.verification.is_verified() => {
                let lkey = link_key(sender, link.seq);
                let lvalue = keys
                    .seal_value("links", &lkey, &encode_link(link))
                    .map_err(failed)?;
                (None, None, Some((lkey, lvalue)), None)
            }
            Extra::Incoming { .. } => (None, None, None, Some(*sender)),
        };
        let trees = (
            &self.messages,
            &self.seen,
            &self.outbox,
            &self.heads,
            &self.links,
            &self.faults,
            &self.expiry,
        );
        trees.transaction(
            |(messages, seen, outbox, heads, links, faults, expiry_tree)| {
                if let Some(value) = seen.get(skey)? {
                    return Err(abort(Stop::Seen(value)));
                }
                messages.insert(mkey, mvalue.as_slice())?;
                seen.insert(skey, svalue.as_slice())?;
                if let Some(ovalue) = &outbox_value {
                    outbox.insert(&okey, ovalue.as_slice())?;
                }
                if let Some((hkey, hvalue)) = &head_entry {
                    heads.insert(hkey, hvalue.as_slice())?;
                }
                if let Some((lkey, lvalue)) = &link_entry {
                    links.insert(lkey, lvalue.as_slice())?;
                }
                if let Some(fkey) = &fault_key {
                    let count = match faults.get(fkey)? {
                        Some(value) => keys
                            .open_value("faults", fkey, &value)
                            .and_then(|plain| decode_count(&plain))
                            .map_err(|e| abort(Stop::Failed(e)))?,
                        None => 0,
                    };
                    let value = keys
                        .seal_value("faults", fkey, &(count + 1).to_be_bytes())
                        .map_err(|e| abort(Stop::Failed(e)))?;
                    faults.insert(fkey, value)?;
                }
                if let Some((ekey, evalue)) = &expiry {
                    expiry_tree.insert(ekey.as_slice(), evalue.as_slice())?;
                }
                Ok(())
            },
        )
    }

    /// The outbox entry (its key, and its message's key) of the outgoing message `id`.
    fn find_in_outbox(&self, id: &MessageId) -> Result<Option<(sled::IVec, Vec<u8>)>, StoreError> {
        for entry in &self.outbox {
            let (okey, value) = entry.map_err(|e| unavailable("read the outbox", e))?;
            let plain = self.keys.open_value("outbox", &okey, &value)?;
            let (mkey, entry_id, _) = decode_outbox(&plain)?;
            if entry_id == *id {
                return Ok(Some((okey, mkey.to_vec())));
            }
        }
        Ok(None)
    }

    /// The `expiry` entries of messages expired at `now`: (expiry key, messages key, value).
    fn expired_entries(&self, now: Timestamp) -> Result<Vec<ExpiryEntry>, StoreError> {
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

impl MessageStore for Store {
    /// Also a no-op (after a flush) when this (sender, id) is stored already, so a retried
    /// command cannot put a message twice into the outbox nor move the chain head twice.
    #[tracing::instrument(name = "store.append", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        self.insert_once(message, &Extra::Outgoing { envelope, head }, true)
            .map(drop)
    }

    #[tracing::instrument(name = "store.append_deferred", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        self.insert_once(message, &Extra::Outgoing { envelope, head }, false)
            .map(drop)
    }

    #[tracing::instrument(name = "store.sync", level = "debug", skip_all, err(Display))]
    fn sync(&self) -> Result<(), StoreError> {
        self.sync_all()
    }

    #[tracing::instrument(name = "store.store_incoming_deferred", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
    ) -> Result<Stored, StoreError> {
        Ok(
            match self.insert_once(message, &Extra::Incoming { link }, false)? {
                None => Stored::New,
                Some(digest) if digest == link.digest => Stored::Duplicate,
                Some(_) => Stored::Conflicting,
            },
        )
    }

    #[tracing::instrument(name = "store.chain_head", level = "debug", skip_all, fields(%to), err(Display))]
    fn chain_head(&self, to: &Username) -> Result<ChainHead, StoreError> {
        let hkey = self.name(to);
        match self.heads.get(hkey) {
            Ok(Some(value)) => decode_head(&self.keys.open_value("heads", &hkey, &value)?),
            Ok(None) => Ok(ChainHead::EMPTY),
            Err(e) => Err(unavailable("read a chain head", e)),
        }
    }

    /// `Duplicate` when `seen` remembers the same envelope digest, `Conflicting` when another;
    /// either way nothing changes.
    #[tracing::instrument(name = "store.store_incoming", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming(&self, message: &StoredMessage, link: &Link) -> Result<Stored, StoreError> {
        Ok(
            match self.insert_once(message, &Extra::Incoming { link }, true)? {
                None => Stored::New,
                Some(digest) if digest == link.digest => Stored::Duplicate,
                Some(_) => Stored::Conflicting,
            },
        )
    }

    #[tracing::instrument(name = "store.neighbours", level = "debug", skip_all, fields(%from, seq), err(Display))]
    fn neighbours(&self, from: &Username, seq: u64) -> Result<Neighbours, StoreError> {
        let sender = self.name(from);
        let at = |seq: Option<u64>| -> Result<Option<Link>, StoreError> {
            let Some(seq) = seq else { return Ok(None) };
            let lkey = link_key(&sender, seq);
            match self.links.get(lkey) {
                Ok(Some(value)) => {
                    decode_link(seq, &self.keys.open_value("links", &lkey, &value)?).map(Some)
                }
                Ok(None) => Ok(None),
                Err(e) => Err(unavailable("read a chain", e)),
            }
        };
        Ok(Neighbours {
            before: at(seq.checked_sub(1))?,
            same: at(Some(seq))?,
            after: at(seq.checked_add(1))?,
        })
    }

    #[tracing::instrument(name = "store.chain_state", level = "debug", skip_all, fields(%from), err(Display))]
    fn chain_state(&self, from: &Username) -> Result<ChainState, StoreError> {
        let sender = self.name(from);
        let seqs = self
            .links
            .scan_prefix(sender)
            .map(|entry| {
                let (lkey, value) = entry.map_err(|e| unavailable("read a chain", e))?;
                let (_, seq) = split_message_key(&lkey)
                    .map_err(|_| corrupt("links", "a key is not a name and a position"))?;
                // Opened only to be sure the entry is ours and where it was put.
                self.keys.open_value("links", &lkey, &value)?;
                Ok(seq)
            })
            .collect::<Result<Vec<u64>, StoreError>>()?;
        let faults = match self.faults.get(sender) {
            Ok(Some(value)) => decode_count(&self.keys.open_value("faults", &sender, &value)?)?,
            Ok(None) => 0,
            Err(e) => return Err(unavailable("read a chain's faults", e)),
        };
        Ok(ChainState::of(seqs, faults))
    }

    /// The entry is found by id as for [`MessageStore::mark_delivered`]; the new envelope is
    /// sealed under the message's own key like the first.
    #[tracing::instrument(name = "store.reseal", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn reseal(&self, id: &MessageId, envelope: &[u8], head: &ChainHead) -> Result<(), StoreError> {
        let Some((okey, mkey)) = self.find_in_outbox(id)? else {
            return self.flush();
        };
        let Some((message, slot, km)) = self.outbox_message(&okey, &mkey)? else {
            return self.flush(); // being deleted
        };
        let sealed = crypto::seal(&km.cipher(), &envelope_aad(&okey, slot), envelope)?;
        let ovalue = self
            .keys
            .seal_value("outbox", &okey, &encode_outbox(&mkey, id, &sealed))?;
        let hkey = self.name(&message.to);
        let hvalue = self.keys.seal_value("heads", &hkey, &encode_head(head))?;
        let done = (&self.outbox, &self.heads).transaction(
            |(outbox, heads)| -> TxResult<(), StoreError> {
                if outbox.get(&okey)?.is_none() {
                    return Ok(()); // delivered or purged meanwhile
                }
                outbox.insert(&okey, ovalue.as_slice())?;
                heads.insert(&hkey, hvalue.as_slice())?;
                Ok(())
            },
        );
        match done {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("seal a message again", e)),
        }
    }

    /// The port gives only the id, so the message is looked up in the outbox (whose entries
    /// carry the id): the only place a message waiting for a receipt can be. An id that is not
    /// there (unknown, delivered already, or purged) changes nothing and is `Ok`; the first
    /// receipt's time is the one kept. The envelope goes with the outbox entry. Not synced
    /// (see `settle`).
    #[tracing::instrument(name = "store.mark_delivered", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Delivered(at))
    }

    #[tracing::instrument(name = "store.reset_chains", level = "debug", skip_all, err(Display))]
    fn reset_chains(&self, user: &Username) -> Result<(), StoreError> {
        let name = self.name(user);
        let links: Vec<sled::IVec> = self
            .links
            .scan_prefix(name)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| unavailable("read a chain", e))?;
        let done = (&self.links, &self.faults, &self.heads).transaction(
            |(l, faults, heads)| -> TxResult<(), StoreError> {
                for key in &links {
                    l.remove(key)?;
                }
                faults.remove(&name)?;
                heads.remove(&name)?;
                Ok(())
            },
        );
        match done {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("forget a chain", e)),
        }
    }

    #[tracing::instrument(name = "store.mark_rejected", level = "debug", skip_all, err(Display))]
    fn mark_rejected(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Rejected(at))
    }

    #[tracing::instrument(name = "store.outbox", level = "debug", skip_all, err(Display))]
    fn outbox(&self, now: Timestamp) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in &self.outbox {
            let (okey, value) = entry.map_err(|e| unavailable("read the outbox", e))?;
            let plain = self.keys.open_value("outbox", &okey, &value)?;
            let (mkey, _, sealed) = decode_outbox(&plain)?;
            let Some((message, slot, km)) = self.outbox_message(&okey, mkey)? else {
                continue; // being deleted
            };
            if message.expired(now) {
                continue;
            }
            let envelope = crypto::open(&km.cipher(), &envelope_aad(&okey, slot), sealed)
                .ok_or_else(|| crypto::undecryptable("outbox"))?;
            entries.push(OutboxEntry { message, envelope });
        }
        Ok(entries)
    }

    #[tracing::instrument(name = "store.history", level = "debug", skip_all, fields(%with), err(Display))]
    fn history(&self, with: &Username, now: Timestamp) -> Result<Vec<StoredMessage>, StoreError> {
        let mut history = Vec::new();
        for entry in self.messages.scan_prefix(self.name(with)) {
            let (mkey, value) = entry.map_err(|e| unavailable("read a conversation", e))?;
            if let Some((message, _, _)) = self.open_message(&mkey, &value)?
                && !message.expired(now)
            {
                history.push(message);
            }
        }
        Ok(history)
    }

    /// One pass over the `messages` keys (sorted by contact hash, then sequence), leaving out
    /// the keys the `expiry` index names as expired: counts each conversation's live messages
    /// and decrypts its newest. For the unread count, only the records whose `seq` is above
    /// the conversation's read mark are decrypted (to tell incoming from outgoing); all of
    /// them when it was never marked read.
    #[tracing::instrument(name = "store.conversations", level = "debug", skip_all, err(Display))]
    fn conversations(&self, now: Timestamp) -> Result<Vec<ConversationSummary>, StoreError> {
        let expired: HashSet<Vec<u8>> = self
            .expired_entries(now)?
            .into_iter()
            .map(|(_, mkey, _)| mkey)
            .collect();
        // Per contact hash, its live records (sequence, key, value), newest last.
        type Records = Vec<(u64, sled::IVec, sled::IVec)>;
        let mut found: Vec<([u8; NAME_LEN], Records)> = Vec::new();
        for entry in &self.messages {
            let (mkey, value) = entry.map_err(|e| unavailable("read the conversations", e))?;
            let (contact, seq) = split_message_key(&mkey)?;
            if expired.contains(mkey.as_ref()) {
                continue;
            }
            match found.last_mut() {
                Some((last, records)) if *last == contact => records.push((seq, mkey, value)),
                _ => found.push((contact, vec![(seq, mkey, value)])),
            }
        }
        let mut summaries = Vec::new();
        for (contact, mut records) in found {
            // Newest first; a record whose key was just zeroed by a purge does not count.
            let mut newest = None;
            while let Some((seq, mkey, value)) = records.pop() {
                if let Some((last, _, _)) = self.open_message(&mkey, &value)?
                    && !last.expired(now)
                {
                    newest = Some((seq, last));
                    break;
                }
            }
            let Some((seq, last)) = newest else {
                continue;
            };
            let mark = self.read_mark(&contact)?;
            let after_mark = |seq: u64| mark.is_none_or(|mark| seq > mark);
            let mut unread = u64::from(after_mark(seq) && last.direction == Direction::Incoming);
            for (_, mkey, value) in records.iter().rev().take_while(|(s, ..)| after_mark(*s)) {
                if let Some((message, _, _)) = self.open_message(mkey, value)?
                    && message.direction == Direction::Incoming
                    && !message.expired(now)
                {
                    unread += 1;
                }
            }
            let summary = ConversationSummary {
                with: last.contact().clone(),
                messages: records.len() as u64 + 1,
                unread,
                last,
            };
            summaries.push((seq, summary));
        }
        summaries.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(summaries.into_iter().map(|(_, summary)| summary).collect())
    }

    /// The mark is the `seq` of the conversation's newest record, expired or not: the last key
    /// of its prefix in `messages`, so nothing is decrypted. It is sealed under `N(with)` in
    /// `read` and not flushed (see the crate's notes on durability). A conversation without
    /// records gets no mark: there is nothing to mark, and whatever arrives later is unread
    /// anyway. A message whose `seq` was drawn before the mark but whose write lands after it
    /// counts as read; the window is that of one transaction.
    #[tracing::instrument(name = "store.mark_read", level = "debug", skip_all, fields(%with), err(Display))]
    fn mark_read(&self, with: &Username) -> Result<(), StoreError> {
        let name = self.name(with);
        let newest = match self.messages.scan_prefix(name).keys().next_back() {
            None => return Ok(()),
            Some(Ok(mkey)) => split_message_key(&mkey)?.1,
            Some(Err(e)) => return Err(unavailable("read a conversation", e)),
        };
        let value = self.keys.seal_value("read", &name, &newest.to_be_bytes())?;
        self.read
            .insert(name, value)
            .map_err(|e| unavailable("mark a conversation read", e))?;
        Ok(())
    }

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

    #[tracing::instrument(name = "store.is_contact", level = "debug", skip_all, fields(%user), err(Display))]
    fn is_contact(&self, user: &Username) -> Result<bool, StoreError> {
        match self.messages.scan_prefix(self.name(user)).next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(unavailable("read a conversation", e)),
        }
    }

    #[tracing::instrument(name = "store.contact", level = "debug", skip_all, fields(%user), err(Display))]
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        let ckey = self.name(user);
        match self.contacts.get(ckey) {
            Ok(Some(value)) => {
                decode_contact(&self.keys.open_value("contacts", &ckey, &value)?).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read a contact", e)),
        }
    }

    #[tracing::instrument(name = "store.save_contact", level = "debug", skip_all, fields(user = %contact.user), err(Display))]
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        let ckey = self.name(&contact.user);
        let value = self
            .keys
            .seal_value("contacts", &ckey, &encode_contact(contact)?)?;
        self.contacts
            .insert(ckey, value)
            .map_err(|e| unavailable("save a contact", e))?;
        self.flush()
    }
}

/// Receipts and refusals: both settle an outgoing message and take it out of the outbox.
impl Store {
    /// A receipt is recorded without waiting for the disk: if a crash loses it, the message
    /// is still in the outbox, goes out again, and the recipient recognises it (a duplicate
    /// gets a receipt and is not stored twice). A refusal for good is synced: losing it would
    /// send the refused message again.
    fn settle(&self, id: &MessageId, delivery: Delivery) -> Result<(), StoreError> {
        let sync = || {
            if matches!(delivery, Delivery::Delivered(_)) {
                Ok(())
            } else {
                self.flush()
            }
        };
        let Some((okey, mkey)) = self.find_in_outbox(id)? else {
            return sync();
        };
        let Some((_, slot, km)) = self.outbox_message(&okey, &mkey)? else {
            return sync(); // being deleted
        };
        let done = (&self.messages, &self.outbox).transaction(
            |(messages, outbox)| -> TxResult<(), StoreError> {
                if outbox.get(&okey)?.is_none() {
                    return Ok(()); // another call got here first, or a purge
                }
                let Some(value) = messages.get(&mkey)? else {
                    return Err(abort(corrupt(
                        "outbox",
                        "an entry points at a missing message",
                    )));
                };
                if slot_of(&value) != Some(slot) {
                    return Err(abort(corrupt("messages", "a record changed its key slot")));
                }
                let mut message = Self::open_with(&mkey, slot, &km, &value).map_err(abort)?;
                message.delivery = delivery;
                let value = Self::seal_message(&mkey, slot, &km, &message).map_err(abort)?;
                messages.insert(mkey.as_slice(), value)?;
                outbox.remove(&okey)?;
                Ok(())
            },
        );
        match done {
            Ok(()) => sync(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("record a receipt", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{Direction, MessageText, Verification};

    use super::*;
    use crate::Unlock;

    fn message(expires_at: Option<Timestamp>) -> StoredMessage {
        let user = |name| Username::parse(name).expect("valid literal");
        StoredMessage {
            id: MessageId::from_bytes([1; 16]),
            from: user("bob"),
            to: user("alice"),
            text: MessageText::parse("hello").expect("valid literal"),
            sent_at: Timestamp(1),
            direction: Direction::Incoming,
            delivery: Delivery::Received(Timestamp(2)),
            verification: Verification::Verified,
            ttl: None,
            expires_at,
            attachments: vec![],
        }
    }

    #[test]
    fn given_a_stored_message_then_only_its_own_key_opens_it_and_a_zeroed_slot_deletes_it() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens");
        let link = Link {
            seq: 1,
            digest: Digest([1; 32]),
            prev: Digest::GENESIS,
        };
        assert_eq!(store.store_incoming(&message(None), &link), Ok(Stored::New));
        let (mkey, value) = store.messages.first().expect("read").expect("one record");
        let slot = slot_of(&value).expect("a slot");
        let km = store.slots.key(slot).expect("read").expect("a key");
        assert_eq!(
            Store::open_with(&mkey, slot, &km, &value),
            Ok(message(None))
        );
        assert!(
            store
                .keys
                .open_value("messages", &mkey, &value[8..])
                .is_err(),
            "not under the store's values key"
        );
        let other = Key32::random().expect("random");
        assert!(Store::open_with(&mkey, slot, &other, &value).is_err());
        assert!(
            Store::open_with(&mkey, slot + 1, &km, &value).is_err(),
            "bound to its slot"
        );
        store.slots.erase(&BTreeSet::from([slot])).expect("erase");
        assert_eq!(store.open_message(&mkey, &value), Ok(None), "deleted");
        assert_eq!(store.history(&message(None).from, Timestamp(0)), Ok(vec![]));
    }

    #[test]
    fn given_a_read_mark_then_it_is_sealed_under_the_name_hash_and_outlives_a_reopen() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let bob = message(None).from;
        let link = Link {
            seq: 1,
            digest: Digest([1; 32]),
            prev: Digest::GENESIS,
        };
        let unread = |store: &Store| {
            store
                .conversations(Timestamp(0))
                .expect("read")
                .iter()
                .map(|c| c.unread)
                .collect::<Vec<_>>()
        };
        {
            let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens");
            store.store_incoming(&message(None), &link).expect("write");
            store.mark_read(&bob).expect("write");
            assert_eq!(unread(&store), [0]);
            let (rkey, value) = store.read.first().expect("read").expect("one mark");
            assert_eq!(rkey.as_ref(), store.name(&bob), "keyed by the name hash");
            let (_, seq) =
                split_message_key(&store.messages.first().expect("read").expect("one").0)
                    .expect("a message key");
            assert_ne!(value.as_ref(), seq.to_be_bytes(), "sealed");
            assert_eq!(
                store.keys.open_value("read", &rkey, &value),
                Ok(seq.to_be_bytes().to_vec())
            );
            store.sync().expect("flush");
        }
        {
            let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens again");
            assert_eq!(unread(&store), [0], "the mark outlives a reopen");
            // A store from before read marks: no `read` tree at all.
            store.db.drop_tree("read").expect("drop");
            store.sync().expect("flush");
        }
        let store = Store::open(dir.path(), Unlock::KeyFile).expect("opens without the tree");
        assert_eq!(unread(&store), [1], "never marked: unread");
        store.mark_read(&bob).expect("write");
        assert_eq!(unread(&store), [0]);
    }
}
