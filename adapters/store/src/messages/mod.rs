//! The message trees behind the store ports: `messages` (one record per message, sealed under
//! its own key in `message-keys`), `seen`, `outbox`, `heads`, `links`, `faults`, `expiry`,
//! `contacts` and `read`. This file holds the records and the one transaction that writes a
//! new message with everything that goes with it; each port has its own file beside it.

use parley_domain::{ChainHead, Digest, Link, StoredMessage, Username};
use parley_usecases::ports::{Durability, Inbox, SessionUpdate, StoreError, Stored};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::crypto::{self, Key32};
use crate::records::{
    Name, corrupt, decode_count, decode_message, decode_seen, encode_head, encode_link,
    encode_message, encode_outbox, encode_seen, expiry_key, link_key, message_key, outbox_key,
    seen_key,
};
use crate::{Store, unavailable};

mod chains;
mod contacts;
mod conversations;
mod expiry;
mod outbox;

/// Why an insert transaction stopped without writing.
enum Stop {
    /// The (sender, id) is stored already; its sealed `seen` value.
    Seen(sled::IVec),
    /// A record in the way could not be read.
    Failed(StoreError),
}

type TxResult<T, E> = Result<T, ConflictableTransactionError<E>>;

fn abort<E>(error: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(error)
}

/// What goes with a new message besides its record and `seen` entry.
pub(crate) enum Extra<'a> {
    /// Ours: the envelope to keep in the outbox and our chain's new head.
    Outgoing {
        envelope: &'a [u8],
        head: &'a ChainHead,
        /// The recipient's sessions as sealing left them.
        session: Option<&'a SessionUpdate<'a>>,
    },
    /// The sender's: its place in their chain.
    Incoming {
        link: &'a Link,
        /// The sender's sessions as opening left them.
        session: Option<&'a SessionUpdate<'a>>,
    },
}

impl Extra<'_> {
    fn session(&self) -> Option<&SessionUpdate<'_>> {
        match self {
            Self::Outgoing { session, .. } | Self::Incoming { session, .. } => *session,
        }
    }
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

impl Store {
    /// A fresh local sequence number; unique and increasing across restarts.
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.db
            .generate_id()
            .map_err(|e| unavailable("number a new message", e))
    }

    pub(crate) fn name(&self, user: &Username) -> Name {
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

    /// The digest `seen` remembers for (`sender`, `id`), if any.
    pub(crate) fn seen_digest(&self, skey: &[u8]) -> Result<Option<Digest>, StoreError> {
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
    pub(crate) fn insert_once(
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
            Extra::Incoming { link, .. } => link.digest,
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
            Extra::Outgoing { envelope, head, .. } => {
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
            Extra::Incoming { link, .. } if message.verification.is_verified() => {
                let lkey = link_key(sender, link.seq);
                let lvalue = keys
                    .seal_value("links", &lkey, &encode_link(link))
                    .map_err(failed)?;
                (None, None, Some((lkey, lvalue)), None)
            }
            Extra::Incoming { .. } => (None, None, None, Some(*sender)),
        };
        let book = extra
            .session()
            .map(|s| self.seal_book(s.with, s.book))
            .transpose()
            .map_err(failed)?;
        let used_prekey = extra
            .session()
            .and_then(|s| s.used_one_time_prekey)
            .map(|id| crate::prekeys::record_key(b"opk", id));
        let trees = (
            &self.messages,
            &self.seen,
            &self.outbox,
            &self.heads,
            &self.links,
            &self.faults,
            &self.expiry,
            &self.sessions,
            &self.prekeys,
        );
        trees.transaction(
            |(messages, seen, outbox, heads, links, faults, expiry_tree, sessions, prekeys)| {
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
                if let Some((bkey, bvalue)) = &book {
                    sessions.insert(bkey.as_slice(), bvalue.as_slice())?;
                }
                if let Some(pkey) = &used_prekey {
                    prekeys.remove(&pkey[..])?;
                }
                Ok(())
            },
        )
    }
}

impl Durability for Store {
    #[tracing::instrument(name = "store.sync", level = "debug", skip_all, err(Display))]
    fn sync(&self) -> Result<(), StoreError> {
        self.sync_all()
    }
}

impl Inbox for Store {
    /// `Duplicate` when `seen` remembers the same envelope digest, `Conflicting` when another;
    /// either way nothing changes.
    #[tracing::instrument(name = "store.store_incoming", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming(&self, message: &StoredMessage, link: &Link) -> Result<Stored, StoreError> {
        Ok(
            match self.insert_once(
                message,
                &Extra::Incoming {
                    link,
                    session: None,
                },
                true,
            )? {
                None => Stored::New,
                Some(digest) if digest == link.digest => Stored::Duplicate,
                Some(_) => Stored::Conflicting,
            },
        )
    }

    #[tracing::instrument(name = "store.store_incoming_deferred", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
    ) -> Result<Stored, StoreError> {
        Ok(
            match self.insert_once(
                message,
                &Extra::Incoming {
                    link,
                    session: None,
                },
                false,
            )? {
                None => Stored::New,
                Some(digest) if digest == link.digest => Stored::Duplicate,
                Some(_) => Stored::Conflicting,
            },
        )
    }
}

#[cfg(test)]
mod tests;
