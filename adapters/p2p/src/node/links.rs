//! The sending side of `/parley/message/3`: one long-lived stream per connected contact,
//! opened on the first delivery and reused by every later one, each stream run by a task of
//! its own (outside the swarm task, over `libp2p-stream`'s control, as attachments are).
//!
//! Deliveries are pipelined: each request is numbered and written at once, up to
//! [`MAX_IN_FLIGHT`] waiting for their answers, which may come in any order and are matched by
//! number. When the stream breaks (or an answer is overdue), every request written on it and
//! waiting fails as `NoReceipt`, the task ends, and the next delivery opens a new stream; a
//! request the stream never took is sent once more, on a new stream.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::PeerId;
use parley_usecases::ports::TransportError;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::{
    message::{
        self, Answer, MAX_IN_FLIGHT, MAX_RESPONSE_FRAME_BYTES, MESSAGE_PROTOCOL, Request, Response,
        read_frame,
    },
    protocol::Meta,
};

/// How long a delivery waits for its answer once written; an answer overdue breaks the stream.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries queued for one stream ahead of those in flight; more wait to be queued.
const QUEUE: usize = 64;
/// How long a request that was never written waits before it is sent on a new stream.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How long opening a stream may take on a connection that is up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An envelope for the stream's task to send, and where its answer goes.
struct Outgoing {
    envelope: Vec<u8>,
    meta: Meta,
    reply: oneshot::Sender<Result<Answer, Failure>>,
}

/// Why a request got no answer.
enum Failure {
    /// The stream did not take it: it could not be opened, ended before the request's turn, or
    /// failed the write. Sent again on a new stream (the recipient stores a copy once).
    Unsent(String),
    /// It was written, and the stream broke (or the answer was overdue) before its answer.
    Lost(String),
}

/// One contact's stream: its task's queue and the requests it holds.
struct Link {
    queue: mpsc::Sender<Outgoing>,
    in_flight: Arc<AtomicUsize>,
}

/// Every contact's stream; cheap to clone.
#[derive(Clone, Default)]
pub(super) struct Links {
    links: Arc<Mutex<HashMap<PeerId, Link>>>,
    opened: Arc<AtomicU64>,
}

impl Links {
    /// Sends `envelope` to `peer` over its stream (opened if there is none) and waits for the
    /// answer. A request that a stream ending at that moment never wrote is sent once more, on
    /// a new stream. Cancel-safe: a cancelled delivery's answer is dropped when it comes.
    pub(super) async fn send(
        &self,
        control: &libp2p_stream::Control,
        peer: PeerId,
        envelope: Vec<u8>,
        meta: Meta,
    ) -> Result<Answer, TransportError> {
        let mut tries = 2;
        loop {
            tries -= 1;
            let (reply, answer) = oneshot::channel();
            let outgoing = Outgoing {
                envelope: envelope.clone(),
                meta: meta.clone(),
                reply,
            };
            let unsent = || Failure::Unsent("the message stream closed".into());
            let outcome = match self.queue(control, peer).send(outgoing).await {
                Ok(()) => answer.await.unwrap_or_else(|_| Err(unsent())),
                Err(_) => Err(unsent()),
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                // Give the swarm a moment to take note of a connection that just closed.
                Err(Failure::Unsent(_)) if tries > 0 => tokio::time::sleep(RETRY_AFTER).await,
                Err(Failure::Unsent(reason) | Failure::Lost(reason)) => {
                    return Err(TransportError::NoReceipt(reason));
                }
            }
        }
    }

    /// The queue of `peer`'s stream task, started if there is none running.
    fn queue(&self, control: &libp2p_stream::Control, peer: PeerId) -> mpsc::Sender<Outgoing> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(&peer)
            && !link.queue.is_closed()
        {
            return link.queue.clone();
        }
        let (queue, rx) = mpsc::channel(QUEUE);
        let in_flight = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(
            control.clone(),
            peer,
            rx,
            in_flight.clone(),
            self.opened.clone(),
        ));
        links.insert(
            peer,
            Link {
                queue: queue.clone(),
                in_flight,
            },
        );
        queue
    }

    /// Whether a request to `peer` waits for its answer.
    pub(super) fn in_flight_to(&self, peer: &PeerId) -> bool {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .is_some_and(|l| l.in_flight.load(Ordering::Relaxed) > 0)
    }

    /// Message streams opened so far.
    pub(super) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Lets every stream task end once its requests are answered.
    pub(super) fn close_all(&self) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A request written and waiting for its answer.
struct Pending {
    reply: oneshot::Sender<Result<Answer, Failure>>,
    due: Instant,
}

/// Runs `peer`'s stream: opens it, writes what `queue` brings, matches answers by number, and
/// fails whatever waits when the stream breaks.
async fn run(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut queue: mpsc::Receiver<Outgoing>,
    in_flight: Arc<AtomicUsize>,
    opened: Arc<AtomicU64>,
) {
    let stream =
        match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, MESSAGE_PROTOCOL)).await
        {
            Ok(Ok(stream)) => stream,
            failure => {
                let reason = match failure {
                    Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                        "the other side does not speak the protocol".to_owned()
                    }
                    Ok(Err(e)) => format!("no message stream: {e}"),
                    _ => "no message stream within 10 s".to_owned(),
                };
                refuse_queued(&mut queue, &reason).await;
                return;
            }
        };
    opened.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, "message stream opened");
    let (reader, mut writer) = stream.split();
    let mut answers = Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        let frame = read_frame(&mut reader, MAX_RESPONSE_FRAME_BYTES).await;
        Some((frame, reader))
    }));
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut next = 0u64;
    let mut open = true;
    let reason = loop {
        if !open && pending.is_empty() {
            break "closed".to_owned();
        }
        let overdue = pending.values().map(|p| p.due).min();
        tokio::select! {
            frame = answers.next() => match frame {
                Some(Ok(Some(item))) => match Response::decode(&item) {
                    Ok(Response { n, answer }) => {
                        if let Some(waiting) = pending.remove(&n) {
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                            let _ = waiting.reply.send(Ok(answer));
                        }
                    }
                    Err(e) => break format!("the answer is unreadable: {e}"),
                },
                Some(Ok(None)) | None => break "the stream closed before the answer".to_owned(),
                Some(Err(e)) => break format!("the stream broke: {e}"),
            },
            outgoing = queue.recv(), if open && pending.len() < MAX_IN_FLIGHT => match outgoing {
                Some(Outgoing { envelope, meta, reply }) => {
                    let n = next;
                    next += 1;
                    let frame = message::frame(&Request { n, envelope, meta }.encode());
                    let written = async {
                        writer.write_all(&frame).await?;
                        writer.flush().await
                    };
                    if let Err(e) = written.await {
                        // The stream could not take it (its connection closed under it): sent
                        // again on a new stream. Should part of it have reached the recipient,
                        // a second copy is stored once, as any retry is.
                        let _ = reply.send(Err(Failure::Unsent(format!("the stream broke: {e}"))));
                        break format!("the stream broke: {e}");
                    }
                    pending.insert(n, Pending { reply, due: Instant::now() + ANSWER_TIMEOUT });
                    in_flight.fetch_add(1, Ordering::Relaxed);
                }
                None => open = false,
            },
            () = sleep_until(overdue) => break "timed out waiting for an answer".to_owned(),
        }
    };
    tracing::debug!(%peer, %reason, waiting = pending.len(), "message stream ended");
    in_flight.store(0, Ordering::Relaxed);
    for (_, waiting) in pending {
        let _ = waiting.reply.send(Err(Failure::Lost(reason.clone())));
    }
    refuse_queued(&mut queue, &reason).await;
    let _ = writer.close().await;
}

/// Closes `queue` and answers what waits in it, never written, as [`Failure::Unsent`].
async fn refuse_queued(queue: &mut mpsc::Receiver<Outgoing>, reason: &str) {
    queue.close();
    while let Some(outgoing) = queue.recv().await {
        let _ = outgoing.reply.send(Err(Failure::Unsent(reason.to_owned())));
    }
}

/// Sleeps until `due`, or for ever without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
