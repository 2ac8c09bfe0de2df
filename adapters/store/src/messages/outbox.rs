//! [`OutboxStore`] on the `outbox` tree: outgoing messages with their sealed envelopes, until
//! the receipt or a refusal for good settles them.

use parley_domain::{ChainHead, Delivery, MessageId, StoredMessage, Timestamp};
use parley_usecases::ports::{OutboxEntry, OutboxStore, StoreError};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Extra, TxResult, abort, envelope_aad, slot_of};
use crate::crypto::{self, Key32};
use crate::records::{corrupt, decode_outbox, encode_head, encode_outbox};
use crate::{Store, unavailable};

impl Store {
    /// Seals the outbox entry of `id` again with `envelope` and moves the chain head to `head`
    /// (and writes a session book with them, given one), in one durable write. The entry is
    /// found by id as for [`OutboxStore::mark_delivered`]; the new envelope is sealed under the
    /// message's own key like the first.
    pub(crate) fn reseal_with(
        &self,
        id: &MessageId,
        envelope: &[u8],
        head: &ChainHead,
        book: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
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
        let done = (&self.outbox, &self.heads, &self.sessions).transaction(
            |(outbox, heads, sessions)| -> TxResult<(), StoreError> {
                if outbox.get(&okey)?.is_none() {
                    return Ok(()); // delivered or purged meanwhile
                }
                outbox.insert(&okey, ovalue.as_slice())?;
                heads.insert(&hkey, hvalue.as_slice())?;
                if let Some((bkey, bvalue)) = &book {
                    sessions.insert(bkey.as_slice(), bvalue.as_slice())?;
                }
                Ok(())
            },
        );
        match done {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("seal a message again", e)),
        }
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

    /// A receipt is recorded without waiting for the disk: if a crash loses it, the message
    /// is still in the outbox, goes out again, and the recipient recognises it (a duplicate
    /// gets a receipt and is not stored twice). A refusal for good is synced: losing it would
    /// send the refused message again.
    fn settle(&self, id: &MessageId, delivery: Delivery) -> Result<(), StoreError> {
        // A queued message waits for its receipt like a pending one: it keeps its entry.
        let queued = matches!(delivery, Delivery::Queued(_));
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
                if queued && message.delivery != Delivery::Pending {
                    return Ok(()); // queued before
                }
                message.delivery = delivery;
                let value = Self::seal_message(&mkey, slot, &km, &message).map_err(abort)?;
                messages.insert(mkey.as_slice(), value)?;
                if !queued {
                    outbox.remove(&okey)?;
                }
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

impl OutboxStore for Store {
    /// Also a no-op (after a flush) when this (sender, id) is stored already, so a retried
    /// command cannot put a message twice into the outbox nor move the chain head twice.
    #[tracing::instrument(name = "store.append", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        self.insert_once(
            message,
            &Extra::Outgoing {
                envelope,
                head,
                session: None,
            },
            true,
        )
        .map(drop)
    }

    #[tracing::instrument(name = "store.append_deferred", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
    ) -> Result<(), StoreError> {
        self.insert_once(
            message,
            &Extra::Outgoing {
                envelope,
                head,
                session: None,
            },
            false,
        )
        .map(drop)
    }

    /// The entry is found by id as for [`MessageStore::mark_delivered`]; the new envelope is
    /// sealed under the message's own key like the first.
    #[tracing::instrument(name = "store.reseal", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn reseal(&self, id: &MessageId, envelope: &[u8], head: &ChainHead) -> Result<(), StoreError> {
        self.reseal_with(id, envelope, head, None)
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

    #[tracing::instrument(name = "store.mark_rejected", level = "debug", skip_all, err(Display))]
    fn mark_rejected(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Rejected(at))
    }

    /// Synced: a queued mark lost in a crash would deposit the message a second time (the
    /// recipient would store it once, but the mailbox would hold it twice).
    #[tracing::instrument(name = "store.mark_queued", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn mark_queued(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        self.settle(id, Delivery::Queued(at))
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
}
