//! Commands: each changes state and returns nothing but an error.
//!
//! One file per interactor, each with its error enum: [`send`] (with the per-recipient
//! backlog, and the choice among a recipient's devices), [`receive`], [`mailbox`] (deposits for offline recipients, collecting what the
//! rendezvous held), [`trust`] (contacts' keys), [`attachments`], [`upkeep`] (the daemon's
//! outbox retries and expiry), [`prekeys`] (this device's prekeys kept at the rendezvous,
//! its own small interactor [`Prekeys`]), [`own_devices`] (this user's signed device list,
//! the interactor [`OwnDevices`]) and [`enroll`]. The messaging ones are methods of
//! one [`Messaging`], which holds the ports and the locks they share.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use parley_domain::{MessageId, Username};

use crate::ports::{
    AttachmentFiles, Clock, Directory, Envelopes, EventSink, Mailbox, MessageStore, PrekeySecrets,
    PrekeyService, Transport,
};

pub mod attachments;
mod backlog;
mod devices;
pub mod enroll;
pub mod mailbox;
pub mod own_devices;
pub mod prekeys;
pub mod receive;
pub mod send;
pub mod trust;
pub mod upkeep;

pub use attachments::SaveError;
pub use enroll::{Enroll, EnrollCommandError};
pub use mailbox::{CollectError, Collected};
pub use own_devices::{DeviceListError, Devices, OwnDevices};
pub use prekeys::{Prekeys, ReplenishError, Replenished};
pub use receive::{ReceiveError, ReceiveMessage, Received};
pub use send::{SendError, SendMessage, Sent};
pub use trust::TrustError;

/// The messaging interactor: sending, receiving, the outbox and contacts' keys, over the ports.
pub struct Messaging<S, D, T, C, E, V, M> {
    me: Username,
    store: S,
    directory: D,
    transport: T,
    clock: C,
    events: E,
    envelopes: V,
    mailbox: M,
    /// Serialises every read-modify-write of a chain (sealing the next message after the
    /// head, judging a newcomer against its neighbours), so concurrent sends cannot fork our
    /// own chain and concurrent receipts cannot misjudge one.
    chains: Mutex<()>,
    /// Recipients with messages waiting in the outbox, and when each was marked: a new message
    /// to one of them goes out behind its older ones, so one sender's messages arrive in the
    /// order they were written. `None` until read from the store at the first send.
    backlog: Mutex<Option<backlog::Backlog>>,
    /// Messages whose envelope is on its way to the recipient right now (or about to be: a
    /// send marks its message before it is kept in the outbox), each with how many marks it
    /// holds: the outbox round leaves them (and what follows them to the same recipient) to
    /// the delivery under way instead of sending the same envelope a second time.
    in_flight: Mutex<HashMap<MessageId, u32>>,
    /// Messages whose deposit the rendezvous refused for now, and until when (the clock's
    /// milliseconds) the outbox round leaves them be.
    mail_backoff: Mutex<HashMap<MessageId, i64>>,
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
    /// Wires the interactor for the enrolled user `me`.
    #[allow(clippy::too_many_arguments)] // one per port, named at the one place it is wired
    pub fn new(
        me: Username,
        store: S,
        directory: D,
        transport: T,
        clock: C,
        events: E,
        envelopes: V,
        mailbox: M,
    ) -> Self {
        Self {
            me,
            store,
            directory,
            transport,
            clock,
            events,
            envelopes,
            mailbox,
            chains: Mutex::new(()),
            backlog: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            mail_backoff: Mutex::new(HashMap::new()),
        }
    }

    /// The store, for queries over the same data.
    pub fn store(&self) -> &S {
        &self.store
    }

    pub(super) fn chain_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a stored outgoing message's envelope carries encrypted: its text and the keys of its
/// attachments, to seal it again.
fn body_of(message: &parley_domain::StoredMessage) -> parley_domain::Body {
    parley_domain::Body {
        text: message.text.clone(),
        attachment_keys: message.attachments.iter().map(|a| a.key.clone()).collect(),
    }
}

#[cfg(test)]
mod tests;

/// Marks one message as on its way while it lives (see `Messaging::in_flight`); marks nest.
pub(super) struct InFlight<'a> {
    set: &'a Mutex<HashMap<MessageId, u32>>,
    id: MessageId,
}

impl<'a> InFlight<'a> {
    /// Marks `id`.
    pub(super) fn mark(set: &'a Mutex<HashMap<MessageId, u32>>, id: MessageId) -> Self {
        *set.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(0) += 1;
        Self { set, id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(marks) = set.get_mut(&self.id) {
            *marks -= 1;
            if *marks == 0 {
                set.remove(&self.id);
            }
        }
    }
}
