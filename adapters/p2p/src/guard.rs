//! Admission of incoming connections: how many may be in their handshake, how many may be
//! established, per peer and per source address. Every limit here is a named constant; what
//! happens when one is hit is in `docs/protocol.md` ("Limits").
//!
//! A connection is counted as *pending* from the TCP accept until the security upgrade and
//! yamux are done, which [`crate::swarm::HANDSHAKE_TIMEOUT`] bounds in time. It is *established*
//! afterwards, and only then is its peer id (its certificate) known, so the per-peer limit is
//! checked after the TLS handshake.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    connection_limits::{self, ConnectionLimits},
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

/// The admission limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Incoming connections in their handshake at once (TCP accepted, TLS or yamux not done).
    pub pending_incoming: u32,
    /// Incoming connections in their handshake at once from one IP address.
    pub pending_per_ip: usize,
    /// Incoming connections established at once.
    pub established_incoming: u32,
    /// Connections (either direction) established at once with one peer id.
    pub established_per_peer: u32,
}

/// A peer's limits: a device talks with its contacts and its rendezvous, not with the world.
pub const PEER: Limits = Limits {
    pending_incoming: 32,
    pending_per_ip: 8,
    established_incoming: 128,
    established_per_peer: 4,
};

/// The directory's limits: every online peer keeps one connection open to it.
pub const DIRECTORY: Limits = Limits {
    pending_incoming: 256,
    pending_per_ip: 16,
    established_incoming: 4096,
    established_per_peer: 4,
};

/// The admission behaviour: libp2p's connection limits and a per-address cap on handshakes.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(crate) struct Guard {
    limits: connection_limits::Behaviour,
    per_ip: PendingPerIp,
}

impl Guard {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits: connection_limits::Behaviour::new(
                ConnectionLimits::default()
                    .with_max_pending_incoming(Some(limits.pending_incoming))
                    .with_max_established_incoming(Some(limits.established_incoming))
                    .with_max_established_per_peer(Some(limits.established_per_peer)),
            ),
            per_ip: PendingPerIp::new(limits.pending_per_ip),
        }
    }
}

/// The source address has too many connections in their handshake.
#[derive(Debug, thiserror::Error)]
#[error("too many handshakes from {0} at once")]
pub struct TooManyHandshakes(IpAddr);

/// Caps the incoming connections in their handshake per source IP address, so that one host
/// cannot hold every handshake slot (the global cap is in [`Limits::pending_incoming`]).
pub(crate) struct PendingPerIp {
    cap: usize,
    pending: HashMap<IpAddr, usize>,
    by_connection: HashMap<ConnectionId, IpAddr>,
}

impl PendingPerIp {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            pending: HashMap::new(),
            by_connection: HashMap::new(),
        }
    }

    fn release(&mut self, connection: ConnectionId) {
        let Some(ip) = self.by_connection.remove(&connection) else {
            return;
        };
        if let Some(count) = self.pending.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.pending.remove(&ip);
            }
        }
    }
}

/// The IP address of a `/ip4/…` or `/ip6/…` multiaddr.
pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for PendingPerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr) else {
            return Ok(());
        };
        let count = self.pending.entry(ip).or_default();
        if *count >= self.cap {
            return Err(ConnectionDenied::new(TooManyHandshakes(ip)));
        }
        *count += 1;
        self.by_connection.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(connection_id);
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
        if let FromSwarm::ListenFailure(failure) = event {
            self.release(failure.connection_id);
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
