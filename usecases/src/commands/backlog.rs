//! The per-recipient backlog: a new message goes out behind the older ones still waiting.

use std::collections::HashMap;

use parley_domain::Username;

use super::Messaging;
use crate::ports::{
    AttachmentFiles, Clock, Directory, Envelopes, EventSink, Mailbox, MessageStore, PrekeySecrets,
    PrekeyService, StoreError, Transport,
};

/// See [`Messaging`]'s `backlog`.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    marked: HashMap<Username, u64>,
    clock: u64,
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
    /// The backlog, read from the outbox the first time.
    fn with_backlog<R>(&self, f: impl FnOnce(&mut Backlog) -> R) -> Result<R, StoreError> {
        let mut guard = self
            .backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            let mut backlog = Backlog::default();
            for entry in self.store.outbox(self.clock.now())? {
                backlog.marked.insert(entry.message.to, 0);
            }
            *guard = Some(backlog);
        }
        Ok(f(guard.get_or_insert_with(Backlog::default)))
    }

    /// Whether older messages to `to` wait in the outbox; with the moment of asking, for
    /// [`Messaging::backlog_cleared`].
    pub(super) fn backlogged(&self, to: &Username) -> Result<(bool, u64), StoreError> {
        self.with_backlog(|b| (b.marked.contains_key(to), b.clock))
    }

    /// Notes that a message to `to` was kept in the outbox.
    pub(super) fn backlog_grew(&self, to: &Username) {
        let _ = self.with_backlog(|b| {
            b.clock += 1;
            b.marked.insert(to.clone(), b.clock);
        });
    }

    /// Notes that everything to `to` the outbox held at `since` went out; a message kept
    /// after that moment keeps the mark.
    pub(super) fn backlog_cleared(&self, to: &Username, since: u64) {
        let _ = self.with_backlog(|b| {
            if b.marked.get(to).is_some_and(|at| *at <= since) {
                b.marked.remove(to);
            }
        });
    }
}
