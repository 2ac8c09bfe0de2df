//! Behind a NAT: whether this device can be dialled (AutoNAT v2), how each contact is connected
//! (direct or through the relay), and hole punching (DCUtR) from relayed to direct.
//!
//! - Reachability: the rendezvous dials back each address identify observed for us. One that
//!   answered makes the device `public`; only failures make it `private`; nothing tested yet
//!   is `unknown`.
//! - Paths: every connection to a contact is direct or relayed. When a direct one comes up
//!   beside relayed ones, the relayed ones are closed once no delivery to that contact is in
//!   flight (after [`CIRCUIT_GRACE`]), so messages and attachments move to it.
//! - Punching again: DCUtR tries on each new relayed connection. The side that dialled the
//!   circuit, still relayed only after [`FIRST_RETRY`], dials a fresh circuit (which starts a
//!   fresh punch) and closes the older one once the new one is up; the wait doubles each time,
//!   up to [`LAST_RETRY`], and starts over once a punch succeeds.
//! - Liveness: a connection that misses its pings is closed, so a punched connection whose NAT
//!   mapping vanished is noticed, and the next message finds the relay (and punches again).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::{
    Multiaddr, PeerId, Swarm, autonat,
    core::ConnectedPoint,
    dcutr, ping,
    swarm::{ConnectionId, dial_opts::DialOpts, dial_opts::PeerCondition},
};
use parley_domain::Role;
use parley_usecases::ports::{Path, PeerConnection, Reachability};

use super::behaviour::Behaviour;
use crate::registry::Registry;

/// How long a relayed-only contact waits before the punch is tried again.
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest wait between two punches.
pub const LAST_RETRY: Duration = Duration::from_secs(30 * 60);
/// How often due punches and unneeded circuits are looked for.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a circuit stays beside the connection that replaced it, so that what is under
/// way on it (a message waiting for its receipt) can finish; it is closed at the first check
/// after this with no delivery to that peer in flight.
pub const CIRCUIT_GRACE: Duration = Duration::from_secs(2);

struct Link {
    peer: PeerId,
    path: Path,
    /// The circuit address, when this side dialled a relayed connection.
    circuit: Option<Multiaddr>,
    opened: Instant,
    /// Since when a newer connection to the same peer makes this one unneeded.
    superseded: Option<Instant>,
}

struct Retry {
    due: Instant,
    wait: Duration,
}

/// Reachability, paths and punch retries.
#[derive(Default)]
pub(super) struct Nat {
    tested: HashMap<Multiaddr, bool>,
    links: HashMap<ConnectionId, Link>,
    retries: HashMap<PeerId, Retry>,
}

impl Nat {
    /// What AutoNAT found so far.
    pub(super) fn reachability(&self) -> Reachability {
        if self.tested.values().any(|ok| *ok) {
            Reachability::Public
        } else if self.tested.is_empty() {
            Reachability::Unknown
        } else {
            Reachability::Private
        }
    }

    /// Records an AutoNAT result; true when the reachability changed.
    pub(super) fn on_autonat(&mut self, event: autonat::v2::client::Event) -> bool {
        let before = self.reachability();
        match &event.result {
            Ok(()) => tracing::info!(addr = %event.tested_addr, "reachable from outside"),
            Err(e) => {
                tracing::info!(addr = %event.tested_addr, error = %e, "not reachable from outside");
            }
        }
        self.tested.insert(event.tested_addr, event.result.is_ok());
        before != self.reachability()
    }

    /// A connection to a contact opened.
    pub(super) fn on_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let path = if endpoint.is_relayed() {
            Path::Relayed
        } else {
            Path::Direct
        };
        let circuit = match endpoint {
            ConnectedPoint::Dialer { address, .. } if endpoint.is_relayed() => {
                Some(address.clone())
            }
            _ => None,
        };
        tracing::info!(%peer, ?path, "connected");
        if circuit.is_some() {
            self.retries.entry(peer).or_insert(Retry {
                due: Instant::now() + FIRST_RETRY,
                wait: FIRST_RETRY,
            });
        }
        self.links.insert(
            connection,
            Link {
                peer,
                path,
                circuit,
                opened: Instant::now(),
                superseded: None,
            },
        );
        if path == Path::Direct {
            self.retries.remove(&peer);
        }
        // Traffic moves to the direct connection, or to the newer circuit of a punch retried:
        // the older circuits go once what is under way on them is done.
        let now = Instant::now();
        for (_, link) in self.links.iter_mut().filter(|(id, link)| {
            **id != connection
                && link.peer == peer
                && link.path == Path::Relayed
                && link.superseded.is_none()
        }) {
            link.superseded = Some(now);
        }
    }

    /// Closes the circuits superseded for [`CIRCUIT_GRACE`] whose peer has no delivery in
    /// flight (`busy`).
    pub(super) fn close_superseded(
        &self,
        swarm: &mut Swarm<Behaviour>,
        busy: impl Fn(&PeerId) -> bool,
    ) {
        let now = Instant::now();
        for (id, link) in &self.links {
            if link
                .superseded
                .is_some_and(|since| now.duration_since(since) >= CIRCUIT_GRACE)
                && !busy(&link.peer)
            {
                tracing::debug!(peer = %link.peer, "closing the circuit a newer connection replaced");
                swarm.close_connection(*id);
            }
        }
    }

    /// A connection closed.
    pub(super) fn on_closed(&mut self, connection: ConnectionId, peer: PeerId, remaining: u32) {
        self.links.remove(&connection);
        if remaining == 0 {
            self.retries.remove(&peer);
        }
    }

    /// A hole punch ended.
    pub(super) fn on_dcutr(&mut self, event: &dcutr::Event) {
        match &event.result {
            Ok(_) => tracing::info!(peer = %event.remote_peer_id, "hole punched: direct now"),
            Err(e) => {
                tracing::info!(peer = %event.remote_peer_id, error = %e, "hole punch failed");
            }
        }
    }

    /// A ping failed: a connection that does not answer is closed. A peer that does not speak
    /// ping is left alone.
    pub(super) fn on_ping(&self, swarm: &mut Swarm<Behaviour>, event: &ping::Event) {
        if let Err(failure) = &event.result
            && !matches!(failure, ping::Failure::Unsupported)
        {
            tracing::info!(peer = %event.peer, error = %failure, "connection silent: closing it");
            swarm.close_connection(event.connection);
        }
    }

    /// Dials a fresh circuit to each relayed-only contact whose punch is due.
    pub(super) fn retry_due(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .retries
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            let newest = self
                .links
                .values()
                .filter(|l| l.peer == peer)
                .max_by_key(|l| (l.path == Path::Direct, l.opened));
            let Some(Link {
                path: Path::Relayed,
                circuit: Some(circuit),
                ..
            }) = newest
            else {
                self.retries.remove(&peer);
                continue;
            };
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![circuit.clone()])
                .condition(PeerCondition::Always)
                .build();
            tracing::debug!(%peer, "punching again over a fresh circuit");
            if let Err(e) = swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "fresh circuit not dialled");
            }
            if let Some(retry) = self.retries.get_mut(&peer) {
                retry.wait = (retry.wait * 2).min(LAST_RETRY);
                retry.due = now + retry.wait;
            }
        }
    }

    /// The contacts connected now, one entry each, direct when any connection is.
    pub(super) fn connections(&self, registry: &Registry) -> Vec<PeerConnection> {
        let mut paths: HashMap<PeerId, Path> = HashMap::new();
        for link in self.links.values() {
            let path = paths.entry(link.peer).or_insert(link.path);
            if link.path == Path::Direct {
                *path = Path::Direct;
            }
        }
        let mut connections: Vec<PeerConnection> = paths
            .into_iter()
            .filter_map(|(peer, path)| match registry.certified(&peer)?.role {
                Role::User(user) => Some(PeerConnection {
                    user,
                    peer_id: peer.to_string(),
                    path,
                }),
                Role::Rendezvous => None,
            })
            .collect();
        connections.sort_by(|a, b| a.user.cmp(&b.user).then(a.peer_id.cmp(&b.peer_id)));
        connections
    }
}
