//! Receiving: open, check the names and keys, judge the chain, store once, before any receipt.

use parley_domain::{
    Attachment, Contact, Delivery, Direction, KeyCheck, Link, MessageId, PeerKeys, StoredMessage,
    Username, Verification, chain::judge,
};

use std::sync::MutexGuard;

use parley_domain::ratchet::SessionBook;

use super::Messaging;
use crate::ports::{
    AttachmentError, AttachmentFiles, Clock, Directory, EnvelopeError, Envelopes, Event, EventSink,
    Mailbox, MessageStore, PrekeySecrets, PrekeyService, SessionUpdate, StoreError, Stored,
    Transport,
};

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
    /// A message of a session this device does not hold, without the agreement that opens
    /// one (the sender's keys are from a conversation this device no longer has).
    #[error(
        "the message belongs to conversation keys this device does not hold; the sender has to start a new conversation"
    )]
    UnknownSession,
    /// A first message naming prekeys this device does not hold (expired, or a one-time
    /// prekey already used: a replayed first message).
    #[error("the message names prekeys this device does not hold (expired, or already used)")]
    UnknownPrekey,
    /// A first message whose agreement names another identity key than the sender's
    /// certificate.
    #[error("the message's key agreement names another identity than the sender's certificate")]
    WrongIdentityKey,
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
            Self::UnknownSession => "unknown_session",
            Self::UnknownPrekey => "unknown_prekey",
            Self::WrongIdentityKey => "wrong_identity_key",
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
            && !matches!(self, Self::Envelope(e) if e.code == "earlier_step_missing")
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
        let Some(named) = self
            .envelopes
            .session_of(&cmd.envelope)
            .map_err(ReceiveError::Envelope)?
        else {
            // Version 1, sealed to the long-term key before the ratchet (an old outbox).
            let opened = self
                .envelopes
                .open(&cmd.envelope, &cmd.keys.ed25519)
                .map_err(ReceiveError::Envelope)?;
            return self.keep(cmd, contact.as_ref(), opened, None);
        };
        // A retry of an envelope stored before: its message key is gone, so it is recognised
        // here, before the session is asked to open it. Under the chain's lock, which the
        // store of a copy holds until it is written: a second copy arriving at the same moment
        // (a retry racing the first try, or the mailbox's copy racing the direct one) waits
        // for the first and is then a duplicate, never a message whose key is gone.
        let claimed = self
            .envelopes
            .header(&cmd.envelope)
            .map_err(ReceiveError::Envelope)?;
        let chain = self.chain_guard();
        if let Some(digest) = self.store.incoming_digest(&cmd.from, &claimed.id)? {
            drop(chain);
            self.store.sync()?;
            return if digest == self.envelopes.digest(&cmd.envelope) {
                Ok(Received::Duplicate)
            } else {
                Err(ReceiveError::Conflicting(claimed.id))
            };
        }
        let now = self.clock.now();
        let mut book = self.store.sessions(&cmd.from)?;
        let (mut session, answered, used) = match book.get_mut(&named.id) {
            Some(session) => (session.clone(), false, None),
            None => {
                let initial = named.initial.as_ref().ok_or(ReceiveError::UnknownSession)?;
                if Some(initial.identity.0) != cmd.keys.x25519 {
                    return Err(ReceiveError::WrongIdentityKey);
                }
                // The signature first: a forged first message costs no agreement.
                self.envelopes
                    .check_signature(&cmd.envelope, &cmd.keys.ed25519)
                    .map_err(ReceiveError::Envelope)?;
                let secrets = self
                    .store
                    .responder_secrets(
                        initial.signed_prekey_id,
                        initial.one_time_prekey_id,
                        initial.kem_prekey_id,
                    )?
                    .ok_or(ReceiveError::UnknownPrekey)?;
                if initial.one_time_prekey_id.is_some() && secrets.one_time_prekey.is_none() {
                    return Err(ReceiveError::UnknownPrekey);
                }
                let session = self
                    .envelopes
                    .respond(initial, &secrets, now)
                    .map_err(ReceiveError::Envelope)?;
                (session, true, initial.one_time_prekey_id)
            }
        };
        let opened = self
            .envelopes
            .open_in(&cmd.envelope, &cmd.keys.ed25519, &mut session, now)
            .map_err(ReceiveError::Envelope)?;
        if answered {
            book.answer(session);
        } else if let Some(kept) = book.get_mut(&named.id) {
            *kept = session;
        }
        self.keep(cmd, contact.as_ref(), opened, Some((chain, &book, used)))
    }

    /// Checks an opened envelope's names, judges it against the sender's chain and stores it
    /// (with the sender's sessions as it left them, for a version-2 envelope), then syncs.
    fn keep(
        &self,
        cmd: ReceiveMessage,
        contact: Option<&Contact>,
        opened: crate::ports::Opened,
        session: Option<(MutexGuard<'_, ()>, &SessionBook, Option<u32>)>,
    ) -> Result<Received, ReceiveError> {
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
        // Held already when this comes from a session (the caller took it before it read the
        // sessions); released before the sync below either way.
        let (chain, session) = match session {
            Some((held, book, used)) => (held, Some((book, used))),
            None => (self.chain_guard(), None),
        };
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
        let stored_now = match session {
            None => self.store.store_incoming_deferred(&stored, &link)?,
            Some((book, used)) => self.store.store_incoming_in_session_deferred(
                &stored,
                &link,
                &SessionUpdate {
                    with: &stored.from,
                    book,
                    used_one_time_prekey: used,
                },
            )?,
        };
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
}
