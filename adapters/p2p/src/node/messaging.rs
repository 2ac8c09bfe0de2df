//! Messaging: sending an envelope and waiting for its receipt, and the inbound server that
//! hands arriving envelopes to the application and answers with its verdict.
//!
//! A peer that breaks the message protocol — a request that does not parse or is too large, or
//! an envelope the application rejects for good (forged, altered, not for us) — is counted by
//! the [`Violations`] policy.

use std::collections::HashMap;

use base64::Engine as _;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, Swarm,
    request_response::{
        self, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel,
    },
    swarm::{
        ConnectionId,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use parley_domain::{Digest, PeerKeys, Role, Username};
use parley_usecases::ports::TransportError;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{
    behaviour::{self, describe, request_response_config},
    inbound::{Inbound, Verdict},
    probe,
    task::DeliveryReply,
    violations::Violations,
};
use crate::{
    protocol::{
        MAX_ENVELOPE_BASE64, MAX_MESSAGE_REQUEST_BYTES, MAX_MESSAGE_RESPONSE_BYTES,
        MAX_REASON_BYTES, MESSAGE_PROTOCOL, MessageRequest, MessageResponse, meta_within_bounds,
    },
    registry::{Expectation, Refusal, Registry},
};

/// `/parley/message/2` streams open at once on one connection, in either direction (libp2p's
/// request-response counts both); an inbound stream beyond it is dropped unanswered.
pub const MESSAGE_STREAMS_PER_CONNECTION: usize = 64;

/// The message protocol, both ways.
pub(super) type Behaviour = request_response::json::Behaviour<MessageRequest, MessageResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_MESSAGE_REQUEST_BYTES)
            .set_response_size_maximum(MAX_MESSAGE_RESPONSE_BYTES),
        [(MESSAGE_PROTOCOL, ProtocolSupport::Full)],
        request_response_config(MESSAGE_STREAMS_PER_CONNECTION),
    )
}

type PeerSwarm = Swarm<behaviour::Behaviour>;
type Reply = (PeerId, ResponseChannel<MessageResponse>, MessageResponse);

/// Local work of the messaging concern, in the order it came due.
pub(super) enum Due {
    /// The application's verdict on a message from `peer`, to send as `response`.
    Answer {
        peer: PeerId,
        channel: ResponseChannel<MessageResponse>,
        response: MessageResponse,
    },
    /// `peer` is past its violations and its grace: close its connections.
    Disconnect(PeerId),
}

/// An envelope to deliver, as the swarm task receives it.
pub(super) struct Delivery {
    /// The recipient, as the certificate must name it.
    pub(super) to: Username,
    /// The keys the recipient must present, when pinned.
    pub(super) pinned: Option<PeerKeys>,
    /// Where to reach it.
    pub(super) peer: PeerId,
    /// Its addresses (may be empty when connected).
    pub(super) addrs: Vec<Multiaddr>,
    /// The request to send.
    pub(super) request: MessageRequest,
    /// The digest the receipt must name.
    pub(super) digest: Digest,
}

struct Pending {
    peer: PeerId,
    to: Username,
    digest: Digest,
    reply: DeliveryReply,
}

/// Deliveries waiting for their receipt, and inbound messages waiting for the application.
pub(super) struct Messaging {
    inbound: mpsc::Sender<Inbound>,
    deliveries: HashMap<OutboundRequestId, Pending>,
    /// The dials deliveries started and that have not ended yet, and to whom.
    dialing: HashMap<ConnectionId, PeerId>,
    replies: FuturesUnordered<BoxFuture<'static, Reply>>,
    violations: Violations,
}

/// A refusal to answer with: `permanent` when the same request can never succeed.
fn refusal(reason: &str, permanent: bool) -> MessageResponse {
    MessageResponse::Refused {
        reason: reason.to_owned(),
        permanent,
    }
}

impl Messaging {
    pub(super) fn new(inbound: mpsc::Sender<Inbound>) -> Self {
        Self {
            inbound,
            deliveries: HashMap::new(),
            dialing: HashMap::new(),
            replies: FuturesUnordered::new(),
            violations: Violations::default(),
        }
    }

    /// A connection attempt ended (established or failed): a dial of ours is over.
    pub(super) fn dial_ended(&mut self, connection: ConnectionId) {
        self.dialing.remove(&connection);
    }

    /// Sends `delivery`, holding an existing connection to the identity it is meant for.
    pub(super) fn deliver(
        &mut self,
        swarm: &mut PeerSwarm,
        registry: &Registry,
        delivery: Delivery,
        reply: DeliveryReply,
    ) {
        let Delivery {
            to,
            pinned,
            peer,
            addrs,
            request,
            digest,
        } = delivery;
        // An existing connection was checked against whatever was expected when it opened;
        // hold it to this delivery's expectation too.
        if let Some(certified) = registry.certified(&peer)
            && let Err(e) = probe::hold_to(&certified, &to, pinned)
        {
            let _ = reply.send(Err(e));
            return;
        }
        registry.set_expectation(
            peer,
            Expectation {
                role: Role::User(to.clone()),
                keys: pinned,
            },
        );
        // Dialled here, whatever other dial to the peer is under way (unless it is a
        // delivery's own): a hole punch's dial to an address that will not answer would
        // otherwise hold the request until it times out (and its failure would fail the
        // request with it), never trying the addresses the directory gave, such as the relay's
        // circuit. Deliveries share one dial per peer, so retries do not pile up circuits.
        if !addrs.is_empty()
            && !swarm.is_connected(&peer)
            && !self.dialing.values().any(|p| *p == peer)
        {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::Always)
                .build();
            let connection = opts.connection_id();
            if let Err(e) = swarm.dial(opts) {
                let _ = reply.send(Err(TransportError::Unreachable(e.to_string())));
                return;
            }
            self.dialing.insert(connection, peer);
        }
        let id = swarm.behaviour_mut().messaging.send_request(&peer, request);
        self.deliveries.insert(
            id,
            Pending {
                peer,
                to,
                digest,
                reply,
            },
        );
    }

    /// Waits for the next piece of local work: a verdict of the application to send as the
    /// answer, or a peer to disconnect for its violations. Never resolves while there is none.
    /// Cancel-safe.
    pub(super) async fn next_due(&mut self) -> Due {
        let replies = async {
            loop {
                if self.replies.is_empty() {
                    std::future::pending::<()>().await;
                }
                if let Some(reply) = self.replies.next().await {
                    return reply;
                }
            }
        };
        tokio::select! {
            (peer, channel, response) = replies => Due::Answer { peer, channel, response },
            peer = self.violations.next_due() => Due::Disconnect(peer),
        }
    }

    /// Whether a delivery to `peer` waits for its receipt.
    pub(super) fn in_flight_to(&self, peer: &PeerId) -> bool {
        self.deliveries.values().any(|p| p.peer == *peer)
    }

    /// Forgets `peer`'s violations once its last connection closed.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.violations.forget(peer);
    }

    /// Handles an event of the message protocol.
    pub(super) fn on_event(
        &mut self,
        swarm: &mut PeerSwarm,
        registry: &Registry,
        event: request_response::Event<MessageRequest, MessageResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(swarm, registry, peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_response(registry, request_id, response),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_outbound_failure(registry, request_id, &error),
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "inbound message failed");
                // A request that does not parse, or is cut at the size cap, breaks the
                // protocol; a timeout or a closed connection does not.
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    self.violations.count(peer);
                }
                self.violations.close_if_due(peer);
            }
            request_response::Event::ResponseSent { peer, .. } => {
                self.violations.close_if_due(peer);
            }
        }
    }

    fn on_response(
        &mut self,
        registry: &Registry,
        request_id: OutboundRequestId,
        response: MessageResponse,
    ) {
        let Some(Pending {
            peer,
            digest,
            reply,
            ..
        }) = self.deliveries.remove(&request_id)
        else {
            return;
        };
        // The answer came over the connection, so its certificate is still on record.
        let keys = registry.certified(&peer).map(|c| c.keys());
        let _ = reply.send(match (response, keys) {
            (MessageResponse::Receipt { digest: named }, Some(keys))
                if Digest::parse(&named) == Some(digest) =>
            {
                Ok(keys)
            }
            (MessageResponse::Receipt { .. }, Some(_)) => Err(TransportError::NoReceipt(
                "the receipt names another envelope".into(),
            )),
            (MessageResponse::Receipt { .. }, None) => Err(TransportError::NoReceipt(
                "the connection closed with the receipt".into(),
            )),
            (MessageResponse::Refused { reason, permanent }, _) => Err(if permanent {
                TransportError::Rejected(reason)
            } else {
                TransportError::Refused(reason)
            }),
        });
    }

    fn on_outbound_failure(
        &mut self,
        registry: &Registry,
        request_id: OutboundRequestId,
        error: &OutboundFailure,
    ) {
        let Some(Pending {
            peer, to, reply, ..
        }) = self.deliveries.remove(&request_id)
        else {
            return;
        };
        let answer = match (error, registry.take_refusal(&peer)) {
            (OutboundFailure::DialFailure, Some(Refusal::WrongIdentity(reason))) => {
                tracing::warn!(%peer, %reason, "refused a peer that is not who we dialled");
                Err(TransportError::WrongIdentity { expected: to })
            }
            (OutboundFailure::DialFailure, Some(Refusal::KeysChanged(presented))) => {
                tracing::warn!(%peer, user = %to, "refused a peer whose keys are not the pinned ones");
                Err(TransportError::KeysChanged { presented })
            }
            (OutboundFailure::DialFailure, None) => {
                Err(TransportError::Unreachable(describe(error)))
            }
            _ => Err(TransportError::NoReceipt(describe(error))),
        };
        let _ = reply.send(answer);
    }

    /// An envelope arrived: refuse it at once, or hand it to the application and answer with
    /// its verdict later (see [`Self::next_due`]).
    fn on_request(
        &mut self,
        swarm: &mut PeerSwarm,
        registry: &Registry,
        peer: PeerId,
        request: MessageRequest,
        channel: ResponseChannel<MessageResponse>,
    ) {
        let certified = registry.certified(&peer);
        let (from, keys) = match certified.as_ref().map(|c| (&c.role, c.keys())) {
            Some((Role::User(user), keys)) => (user.clone(), keys),
            _ => {
                let _ = swarm.behaviour_mut().messaging.send_response(
                    channel,
                    refusal("only enrolled users may send messages", false),
                );
                return;
            }
        };
        if self.violations.is_closing(&peer) {
            let _ = swarm.behaviour_mut().messaging.send_response(
                channel,
                refusal("too many protocol violations on this connection", true),
            );
            return;
        }
        let envelope = match parse_request(&request) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::info!(%from, %reason, "refused a malformed message");
                // No honest sender produces it: the same request can never succeed.
                self.respond(swarm, peer, channel, refusal(reason, true));
                return;
            }
        };
        let digest = digest_of(&envelope).to_string();
        let (reply, rx) = oneshot::channel();
        let inbound = Inbound {
            from,
            keys,
            envelope,
            meta: request.meta,
            reply,
        };
        if self.inbound.try_send(inbound).is_err() {
            let _ = swarm.behaviour_mut().messaging.send_response(
                channel,
                refusal("the recipient is busy; retry later", false),
            );
            return;
        }
        self.replies.push(
            async move {
                let response = match rx.await {
                    Ok(Verdict::Stored) => MessageResponse::Receipt { digest },
                    Ok(Verdict::RefusedForNow(reason)) => MessageResponse::Refused {
                        reason,
                        permanent: false,
                    },
                    Ok(Verdict::RejectedForGood(reason)) => MessageResponse::Refused {
                        reason,
                        permanent: true,
                    },
                    Err(_) => refusal("the recipient is shutting down", false),
                };
                (peer, channel, response)
            }
            .boxed(),
        );
    }

    /// Sends `response` to `peer`; a refusal for good counts as a violation.
    pub(super) fn respond(
        &mut self,
        swarm: &mut PeerSwarm,
        peer: PeerId,
        channel: ResponseChannel<MessageResponse>,
        response: MessageResponse,
    ) {
        let response = match response {
            MessageResponse::Refused { reason, permanent } => {
                if permanent {
                    self.violations.count(peer);
                }
                MessageResponse::Refused {
                    reason: cut(reason, MAX_REASON_BYTES),
                    permanent,
                }
            }
            receipt @ MessageResponse::Receipt { .. } => receipt,
        };
        if swarm
            .behaviour_mut()
            .messaging
            .send_response(channel, response)
            .is_err()
        {
            // The stream is gone (closed or timed out): nothing left to wait for.
            self.violations.close_if_due(peer);
        }
    }
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

/// SHA-256 of an envelope, as receipts name it.
pub(super) fn digest_of(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// The base64 of an envelope, as a `/parley/message/2` request carries it.
pub(super) fn encode_envelope(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The envelope bytes of a `/parley/message/2` request, or why it is refused before the
/// envelope is read (metadata out of bounds, too long, not base64). Public for the fuzz
/// targets.
#[doc(hidden)]
pub fn parse_request(request: &MessageRequest) -> Result<Vec<u8>, &'static str> {
    if !meta_within_bounds(&request.meta) {
        return Err("the message metadata is too large");
    }
    if request.envelope.len() > MAX_ENVELOPE_BASE64 {
        return Err("the envelope is too large");
    }
    base64::engine::general_purpose::STANDARD
        .decode(&request.envelope)
        .map_err(|_| "the envelope is not valid base64")
}
