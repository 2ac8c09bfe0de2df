//! The mailbox, both ways: depositing what an offline recipient cannot take now, and
//! collecting what the rendezvous held for this device (then acknowledging it, then sending
//! the receipt back the same way).

use std::time::Duration;

use parley_domain::mailbox::Parcel;
use parley_domain::{Delivery, Digest, MailId, MessageId, Username};

use super::{Messaging, ReceiveError, ReceiveMessage, SendError};
use crate::ports::{
    AttachmentError, AttachmentFiles, Clock, Deposit, Directory, Envelopes, Event, EventSink,
    MailItem, Mailbox, MailboxError, MessageStore, OutboxEntry, PrekeySecrets, PrekeyService,
    StoreError, Transport,
};

/// After the rendezvous refused a deposit for now (a full mailbox, a rate limit), the outbox
/// round asks again only after this long.
pub const DEPOSIT_BACKOFF: Duration = Duration::from_secs(30);
/// At most this many batches are collected in one go (the rest waits for the next round).
pub const MAX_BATCHES: usize = 64;

/// What one collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Collected {
    /// Messages stored now (new ones; duplicates not counted).
    pub stored: u64,
    /// Receipts that turned one of our queued messages delivered.
    pub receipts: u64,
    /// Entries refused for good (altered, forged, not for us): acknowledged and dropped.
    pub refused: u64,
    /// Entries left at the rendezvous for a later collection (keys to accept, store busy).
    pub left: u64,
}

/// Why the mail could not be collected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The rendezvous's mailbox could not be asked; everything stays held there.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The local store failed; what was not acknowledged stays held at the rendezvous.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of one fetched entry.
enum Outcome {
    /// Stored (now or before): acknowledge, then send the receipt.
    Stored {
        from: Username,
        id: MessageId,
        digest: Digest,
        new: bool,
    },
    /// A receipt, handled.
    Receipt { matched: bool },
    /// Can never be taken: acknowledge so the rendezvous drops it.
    Refused,
    /// Not now: leave it held.
    Later,
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
    /// Deposits, oldest first, every message to `to` that waits in the outbox and is not held
    /// by the mailbox yet, so they reach the recipient in the order written. A message the
    /// rendezvous will never take (an attachment over its cap) is passed over and stays in the
    /// outbox for a direct delivery; a refusal for now stops the round (the rest waits behind
    /// it). `own` is the message the caller asks about: its refusal is the error returned.
    ///
    /// # Errors
    /// [`SendError`] for `own` (or for the message ahead of it that held it up).
    pub(super) async fn queue_backlog(
        &self,
        to: &Username,
        own: Option<MessageId>,
    ) -> Result<(), SendError> {
        let contact = self
            .store
            .contact(to)?
            .ok_or_else(|| SendError::UnknownUser(to.clone()))?;
        if contact.pending.is_some() {
            return Err(SendError::KeysChanged(to.clone()));
        }
        let recipient = contact
            .keys
            .x25519
            .ok_or_else(|| SendError::NoEncryptionKey(to.clone()))?;
        let now = self.clock.now();
        let waiting: Vec<OutboxEntry> = self
            .store
            .outbox(now)?
            .into_iter()
            .filter(|e| e.message.to == *to && e.message.delivery == Delivery::Pending)
            .collect();
        for entry in &waiting {
            let mine = own == Some(entry.message.id);
            if !mine && self.backing_off(&entry.message.id) {
                return Ok(());
            }
            let resealed = match self.reseal_if_stale(entry, &contact).await {
                Ok(resealed) => resealed,
                Err(e) if mine => return Err(e),
                Err(e @ SendError::Store(_)) => return Err(e),
                Err(_) => return Ok(()),
            };
            match self
                .queue(resealed.as_ref().unwrap_or(entry), &recipient)
                .await
            {
                Ok(()) => {}
                Err(e) if mine => return Err(e),
                Err(SendError::Mailbox {
                    error:
                        MailboxError::Refused {
                            permanent: true, ..
                        },
                    ..
                }) => {}
                Err(e @ SendError::Store(_)) => return Err(e),
                Err(e) => return if own.is_some() { Err(e) } else { Ok(()) },
            }
        }
        Ok(())
    }

    /// Whether a deposit of `id` was refused lately (see [`DEPOSIT_BACKOFF`]).
    fn backing_off(&self, id: &MessageId) -> bool {
        let now = self.clock.now().0;
        self.mail_backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|until| *until > now)
    }

    /// Deposits one outbox entry, wrapped to the recipient's device, with its encrypted
    /// attachment files, and marks it queued once the rendezvous holds it.
    async fn queue(&self, entry: &OutboxEntry, recipient: &[u8; 32]) -> Result<(), SendError> {
        let message = &entry.message;
        let sealed = self
            .envelopes
            .wrap(
                &Parcel::Envelope(entry.envelope.clone()).encode(),
                recipient,
            )
            .map_err(SendError::Seal)?;
        let mut files = Vec::with_capacity(message.attachments.len());
        for index in 0..message.attachments.len() {
            files.push(
                self.store
                    .encrypted(&message.from, &message.id, index)
                    .map_err(|e| match e {
                        AttachmentError::Store(e) => SendError::Store(e),
                        other => SendError::Attachment(other),
                    })?,
            );
        }
        let deposit = Deposit {
            sealed,
            files,
            expires_at: message.expires_at,
        };
        match self.mailbox.deposit(&message.to, &deposit).await {
            Ok(()) => {
                self.store.mark_queued(&message.id, self.clock.now())?;
                tracing::info!(message.id = %message.id, to = %message.to, "message queued at the rendezvous");
                self.events.emit(Event::MessageQueued {
                    id: message.id,
                    to: message.to.clone(),
                });
                Ok(())
            }
            Err(error) => {
                if matches!(error, MailboxError::Refused { .. }) {
                    let until = self.clock.now().0.saturating_add(
                        i64::try_from(DEPOSIT_BACKOFF.as_millis()).unwrap_or(i64::MAX),
                    );
                    self.mail_backoff
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(message.id, until);
                }
                tracing::info!(message.id = %message.id, to = %message.to, code = error.code(), "the rendezvous did not hold the message");
                Err(SendError::Mailbox {
                    user: message.to.clone(),
                    error,
                    queued: true,
                })
            }
        }
    }

    /// Collects what the rendezvous holds for this device, oldest first: each envelope is
    /// opened and stored under the same rules as one that came over a connection (signature,
    /// addressing, pinned keys, chain, TTL), then the batch is acknowledged (the rendezvous
    /// deletes it), then each sender gets its receipt through its own mailbox. A receipt in
    /// the mail turns our queued message delivered. An entry that can never be taken is
    /// acknowledged and dropped; one that may be taken later (keys waiting for the user) stays
    /// held.
    ///
    /// # Errors
    /// [`CollectError`]: what was not acknowledged stays held and comes again.
    #[tracing::instrument(
        name = "usecase.collect_mail",
        skip_all,
        fields(stored, receipts, refused, left),
        err(Display, level = "info")
    )]
    pub async fn collect_mail(&self) -> Result<Collected, CollectError> {
        let mut done = Collected::default();
        for _ in 0..MAX_BATCHES {
            let batch = self.mailbox.fetch().await?;
            let mut acknowledge: Vec<MailId> = Vec::new();
            let mut receipts: Vec<(Username, MessageId, Digest)> = Vec::new();
            for item in &batch.items {
                match self.take(item).await? {
                    Outcome::Stored {
                        from,
                        id,
                        digest,
                        new,
                    } => {
                        done.stored += u64::from(new);
                        acknowledge.push(item.id);
                        receipts.push((from, id, digest));
                    }
                    Outcome::Receipt { matched } => {
                        done.receipts += u64::from(matched);
                        acknowledge.push(item.id);
                    }
                    Outcome::Refused => {
                        done.refused += 1;
                        acknowledge.push(item.id);
                    }
                    Outcome::Later => done.left += 1,
                }
            }
            if !acknowledge.is_empty() {
                self.mailbox.acknowledge(&acknowledge).await?;
            }
            for (from, id, digest) in receipts {
                self.send_receipt(&from, id, digest).await;
            }
            // Entries left held come first in every batch: stop rather than fetch them again.
            if !batch.more || acknowledge.is_empty() {
                break;
            }
        }
        let span = tracing::Span::current();
        span.record("stored", done.stored);
        span.record("receipts", done.receipts);
        span.record("refused", done.refused);
        span.record("left", done.left);
        Ok(done)
    }

    /// Takes one fetched entry.
    async fn take(&self, item: &MailItem) -> Result<Outcome, CollectError> {
        let parcel = match self.envelopes.unwrap(&item.sealed) {
            Ok(inner) => Parcel::decode(&inner).ok(),
            Err(_) => None,
        };
        let Some(parcel) = parcel else {
            tracing::warn!(entry = %item.id, "a mailbox entry was altered or is not for this device; it is refused");
            return Ok(Outcome::Refused);
        };
        match parcel {
            Parcel::Receipt {
                id,
                digest,
                signature,
            } => Ok(Outcome::Receipt {
                matched: self.take_receipt(id, digest, &signature)?,
            }),
            Parcel::Envelope(envelope) => self.take_envelope(item, envelope).await,
        }
    }

    /// A receipt from the mail: our queued (or pending) message `id` is delivered, if its
    /// envelope is the one the receipt names and the recipient's device (as pinned) signed it.
    fn take_receipt(
        &self,
        id: MessageId,
        digest: Digest,
        signature: &[u8; 64],
    ) -> Result<bool, StoreError> {
        let outbox = self.store.outbox(self.clock.now())?;
        let Some(entry) = outbox.iter().find(|e| e.message.id == id) else {
            return Ok(false); // delivered before, expired, or never ours
        };
        if self.envelopes.digest(&entry.envelope) != digest {
            tracing::warn!(message.id = %id, "a receipt from the mailbox names another envelope; it is ignored");
            return Ok(false);
        }
        let signed = self.store.contact(&entry.message.to)?.is_some_and(|c| {
            self.envelopes
                .verify_receipt(&digest, signature, &c.keys.ed25519)
        });
        if !signed {
            tracing::warn!(message.id = %id, "a receipt from the mailbox is not signed by the recipient's device; it is ignored");
            return Ok(false);
        }
        self.store.mark_delivered(&id, self.clock.now())?;
        tracing::info!(message.id = %id, to = %entry.message.to, "message delivered (receipt by mail)");
        self.events.emit(Event::MessageDelivered {
            id,
            to: entry.message.to.clone(),
        });
        Ok(true)
    }

    /// An envelope from the mail. Its sender is read from the header, then held to the keys
    /// this device pinned for that name (or, someone never met, to the keys the CA certified):
    /// the signature decides, exactly as for an envelope that came over a connection.
    async fn take_envelope(
        &self,
        item: &MailItem,
        envelope: Vec<u8>,
    ) -> Result<Outcome, CollectError> {
        let Ok(header) = self.envelopes.header(&envelope) else {
            tracing::warn!(entry = %item.id, "a mailbox entry holds no readable envelope; it is refused");
            return Ok(Outcome::Refused);
        };
        let from = header.from.clone();
        let pinned = self.store.contact(&from)?.map(|c| c.keys);
        let keys = match pinned {
            Some(keys) => keys,
            None => match self.mailbox.certified_keys(&from).await? {
                Some(keys) => keys,
                None => {
                    tracing::warn!(entry = %item.id, "a mailbox entry names a sender nobody enrolled; it is refused");
                    return Ok(Outcome::Refused);
                }
            },
        };
        for (meta, bytes) in header.attachments.iter().zip(&item.files) {
            self.store
                .stage_file(&from, meta, bytes)
                .map_err(|e| match e {
                    AttachmentError::Store(e) => e,
                    other => StoreError::Unavailable(other.to_string()),
                })?;
        }
        let digest = self.envelopes.digest(&envelope);
        let mut outcome = self.receive(ReceiveMessage {
            from: from.clone(),
            keys,
            envelope: envelope.clone(),
        });
        // Signed with other keys than the pinned ones: the sender may have enrolled again.
        // The CA's current keys, if they differ, are held for the user to accept (and the entry
        // stays held until then); if they are the pinned ones, it was forged.
        if pinned.is_some()
            && matches!(&outcome, Err(ReceiveError::Envelope(e)) if e.code == "bad_signature")
            && let Some(certified) = self.mailbox.certified_keys(&from).await?
            && Some(certified) != pinned
        {
            outcome = self.receive(ReceiveMessage {
                from: from.clone(),
                keys: certified,
                envelope,
            });
        }
        match outcome {
            Ok(received) => Ok(Outcome::Stored {
                from,
                id: header.id,
                digest,
                new: received != super::Received::Duplicate,
            }),
            Err(ReceiveError::Store(e)) => Err(CollectError::Store(e)),
            Err(e) if e.is_permanent() => Ok(Outcome::Refused),
            Err(_) => Ok(Outcome::Later),
        }
    }

    /// Sends the receipt for message `id` (envelope `digest`) to `from` through its mailbox.
    /// A receipt that cannot go is not retried: the sender's outbox still holds the message
    /// and delivers it directly once both are online, and a duplicate earns a receipt.
    async fn send_receipt(&self, from: &Username, id: MessageId, digest: Digest) {
        let Ok(Some(contact)) = self.store.contact(from) else {
            return;
        };
        let Some(x25519) = contact.keys.x25519 else {
            return;
        };
        let Ok(sealed) = self.envelopes.wrap(
            &Parcel::Receipt {
                id,
                digest,
                signature: self.envelopes.sign_receipt(&digest),
            }
            .encode(),
            &x25519,
        ) else {
            return;
        };
        let deposit = Deposit {
            sealed,
            files: Vec::new(),
            expires_at: None,
        };
        if let Err(e) = self.mailbox.deposit(from, &deposit).await {
            tracing::info!(message.id = %id, code = e.code(), "the receipt could not be left at the rendezvous");
        }
    }
}
