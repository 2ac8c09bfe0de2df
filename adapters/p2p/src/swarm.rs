//! Building a swarm on TCP + mutual TLS + yamux, shared by peers and the rendezvous.

use std::time::Duration;

use libp2p::{Swarm, swarm::NetworkBehaviour};

use crate::{
    Credentials, Error,
    registry::Registry,
    upgrade::{Accept, MutualTls},
};

/// Connections stay open while either side may still talk: a peer's connection to the
/// rendezvous is its presence in the directory.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Everything between the TCP accept (or connect) and a usable connection — protocol
/// negotiation, the TLS handshake, yamux — must finish within this time, or the connection is
/// dropped. Without it a socket that never speaks would hold a handshake slot for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Yamux streams open at once on one connection; the peer's further streams are refused.
/// Together with yamux's 256 KiB initial window per stream this bounds what one connection can
/// make us buffer (128 × 256 KiB = 32 MiB at the very worst, before any protocol reads).
pub const MAX_STREAMS_PER_CONNECTION: usize = 128;
/// Inbound streams in protocol negotiation at once on one connection; more are dropped.
pub const MAX_NEGOTIATING_STREAMS: usize = 32;

/// Builds a swarm on TCP + mutual TLS + yamux, with the handshake timeout and the stream caps
/// above. Connection admission is the behaviour's part ([`crate::guard::Guard`]).
pub(crate) fn build<B: NetworkBehaviour>(
    credentials: &Credentials,
    registry: Registry,
    behaviour: B,
) -> Result<Swarm<B>, Error> {
    use libp2p::Transport as _;

    let upgrade = MutualTls::new(credentials, registry, Accept::Users)?;
    let mut yamux = libp2p::yamux::Config::default();
    yamux.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    let transport =
        libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default().nodelay(true))
            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
            .authenticate(upgrade)
            .multiplex(yamux)
            .timeout(HANDSHAKE_TIMEOUT);
    let Ok(builder) = libp2p::SwarmBuilder::with_existing_identity(credentials.keypair.clone())
        .with_tokio()
        .with_other_transport(|_| transport);
    let Ok(builder) = builder.with_behaviour(|_| behaviour);
    let swarm = builder
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS)
        })
        .build();
    Ok(swarm)
}

/// Listens on `addr` and waits until the listener reports its real address. On an unspecified
/// address (`0.0.0.0`, `::`) the listener reports one address per interface, one by one: those
/// that arrive within a short quiet period are returned too.
pub(crate) async fn listen<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addr: libp2p::Multiaddr,
) -> Result<Vec<libp2p::Multiaddr>, Error> {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let listener = swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } if listener_id == listener => {
                    return Ok(address);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if listener_id == listener => {
                    let reason = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Listen {
                        addr: addr.to_string(),
                        reason,
                    });
                }
                SwarmEvent::ListenerError { listener_id, error } if listener_id == listener => {
                    return Err(Error::Listen {
                        addr: addr.to_string(),
                        reason: error.to_string(),
                    });
                }
                _ => {}
            }
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| Error::Listen {
            addr: addr.to_string(),
            reason: "no address after 10 s".into(),
        })??;
    let mut addresses = vec![first];
    let unspecified = addr.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    });
    if unspecified {
        loop {
            let next = async {
                loop {
                    if let SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    } = swarm.select_next_some().await
                        && listener_id == listener
                    {
                        return address;
                    }
                }
            };
            match tokio::time::timeout(Duration::from_millis(300), next).await {
                Ok(address) => addresses.push(address),
                Err(_) => break,
            }
        }
    }
    Ok(addresses)
}

/// `addr` with `/p2p/<peer>` appended unless it already ends so.
pub fn with_peer(addr: &libp2p::Multiaddr, peer: libp2p::PeerId) -> libp2p::Multiaddr {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(_)) => addr.clone(),
        _ => addr.clone().with(libp2p::multiaddr::Protocol::P2p(peer)),
    }
}

/// Splits `/.../p2p/<id>` into its peer id and the address without it.
pub(crate) fn split_peer(addr: &libp2p::Multiaddr) -> Option<(libp2p::PeerId, libp2p::Multiaddr)> {
    let mut base = addr.clone();
    match base.pop() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some((peer, base)),
        _ => None,
    }
}
