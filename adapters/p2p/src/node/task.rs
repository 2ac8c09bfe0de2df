//! The one task that owns the swarm: it takes commands from the handle and events from the
//! swarm, and dispatches each to the concern it belongs to.

use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, swarm::SwarmEvent};
use parley_domain::{PeerKeys, Username};
use parley_usecases::ports::{NodeSnapshot, Reachability, TransportError};
use tokio::sync::{mpsc, oneshot};

use super::{
    account,
    asking::Reply,
    behaviour::{Behaviour, BehaviourEvent},
    directory::{self, LookupReply, PeerAddress},
    mailbox::{self, MailboxReply},
    messaging::{Due, Messaging, Reach},
    nat::{self, Nat},
    prekeys,
    probe::Probes,
    relay::Reservation,
    renew::{self, Renewal},
};
use crate::{
    account::{AccountRequest, AccountResponse},
    prekeys::{PrekeysRequest, PrekeysResponse},
    protocol::{MailboxRequest, Meta},
    registry::Registry,
    swarm,
};

/// Where a delivery's or a first contact's answer goes: the recipient's certified keys.
pub(super) type DeliveryReply = oneshot::Sender<Result<PeerKeys, TransportError>>;

/// What the handle asks of the swarm task.
pub(super) enum Command {
    /// Find the peer ids and addresses of `user`'s devices at the rendezvous.
    Lookup {
        user: Username,
        meta: Meta,
        reply: LookupReply,
    },
    /// Name `user`'s devices with a verified connection open now.
    Connected {
        user: Username,
        reply: oneshot::Sender<Vec<PeerAddress>>,
    },
    /// Answer with the keys of a verified connection to the peer a delivery is for, dialling
    /// it when there is none.
    Reach {
        reach: Box<Reach>,
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
    /// Send a mailbox request to the rendezvous and wait for its answer.
    Mailbox {
        request: MailboxRequest,
        reply: MailboxReply,
    },
    /// Send a prekey request to the rendezvous and wait for its answer.
    Prekeys {
        request: PrekeysRequest,
        reply: Reply<PrekeysResponse>,
    },
    /// Send an account request to the rendezvous and wait for its answer.
    Account {
        request: AccountRequest,
        reply: Reply<AccountResponse>,
    },
}

/// The swarm and every concern's state.
pub(super) struct Task {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) registry: Registry,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) snapshot: Arc<Mutex<NodeSnapshot>>,
    pub(super) directory: directory::Client,
    pub(super) mailbox: mailbox::Client,
    pub(super) prekeys: prekeys::Client,
    pub(super) account: account::Client,
    pub(super) messaging: Messaging,
    pub(super) probes: Probes,
    pub(super) reservation: Reservation,
    pub(super) nat: Nat,
    pub(super) renewal: Renewal,
}

impl Task {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut redial = tokio::time::interval(directory::REDIAL_EVERY);
        let mut punch = tokio::time::interval(nat::CHECK_EVERY);
        let mut renew = tokio::time::interval(renew::CHECK_EVERY);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                // Local work first: finish replies before taking new remote work.
                due = self.messaging.next_due() => match due {
                    Due::Disconnect(peer) => {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                },
                Some(command) = commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = redial.tick() => self.directory.redial(&mut self.swarm),
                _ = renew.tick() => self.renew(),
                _ = punch.tick() => {
                    self.nat.retry_due(&mut self.swarm);
                    let messaging = &self.messaging;
                    self.nat
                        .close_superseded(&mut self.swarm, |peer| messaging.in_flight_to(peer));
                }
            }
        }
        tracing::debug!("node task stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Lookup { user, meta, reply } => {
                self.directory.lookup(&mut self.swarm, user, meta, reply);
            }
            Command::Connected { user, reply } => {
                let _ = reply.send(directory::connected(&self.swarm, &self.registry, &user));
            }
            Command::Reach { reach, reply } => {
                self.messaging
                    .reach(&mut self.swarm, &self.registry, *reach, reply);
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
            Command::Mailbox { request, reply } => {
                self.mailbox.request(&mut self.swarm, request, reply);
            }
            Command::Prekeys { request, reply } => {
                self.prekeys
                    .ask(&mut self.swarm, |b| &mut b.prekeys, request, reply);
            }
            Command::Account { request, reply } => {
                self.account
                    .ask(&mut self.swarm, |b| &mut b.account, request, reply);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Directory(event)) => {
                let published = self.directory.on_event(&mut self.swarm, event);
                if published {
                    self.mailbox.on_published();
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(event)) => {
                self.mailbox
                    .on_event(&mut self.swarm, &self.registry, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Prekeys(event)) => self.prekeys.on_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Account(event)) => self.account.on_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Renew(event)) => {
                let rendezvous = self.directory.peer();
                self.renewal.on_event(rendezvous, event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                self.reservation.on_event(&event);
                self.publish();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                if self.nat.on_autonat(event) {
                    self.want_relay();
                }
                self.refresh();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.nat.on_dcutr(&event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                self.nat.on_ping(&mut self.swarm, &event);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } if self.directory.is_rendezvous(&peer_id) => {
                self.messaging
                    .established(&self.registry, &peer_id, connection_id);
                tracing::info!(%peer_id, "connected to the rendezvous");
                self.publish();
                self.want_relay();
                self.renew();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.messaging
                    .established(&self.registry, &peer_id, connection_id);
                self.nat.on_established(peer_id, connection_id, &endpoint);
                self.probes.finish(&self.registry, &peer_id, true);
                self.refresh();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.nat.on_closed(connection_id, peer_id, num_established);
                if num_established == 0 {
                    self.registry.forget(&peer_id);
                    self.messaging.forget(&peer_id);
                    if self.directory.is_rendezvous(&peer_id) {
                        self.directory.on_lost();
                        self.reservation.lost(&mut self.swarm);
                    }
                }
                self.refresh();
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } if self.reservation.is_ours(listener_id) => {
                tracing::info!(%address, "reachable through the relay");
                self.reservation.add_addr(address);
                self.publish();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if self.reservation.is_ours(listener_id) => {
                let reason = match reason {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.reservation.on_closed(&reason);
                self.publish();
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
                self.publish();
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::info!(%send_back_addr, error = %error, "refused an incoming connection");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                self.messaging.dial_failed(
                    &self.registry,
                    peer_id,
                    connection_id,
                    &error.to_string(),
                );
                tracing::debug!(?peer_id, error = %error, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    self.probes.finish(&self.registry, &peer, false);
                }
            }
            _ => {}
        }
    }

    /// Asks for a new certificate when renewal is due and the rendezvous is connected.
    fn renew(&mut self) {
        let connected = self
            .directory
            .peer()
            .filter(|_| self.directory.is_connected(&self.swarm));
        self.renewal
            .tick(&mut self.swarm.behaviour_mut().renew, connected);
    }

    /// Holds a relay slot unless AutoNAT found the device reachable from outside.
    fn want_relay(&mut self) {
        let wanted = self.directory.is_connected(&self.swarm)
            && self.nat.reachability() != Reachability::Public;
        self.reservation.want(&mut self.swarm, wanted);
        self.publish();
    }

    /// Publishes the direct and circuit addresses at the rendezvous, when connected, and
    /// refreshes what `status` shows.
    fn publish(&mut self) {
        if self.directory.is_connected(&self.swarm) {
            let mut addrs = self.listen_addrs.clone();
            addrs.extend_from_slice(self.reservation.published());
            self.directory.publish(&mut self.swarm, &addrs);
        }
        self.refresh();
    }

    /// Brings `status`'s reachability, relay and connections up to date.
    fn refresh(&self) {
        let me = *self.swarm.local_peer_id();
        let mut snapshot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        snapshot.reachability = self.nat.reachability();
        snapshot.relay = self.reservation.snapshot(me);
        snapshot.connections = self.nat.connections(&self.registry);
    }
}
