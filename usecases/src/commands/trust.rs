//! Contacts' keys: holding changed keys for the user, and accepting them.

use parley_domain::{ChainHead, Contact, PeerKeys, Username};

use super::Messaging;
use crate::ports::{
    AttachmentFiles, Clock, Directory, EnvelopeError, Envelopes, Event, EventSink, Mailbox,
    MessageStore, PrekeySecrets, PrekeyService, StoreError, Transport,
};

/// Why new keys could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// No contact by that name.
    #[error("{0} is not one of your contacts yet; their keys are pinned at the first message")]
    UnknownContact(Username),
    /// The contact's keys have not changed.
    #[error("{0}'s keys have not changed; there is nothing to accept")]
    NothingPending(Username),
    /// Waiting messages could not be sealed to the new keys.
    #[error("the waiting messages could not be sealed to the new keys: {0}")]
    Seal(EnvelopeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S, D, T, C, E, V, M> Messaging<S, D, T, C, E, V, M>
where
    S: MessageStore + AttachmentFiles + PrekeySecrets,
    D: Directory,
    T: Transport<Address = D::Address>,
    C: Clock,
    E: EventSink,
    V: Envelopes,
    M: Mailbox + PrekeyService,
{
    /// Keeps keys that differ from the pinned ones for the user's decision, and says so.
    pub(super) fn hold_new_keys(
        &self,
        contact: Contact,
        presented: PeerKeys,
    ) -> Result<(), StoreError> {
        if contact.pending != Some(presented) {
            let user = contact.user.clone();
            self.store.save_contact(&Contact {
                pending: Some(presented),
                ..contact
            })?;
            self.events.emit(Event::KeysChanged { user });
        }
        Ok(())
    }

    /// Accepts the keys `user` presented since the first contact: they become the pinned ones.
    /// New keys are a new device (or a new home), which starts its chain afresh and knows
    /// nothing of ours: both chains with `user` start again, and the messages waiting for
    /// `user` are sealed again to the new keys, numbered from 1, to go out at the next outbox
    /// round.
    ///
    /// # Errors
    /// [`TrustError`] when `user` is no contact or nothing is pending.
    #[tracing::instrument(name = "usecase.trust_new_keys", skip_all, fields(%user), err(Display, level = "info"))]
    pub fn trust_new_keys(&self, user: &Username) -> Result<(), TrustError> {
        let contact = self
            .store
            .contact(user)?
            .ok_or_else(|| TrustError::UnknownContact(user.clone()))?;
        let accepted = contact
            .accept_pending(self.clock.now())
            .ok_or_else(|| TrustError::NothingPending(user.clone()))?;
        let _chain = self.chain_guard();
        self.store.save_contact(&accepted)?;
        self.store.reset_chains(user)?;
        // The new device knows nothing of the old conversation keys: a new session is agreed
        // from its prekeys, and the messages waiting for it are sealed again in it when they
        // next go out (see `Messaging::reseal_if_stale`).
        self.store.reset_sessions(user)?;
        let Some(recipient) = accepted.keys.x25519 else {
            return Ok(());
        };
        // Envelopes of version 1 (written by an earlier release) are sealed again as they
        // were, to the accepted long-term key, in the new chain.
        let mut head = ChainHead::EMPTY;
        for entry in self.store.outbox(self.clock.now())? {
            if entry.message.to != *user
                || self
                    .envelopes
                    .session_of(&entry.envelope)
                    .map_err(TrustError::Seal)?
                    .is_some()
            {
                continue;
            }
            let mut header = self
                .envelopes
                .header(&entry.envelope)
                .map_err(TrustError::Seal)?;
            header.seq = head.seq + 1;
            header.prev = head.digest;
            let body = super::body_of(&entry.message);
            let sealed = self
                .envelopes
                .seal(&header, &body, &recipient)
                .map_err(TrustError::Seal)?;
            head = ChainHead {
                seq: header.seq,
                digest: sealed.digest,
            };
            self.store.reseal(&entry.message.id, &sealed.bytes, &head)?;
        }
        Ok(())
    }
}
