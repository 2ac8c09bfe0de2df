//! The one task that owns the swarm: it takes commands from the handle and events from the
//! swarm, and dispatches each to the concern it belongs to.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, swarm::SwarmEvent};
use parley_domain::{PeerKeys, Username};
use parley_usecases::ports::{NodeSnapshot, TransportError};
use tokio::sync::{mpsc, oneshot};

use super::{
    behaviour::{Behaviour, BehaviourEvent},
    directory::{self, LookupReply},
    messaging::{Delivery, Due, Messaging},
    probe::Probes,
};
use crate::{protocol::Meta, registry::Registry, swarm};

/// Where a delivery's or a first contact's answer goes: the recipient's certified keys.
pub(super) type DeliveryReply = oneshot::Sender<Result<PeerKeys, TransportError>>;

/// What the handle asks of the swarm task.
pub(super) enum Command {
    /// Find `user`'s peer id and addresses.
    Lookup {
        user: Username,
        meta: Meta,
        reply: LookupReply,
    },
    /// Send an envelope and wait for its receipt.
    Deliver {
        delivery: Box<Delivery>,
        reply: DeliveryReply,
    },
    /// Connect to `peer` as `to` (holding it to `pinned` keys) and answer with its keys.
    KeysOf {
        to: Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        pinned: Option<PeerKeys>,
        reply: DeliveryReply,
    },
}

/// The swarm and every concern's state.
pub(super) struct Task {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) registry: Registry,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) snapshot: Arc<Mutex<NodeSnapshot>>,
    pub(super) directory: directory::Client,
    pub(super) messaging: Messaging,
    pub(super) probes: Probes,
}

impl Task {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut redial = tokio::time::interval(directory::REDIAL_EVERY);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                // Local work first: finish replies before taking new remote work.
                due = self.messaging.next_due() => match due {
                    Due::Answer { peer, channel, response } => {
                        self.messaging.respond(&mut self.swarm, peer, channel, response);
                    }
                    Due::Disconnect(peer) => {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                },
                Some(command) = commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = redial.tick() => self.directory.redial(&mut self.swarm),
            }
        }
        tracing::debug!("node task stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Lookup { user, meta, reply } => {
                self.directory
                    .lookup(&mut self.swarm, &self.registry, user, meta, reply);
            }
            Command::Deliver { delivery, reply } => {
                self.messaging
                    .deliver(&mut self.swarm, &self.registry, *delivery, reply);
            }
            Command::KeysOf {
                to,
                peer,
                addrs,
                pinned,
                reply,
            } => self.probes.start(
                &mut self.swarm,
                &self.registry,
                to,
                (peer, addrs),
                pinned,
                reply,
            ),
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Messaging(event)) => {
                self.messaging
                    .on_event(&mut self.swarm, &self.registry, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Directory(event)) => {
                self.directory.on_event(event);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if self.directory.is_rendezvous(&peer_id) =>
            {
                tracing::info!(%peer_id, "connected to the rendezvous");
                self.directory.publish(&mut self.swarm, &self.listen_addrs);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.probes.finish(&self.registry, &peer_id, true);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.registry.forget(&peer_id);
                self.messaging.forget(&peer_id);
                if self.directory.is_rendezvous(&peer_id) {
                    self.directory.on_lost();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
                let me = *self.swarm.local_peer_id();
                self.snapshot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .listen_addrs = self
                    .listen_addrs
                    .iter()
                    .map(|a| swarm::with_peer(a, me).to_string())
                    .collect();
                if self.directory.is_connected(&self.swarm) {
                    self.directory.publish(&mut self.swarm, &self.listen_addrs);
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::info!(%send_back_addr, error = %error, "refused an incoming connection");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, error = %error, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    self.probes.finish(&self.registry, &peer, false);
                }
            }
            _ => {}
        }
    }
}
