//! Commands: each changes state and returns nothing but an error.

use parley_domain::{
    Contact, Delivery, DeviceIdentity, Direction, KeyCheck, MessageId, MessageText, PeerKeys,
    StoredMessage, Username,
};

use crate::ports::{
    Clock, Directory, DirectoryError, EnrollError, EnrollRequest, Enrollment, Event, EventSink,
    IdentityStore, MessageStore, OutgoingMessage, PeerAddress, StoreError, Stored, Transport,
    TransportError,
};

/// Send `text` to `to` under the id `id` (the caller draws the id, so the command returns
/// nothing and a retried command cannot create a second message).
#[derive(Debug, Clone)]
pub struct SendMessage {
    /// The new message's id.
    pub id: MessageId,
    /// The recipient.
    pub to: Username,
    /// The text.
    pub text: MessageText,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A message to oneself.
    #[error("you cannot send a message to yourself")]
    ToSelf,
    /// Never talked to, and the directory does not know the name online. Nothing was kept.
    #[error(
        "{0} is unknown or offline: nobody by that name is online at the rendezvous (it does \
         not say which, so that names cannot be probed) and {0} is not one of your contacts; \
         nothing was sent"
    )]
    UnknownUser(Username),
    /// A contact who is not online now. The message waits in the outbox.
    #[error(
        "{0} is offline; the message is kept in the outbox and the daemon delivers it when {0} is back online"
    )]
    Offline(Username),
    /// Online according to the directory, but no connection or no receipt. The message waits
    /// in the outbox.
    #[error("{user} is unreachable ({reason}); the message is kept in the outbox and retried")]
    Unreachable {
        /// The recipient.
        user: Username,
        /// What the transport said.
        reason: TransportError,
    },
    /// The peer at the directory's address is not who we asked for. Kept in the outbox.
    #[error(
        "the peer found for {0} presented a certificate for someone else; the message was not sent and stays in the outbox"
    )]
    WrongIdentity(Username),
    /// The contact's keys differ from the pinned ones. Kept in the outbox until the user
    /// accepts the new keys.
    #[error(
        "{0}'s keys have changed since your first contact (a new device, or someone posing as \
         {0}); the message was not sent and stays in the outbox: compare safety numbers with \
         `parley safety-number {0}`, then accept with `parley trust {0}`"
    )]
    KeysChanged(Username),
    /// The rendezvous could not be asked. `queued` says whether the message waits in the outbox.
    #[error("{reason}{}", if *.queued { "; the message is kept in the outbox and retried" } else { "; nothing was sent" })]
    DirectoryUnavailable {
        /// What went wrong.
        reason: DirectoryError,
        /// Whether the message was kept.
        queued: bool,
    },
    /// The local store failed; the message may not have been kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SendError {
    /// A stable snake_case name for the outcome (control-socket codes, span attributes).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::ToSelf => "to_self",
            Self::UnknownUser(_) => "unknown_user",
            Self::Offline(_) => "offline",
            Self::Unreachable { .. } => "unreachable",
            Self::WrongIdentity(_) => "wrong_identity",
            Self::KeysChanged(_) => "keys_changed",
            Self::DirectoryUnavailable { .. } => "rendezvous_unavailable",
            Self::Store(_) => "store_unavailable",
        }
    }
}

/// A message that arrived over an authenticated connection.
#[derive(Debug, Clone)]
pub struct ReceiveMessage {
    /// The sender, as named by the connection's CA-verified certificate (never by the message).
    pub from: Username,
    /// The keys of the sender's certificate.
    pub keys: PeerKeys,
    /// The message.
    pub message: OutgoingMessage,
}

/// Why an incoming message was refused (no receipt is sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Addressed to someone else.
    #[error("the message is addressed to {0}, not to this device")]
    NotForMe(Username),
    /// The sender's keys are not the pinned ones; the recipient has to accept them first.
    #[error("the recipient has pinned other keys for {0} and has not accepted these yet")]
    KeysChanged(Username),
    /// Could not be stored: no receipt may be given.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The messaging interactor: sending, receiving, the outbox and contacts' keys, over the ports.
pub struct Messaging<S, D, T, C, E> {
    me: Username,
    store: S,
    directory: D,
    transport: T,
    clock: C,
    events: E,
}

impl<S, D, T, C, E> Messaging<S, D, T, C, E>
where
    S: MessageStore,
    D: Directory,
    T: Transport,
    C: Clock,
    E: EventSink,
{
    /// Wires the interactor for the enrolled user `me`.
    pub fn new(me: Username, store: S, directory: D, transport: T, clock: C, events: E) -> Self {
        Self {
            me,
            store,
            directory,
            transport,
            clock,
            events,
        }
    }

    /// The store, for queries over the same data.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Sends a message: persists it in the outbox first, then delivers it and waits for the
    /// receipt.
    ///
    /// # Errors
    /// [`SendError`]; each variant says whether the message was kept for a later retry.
    ///
    /// Cancel safety: once the message is persisted, dropping the future leaves it in the
    /// outbox, from where a later [`Messaging::retry_outbox`] delivers it.
    #[tracing::instrument(
        name = "usecase.send_message",
        skip_all,
        fields(message.id = %cmd.id, to = %cmd.to, size = cmd.text.as_str().len(), outcome),
        err(Display, level = "info")
    )]
    pub async fn send(&self, cmd: SendMessage) -> Result<(), SendError> {
        let outcome = self.send_once(cmd).await;
        let code = outcome
            .as_ref()
            .map_or_else(SendError::code, |()| "delivered");
        tracing::Span::current().record("outcome", code);
        outcome
    }

    async fn send_once(&self, cmd: SendMessage) -> Result<(), SendError> {
        if cmd.to == self.me {
            return Err(SendError::ToSelf);
        }
        let found = self.directory.lookup(&cmd.to).await;
        let known = self.store.is_contact(&cmd.to)?;
        let message = StoredMessage {
            id: cmd.id,
            from: self.me.clone(),
            to: cmd.to.clone(),
            text: cmd.text,
            sent_at: self.clock.now(),
            direction: Direction::Outgoing,
            delivery: Delivery::Pending,
            verified: true,
        };
        let address = match found {
            Ok(Some(address)) => address,
            Ok(None) if !known => return Err(SendError::UnknownUser(cmd.to)),
            Err(reason) if !known => {
                return Err(SendError::DirectoryUnavailable {
                    reason,
                    queued: false,
                });
            }
            Ok(None) => {
                self.store.append_outgoing(&message)?;
                return Err(SendError::Offline(cmd.to));
            }
            Err(reason) => {
                self.store.append_outgoing(&message)?;
                return Err(SendError::DirectoryUnavailable {
                    reason,
                    queued: true,
                });
            }
        };
        self.store.append_outgoing(&message)?;
        self.deliver(&message, &address).await
    }

    /// Delivers one persisted message, holding the recipient to its pinned keys (or pinning
    /// them at first contact).
    async fn deliver(
        &self,
        message: &StoredMessage,
        address: &PeerAddress,
    ) -> Result<(), SendError> {
        let contact = self.store.contact(&message.to)?;
        if contact.as_ref().is_some_and(|c| c.pending.is_some()) {
            return Err(SendError::KeysChanged(message.to.clone()));
        }
        let outgoing = OutgoingMessage {
            id: message.id,
            to: message.to.clone(),
            text: message.text.clone(),
            sent_at: message.sent_at,
        };
        let pinned = contact.as_ref().map(|c| c.keys);
        match self
            .transport
            .deliver(&message.to, address, &outgoing, pinned.as_ref())
            .await
        {
            Ok(keys) => {
                if contact.is_none() {
                    let first = Contact::first(message.to.clone(), keys, self.clock.now());
                    self.store.save_contact(&first)?;
                }
                self.store.mark_delivered(&message.id, self.clock.now())?;
                tracing::info!(message.id = %message.id, to = %message.to, "message delivered");
                self.events.emit(Event::MessageDelivered {
                    id: message.id,
                    to: message.to.clone(),
                });
                Ok(())
            }
            Err(TransportError::KeysChanged { presented }) => {
                if let Some(contact) = contact {
                    self.hold_new_keys(contact, presented)?;
                }
                Err(SendError::KeysChanged(message.to.clone()))
            }
            Err(TransportError::WrongIdentity { expected }) => {
                Err(SendError::WrongIdentity(expected))
            }
            Err(reason) => Err(SendError::Unreachable {
                user: message.to.clone(),
                reason,
            }),
        }
    }

    /// Keeps keys that differ from the pinned ones for the user's decision, and says so.
    fn hold_new_keys(&self, contact: Contact, presented: PeerKeys) -> Result<(), StoreError> {
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

    /// Stores a message that arrived over an authenticated connection. `Ok` means it is
    /// durably stored (now or before) and the transport may return the receipt. The sender's
    /// keys are pinned at first contact and must match afterwards.
    ///
    /// # Errors
    /// [`ReceiveError`]: no receipt may be given.
    #[tracing::instrument(
        name = "usecase.receive_message",
        skip_all,
        fields(message.id = %cmd.message.id, from = %cmd.from, size = cmd.message.text.as_str().len(), outcome),
        err(Display, level = "info")
    )]
    pub fn receive(&self, cmd: ReceiveMessage) -> Result<(), ReceiveError> {
        if cmd.message.to != self.me {
            return Err(ReceiveError::NotForMe(cmd.message.to));
        }
        match self.store.contact(&cmd.from)? {
            None => {
                let first = Contact::first(cmd.from.clone(), cmd.keys, self.clock.now());
                self.store.save_contact(&first)?;
            }
            Some(contact) => {
                if contact.check(&cmd.keys) == KeyCheck::Changed {
                    self.hold_new_keys(contact, cmd.keys)?;
                    return Err(ReceiveError::KeysChanged(cmd.from));
                }
            }
        }
        let stored = StoredMessage {
            id: cmd.message.id,
            from: cmd.from,
            to: cmd.message.to,
            text: cmd.message.text,
            sent_at: cmd.message.sent_at,
            direction: Direction::Incoming,
            delivery: Delivery::Received(self.clock.now()),
            verified: true,
        };
        let stored_now = self.store.store_incoming(&stored)?;
        let outcome = if stored_now == Stored::New {
            "stored"
        } else {
            "duplicate"
        };
        tracing::Span::current().record("outcome", outcome);
        if stored_now == Stored::New {
            tracing::info!("message stored");
            self.events.emit(Event::MessageReceived(stored));
        }
        Ok(())
    }

    /// Accepts the keys `user` presented since the first contact: they become the pinned ones,
    /// and messages waiting for `user` go out at the next outbox round.
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
        self.store.save_contact(&accepted)?;
        Ok(())
    }

    /// Tries once to deliver everything in the outbox, in order per recipient: a recipient's
    /// later messages wait while an earlier one fails, so they arrive in the order written.
    /// Recipients whose new keys wait for the user's decision are skipped.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read or a receipt cannot be recorded. Delivery
    /// failures are not errors: the messages simply stay in the outbox.
    #[tracing::instrument(name = "usecase.retry_outbox", level = "debug", skip_all, err(Display))]
    pub async fn retry_outbox(&self) -> Result<(), StoreError> {
        let pending = self.store.outbox()?;
        let mut blocked: Vec<Username> = Vec::new();
        let mut addresses: Vec<(Username, PeerAddress)> = Vec::new();
        for message in pending {
            if blocked.contains(&message.to) {
                continue;
            }
            if self
                .store
                .contact(&message.to)?
                .is_some_and(|c| c.pending.is_some())
            {
                blocked.push(message.to.clone());
                continue;
            }
            let address = match addresses.iter().find(|(u, _)| *u == message.to) {
                Some((_, a)) => a.clone(),
                None => match self.directory.lookup(&message.to).await {
                    Ok(Some(a)) => {
                        addresses.push((message.to.clone(), a.clone()));
                        a
                    }
                    Ok(None) | Err(_) => {
                        blocked.push(message.to.clone());
                        continue;
                    }
                },
            };
            match self.deliver(&message, &address).await {
                Ok(()) => {}
                Err(SendError::Store(e)) => return Err(e),
                Err(_) => blocked.push(message.to.clone()),
            }
        }
        Ok(())
    }
}

/// Enroll this device as `request.user`.
pub struct Enroll<'a, N, I> {
    enrollment: &'a N,
    identities: &'a I,
}

/// Why enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollCommandError {
    /// This home is already enrolled as someone else.
    #[error("this home is already enrolled as {0}; use another home folder for another user")]
    OtherUser(Username),
    /// The rendezvous or the key work failed.
    #[error(transparent)]
    Enrollment(#[from] EnrollError),
    /// The identity could not be kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<'a, N: Enrollment, I: IdentityStore> Enroll<'a, N, I> {
    /// Wires the command.
    pub fn new(enrollment: &'a N, identities: &'a I) -> Self {
        Self {
            enrollment,
            identities,
        }
    }

    /// Enrolls and keeps the identity. Enrolling again as the same user renews the
    /// certificate for the same keys, so contacts' pins stay valid; enrolling a home as a
    /// second user is refused.
    ///
    /// # Errors
    /// [`EnrollCommandError`]; nothing is kept on failure.
    #[tracing::instrument(name = "usecase.enroll", skip_all, fields(user = %request.user), err(Display, level = "info"))]
    pub async fn run(&self, request: &EnrollRequest) -> Result<(), EnrollCommandError> {
        let mut request = request.clone();
        if let Some(existing) = self.identities.identity()? {
            if existing.user != request.user {
                return Err(EnrollCommandError::OtherUser(existing.user));
            }
            request.keys = Some((existing.ed25519, existing.x25519));
        }
        let identity: DeviceIdentity = self.enrollment.enroll(&request).await?;
        self.identities.save_identity(&identity)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
