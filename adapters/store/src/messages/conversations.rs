//! [`Conversations`] on the `messages` and `read` trees: histories, the conversation list with
//! unread counts, and read marks.

use std::collections::HashSet;

use parley_domain::{ConversationSummary, Direction, StoredMessage, Timestamp, Username};
use parley_usecases::ports::{Conversations, StoreError};

use crate::crypto::NAME_LEN;
use crate::records::{Name, corrupt, split_message_key};
use crate::{Store, unavailable};

impl Store {
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
}

impl Conversations for Store {
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
}
