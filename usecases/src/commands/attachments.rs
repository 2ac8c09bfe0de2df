//! Saving a received (or sent) attachment to a file of the user's choice.

use std::path::Path;

use parley_domain::{MessageId, Username};

use super::Messaging;
use crate::ports::{
    AttachmentError, AttachmentFiles, Clock, Directory, Envelopes, EventSink, Mailbox,
    MessageStore, PrekeySecrets, PrekeyService, StoreError, Transport,
};

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
        dest: &Path,
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
}
