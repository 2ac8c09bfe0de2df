//! The receiving side of `/parley/message/3`: each message stream a contact opens is served by
//! a task of its own, which reads its frames in a loop, hands each envelope to the application
//! and answers each request by its number once the application's verdict is in (the message
//! durably stored, or refused). Verdicts are awaited concurrently, so one slow message holds
//! back no other; at most [`MAX_IN_FLIGHT`] per stream wait at once, and the stream is not read
//! further meanwhile.
//!
//! A frame over its cap or that does not parse breaks the protocol: the stream is dropped and
//! the violation counted. A request refused for good before its envelope is read (metadata or
//! envelope over their bounds) or an envelope the application rejects for good is answered and
//! counted ([`Violations`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::{
    AsyncReadExt as _, AsyncWriteExt as _, FutureExt as _, StreamExt as _, future::BoxFuture,
    stream::FuturesUnordered,
};
use libp2p::PeerId;
use parley_domain::Role;
use tokio::sync::{mpsc, oneshot};

use super::{
    inbound::{Inbound, Verdict},
    violations::{CLOSE_GRACE, Violations},
};
use crate::{
    message::{
        self, Answer, MAX_ENVELOPE_BYTES, MAX_IN_FLIGHT, MAX_REQUEST_FRAME_BYTES, Request,
        Response, read_frame,
    },
    protocol::{MAX_REASON_BYTES, meta_within_bounds},
    registry::Registry,
};

/// Message streams one peer may hold open to us at once (an honest peer holds one per
/// connection, and at most 4 connections); a further stream is dropped at once.
pub const MESSAGE_STREAMS_PER_PEER: usize = 4;

/// What every stream's task shares.
pub(super) struct Receiving {
    pub(super) registry: Registry,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) violations: Violations,
    /// Disconnections due, to the swarm task.
    pub(super) closes: mpsc::Sender<PeerId>,
    /// Message streams open per peer.
    open: Mutex<HashMap<PeerId, usize>>,
    /// This device's key, which signs every receipt ([`parley_domain::receipt`]).
    device: libp2p::identity::Keypair,
}

impl Receiving {
    pub(super) fn new(
        registry: Registry,
        inbound: mpsc::Sender<Inbound>,
        violations: Violations,
        closes: mpsc::Sender<PeerId>,
        device: libp2p::identity::Keypair,
    ) -> Self {
        Self {
            registry,
            inbound,
            violations,
            closes,
            open: Mutex::new(HashMap::new()),
            device,
        }
    }

    /// Counts a violation by `peer`.
    fn violation(&self, peer: PeerId) {
        self.violations.count(peer);
    }

    /// Schedules the closing of `peer`'s connections if it is past its violations.
    fn close_if_due(&self, peer: PeerId) {
        if self.violations.schedule_close(peer) {
            let closes = self.closes.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CLOSE_GRACE).await;
                let _ = closes.send(peer).await;
            });
        }
    }
}

/// Serves message streams until `incoming` ends.
pub(super) async fn serve(shared: Arc<Receiving>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let admitted = {
            let mut open = shared.open.lock().unwrap_or_else(PoisonError::into_inner);
            let count = open.entry(peer).or_default();
            if *count < MESSAGE_STREAMS_PER_PEER {
                *count += 1;
                true
            } else {
                false
            }
        };
        if !admitted {
            tracing::info!(%peer, "dropped a message stream: too many from one peer");
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_stream(&shared, peer, stream).await;
            let mut open = shared.open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = open.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&peer);
                }
            }
        });
    }
}

/// An answer to write: the request's number, the answer, and whether it counts as a violation.
type Due = (u64, Answer, bool);

/// Serves one stream until the sender closes it (every request answered) or breaks the
/// protocol.
async fn serve_stream(shared: &Receiving, peer: PeerId, stream: libp2p::Stream) {
    let (reader, mut writer) = stream.split();
    let mut requests = Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        let frame = read_frame(&mut reader, MAX_REQUEST_FRAME_BYTES).await;
        Some((frame, reader))
    }));
    let mut verdicts: FuturesUnordered<BoxFuture<'static, Due>> = FuturesUnordered::new();
    let mut reading = true;
    loop {
        if !reading && verdicts.is_empty() {
            break;
        }
        let due = tokio::select! {
            frame = requests.next(), if reading && verdicts.len() < MAX_IN_FLIGHT => match frame {
                Some(Ok(Some(item))) => match Request::decode(&item) {
                    Ok(request) => match admit(shared, peer, request) {
                        Admitted::Now(due) => due,
                        Admitted::Later(verdict) => {
                            verdicts.push(verdict);
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "dropped a message stream: a malformed frame");
                        shared.violation(peer);
                        shared.close_if_due(peer);
                        return;
                    }
                },
                Some(Ok(None)) | None => {
                    reading = false;
                    continue;
                }
                Some(Err(e)) => {
                    // A frame over the cap breaks the protocol; a stream that broke does not.
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        tracing::info!(%peer, error = %e, "dropped a message stream: an oversized frame");
                        shared.violation(peer);
                        shared.close_if_due(peer);
                    } else {
                        tracing::debug!(%peer, error = %e, "a message stream broke");
                    }
                    return;
                }
            },
            Some(due) = verdicts.next(), if !verdicts.is_empty() => due,
        };
        let (n, answer, counts) = due;
        if counts {
            shared.violation(peer);
        }
        let frame = message::frame(&Response { n, answer }.encode());
        let written = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!(%peer, error = %e, "a message stream broke before its answer");
            shared.close_if_due(peer);
            return;
        }
        shared.close_if_due(peer);
    }
    let _ = writer.close().await;
}

/// What becomes of a request: answered at once, or once the application's verdict is in.
enum Admitted {
    Now(Due),
    Later(BoxFuture<'static, Due>),
}

/// A refusal to answer with: `permanent` when the same request can never succeed; those count
/// as violations when `counts`.
fn refusal(n: u64, reason: &str, permanent: bool, counts: bool) -> Due {
    let answer = Answer::Refused {
        reason: cut(reason.to_owned(), MAX_REASON_BYTES),
        permanent,
    };
    (n, answer, counts)
}

/// A request arrived: refuse it at once, or hand its envelope to the application.
fn admit(shared: &Receiving, peer: PeerId, request: Request) -> Admitted {
    let Request { n, envelope, meta } = request;
    let certified = shared.registry.certified(&peer);
    let (from, keys) = match certified.as_ref().map(|c| (&c.role, c.keys())) {
        Some((Role::User(user), keys)) => (user.clone(), keys),
        _ => {
            return Admitted::Now(refusal(
                n,
                "only enrolled users may send messages",
                false,
                false,
            ));
        }
    };
    if shared.violations.is_closing(&peer) {
        return Admitted::Now(refusal(
            n,
            "too many protocol violations on this connection",
            true,
            false,
        ));
    }
    // No honest sender produces these: the same request can never succeed.
    if !meta_within_bounds(&meta) {
        tracing::info!(%from, "refused a message: its metadata is too large");
        return Admitted::Now(refusal(n, "the message metadata is too large", true, true));
    }
    if envelope.len() > MAX_ENVELOPE_BYTES {
        tracing::info!(%from, size = envelope.len(), "refused a message: its envelope is too large");
        return Admitted::Now(refusal(n, "the envelope is too large", true, true));
    }
    let digest = message::digest(&envelope);
    let (reply, verdict) = oneshot::channel();
    let inbound = Inbound {
        from,
        keys,
        envelope,
        meta,
        reply,
    };
    if shared.inbound.try_send(inbound).is_err() {
        return Admitted::Now(refusal(
            n,
            "the recipient is busy; retry later",
            false,
            false,
        ));
    }
    let device = shared.device.clone();
    Admitted::Later(
        async move {
            match verdict.await {
                Ok(Verdict::Stored) => {
                    let sig = sign_receipt(&device, &parley_domain::Digest(digest));
                    (n, Answer::Receipt { digest, sig }, false)
                }
                Ok(Verdict::RefusedForNow(reason)) => refusal(n, &reason, false, false),
                Ok(Verdict::RejectedForGood(reason)) => refusal(n, &reason, true, true),
                Err(_) => refusal(n, "the recipient is shutting down", false, false),
            }
        }
        .boxed(),
    )
}

/// This device's signature on a receipt for `digest` ([`parley_domain::receipt`]), given only
/// once the application stored the envelope; `None` only if the key cannot sign (an Ed25519
/// key always can).
fn sign_receipt(
    device: &libp2p::identity::Keypair,
    digest: &parley_domain::Digest,
) -> Option<[u8; 64]> {
    device
        .sign(&parley_domain::receipt::signed_message(digest))
        .ok()
        .and_then(|sig| sig.try_into().ok())
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
