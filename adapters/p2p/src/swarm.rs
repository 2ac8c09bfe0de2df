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

pub(crate) fn build<B: NetworkBehaviour>(
    credentials: &Credentials,
    registry: Registry,
    behaviour: B,
) -> Result<Swarm<B>, Error> {
    let upgrade = MutualTls::new(credentials, registry, Accept::Users)?;
    let Ok(builder) = libp2p::SwarmBuilder::with_existing_identity(credentials.keypair.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            move |_: &libp2p::identity::Keypair| Ok::<_, std::convert::Infallible>(upgrade),
            libp2p::yamux::Config::default,
        );
    let Ok(builder) = builder.with_behaviour(|_| behaviour);
    let swarm = builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
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
