//! The rendezvous dials nobody but the peers connected to it, at the IP they connect from.
//!
//! Its one outbound dial is AutoNAT's dial-back: a connected peer asks "can I be reached at
//! this address?" and the server dials it. AutoNAT v2 lets a client name an address at another
//! IP (it only asks the client to send some data first), which would make the rendezvous a
//! port scanner for anyone enrolled: `/ip4/10.1.2.3/tcp/22` from inside the operator's network.
//! This behaviour denies every outbound dial except to a peer that is connected now, at an IP
//! one of its connections comes from — the same rule the directory applies to what it hands
//! out (`vouch.rs`).

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};

use libp2p::swarm::behaviour::ConnectionEstablished;

use crate::guard::ip_of;

/// Why a dial was denied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Denied {
    /// A dial to no peer in particular, or to a peer not connected now.
    #[error("the rendezvous dials back connected peers only")]
    NotConnected,
    /// An address at another IP than the peer's connections come from.
    #[error("the rendezvous dials a peer back only at the IP it connects from")]
    OtherIp,
}

/// The IPs each connected peer's connections come from.
#[derive(Debug, Default)]
pub(crate) struct DialBackOnly {
    connections: HashMap<ConnectionId, (PeerId, IpAddr)>,
    ips: HashMap<PeerId, HashSet<IpAddr>>,
}

impl DialBackOnly {
    /// Whether a dial to `peer` at `addresses` may go ahead.
    pub(crate) fn check(
        &self,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
    ) -> Result<(), Denied> {
        let ips = peer
            .and_then(|p| self.ips.get(&p))
            .ok_or(Denied::NotConnected)?;
        let all_known = addresses.iter().all(|a| {
            ip_of(a).is_some_and(|ip| {
                ips.iter()
                    .any(|own| own.to_canonical() == ip.to_canonical())
            })
        });
        if all_known {
            Ok(())
        } else {
            Err(Denied::OtherIp)
        }
    }

    fn connected(&mut self, connection: ConnectionId, peer: PeerId, remote: &Multiaddr) {
        if let Some(ip) = ip_of(remote) {
            self.connections.insert(connection, (peer, ip));
            self.ips.entry(peer).or_default().insert(ip);
        }
    }

    fn closed(&mut self, connection: ConnectionId) {
        let Some((peer, _)) = self.connections.remove(&connection) else {
            return;
        };
        let still: HashSet<IpAddr> = self
            .connections
            .values()
            .filter(|(p, _)| *p == peer)
            .map(|(_, ip)| *ip)
            .collect();
        if still.is_empty() {
            self.ips.remove(&peer);
        } else {
            self.ips.insert(peer, still);
        }
    }
}

impl NetworkBehaviour for DialBackOnly {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        match self.check(maybe_peer, addresses) {
            Ok(()) => Ok(vec![]),
            Err(denied) => {
                tracing::info!(peer = ?maybe_peer, ?addresses, reason = %denied, "dial refused");
                Err(ConnectionDenied::new(denied))
            }
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // Only connections the peer opened vouch for its IP; a dial-back's own does not
            // widen what may be dialled.
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint: libp2p::core::ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) => self.connected(connection_id, peer_id, send_back_addr),
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.closed(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("addr")
    }

    #[test]
    fn only_a_connected_peer_at_its_own_ip_is_dialled() {
        let mut d = DialBackOnly::default();
        let (alice, eve) = (PeerId::random(), PeerId::random());
        let c1 = ConnectionId::new_unchecked(1);
        d.connected(c1, alice, &addr("/ip4/198.51.100.7/tcp/51000"));

        assert_eq!(
            d.check(Some(alice), &[addr("/ip4/198.51.100.7/tcp/4001")]),
            Ok(())
        );
        assert_eq!(
            d.check(Some(alice), &[addr("/ip4/10.1.2.3/tcp/22")]),
            Err(Denied::OtherIp)
        );
        assert_eq!(
            d.check(
                Some(alice),
                &[
                    addr("/ip4/198.51.100.7/tcp/4001"),
                    addr("/dns4/intranet.example/tcp/80")
                ]
            ),
            Err(Denied::OtherIp),
            "one address elsewhere denies the dial"
        );
        assert_eq!(
            d.check(Some(eve), &[addr("/ip4/198.51.100.7/tcp/4001")]),
            Err(Denied::NotConnected)
        );
        assert_eq!(
            d.check(None, &[addr("/ip4/198.51.100.7/tcp/4001")]),
            Err(Denied::NotConnected)
        );
    }

    #[test]
    fn a_peer_is_forgotten_with_its_last_connection() {
        let mut d = DialBackOnly::default();
        let alice = PeerId::random();
        let (c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        d.connected(c1, alice, &addr("/ip4/198.51.100.7/tcp/51000"));
        d.connected(c2, alice, &addr("/ip4/203.0.113.9/tcp/52000"));
        d.closed(c1);
        assert_eq!(
            d.check(Some(alice), &[addr("/ip4/198.51.100.7/tcp/4001")]),
            Err(Denied::OtherIp),
            "the IP of a closed connection no longer counts"
        );
        assert_eq!(
            d.check(Some(alice), &[addr("/ip4/203.0.113.9/tcp/4001")]),
            Ok(())
        );
        d.closed(c2);
        assert_eq!(
            d.check(Some(alice), &[addr("/ip4/203.0.113.9/tcp/4001")]),
            Err(Denied::NotConnected)
        );
    }
}
