//! Building a swarm on TCP (and, for peers, relay circuits) + mutual TLS + yamux, shared by
//! peers and the rendezvous.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{Swarm, core::muxing::StreamMuxerBox, swarm::NetworkBehaviour};

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

/// `transport` (TCP, or relay circuits) with `/parley/mtls/1.0.0` and yamux on top, all of it
/// within [`HANDSHAKE_TIMEOUT`].
fn upgraded<T>(
    transport: T,
    upgrade: MutualTls,
    yamux: libp2p::yamux::Config,
) -> libp2p::core::transport::Boxed<(libp2p::PeerId, StreamMuxerBox)>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    use libp2p::Transport as _;

    transport
        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
        .authenticate(upgrade)
        .multiplex(yamux)
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed()
}

fn yamux() -> libp2p::yamux::Config {
    let mut yamux = libp2p::yamux::Config::default();
    yamux.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    yamux
}

fn tcp() -> libp2p::tcp::tokio::Transport {
    libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default().nodelay(true))
}

/// Builds a swarm on TCP + mutual TLS + yamux, with the handshake timeout and the stream caps
/// above; every byte its connections move is counted in `traffic`. Connection admission is the
/// behaviour's part ([`crate::guard::Guard`]).
pub(crate) fn build<B: NetworkBehaviour>(
    credentials: &Credentials,
    registry: Registry,
    behaviour: B,
    traffic: Arc<Traffic>,
) -> Result<Swarm<B>, Error> {
    use libp2p::Transport as _;

    let upgrade = MutualTls::new(credentials, registry, Accept::Users)?;
    let counted = tcp().map(move |stream, _| Counted::new(stream, traffic.clone()));
    let transport = upgraded(counted, upgrade, yamux());
    Ok(finish(credentials, transport, behaviour))
}

/// [`build`] for a peer: beside direct TCP, circuits through a relay, with the same mutual TLS
/// end to end between the two peers over the circuit (the relay carries ciphertext only).
/// `behaviour` receives the relay client's half. Handshakes present what `identity` holds;
/// connections refresh their traffic keys on `refresh`'s timer.
pub(crate) fn build_with_relay<B: NetworkBehaviour>(
    credentials: &Credentials,
    identity: crate::tls::Identity,
    registry: Registry,
    refresh: crate::refresh::Refresh,
    behaviour: impl FnOnce(libp2p::relay::client::Behaviour) -> B,
) -> Result<Swarm<B>, Error> {
    use libp2p::Transport as _;

    let upgrade = MutualTls::with_identity(credentials, identity, registry, Accept::Users)?
        .with_refresh(refresh);
    let (circuits, client) = libp2p::relay::client::new(credentials.peer_id());
    let relayed = upgraded(circuits, upgrade.clone(), yamux());
    let direct = upgraded(tcp(), upgrade, yamux());
    let transport = relayed
        .or_transport(direct)
        .map(|either, _| either.into_inner());
    Ok(finish(credentials, transport, behaviour(client)))
}

fn finish<B: NetworkBehaviour>(
    credentials: &Credentials,
    transport: impl libp2p::Transport<
        Output = (libp2p::PeerId, StreamMuxerBox),
        Error: Send + Sync + 'static,
        Dial: Send + 'static,
        ListenerUpgrade: Send + 'static,
    > + Send
    + Unpin
    + 'static,
    behaviour: B,
) -> Swarm<B> {
    let Ok(builder) = libp2p::SwarmBuilder::with_existing_identity(credentials.keypair.clone())
        .with_tokio()
        .with_other_transport(|_| transport);
    let Ok(builder) = builder.with_behaviour(|_| behaviour);
    builder
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS)
        })
        .build()
}

/// Bytes an endpoint's TCP connections moved, both ways, live.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes read from the network.
    pub received: AtomicU64,
    /// Bytes written to the network.
    pub sent: AtomicU64,
}

/// A socket that counts what it moves into a [`Traffic`].
struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S> Counted<S> {
    fn new(inner: S, traffic: Arc<Traffic>) -> Self {
        Self { inner, traffic }
    }
}

fn count(counter: &AtomicU64, outcome: &Poll<std::io::Result<usize>>) {
    if let Poll::Ready(Ok(n)) = outcome {
        counter.fetch_add(u64::try_from(*n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl<S: futures::AsyncRead + Unpin> futures::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_read(cx, buf);
        count(&self.traffic.received, &outcome);
        outcome
    }
}

impl<S: futures::AsyncWrite + Unpin> futures::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        count(&self.traffic.sent, &outcome);
        outcome
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
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
