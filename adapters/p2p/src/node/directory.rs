//! The directory client: publishing this peer's addresses at the rendezvous, keeping that
//! connection up, and looking users up there.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use libp2p::{
    Multiaddr, PeerId, Swarm,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::dial_opts::DialOpts,
};
use parley_domain::{PeerKeys, Role, Username};
use parley_usecases::ports::{DeviceAddress, DirectoryError, NodeSnapshot};
use tokio::sync::oneshot;

use super::behaviour::{self, describe, request_response_config};
use crate::{
    pki,
    protocol::{
        DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse, MAX_DIRECTORY_REQUEST_BYTES,
        MAX_DIRECTORY_RESPONSE_BYTES, MAX_LOOKUP_DEVICES, Meta,
    },
    registry::Registry,
};

/// `/parley/directory/2` streams open at once on one connection.
pub const DIRECTORY_STREAMS_PER_CONNECTION: usize = 32;
/// How often a lost rendezvous connection is re-dialled.
pub(super) const REDIAL_EVERY: Duration = Duration::from_secs(2);

/// The directory protocol, as a client only (a peer answers no look-ups).
pub(super) type Behaviour = request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_DIRECTORY_REQUEST_BYTES)
            .set_response_size_maximum(MAX_DIRECTORY_RESPONSE_BYTES),
        [(DIRECTORY_PROTOCOL, ProtocolSupport::Outbound)],
        request_response_config(DIRECTORY_STREAMS_PER_CONNECTION),
    )
}

/// Where one device of a user can be dialled, as the directory said: parsed once, when the
/// answer arrives, and handed to the transport as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// The peer id the device's certificate key gives.
    pub peer: PeerId,
    /// Addresses the peer listens on (empty when a verified connection is already open).
    pub addrs: Vec<Multiaddr>,
}

impl DeviceAddress for PeerAddress {
    fn has_device_key(&self, keys: &PeerKeys) -> bool {
        pki::peer_id(&keys.ed25519).is_ok_and(|peer| peer == self.peer)
    }
}

/// Where a look-up's answer goes: every device the directory lists.
pub(super) type LookupReply = oneshot::Sender<Result<Vec<PeerAddress>, DirectoryError>>;

/// The devices of `user` with a verified connection open now, as their certificates proved
/// them (no addresses: the connection is there).
pub(super) fn connected(
    swarm: &PeerSwarm,
    registry: &Registry,
    user: &Username,
) -> Vec<PeerAddress> {
    registry
        .peers_of(&Role::User(user.clone()))
        .into_iter()
        .filter(|peer| swarm.is_connected(peer))
        .map(|peer| PeerAddress {
            peer,
            addrs: Vec::new(),
        })
        .collect()
}

/// The rendezvous: its peer id and its addresses without `/p2p/<id>`.
pub(super) struct Rendezvous {
    pub(super) peer: PeerId,
    pub(super) addrs: Vec<Multiaddr>,
}

/// The client's state: the rendezvous (if configured), the look-ups in flight, and the
/// publication in flight with the one to send after it.
pub(super) struct Client {
    rendezvous: Option<Rendezvous>,
    lookups: HashMap<OutboundRequestId, LookupReply>,
    snapshot: Arc<Mutex<NodeSnapshot>>,
    /// At most one publication is in flight: two sent at once may be handled in either order,
    /// and the older one would then replace the newer (a circuit address published a moment
    /// after the direct ones would be lost).
    publishing: Option<OutboundRequestId>,
    /// The addresses to publish once the one in flight is answered (the latest asked for).
    next: Option<Vec<Multiaddr>>,
}

type PeerSwarm = Swarm<behaviour::Behaviour>;

impl Client {
    pub(super) fn new(rendezvous: Option<Rendezvous>, snapshot: Arc<Mutex<NodeSnapshot>>) -> Self {
        Self {
            rendezvous,
            lookups: HashMap::new(),
            snapshot,
            publishing: None,
            next: None,
        }
    }

    /// True when `peer` is the rendezvous.
    pub(super) fn is_rendezvous(&self, peer: &PeerId) -> bool {
        self.rendezvous.as_ref().is_some_and(|r| r.peer == *peer)
    }

    /// The rendezvous's peer id, if there is one.
    pub(super) fn peer(&self) -> Option<PeerId> {
        self.rendezvous.as_ref().map(|r| r.peer)
    }

    /// True while a connection to the rendezvous is open.
    pub(super) fn is_connected(&self, swarm: &PeerSwarm) -> bool {
        self.rendezvous
            .as_ref()
            .is_some_and(|r| swarm.is_connected(&r.peer))
    }

    fn set_connected(&self, connected: bool) {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rendezvous_connected = connected;
    }

    /// Dials the rendezvous unless connected.
    pub(super) fn redial(&self, swarm: &mut PeerSwarm) {
        let Some(Rendezvous { peer, addrs }) = &self.rendezvous else {
            return;
        };
        if swarm.is_connected(peer) {
            return;
        }
        let opts = DialOpts::peer_id(*peer).addresses(addrs.clone()).build();
        if let Err(e) = swarm.dial(opts) {
            tracing::debug!(error = %e, "rendezvous dial not started");
        }
    }

    /// Publishes `listen_addrs` at the rendezvous: now, or — while a publication is in
    /// flight — as soon as it is answered.
    pub(super) fn publish(&mut self, swarm: &mut PeerSwarm, listen_addrs: &[Multiaddr]) {
        if self.publishing.is_some() {
            self.next = Some(listen_addrs.to_vec());
            return;
        }
        let Some(Rendezvous { peer, .. }) = &self.rendezvous else {
            return;
        };
        let addrs: Vec<String> = listen_addrs.iter().map(ToString::to_string).collect();
        tracing::debug!(?addrs, "publishing our addresses");
        let id = swarm.behaviour_mut().directory.send_request(
            peer,
            DirectoryRequest::Publish {
                addrs,
                meta: Meta::new(),
            },
        );
        self.publishing = Some(id);
    }

    /// The publication in flight is answered (or failed): the waiting one goes out.
    fn published(&mut self, swarm: &mut PeerSwarm) {
        self.publishing = None;
        if let Some(next) = self.next.take() {
            self.publish(swarm, &next);
        }
    }

    /// The rendezvous connection is gone: status says "not connected" until published again
    /// (the reconnection publishes afresh).
    pub(super) fn on_lost(&mut self) {
        tracing::warn!("lost the rendezvous connection; re-dialling");
        self.set_connected(false);
        self.publishing = None;
        self.next = None;
    }

    /// Looks `user` up at the rendezvous: every device it lists. (Which connected devices need
    /// no look-up is the use cases' choice: see [`connected`].)
    pub(super) fn lookup(
        &mut self,
        swarm: &mut PeerSwarm,
        user: Username,
        meta: Meta,
        reply: LookupReply,
    ) {
        let Some(Rendezvous { peer, addrs }) = &self.rendezvous else {
            let _ = reply.send(Err(DirectoryError::Unavailable(
                "no rendezvous is configured".into(),
            )));
            return;
        };
        let request = DirectoryRequest::Lookup {
            username: user.to_string(),
            meta,
        };
        let id = swarm.behaviour_mut().directory.send_request_with_addresses(
            peer,
            request,
            addrs.clone(),
        );
        self.lookups.insert(id, reply);
    }

    /// Handles an event of the directory protocol; true when it is the rendezvous
    /// acknowledging this peer's publication (a (re)connection).
    pub(super) fn on_event(
        &mut self,
        swarm: &mut PeerSwarm,
        event: request_response::Event<DirectoryRequest, DirectoryResponse>,
    ) -> bool {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let published = self.on_response(request_id, response);
                if self.publishing == Some(request_id) {
                    self.published(swarm);
                }
                published
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.lookups.remove(&request_id) {
                    let _ = reply.send(Err(DirectoryError::Unavailable(describe(&error))));
                } else {
                    tracing::warn!(error = %error, "publishing to the rendezvous failed");
                    if self.publishing == Some(request_id) {
                        self.published(swarm);
                    }
                }
                false
            }
            // Requests cannot arrive (the protocol is outbound only); failures to answer them
            // and sent answers therefore cannot either.
            request_response::Event::Message { .. }
            | request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => false,
        }
    }

    /// True for an acknowledged publication.
    fn on_response(&mut self, request_id: OutboundRequestId, response: DirectoryResponse) -> bool {
        let answer = match response {
            DirectoryResponse::Published => {
                // Only now is this peer findable: status says "connected" from here on.
                self.set_connected(true);
                return true;
            }
            DirectoryResponse::Lookup { devices } => devices
                .iter()
                .take(MAX_LOOKUP_DEVICES)
                .map(|found| match found.peer_id.parse() {
                    // An address that does not parse cannot be dialled: it is left out.
                    Ok(peer) => Ok(PeerAddress {
                        peer,
                        addrs: found.addrs.iter().filter_map(|a| a.parse().ok()).collect(),
                    }),
                    Err(_) => Err(DirectoryError::Unavailable(
                        "the rendezvous answered with an invalid peer id".into(),
                    )),
                })
                .collect(),
            DirectoryResponse::RateLimited { retry_after_ms } => {
                Err(DirectoryError::Refused(format!(
                    "too many look-ups; retry in {} s",
                    retry_after_ms.div_ceil(1000)
                )))
            }
            DirectoryResponse::Refused { reason } => Err(DirectoryError::Refused(reason)),
        };
        if let Some(reply) = self.lookups.remove(&request_id) {
            let _ = reply.send(answer);
        }
        false
    }
}
