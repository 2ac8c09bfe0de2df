//! [`MessageStore`] on the `messages`, `seen`, `outbox` and `contacts` trees.

use parley_domain::{
    Contact, ConversationSummary, Delivery, Direction, MessageId, StoredMessage, Timestamp,
    Username,
};
use parley_usecases::ports::{MessageStore, StoreError, Stored};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::records::{
    conversation_prefix, corrupt, decode_contact, decode_message, encode_contact, encode_message,
    message_key, outbox_key, seen_key, split_message_key,
};
use crate::{Store, unavailable};

/// Why a transaction stopped without writing: the (sender, id) is already stored.
struct AlreadySeen;

impl Store {
    /// A fresh local sequence number; unique and increasing across restarts.
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.db
            .generate_id()
            .map_err(|e| unavailable("number a new message", e))
    }

    fn message_at(&self, key: &[u8]) -> Result<StoredMessage, StoreError> {
        match self.messages.get(key) {
            Ok(Some(bytes)) => decode_message(&bytes),
            Ok(None) => Err(corrupt("outbox", "an entry points at a missing message")),
            Err(e) => Err(unavailable("read a message", e)),
        }
    }

    /// Inserts `message` under a new sequence unless (`message.from`, `message.id`) is in
    /// `seen`, checked inside the transaction so that concurrent calls store it once; to the
    /// outbox too when `to_outbox`. Flushes in both cases. True when it wrote.
    fn insert_once(&self, message: &StoredMessage, to_outbox: bool) -> Result<bool, StoreError> {
        let seq = self.next_seq()?;
        let mkey = message_key(message.contact(), seq);
        let skey = seen_key(&message.from, &message.id);
        let okey = outbox_key(seq);
        let value = encode_message(message)?;
        let written =
            (&self.messages, &self.seen, &self.outbox).transaction(|(messages, seen, outbox)| {
                if seen.get(&skey)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(AlreadySeen));
                }
                messages.insert(mkey.as_slice(), value.as_slice())?;
                seen.insert(skey.as_slice(), mkey.as_slice())?;
                if to_outbox {
                    outbox.insert(&okey, mkey.as_slice())?;
                }
                Ok(())
            });
        let written = match written {
            Ok(()) => true,
            Err(TransactionError::Abort(AlreadySeen)) => false,
            Err(TransactionError::Storage(e)) => return Err(unavailable("store a message", e)),
        };
        // Flush even for a duplicate: its first copy may come from another thread that has not
        // flushed yet, and our caller is about to give a receipt for it.
        self.flush()?;
        Ok(written)
    }

    /// The outbox entry (its key and the message's key) of the outgoing message `id`.
    fn find_in_outbox(
        &self,
        id: &MessageId,
    ) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        for entry in &self.outbox {
            let (okey, mkey) = entry.map_err(|e| unavailable("read the outbox", e))?;
            let message = self.message_at(&mkey)?;
            if message.id == *id && message.direction == Direction::Outgoing {
                return Ok(Some((okey, mkey)));
            }
        }
        Ok(None)
    }
}

impl MessageStore for Store {
    /// Also a no-op (after a flush) when this (sender, id) is stored already, so a retried
    /// command cannot put a message twice into the outbox.
    #[tracing::instrument(name = "store.append", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing(&self, message: &StoredMessage) -> Result<(), StoreError> {
        self.insert_once(message, true).map(drop)
    }

    #[tracing::instrument(name = "store.store_incoming", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming(&self, message: &StoredMessage) -> Result<Stored, StoreError> {
        Ok(if self.insert_once(message, false)? {
            Stored::New
        } else {
            Stored::Duplicate
        })
    }

    /// The port gives only the id, and the `seen` key needs the sender too, so the message is
    /// looked up in the outbox: the only place a message waiting for a receipt can be. An id
    /// that is not there (unknown, or delivered already) changes nothing and is `Ok`; the first
    /// receipt's time is the one kept.
    #[tracing::instrument(name = "store.mark_delivered", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn mark_delivered(&self, id: &MessageId, at: Timestamp) -> Result<(), StoreError> {
        let Some((okey, mkey)) = self.find_in_outbox(id)? else {
            return self.flush();
        };
        let done = (&self.messages, &self.outbox).transaction(|(messages, outbox)| {
            if outbox.get(&okey)?.is_none() {
                return Ok(()); // another call got here first
            }
            let Some(bytes) = messages.get(&mkey)? else {
                let missing = corrupt("outbox", "an entry points at a missing message");
                return Err(ConflictableTransactionError::Abort(missing));
            };
            let mut message =
                decode_message(&bytes).map_err(ConflictableTransactionError::Abort)?;
            message.delivery = Delivery::Delivered(at);
            let value = encode_message(&message).map_err(ConflictableTransactionError::Abort)?;
            messages.insert(&mkey, value)?;
            outbox.remove(&okey)?;
            Ok(())
        });
        match done {
            Ok(()) => self.flush(),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable("record a receipt", e)),
        }
    }

    #[tracing::instrument(name = "store.outbox", level = "debug", skip_all, err(Display))]
    fn outbox(&self) -> Result<Vec<StoredMessage>, StoreError> {
        self.outbox
            .iter()
            .map(|entry| {
                let (_, mkey) = entry.map_err(|e| unavailable("read the outbox", e))?;
                self.message_at(&mkey)
            })
            .collect()
    }

    #[tracing::instrument(name = "store.history", level = "debug", skip_all, fields(%with), err(Display))]
    fn history(&self, with: &Username) -> Result<Vec<StoredMessage>, StoreError> {
        self.messages
            .scan_prefix(conversation_prefix(with))
            .map(|entry| {
                let (_, value) = entry.map_err(|e| unavailable("read a conversation", e))?;
                decode_message(&value)
            })
            .collect()
    }

    /// One pass over the `messages` keys (sorted by contact, then sequence): counts each
    /// conversation and decodes only its newest message.
    #[tracing::instrument(name = "store.conversations", level = "debug", skip_all, err(Display))]
    fn conversations(&self) -> Result<Vec<ConversationSummary>, StoreError> {
        // (contact bytes, count, newest sequence, newest value)
        let mut found: Vec<(Vec<u8>, u64, u64, sled::IVec)> = Vec::new();
        for entry in &self.messages {
            let (key, value) = entry.map_err(|e| unavailable("read the conversations", e))?;
            let (contact, seq) = split_message_key(&key)?;
            match found.last_mut() {
                Some((last, count, newest, newest_value)) if last.as_slice() == contact => {
                    *count += 1;
                    *newest = seq;
                    *newest_value = value;
                }
                _ => found.push((contact.to_vec(), 1, seq, value)),
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.2));
        found
            .into_iter()
            .map(|(contact, messages, _, value)| {
                let with = std::str::from_utf8(&contact)
                    .ok()
                    .and_then(|name| Username::parse(name).ok())
                    .ok_or_else(|| corrupt("messages", "a key does not start with a username"))?;
                Ok(ConversationSummary {
                    with,
                    messages,
                    last: decode_message(&value)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(name = "store.is_contact", level = "debug", skip_all, fields(%user), err(Display))]
    fn is_contact(&self, user: &Username) -> Result<bool, StoreError> {
        match self.messages.scan_prefix(conversation_prefix(user)).next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(unavailable("read a conversation", e)),
        }
    }

    #[tracing::instrument(name = "store.contact", level = "debug", skip_all, fields(%user), err(Display))]
    fn contact(&self, user: &Username) -> Result<Option<Contact>, StoreError> {
        match self.contacts.get(user.as_str()) {
            Ok(Some(bytes)) => decode_contact(&bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable("read a contact", e)),
        }
    }

    #[tracing::instrument(name = "store.save_contact", level = "debug", skip_all, fields(user = %contact.user), err(Display))]
    fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        let value = encode_contact(contact)?;
        self.contacts
            .insert(contact.user.as_str(), value)
            .map_err(|e| unavailable("save a contact", e))?;
        self.flush()
    }
}
