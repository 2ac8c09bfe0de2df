//! [`Sessions`] on the `sessions` tree: each contact's ratchet sessions
//! ([`SessionBook::encode`]), sealed like every other value, under the contact's keyed name.
//! A book is written only together with the message that moved it (see
//! `messages::insert_transaction`), so the two never fall out of step.

use parley_domain::ratchet::SessionBook;
use parley_domain::{ChainHead, Digest, Link, MessageId, StoredMessage, Username};
use parley_usecases::ports::{SessionUpdate, Sessions, StoreError, Stored};
use zeroize::Zeroizing;

use crate::messages::Extra;
use crate::records::{corrupt, seen_key};
use crate::{Store, unavailable};

pub(crate) const TREE: &str = "sessions";

impl Store {
    /// The sealed value of a book, for the transaction that writes it.
    pub(crate) fn seal_book(
        &self,
        with: &Username,
        book: &SessionBook,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let key = self.keys.name(with).to_vec();
        let value = self.keys.seal_value(TREE, &key, &book.encode())?;
        Ok((key, value))
    }

    fn open_book(&self, key: &[u8], value: &[u8]) -> Result<SessionBook, StoreError> {
        let plain = Zeroizing::new(self.keys.open_value(TREE, key, value)?);
        SessionBook::decode(&plain).map_err(|e| {
            corrupt(
                TREE,
                format!("a session book does not decode ({})", e.code()),
            )
        })
    }
}

impl Sessions for Store {
    #[tracing::instrument(name = "store.sessions", level = "debug", skip_all, err(Display))]
    fn sessions(&self, with: &Username) -> Result<SessionBook, StoreError> {
        let key = self.keys.name(with);
        match self.sessions.get(key) {
            Ok(Some(value)) => self.open_book(&key, &value),
            Ok(None) => Ok(SessionBook::default()),
            Err(e) => Err(unavailable("read the conversation keys", e)),
        }
    }

    #[tracing::instrument(name = "store.rekeys", level = "debug", skip_all, err(Display))]
    fn rekeys(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for entry in &self.sessions {
            let (key, value) = entry.map_err(|e| unavailable("read the conversation keys", e))?;
            total = total.saturating_add(self.open_book(&key, &value)?.own_steps());
        }
        Ok(total)
    }

    #[tracing::instrument(name = "store.reset_sessions", level = "debug", skip_all, err(Display))]
    fn reset_sessions(&self, with: &Username) -> Result<(), StoreError> {
        self.sessions
            .remove(self.keys.name(with))
            .map_err(|e| unavailable("forget the conversation keys", e))?;
        self.flush()
    }

    fn incoming_digest(
        &self,
        from: &Username,
        id: &MessageId,
    ) -> Result<Option<Digest>, StoreError> {
        self.seen_digest(&seen_key(&self.keys.name(from), id))
    }

    #[tracing::instrument(name = "store.append_in_session", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn append_outgoing_in_session_deferred(
        &self,
        message: &StoredMessage,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError> {
        self.insert_once(
            message,
            &Extra::Outgoing {
                envelope,
                head,
                session: Some(session),
            },
            false,
        )
        .map(drop)
    }

    #[tracing::instrument(name = "store.reseal_in_session", level = "debug", skip_all, fields(message.id = %id), err(Display))]
    fn reseal_in_session(
        &self,
        id: &MessageId,
        envelope: &[u8],
        head: &ChainHead,
        session: &SessionUpdate<'_>,
    ) -> Result<(), StoreError> {
        let book = self.seal_book(session.with, session.book)?;
        self.reseal_with(id, envelope, head, Some(book))
    }

    #[tracing::instrument(name = "store.store_incoming_in_session", level = "debug", skip_all, fields(message.id = %message.id), err(Display))]
    fn store_incoming_in_session_deferred(
        &self,
        message: &StoredMessage,
        link: &Link,
        session: &SessionUpdate<'_>,
    ) -> Result<Stored, StoreError> {
        Ok(
            match self.insert_once(
                message,
                &Extra::Incoming {
                    link,
                    session: Some(session),
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
