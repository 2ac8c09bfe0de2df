//! A received message on its way to the application, and the application's answer to it.

use parley_domain::{PeerKeys, Username};
use tokio::sync::oneshot;

use crate::{protocol::Meta, trace};

/// A sealed message that arrived, waiting for the application to open and store it.
///
/// Dropping it unanswered refuses it for now ("the recipient is shutting down").
#[derive(Debug)]
pub struct Inbound {
    /// The sender, from the connection's verified certificate.
    pub from: Username,
    /// The keys of the sender's certificate.
    pub keys: PeerKeys,
    /// The sealed envelope, as received (not yet checked).
    pub envelope: Vec<u8>,
    pub(super) meta: Meta,
    pub(super) reply: oneshot::Sender<Verdict>,
}

/// What the application made of an [`Inbound`] message; the swarm task turns it into the
/// `/parley/message/3` answer.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Stored durably: the sender gets its receipt.
    Stored,
    /// Not stored this time; the same envelope may succeed later, so the sender retries.
    RefusedForNow(String),
    /// Not stored and never will be (forged, altered, not for us): the sender stops sending
    /// it, and the refusal counts as a protocol violation of the sender's connection.
    RejectedForGood(String),
}

impl Inbound {
    /// A `p2p.receive` span for handling this message, joined to the sender's trace.
    #[must_use]
    pub fn span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "p2p.receive",
            from = %self.from,
            size = self.envelope.len()
        );
        trace::adopt(&span, &self.meta);
        span
    }

    /// The message is stored durably: send the receipt.
    pub fn accept(self) {
        let _ = self.reply.send(Verdict::Stored);
    }

    /// The message was not stored this time (the store is busy or failing, the sender's keys
    /// are not accepted yet): answer with `reason` and no receipt; the sender's outbox sends
    /// it again later.
    pub fn refuse_for_now(self, reason: String) {
        let _ = self.reply.send(Verdict::RefusedForNow(reason));
    }

    /// The message was not stored and never will be (forged, altered, not for us): answer
    /// with `reason` as a final refusal, so the sender stops sending it.
    pub fn reject_for_good(self, reason: String) {
        let _ = self.reply.send(Verdict::RejectedForGood(reason));
    }
}
