//! The daemon's rounds: retrying the outbox and purging expired messages.

use parley_domain::Username;

use super::{Messaging, SendError};
use crate::ports::{
    AttachmentFiles, Clock, Directory, Envelopes, Event, EventSink, Mailbox, MessageStore,
    PrekeySecrets, PrekeyService, StoreError, Transport,
};

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
    /// Tries once to deliver everything in the outbox, in order per recipient: a recipient's
    /// later messages wait while an earlier one fails, so they arrive in the order written.
    /// Recipients whose new keys wait for the user's decision are skipped. For a recipient
    /// who is offline, what the rendezvous's mailbox does not hold yet is deposited there;
    /// what it holds is delivered directly as soon as the recipient is online again (the
    /// recipient stores each message once).
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read or a receipt cannot be recorded. Delivery
    /// failures are not errors: the messages simply stay in the outbox.
    #[tracing::instrument(name = "usecase.retry_outbox", level = "debug", skip_all, err(Display))]
    pub async fn retry_outbox(&self) -> Result<(), StoreError> {
        let (_, since) = self.backlogged(&self.me)?;
        let pending = self.store.outbox(self.clock.now())?;
        let mut blocked: Vec<Username> = Vec::new();
        let mut sent_to: Vec<Username> = Vec::new();
        let mut addresses: Vec<(Username, D::Address)> = Vec::new();
        let mut offline: Vec<Username> = Vec::new();
        for entry in pending {
            let to = entry.message.to.clone();
            if blocked.contains(&to) {
                continue;
            }
            // Already on its way (a send under way): sending it again would only cost a second
            // trip; what follows it to the same recipient waits for the next round, in order.
            if self.is_in_flight(&entry.message.id) {
                blocked.push(to);
                continue;
            }
            let contact = self.store.contact(&to)?;
            if contact.as_ref().is_some_and(|c| c.pending.is_some()) {
                blocked.push(to);
                continue;
            }
            let address = match addresses.iter().find(|(u, _)| *u == to) {
                Some((_, a)) => a.clone(),
                None => match self.locate(&to, contact.as_ref().map(|c| &c.keys)).await {
                    Ok(Some(a)) => {
                        addresses.push((to.clone(), a.clone()));
                        a
                    }
                    Ok(None) => {
                        offline.push(to.clone());
                        blocked.push(to);
                        continue;
                    }
                    Err(_) => {
                        blocked.push(to);
                        continue;
                    }
                },
            };
            match self.deliver(&entry, &address).await {
                Ok(()) | Err(SendError::Rejected { .. }) => {}
                Err(SendError::Store(e)) => return Err(e),
                Err(_) => blocked.push(to.clone()),
            }
            if !sent_to.contains(&to) {
                sent_to.push(to);
            }
        }
        for to in sent_to.iter().filter(|to| !blocked.contains(to)) {
            self.backlog_cleared(to, since);
        }
        // Offline recipients: what the mailbox does not hold yet goes there, in order.
        for to in offline {
            if let Err(SendError::Store(e)) = self.queue_backlog(&to, None).await {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether the envelope of message `id` is on its way now.
    fn is_in_flight(&self, id: &parley_domain::MessageId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(id)
    }

    /// Deletes every message expired by now (both directions), for real: its key goes too.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    #[tracing::instrument(
        name = "usecase.purge_expired",
        level = "debug",
        skip_all,
        fields(purged),
        err(Display)
    )]
    pub fn purge_expired(&self) -> Result<u64, StoreError> {
        let purged = self.store.purge_expired(self.clock.now())?;
        tracing::Span::current().record("purged", purged);
        if purged > 0 {
            tracing::info!(purged, "expired messages deleted");
            self.events.emit(Event::MessagesExpired { count: purged });
        }
        Ok(purged)
    }
}
