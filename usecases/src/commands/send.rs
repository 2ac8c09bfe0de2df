//! Sending: seal after the head of our chain, keep in the outbox, deliver behind the backlog.

use std::time::Duration;

use parley_domain::{
    Body, ChainHead, Contact, Delivery, Direction, Header, MessageId, MessageText, StoredMessage,
    Ttl, Username, Verification,
};

use super::Messaging;
use crate::ports::{
    AttachmentError, AttachmentFiles, AttachmentSource, Clock, Directory, DirectoryError,
    EnvelopeError, Envelopes, Event, EventSink, Mailbox, MailboxError, MessageStore, OutboxEntry,
    OutgoingEnvelope, OutgoingFile, PrekeyError, PrekeySecrets, PrekeyService, SessionUpdate,
    StoreError, Transport, TransportError,
};
use parley_domain::ratchet::SessionState;

/// How long [`Messaging::send_patiently`] waits for a name that is not (yet) in the directory.
pub const SEND_GRACE: Duration = Duration::from_secs(3);
/// How often [`Messaging::send_patiently`] asks again meanwhile.
pub const SEND_RETRY_EVERY: Duration = Duration::from_millis(250);

/// [`SEND_GRACE`] in the clock's milliseconds.
fn grace_ms() -> i64 {
    i64::try_from(SEND_GRACE.as_millis()).unwrap_or(i64::MAX)
}

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

/// What became of a message that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The recipient's receipt is back: it is stored on their device.
    Delivered,
    /// The recipient is offline; the rendezvous holds it for them (durably), and it stays in
    /// the outbox, `queued`, until the receipt comes back.
    Queued,
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
    /// No conversation keys yet, and the recipient's device published no prekeys to open them
    /// with (never online with this version of Parley).
    #[error(
        "{0} has published no prekeys at the rendezvous (a device that has not been online with \
         a current Parley yet), so no first message can be sealed with forward secrecy; nothing \
         was sent: try again once {0} has been online"
    )]
    NoPrekeys(Username),
    /// No conversation keys yet, and the rendezvous could not hand out the recipient's prekeys.
    #[error(
        "the first message to {user} needs {user}'s prekeys from the rendezvous, which could not \
         be had ({error}); nothing was sent"
    )]
    Prekeys {
        /// The recipient.
        user: Username,
        /// What the rendezvous said.
        error: PrekeyError,
    },
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
    /// The recipient is offline and the rendezvous's mailbox did not take the message.
    /// `queued` says whether it waits in the outbox (the daemon tries again).
    #[error("{user} is offline and the rendezvous did not hold the message: {error}{}", if *.queued { "; it is kept in the outbox and the daemon tries again" } else { "; nothing was sent" })]
    Mailbox {
        /// The recipient.
        user: Username,
        /// What the mailbox said.
        error: MailboxError,
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
            Self::NoPrekeys(_) => "no_prekeys",
            Self::Prekeys { .. } => "prekeys_unavailable",
            Self::Attachment(AttachmentError::TooLarge { .. }) => "attachment_too_large",
            Self::Attachment(_) => "attachment_unreadable",
            Self::DirectoryUnavailable { .. } => "rendezvous_unavailable",
            Self::Mailbox { error, .. } => mailbox_code(error),
            Self::Store(_) => "store_unavailable",
        }
    }

    /// Whether the message waits in the outbox for a later attempt.
    #[must_use]
    pub fn queued(&self) -> bool {
        match self {
            Self::Offline(_) | Self::KeysChanged(_) => true,
            Self::Unreachable { queued, .. }
            | Self::DirectoryUnavailable { queued, .. }
            | Self::Mailbox { queued, .. } => *queued,
            _ => false,
        }
    }
}

/// No session with the recipient, and none agreed for this message (cannot happen: the caller
/// agrees one first when there is none).
fn no_session() -> SendError {
    SendError::Seal(EnvelopeError {
        code: "no_session",
        message: "no conversation keys were agreed".into(),
    })
}

/// The mailbox's code as a `'static` name: one of the rendezvous's refusal codes, or
/// `mailbox_refused` for a code this version does not know.
fn mailbox_code(error: &MailboxError) -> &'static str {
    use parley_domain::mailbox::Refusal;
    const KNOWN: [Refusal; 9] = [
        Refusal::Disabled,
        Refusal::UnknownRecipient,
        Refusal::MailboxFull,
        Refusal::SenderQuota,
        Refusal::AttachmentTooLarge { size: 0, max: 0 },
        Refusal::RateLimited,
        Refusal::Malformed,
        Refusal::Expired,
        Refusal::Unavailable,
    ];
    match error {
        MailboxError::Unavailable(_) => "rendezvous_unavailable",
        MailboxError::Refused { code, .. } => KNOWN
            .iter()
            .map(Refusal::code)
            .find(|known| known == code)
            .unwrap_or("mailbox_refused"),
    }
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
    /// As [`Messaging::send`], but patient with a recipient the directory does not list yet
    /// (a peer that just started, or the rendezvous busy for a moment): while the send is
    /// refused as [`SendError::UnknownUser`] or [`SendError::DirectoryUnavailable`] with
    /// nothing kept, it is tried again every [`SEND_RETRY_EVERY`] for up to [`SEND_GRACE`],
    /// waiting on the clock. Only refusals that kept nothing are retried, so a retry can never
    /// create a second message. A name still not listed after that is asked of the
    /// rendezvous's book of certified keys: someone enrolled but offline is sent the message
    /// through the mailbox (a first contact, pinned to the certified keys); a name nobody
    /// enrolled stays [`SendError::UnknownUser`].
    ///
    /// # Errors
    /// [`SendError`], as for [`Messaging::send`]: the last attempt's outcome.
    ///
    /// Cancel safety: as for [`Messaging::send`].
    pub async fn send_patiently(&self, cmd: SendMessage) -> Result<Sent, SendError> {
        let deadline = self.clock.now().0.saturating_add(grace_ms());
        loop {
            match self.send(cmd.clone()).await {
                // A device that just came online publishes its prekeys a moment after it is
                // listed: nothing was kept, so asking again cannot make a second message.
                Err(
                    SendError::UnknownUser(_)
                    | SendError::NoPrekeys(_)
                    | SendError::DirectoryUnavailable { queued: false, .. },
                ) if self.clock.now().0 < deadline => {
                    self.clock.sleep(SEND_RETRY_EVERY).await;
                }
                Err(e @ SendError::UnknownUser(_)) => return self.send_to_stranger(cmd, e).await,
                outcome => return outcome,
            }
        }
    }

    /// Sends a message: seals it to the recipient's pinned keys (learning them from the
    /// connection at first contact), persists it in the outbox, then delivers it and waits for
    /// the receipt; a recipient who is offline or cannot be reached gets it through the
    /// rendezvous's mailbox.
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
    pub async fn send(&self, cmd: SendMessage) -> Result<Sent, SendError> {
        let outcome = self.send_once(cmd).await;
        let code = match &outcome {
            Ok(Sent::Delivered) => "delivered",
            Ok(Sent::Queued) => "queued",
            Err(e) => e.code(),
        };
        tracing::Span::current().record("outcome", code);
        outcome
    }

    async fn send_once(&self, cmd: SendMessage) -> Result<Sent, SendError> {
        if cmd.to == self.me {
            return Err(SendError::ToSelf);
        }
        let (backlogged, since) = self.backlogged(&cmd.to)?;
        let contact = self.store.contact(&cmd.to)?;
        let found = self
            .locate(&cmd.to, contact.as_ref().map(|c| &c.keys))
            .await;
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
            (Err(reason), Some(known)) => {
                let to = cmd.to.clone();
                let fresh = match self.prepare_session(known).await {
                    Ok(fresh) => fresh,
                    Err(_) => {
                        return Err(SendError::DirectoryUnavailable {
                            reason,
                            queued: false,
                        });
                    }
                };
                self.seal_and_keep(cmd, contact.as_ref(), fresh)?;
                self.backlog_grew(&to);
                return Err(SendError::DirectoryUnavailable {
                    reason,
                    queued: true,
                });
            }
        };
        let (contact, address) = match (contact, address) {
            (Some(contact), address) => (contact, address),
            (None, Some(address)) => match self.first_contact(&cmd.to, &address).await {
                Ok(contact) => (contact, Some(address)),
                // Listed but not reachable within the dial's bound: by mail, if enrolled.
                Err(e @ SendError::Unreachable { .. }) => {
                    return self.send_to_stranger(cmd, e).await;
                }
                Err(e) => return Err(e),
            },
            (None, None) => return Err(SendError::UnknownUser(cmd.to)),
        };
        let to = cmd.to.clone();
        let id = cmd.id;
        let fresh = self.prepare_session(&contact).await?;
        // Marked before it is in the outbox: the outbox round, running meanwhile, leaves it to
        // this delivery instead of sending it a second time.
        let _on_its_way = super::InFlight::mark(&self.in_flight, id);
        let entry = self.seal_and_keep(cmd, Some(&contact), fresh)?;
        let outcome = match address {
            Some(address) if backlogged => {
                self.deliver_backlog(&to, &address, since, Some(entry.message.id))
                    .await
            }
            Some(address) => self.deliver_to(&entry, &address, Some(contact)).await,
            None => Err(SendError::Offline(to.clone())),
        };
        match outcome {
            Ok(()) => Ok(Sent::Delivered),
            // Offline, no connection within the dial's bound, or a connection that broke
            // before the receipt (a device that vanished without closing it): by mail. The
            // recipient stores each message id once, so a copy that did arrive directly is not
            // shown twice. Not a device that answered with a refusal: that one is reachable,
            // and its refusal stands.
            Err(
                e @ (SendError::Offline(_)
                | SendError::Unreachable {
                    reason: TransportError::Unreachable(_) | TransportError::NoReceipt(_),
                    queued: true,
                    ..
                }),
            ) => {
                self.backlog_grew(&to);
                match self.queue_backlog(&to, Some(id)).await {
                    Ok(()) => Ok(Sent::Queued),
                    // No mailbox to ask either: the first reason stands.
                    Err(SendError::Mailbox {
                        error: MailboxError::Unavailable(_),
                        ..
                    }) => Err(e),
                    Err(other) => Err(other),
                }
            }
            Err(e) => {
                if e.queued() {
                    self.backlog_grew(&to);
                }
                Err(e)
            }
        }
    }

    /// A first message to someone this device never met and cannot reach now: their keys come
    /// from the rendezvous's book of certified keys (verified against the CA by the adapter)
    /// and are pinned as at any first contact; the message goes through the mailbox. When the
    /// rendezvous cannot be asked, `first` (why the direct way failed) stands.
    async fn send_to_stranger(
        &self,
        cmd: SendMessage,
        first: SendError,
    ) -> Result<Sent, SendError> {
        let keys = match self.mailbox.certified_keys(&cmd.to).await {
            Ok(Some(keys)) => keys,
            Ok(None) => return Err(SendError::UnknownUser(cmd.to)),
            Err(MailboxError::Unavailable(_)) => return Err(first),
            Err(error) => {
                return Err(SendError::Mailbox {
                    user: cmd.to,
                    error,
                    queued: false,
                });
            }
        };
        let contact = match self.store.contact(&cmd.to)? {
            Some(contact) => contact, // met meanwhile
            None => {
                let contact = Contact::first(cmd.to.clone(), keys, self.clock.now());
                self.store.save_contact(&contact)?;
                contact
            }
        };
        let to = cmd.to.clone();
        let id = cmd.id;
        let fresh = self.prepare_session(&contact).await?;
        self.seal_and_keep(cmd, Some(&contact), fresh)?;
        self.backlog_grew(&to);
        self.queue_backlog(&to, Some(id))
            .await
            .map(|()| Sent::Queued)
    }

    /// Delivers every message to `to` that waits in the outbox, oldest first, each after the
    /// receipt of the one before; stops at the first that cannot go (the rest keep waiting
    /// behind it). A message the recipient refused for good does not hold up the others.
    async fn deliver_backlog(
        &self,
        to: &Username,
        address: &D::Address,
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

    /// Learns a new contact's keys from its certificate and pins them.
    async fn first_contact(
        &self,
        user: &Username,
        address: &D::Address,
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

    /// A new session to `contact`'s device when there is none yet: its prekey bundle from the
    /// rendezvous, checked against the pinned keys, and the hybrid agreement. Not stored here:
    /// it is stored with the first message sealed in it. `None` when a session exists.
    async fn prepare_session(&self, contact: &Contact) -> Result<Option<SessionState>, SendError> {
        if self.store.sessions(&contact.user)?.active().is_some() {
            return Ok(None);
        }
        let recipient = contact
            .keys
            .x25519
            .ok_or_else(|| SendError::NoEncryptionKey(contact.user.clone()))?;
        let bundle = match self
            .mailbox
            .bundle(&contact.user, &contact.keys.ed25519)
            .await
        {
            Ok(Some(bundle)) => bundle,
            Ok(None) => return Err(SendError::NoPrekeys(contact.user.clone())),
            Err(error) => {
                return Err(SendError::Prekeys {
                    user: contact.user.clone(),
                    error,
                });
            }
        };
        let session = self
            .envelopes
            .initiate(&bundle, &contact.keys.ed25519, &recipient, self.clock.now())
            .map_err(SendError::Seal)?;
        tracing::info!(to = %contact.user, one_time_prekey = bundle.one_time_prekey.is_some(), "new conversation keys agreed from prekeys");
        Ok(Some(session))
    }

    /// Seals the message after the head of our chain in the active session with its
    /// recipient (`fresh` when there is none yet) and keeps it in the conversation and the
    /// outbox, with the session moved on, in one write.
    fn seal_and_keep(
        &self,
        cmd: SendMessage,
        contact: Option<&Contact>,
        fresh: Option<SessionState>,
    ) -> Result<OutboxEntry, SendError> {
        if contact.and_then(|c| c.keys.x25519).is_none() {
            return Err(SendError::NoEncryptionKey(cmd.to.clone()));
        }
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
        let mut book = self.store.sessions(&cmd.to)?;
        if book.active().is_none() {
            // Another send may have opened one meanwhile: that one stands.
            match fresh {
                Some(session) => book.open(session),
                None => return Err(no_session()),
            }
        }
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
        let session = book.active_mut().ok_or_else(no_session)?;
        let sealed = self
            .envelopes
            .seal_in(&header, &body, session, now)
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
        self.store.append_outgoing_in_session_deferred(
            &message,
            &sealed.bytes,
            &head,
            &SessionUpdate {
                with: &message.to,
                book: &book,
                used_one_time_prekey: None,
            },
        )?;
        drop(chain);
        // Outside the chain's lock, so that concurrent sends share one trip to the disk.
        self.store.sync()?;
        self.events.emit(Event::MessageSent(message.clone()));
        Ok(OutboxEntry {
            message,
            envelope: sealed.bytes,
        })
    }

    /// Delivers one persisted envelope, holding the recipient to its pinned keys as the store
    /// has them now (sealed again first when its session is gone, see
    /// [`Messaging::reseal_if_stale`]).
    pub(super) async fn deliver(
        &self,
        entry: &OutboxEntry,
        address: &D::Address,
    ) -> Result<(), SendError> {
        let contact = self.store.contact(&entry.message.to)?;
        let resealed = match &contact {
            Some(contact) if contact.pending.is_none() => {
                self.reseal_if_stale(entry, contact).await?
            }
            _ => None,
        };
        self.deliver_to(resealed.as_ref().unwrap_or(entry), address, contact)
            .await
    }

    /// An outbox entry sealed in a session this device no longer holds with its recipient
    /// (the user accepted the recipient's new keys since) is sealed again, in the current
    /// session (agreed now from the recipient's prekeys if need be) after the head of the
    /// chain, and kept so in one write. Any other entry comes back as it is.
    pub(super) async fn reseal_if_stale(
        &self,
        entry: &OutboxEntry,
        contact: &Contact,
    ) -> Result<Option<OutboxEntry>, SendError> {
        let Some(named) = self
            .envelopes
            .session_of(&entry.envelope)
            .map_err(SendError::Seal)?
        else {
            return Ok(None);
        };
        let to = &entry.message.to;
        if self
            .store
            .sessions(to)?
            .sessions
            .iter()
            .any(|s| s.id == named.id)
        {
            return Ok(None);
        }
        let fresh = self.prepare_session(contact).await?;
        let mut header = self
            .envelopes
            .header(&entry.envelope)
            .map_err(SendError::Seal)?;
        let body = super::body_of(&entry.message);
        let chain = self.chain_guard();
        let head = self.store.chain_head(to)?;
        let mut book = self.store.sessions(to)?;
        if book.active().is_none()
            && let Some(session) = fresh
        {
            book.open(session);
        }
        let now = self.clock.now();
        let session = book.active_mut().ok_or_else(no_session)?;
        header.seq = head.seq + 1;
        header.prev = head.digest;
        let sealed = self
            .envelopes
            .seal_in(&header, &body, session, now)
            .map_err(SendError::Seal)?;
        let head = ChainHead {
            seq: header.seq,
            digest: sealed.digest,
        };
        self.store.reseal_in_session(
            &entry.message.id,
            &sealed.bytes,
            &head,
            &SessionUpdate {
                with: to,
                book: &book,
                used_one_time_prekey: None,
            },
        )?;
        drop(chain);
        Ok(Some(OutboxEntry {
            message: entry.message.clone(),
            envelope: sealed.bytes,
        }))
    }

    /// As [`Messaging::deliver`], with the recipient's contact record just read by the caller
    /// (a new message's send has it at hand: no second read).
    async fn deliver_to(
        &self,
        entry: &OutboxEntry,
        address: &D::Address,
        contact: Option<Contact>,
    ) -> Result<(), SendError> {
        let message = &entry.message;
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
        let _on_its_way = super::InFlight::mark(&self.in_flight, message.id);
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
}
