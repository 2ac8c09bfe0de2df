//! Commands: each changes state and returns nothing but an error.

use std::collections::HashMap;
use std::sync::Mutex;

use parley_domain::{
    Attachment, Body, ChainHead, Contact, Delivery, DeviceIdentity, Direction, Header, KeyCheck,
    Link, MessageId, MessageText, PeerKeys, StoredMessage, Ttl, Username, Verification,
    chain::judge,
};

use crate::ports::{
    AttachmentError, AttachmentFiles, AttachmentSource, Clock, Directory, DirectoryError,
    EnrollError, EnrollRequest, Enrollment, EnvelopeError, Envelopes, Event, EventSink,
    IdentityStore, MessageStore, OutboxEntry, OutgoingEnvelope, OutgoingFile, PeerAddress,
    StoreError, Stored, Transport, TransportError,
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
    /// Time to live, for a disappearing message.
    pub ttl: Option<Ttl>,
    /// Files to attach, in order.
    pub attachments: Vec<AttachmentSource>,
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
    /// Online according to the directory, but no connection or no receipt. `queued` says
    /// whether the message waits in the outbox (a first contact cannot be queued: the message
    /// is sealed to keys only the connection reveals).
    #[error("{user} is unreachable ({reason}){}", if *.queued { "; the message is kept in the outbox and retried" } else { "; nothing was sent" })]
    Unreachable {
        /// The recipient.
        user: Username,
        /// What the transport said.
        reason: TransportError,
        /// Whether the message was kept.
        queued: bool,
    },
    /// The peer at the directory's address is not who we asked for.
    #[error(
        "the peer found for {0} presented a certificate for someone else; the message was not sent"
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
    /// The recipient's device refused the message for good; it left the outbox.
    #[error(
        "{user} refused the message for good ({reason}); it was not delivered and will not be retried"
    )]
    Rejected {
        /// The recipient.
        user: Username,
        /// What the recipient said.
        reason: String,
    },
    /// The contact's certificate carries no encryption key, so nothing can be sealed to it.
    #[error(
        "{0}'s certificate carries no encryption key, so no message can be sealed to it; {0} \
         needs to enroll again with a current Parley; nothing was sent"
    )]
    NoEncryptionKey(Username),
    /// The envelope could not be sealed.
    #[error("the message could not be sealed: {0}; nothing was sent")]
    Seal(EnvelopeError),
    /// An attachment could not be read or kept.
    #[error("{0}; nothing was sent")]
    Attachment(AttachmentError),
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
            Self::NoEncryptionKey(_) => "no_encryption_key",
            Self::Rejected { .. } => "rejected",
            Self::Seal(_) => "seal_failed",
            Self::Attachment(AttachmentError::TooLarge { .. }) => "attachment_too_large",
            Self::Attachment(_) => "attachment_unreadable",
            Self::DirectoryUnavailable { .. } => "rendezvous_unavailable",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// Whether the message waits in the outbox for a later attempt.
    #[must_use]
    pub fn queued(&self) -> bool {
        match self {
            Self::Offline(_) | Self::KeysChanged(_) => true,
            Self::Unreachable { queued, .. } | Self::DirectoryUnavailable { queued, .. } => *queued,
            _ => false,
        }
    }
}

/// An envelope that arrived over an authenticated connection.
#[derive(Debug, Clone)]
pub struct ReceiveMessage {
    /// The sender, as named by the connection's CA-verified certificate (never by the message).
    pub from: Username,
    /// The keys of the sender's certificate.
    pub keys: PeerKeys,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
}

/// Why an incoming envelope was refused (no receipt is sent, nothing is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// Addressed to someone else (spliced from another conversation).
    #[error("the message is addressed to {0}, not to this device")]
    NotForMe(Username),
    /// The header names another sender than the connection's certificate (spliced).
    #[error("the message claims to be from {claimed} but arrived from {actual}")]
    WrongSender {
        /// What the header says.
        claimed: Username,
        /// What the certificate says.
        actual: Username,
    },
    /// The sender's keys are not the pinned ones; the recipient has to accept them first.
    #[error("the recipient has pinned other keys for {0} and has not accepted these yet")]
    KeysChanged(Username),
    /// Altered, forged, malformed or not sealed to this device.
    #[error("the envelope was refused: {0}")]
    Envelope(EnvelopeError),
    /// An attachment the header names did not arrive, or other bytes did.
    #[error("attachment {index} of the message is missing or altered; the message is refused")]
    AttachmentMissing {
        /// Its index in the header.
        index: usize,
    },
    /// Another envelope under the same id was stored before (a replay with changed content).
    #[error("another message with id {0} was received before; this one is refused")]
    Conflicting(MessageId),
    /// Could not be stored: no receipt may be given.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReceiveError {
    /// A stable snake_case name (span attributes, refusals on the wire).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotForMe(_) => "not_for_me",
            Self::WrongSender { .. } => "wrong_sender",
            Self::KeysChanged(_) => "keys_changed",
            Self::Envelope(e) => e.code,
            Self::Conflicting(_) => "conflicting_id",
            Self::AttachmentMissing { .. } => "attachment_missing",
            Self::Store(_) => "store_unavailable",
        }
    }
}

impl ReceiveError {
    /// True when the same envelope can never be accepted (the sender should stop sending it);
    /// false when a later attempt may succeed (the store failed, keys wait for the user).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::KeysChanged(_) | Self::Store(_))
    }
}

impl From<AttachmentError> for ReceiveError {
    fn from(error: AttachmentError) -> Self {
        match error {
            AttachmentError::Store(e) => Self::Store(e),
            other => Self::Store(StoreError::Unavailable(other.to_string())),
        }
    }
}

/// Why an attachment could not be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// No such message in the conversation (never received, or expired).
    #[error("there is no message {id} in the conversation with {with} (it may have expired)")]
    NoMessage {
        /// The conversation.
        with: Username,
        /// The id asked for.
        id: MessageId,
    },
    /// The message has fewer attachments.
    #[error("message {id} has {count} attachment(s); there is no attachment {index}")]
    NoAttachment {
        /// The message.
        id: MessageId,
        /// How many it has.
        count: usize,
        /// The index asked for.
        index: usize,
    },
    /// Reading, checking or writing failed.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

impl From<StoreError> for SaveError {
    fn from(error: StoreError) -> Self {
        Self::Attachment(AttachmentError::Store(error))
    }
}

/// What became of an envelope that was accepted (a receipt may be given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored now; shown as verified.
    Verified,
    /// Stored now, but shown as not verified (it does not fit the sender's chain).
    Unverified,
    /// Stored before (a retry or a replay): nothing changed.
    Duplicate,
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
    /// Waiting messages could not be sealed to the new keys.
    #[error("the waiting messages could not be sealed to the new keys: {0}")]
    Seal(EnvelopeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The messaging interactor: sending, receiving, the outbox and contacts' keys, over the ports.
pub struct Messaging<S, D, T, C, E, V> {
    me: Username,
    store: S,
    directory: D,
    transport: T,
    clock: C,
    events: E,
    envelopes: V,
    /// Serialises every read-modify-write of a chain (sealing the next message after the
    /// head, judging a newcomer against its neighbours), so concurrent sends cannot fork our
    /// own chain and concurrent receipts cannot misjudge one.
    chains: Mutex<()>,
    /// Recipients with messages waiting in the outbox, and when each was marked: a new message
    /// to one of them goes out behind its older ones, so one sender's messages arrive in the
    /// order they were written. `None` until read from the store at the first send.
    backlog: Mutex<Option<Backlog>>,
}

/// See [`Messaging`]'s `backlog`.
#[derive(Debug, Default)]
struct Backlog {
    marked: HashMap<Username, u64>,
    clock: u64,
}

impl<S, D, T, C, E, V> Messaging<S, D, T, C, E, V>
where
    S: MessageStore + AttachmentFiles,
    D: Directory,
    T: Transport,
    C: Clock,
    E: EventSink,
    V: Envelopes,
{
    /// Wires the interactor for the enrolled user `me`.
    pub fn new(
        me: Username,
        store: S,
        directory: D,
        transport: T,
        clock: C,
        events: E,
        envelopes: V,
    ) -> Self {
        Self {
            me,
            store,
            directory,
            transport,
            clock,
            events,
            envelopes,
            chains: Mutex::new(()),
            backlog: Mutex::new(None),
        }
    }

    /// The store, for queries over the same data.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn chain_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

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
    fn backlogged(&self, to: &Username) -> Result<(bool, u64), StoreError> {
        self.with_backlog(|b| (b.marked.contains_key(to), b.clock))
    }

    /// Notes that a message to `to` was kept in the outbox.
    fn backlog_grew(&self, to: &Username) {
        let _ = self.with_backlog(|b| {
            b.clock += 1;
            b.marked.insert(to.clone(), b.clock);
        });
    }

    /// Notes that everything to `to` the outbox held at `since` went out; a message kept
    /// after that moment keeps the mark.
    fn backlog_cleared(&self, to: &Username, since: u64) {
        let _ = self.with_backlog(|b| {
            if b.marked.get(to).is_some_and(|at| *at <= since) {
                b.marked.remove(to);
            }
        });
    }

    /// Delivers every message to `to` that waits in the outbox, oldest first, each after the
    /// receipt of the one before; stops at the first that cannot go (the rest keep waiting
    /// behind it). A message the recipient refused for good does not hold up the others.
    async fn deliver_backlog(
        &self,
        to: &Username,
        address: &PeerAddress,
        since: u64,
        own: Option<MessageId>,
    ) -> Result<(), SendError> {
        let pending = self.store.outbox(self.clock.now())?;
        for entry in pending.iter().filter(|e| e.message.to == *to) {
            match self.deliver(entry, address).await {
                Ok(()) => {}
                Err(SendError::Rejected { .. }) if own != Some(entry.message.id) => {}
                Err(e) => {
                    if e.queued() {
                        self.backlog_grew(to);
                    }
                    return Err(e);
                }
            }
        }
        self.backlog_cleared(to, since);
        Ok(())
    }

    /// Sends a message: seals it to the recipient's pinned keys (learning them from the
    /// connection at first contact), persists it in the outbox, then delivers it and waits for
    /// the receipt.
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
        let (backlogged, since) = self.backlogged(&cmd.to)?;
        let found = self.directory.lookup(&cmd.to).await;
        let contact = self.store.contact(&cmd.to)?;
        let address = match (found, &contact) {
            (Ok(Some(address)), _) => Some(address),
            (Ok(None), None) => return Err(SendError::UnknownUser(cmd.to)),
            (Err(reason), None) => {
                return Err(SendError::DirectoryUnavailable {
                    reason,
                    queued: false,
                });
            }
            (Ok(None), Some(_)) => None,
            (Err(reason), Some(_)) => {
                let to = cmd.to.clone();
                self.seal_and_keep(cmd, contact.as_ref())?;
                self.backlog_grew(&to);
                return Err(SendError::DirectoryUnavailable {
                    reason,
                    queued: true,
                });
            }
        };
        let contact = match (contact, &address) {
            (Some(contact), _) => contact,
            (None, Some(address)) => self.first_contact(&cmd.to, address).await?,
            (None, None) => return Err(SendError::UnknownUser(cmd.to)),
        };
        let to = cmd.to.clone();
        let entry = self.seal_and_keep(cmd, Some(&contact))?;
        let outcome = match address {
            Some(address) if backlogged => {
                return self
                    .deliver_backlog(&to, &address, since, Some(entry.message.id))
                    .await;
            }
            Some(address) => self.deliver(&entry, &address).await,
            None => Err(SendError::Offline(to.clone())),
        };
        if outcome.as_ref().is_err_and(SendError::queued) {
            self.backlog_grew(&to);
        }
        outcome
    }

    /// Learns a new contact's keys from its certificate and pins them.
    async fn first_contact(
        &self,
        user: &Username,
        address: &PeerAddress,
    ) -> Result<Contact, SendError> {
        match self.transport.keys_of(user, address).await {
            Ok(keys) => {
                let contact = Contact::first(user.clone(), keys, self.clock.now());
                self.store.save_contact(&contact)?;
                Ok(contact)
            }
            Err(TransportError::WrongIdentity { expected }) => {
                Err(SendError::WrongIdentity(expected))
            }
            Err(reason) => Err(SendError::Unreachable {
                user: user.clone(),
                reason,
                queued: false,
            }),
        }
    }

    /// Seals the message after the head of our chain to its recipient and keeps it in the
    /// conversation and the outbox.
    fn seal_and_keep(
        &self,
        cmd: SendMessage,
        contact: Option<&Contact>,
    ) -> Result<OutboxEntry, SendError> {
        let recipient = contact
            .and_then(|c| c.keys.x25519)
            .ok_or_else(|| SendError::NoEncryptionKey(cmd.to.clone()))?;
        let mut attachments = Vec::with_capacity(cmd.attachments.len());
        for (index, source) in cmd.attachments.iter().enumerate() {
            match self.store.seal_file(&self.me, &cmd.id, index, source) {
                Ok(attachment) => attachments.push(attachment),
                Err(e) => {
                    self.store.discard(&self.me, &cmd.id, index);
                    return Err(match e {
                        AttachmentError::Store(e) => SendError::Store(e),
                        other => SendError::Attachment(other),
                    });
                }
            }
        }
        let chain = self.chain_guard();
        let head = self.store.chain_head(&cmd.to)?;
        let now = self.clock.now();
        let header = Header {
            id: cmd.id,
            from: self.me.clone(),
            to: cmd.to.clone(),
            sent_at: now,
            ttl: cmd.ttl,
            seq: head.seq + 1,
            prev: head.digest,
            attachments: attachments.iter().map(|a| a.meta.clone()).collect(),
        };
        let body = Body {
            text: cmd.text.clone(),
            attachment_keys: attachments.iter().map(|a| a.key.clone()).collect(),
        };
        let sealed = self
            .envelopes
            .seal(&header, &body, &recipient)
            .map_err(SendError::Seal)?;
        let message = StoredMessage {
            id: cmd.id,
            from: self.me.clone(),
            to: cmd.to,
            text: cmd.text,
            sent_at: now,
            direction: Direction::Outgoing,
            delivery: Delivery::Pending,
            verification: Verification::Verified,
            ttl: cmd.ttl,
            expires_at: cmd.ttl.map(|ttl| ttl.expiry(now, now)),
            attachments,
        };
        let head = ChainHead {
            seq: header.seq,
            digest: sealed.digest,
        };
        self.store
            .append_outgoing_deferred(&message, &sealed.bytes, &head)?;
        drop(chain);
        // Outside the chain's lock, so that concurrent sends share one trip to the disk.
        self.store.sync()?;
        self.events.emit(Event::MessageSent(message.clone()));
        Ok(OutboxEntry {
            message,
            envelope: sealed.bytes,
        })
    }

    /// Delivers one persisted envelope, holding the recipient to its pinned keys.
    async fn deliver(&self, entry: &OutboxEntry, address: &PeerAddress) -> Result<(), SendError> {
        let message = &entry.message;
        let contact = self.store.contact(&message.to)?;
        if contact.as_ref().is_some_and(|c| c.pending.is_some()) {
            return Err(SendError::KeysChanged(message.to.clone()));
        }
        let outgoing = OutgoingEnvelope {
            id: message.id,
            to: message.to.clone(),
            bytes: entry.envelope.clone(),
            attachments: message
                .attachments
                .iter()
                .enumerate()
                .map(|(index, a)| OutgoingFile {
                    locator: self.store.locator(&message.from, &message.id, index),
                    sha256: a.meta.sha256,
                    size: a.meta.size,
                })
                .collect(),
        };
        let pinned = contact.as_ref().map(|c| c.keys);
        match self
            .transport
            .deliver(&message.to, address, &outgoing, pinned.as_ref())
            .await
        {
            Ok(_) => {
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
            Err(TransportError::Rejected(reason)) => {
                self.store.mark_rejected(&message.id, self.clock.now())?;
                tracing::warn!(message.id = %message.id, to = %message.to, "the recipient refused the message for good");
                Err(SendError::Rejected {
                    user: message.to.clone(),
                    reason,
                })
            }
            Err(reason) => Err(SendError::Unreachable {
                user: message.to.clone(),
                reason,
                queued: true,
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

    /// Opens and stores an envelope that arrived over an authenticated connection. `Ok` means
    /// it is durably stored (now or before) and the transport may return the receipt.
    ///
    /// The envelope must carry the signature of the certificate's device key, name the
    /// certificate's user as sender and this device as recipient, and decrypt; otherwise it is
    /// refused and nothing is kept. One that passes but does not fit the sender's hash chain
    /// (a fork or a break) is kept and shown as not verified, with the reason. The sender's
    /// keys are pinned at first contact and must match afterwards.
    ///
    /// # Errors
    /// [`ReceiveError`]: no receipt may be given.
    #[tracing::instrument(
        name = "usecase.receive_message",
        skip_all,
        fields(from = %cmd.from, size = cmd.envelope.len(), message.id, outcome),
        err(Display, level = "info")
    )]
    pub fn receive(&self, cmd: ReceiveMessage) -> Result<Received, ReceiveError> {
        let from = cmd.from.clone();
        let outcome = self.receive_once(cmd);
        if let Err(e) = &outcome
            && e.is_permanent()
        {
            self.events.emit(Event::MessageRefused {
                from,
                reason: e.to_string(),
            });
        }
        let code = match &outcome {
            Ok(Received::Verified) => "stored",
            Ok(Received::Unverified) => "stored_unverified",
            Ok(Received::Duplicate) => "duplicate",
            Err(e) => e.code(),
        };
        tracing::Span::current().record("outcome", code);
        outcome
    }

    fn receive_once(&self, cmd: ReceiveMessage) -> Result<Received, ReceiveError> {
        let contact = self.store.contact(&cmd.from)?;
        if let Some(contact) = &contact
            && contact.check(&cmd.keys) == KeyCheck::Changed
        {
            self.hold_new_keys(contact.clone(), cmd.keys)?;
            return Err(ReceiveError::KeysChanged(cmd.from));
        }
        let opened = self
            .envelopes
            .open(&cmd.envelope, &cmd.keys.ed25519)
            .map_err(ReceiveError::Envelope)?;
        let header = opened.header;
        tracing::Span::current().record("message.id", tracing::field::display(header.id));
        if header.from != cmd.from {
            return Err(ReceiveError::WrongSender {
                claimed: header.from,
                actual: cmd.from,
            });
        }
        if header.to != self.me {
            return Err(ReceiveError::NotForMe(header.to));
        }
        if contact.is_none() {
            let first = Contact::first(cmd.from.clone(), cmd.keys, self.clock.now());
            self.store.save_contact(&first)?;
        }
        let chain = self.chain_guard();
        let link = Link {
            seq: header.seq,
            digest: opened.digest,
            prev: header.prev,
        };
        let verification = match judge(&link, &self.store.neighbours(&cmd.from, header.seq)?) {
            Ok(()) => Verification::Verified,
            Err(fault) => Verification::Failed(fault),
        };
        for (index, meta) in header.attachments.iter().enumerate() {
            if !self.store.claim(&cmd.from, &header.id, index, meta)? {
                return Err(ReceiveError::AttachmentMissing { index });
            }
        }
        let now = self.clock.now();
        let attachments = header
            .attachments
            .into_iter()
            .zip(opened.body.attachment_keys)
            .map(|(meta, key)| Attachment { meta, key })
            .collect();
        let stored = StoredMessage {
            id: header.id,
            from: cmd.from,
            to: header.to,
            text: opened.body.text,
            sent_at: header.sent_at,
            direction: Direction::Incoming,
            delivery: Delivery::Received(now),
            verification,
            ttl: header.ttl,
            expires_at: header.ttl.map(|ttl| ttl.expiry(header.sent_at, now)),
            attachments,
        };
        let stored_now = self.store.store_incoming_deferred(&stored, &link)?;
        drop(chain);
        // Outside the chain's lock, so that concurrent receipts share one trip to the disk;
        // and before any receipt, also for a duplicate (its first copy may not be synced yet).
        self.store.sync()?;
        match stored_now {
            Stored::Duplicate => Ok(Received::Duplicate),
            Stored::Conflicting => Err(ReceiveError::Conflicting(stored.id)),
            Stored::New => {
                if let Verification::Failed(fault) = verification {
                    tracing::warn!(message.id = %stored.id, from = %stored.from, fault = fault.code(), "message does not fit the sender's chain");
                } else {
                    tracing::info!("message stored");
                }
                if !stored.expired(now) {
                    self.events.emit(Event::MessageReceived(stored));
                }
                Ok(if verification.is_verified() {
                    Received::Verified
                } else {
                    Received::Unverified
                })
            }
        }
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
        let Some(recipient) = accepted.keys.x25519 else {
            return Ok(());
        };
        let mut head = ChainHead::EMPTY;
        for entry in self.store.outbox(self.clock.now())? {
            if entry.message.to != *user {
                continue;
            }
            let mut header = self
                .envelopes
                .header(&entry.envelope)
                .map_err(TrustError::Seal)?;
            header.seq = head.seq + 1;
            header.prev = head.digest;
            let body = Body {
                text: entry.message.text.clone(),
                attachment_keys: entry
                    .message
                    .attachments
                    .iter()
                    .map(|a| a.key.clone())
                    .collect(),
            };
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

    /// Decrypts attachment `index` of message `id` in the conversation with `with` into a new
    /// file at `dest`; returns the bytes written.
    ///
    /// # Errors
    /// [`SaveError`]: no such message or attachment, a damaged file, an existing destination.
    #[tracing::instrument(name = "usecase.save_attachment", skip_all, fields(message.id = %id, index), err(Display, level = "info"))]
    pub fn save_attachment(
        &self,
        with: &Username,
        id: &MessageId,
        index: usize,
        dest: &str,
    ) -> Result<u64, SaveError> {
        let message = self
            .store
            .history(with, self.clock.now())?
            .into_iter()
            .find(|m| m.id == *id)
            .ok_or_else(|| SaveError::NoMessage {
                with: with.clone(),
                id: *id,
            })?;
        let attachment = message
            .attachments
            .get(index)
            .ok_or(SaveError::NoAttachment {
                id: *id,
                count: message.attachments.len(),
                index,
            })?;
        Ok(self
            .store
            .save(&message.from, id, index, attachment, dest)?)
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

    /// Marks the conversation with `with` read: the user has seen it, so its unread count
    /// ([`parley_domain::ConversationSummary::unread`]) drops to zero until the next incoming
    /// message. A conversation that does not exist is fine. The mark may be lost in a crash
    /// (the messages then show as unread again).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    #[tracing::instrument(
        name = "usecase.mark_read",
        level = "debug",
        skip_all,
        fields(%with),
        err(Display)
    )]
    pub fn mark_read(&self, with: &Username) -> Result<(), StoreError> {
        self.store.mark_read(with)
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
        let (_, since) = self.backlogged(&self.me)?;
        let pending = self.store.outbox(self.clock.now())?;
        let mut blocked: Vec<Username> = Vec::new();
        let mut sent_to: Vec<Username> = Vec::new();
        let mut addresses: Vec<(Username, PeerAddress)> = Vec::new();
        for entry in pending {
            let to = entry.message.to.clone();
            if blocked.contains(&to) {
                continue;
            }
            if self
                .store
                .contact(&to)?
                .is_some_and(|c| c.pending.is_some())
            {
                blocked.push(to);
                continue;
            }
            let address = match addresses.iter().find(|(u, _)| *u == to) {
                Some((_, a)) => a.clone(),
                None => match self.directory.lookup(&to).await {
                    Ok(Some(a)) => {
                        addresses.push((to.clone(), a.clone()));
                        a
                    }
                    Ok(None) | Err(_) => {
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
