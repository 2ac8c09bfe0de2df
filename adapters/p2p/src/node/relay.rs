//! The reservation on the rendezvous's relay: a device that other peers cannot dial (or that
//! cannot tell yet) holds a slot there, so that `<rendezvous>/p2p-circuit/p2p/<own id>` reaches
//! it, and publishes that address in the directory beside its direct ones.
//!
//! The slot is asked for by listening on `<rendezvous>/p2p/<id>/p2p-circuit`; the relay client
//! renews it before it lapses. When the rendezvous connection drops, the listener closes; when
//! the connection comes back (a restarted rendezvous), the slot is asked for again.

use libp2p::{Multiaddr, Swarm, core::transport::ListenerId, multiaddr::Protocol, relay};
use parley_usecases::ports::RelaySnapshot;

use super::{behaviour::Behaviour, directory::Rendezvous};
use crate::swarm;

/// The device's slot on the relay, and the circuit addresses it gives.
pub(super) struct Reservation {
    /// Where to listen: the rendezvous's first address, with `/p2p/<id>/p2p-circuit`.
    circuit: Option<Multiaddr>,
    listener: Option<ListenerId>,
    reserved: bool,
    addrs: Vec<Multiaddr>,
}

impl Reservation {
    pub(super) fn new(rendezvous: Option<&Rendezvous>) -> Self {
        let circuit = rendezvous.and_then(|r| {
            r.addrs
                .first()
                .map(|addr| swarm::with_peer(addr, r.peer).with(Protocol::P2pCircuit))
        });
        Self {
            circuit,
            listener: None,
            reserved: false,
            addrs: Vec::new(),
        }
    }

    /// Holds a slot when `wanted`, gives it up otherwise.
    pub(super) fn want(&mut self, swarm: &mut Swarm<Behaviour>, wanted: bool) {
        match (&self.circuit, self.listener, wanted) {
            (Some(circuit), None, true) => match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(relay = %circuit, "asking the relay for a slot");
                    self.listener = Some(listener);
                }
                Err(e) => tracing::warn!(relay = %circuit, error = %e, "cannot ask for a slot"),
            },
            (_, Some(listener), false) => {
                tracing::info!("reachable directly: giving up the relay slot");
                swarm.remove_listener(listener);
                self.clear();
            }
            _ => {}
        }
    }

    /// The rendezvous connection dropped: the slot went with it.
    pub(super) fn lost(&mut self, swarm: &mut Swarm<Behaviour>) {
        if let Some(listener) = self.listener {
            swarm.remove_listener(listener);
        }
        self.clear();
    }

    fn clear(&mut self) {
        self.listener = None;
        self.reserved = false;
        self.addrs.clear();
    }

    /// Whether `listener` is the relay listener.
    pub(super) fn is_ours(&self, listener: ListenerId) -> bool {
        self.listener == Some(listener)
    }

    /// A circuit address of the slot came up. The relay client reports it ending in
    /// `/p2p/<own id>`; it is kept without, as direct addresses are, since the directory
    /// accepts a circuit address only when it ends in `/p2p-circuit` (and appends the id).
    pub(super) fn add_addr(&mut self, addr: Multiaddr) {
        let addr = swarm::split_peer(&addr).map_or(addr, |(_, base)| base);
        if !self.addrs.contains(&addr) {
            self.addrs.push(addr);
        }
    }

    /// The relay listener closed (the relay refused or dropped the slot).
    pub(super) fn on_closed(&mut self, reason: &str) {
        tracing::info!(reason, "the relay slot closed");
        self.clear();
    }

    pub(super) fn on_event(&mut self, event: &relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                tracing::info!(%relay_peer_id, renewal, "the relay holds a slot for us");
                self.reserved = self.listener.is_some();
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(%relay_peer_id, "circuit opened through the relay");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(%src_peer_id, "a peer reached us through the relay");
            }
        }
    }

    /// The circuit addresses to publish (without the own id; the directory appends it).
    pub(super) fn published(&self) -> &[Multiaddr] {
        if self.reserved { &self.addrs } else { &[] }
    }

    /// What `status` shows: the circuit addresses each end in `/p2p/<own id>`.
    pub(super) fn snapshot(&self, me: libp2p::PeerId) -> RelaySnapshot {
        RelaySnapshot {
            reserved: self.reserved,
            addrs: self
                .published()
                .iter()
                .map(|a| swarm::with_peer(a, me).to_string())
                .collect(),
        }
    }
}
