//! The rendezvous's directory: who is online where, over `/parley/directory/1`.
//!
//! A peer publishes its listen addresses; the directory files them under the username of the
//! peer's verified certificate (the request names no user). A look-up needs an enrolled
//! certificate (the TLS handshake refuses anyone else), is rate-limited per peer and per source
//! IP address (one person may enroll several devices; each device's limit alone would multiply),
//! and answers an unknown user and an offline user alike. There is no listing. An entry lives as
//! long as the peer's connection. A rate-limit bucket outlives the connection until it has
//! refilled, so reconnecting does not reset it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    request_response::{self, ProtocolSupport, ResponseChannel},
    swarm::{ConnectionId, NetworkBehaviour, SwarmEvent},
};
use parley_domain::{Role, Username};
use tokio::sync::oneshot;

use crate::{
    Credentials, Error,
    guard::{self, Guard},
    protocol::{
        DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse, MAX_DIRECTORY_REQUEST_BYTES,
        MAX_DIRECTORY_RESPONSE_BYTES, MAX_PUBLISHED_ADDRS, PeerRecord, meta_within_bounds,
    },
    registry::Registry,
    swarm,
};

/// Look-ups a peer may make in a burst.
pub const LOOKUP_BURST: f64 = 20.0;
/// Look-ups a peer may make per second, sustained.
pub const LOOKUPS_PER_SECOND: f64 = 5.0;
/// Look-ups all peers connected from one IP address may make in a burst (three devices' worth).
pub const IP_LOOKUP_BURST: f64 = 3.0 * LOOKUP_BURST;
/// Look-ups all peers connected from one IP address may make per second, sustained.
pub const IP_LOOKUPS_PER_SECOND: f64 = 3.0 * LOOKUPS_PER_SECOND;
/// `/parley/directory/1` streams open at once on one connection; more are dropped.
pub const STREAMS_PER_CONNECTION: usize = 32;
/// How often full (idle) rate-limit buckets are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    guard: Guard,
    directory: request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>,
}

/// Counters of the directory, for the operator's metrics. Read with [`DirectoryStats::snapshot`].
#[derive(Debug, Default)]
pub struct DirectoryStats {
    lookups: AtomicU64,
    rate_limited: AtomicU64,
    refused_requests: AtomicU64,
    refused_connections: AtomicU64,
    connected_peers: AtomicU64,
    online_users: AtomicU64,
}

/// The directory's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Look-ups answered (found or not).
    pub lookups: u64,
    /// Look-ups refused by the rate limit.
    pub rate_limited: u64,
    /// Requests refused for another reason (malformed, not an enrolled user).
    pub refused_requests: u64,
    /// Connections refused at the handshake (wrong CA, no certificate, not a user).
    pub refused_connections: u64,
    /// Peers connected now.
    pub connected_peers: u64,
    /// Users listed as online now.
    pub online_users: u64,
}

impl DirectoryStats {
    /// The counters now.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            lookups: read(&self.lookups),
            rate_limited: read(&self.rate_limited),
            refused_requests: read(&self.refused_requests),
            refused_connections: read(&self.refused_connections),
            connected_peers: read(&self.connected_peers),
            online_users: read(&self.online_users),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running directory; stop it with [`DirectoryServer::shutdown`].
pub struct DirectoryServer {
    stats: Arc<DirectoryStats>,
    addresses: Vec<Multiaddr>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DirectoryServer {
    /// Listens on `listen` (port may be 0) and serves the directory. Resolves once listening.
    ///
    /// # Errors
    /// [`Error`] when the credentials are unusable or the address cannot be listened on.
    pub async fn start(credentials: Credentials, listen: Multiaddr) -> Result<Self, Error> {
        Self::start_with(credentials, listen, AddressLimit::NotLoopback).await
    }

    /// [`DirectoryServer::start`] with the per-address look-up limit applied as `limit` says.
    ///
    /// # Errors
    /// [`Error`] when the credentials are unusable or the address cannot be listened on.
    pub async fn start_with(
        credentials: Credentials,
        listen: Multiaddr,
        limit: AddressLimit,
    ) -> Result<Self, Error> {
        let registry = Registry::default();
        let behaviour = Behaviour {
            guard: Guard::new(guard::DIRECTORY),
            directory: request_response::json::Behaviour::with_codec(
                request_response::json::codec::Codec::default()
                    .set_request_size_maximum(MAX_DIRECTORY_REQUEST_BYTES)
                    .set_response_size_maximum(MAX_DIRECTORY_RESPONSE_BYTES),
                [(DIRECTORY_PROTOCOL, ProtocolSupport::Inbound)],
                request_response::Config::default()
                    .with_max_concurrent_streams(STREAMS_PER_CONNECTION),
            ),
        };
        let mut swarm = swarm::build(&credentials, registry.clone(), behaviour)?;
        let listened = swarm::listen(&mut swarm, listen).await?;
        let me = credentials.peer_id();
        let addresses = listened.iter().map(|a| swarm::with_peer(a, me)).collect();
        let (stop, stop_rx) = oneshot::channel();
        let stats = Arc::new(DirectoryStats::default());
        let directory = Directory {
            swarm,
            registry,
            online: HashMap::new(),
            buckets: HashMap::new(),
            ip_buckets: HashMap::new(),
            connections: HashMap::new(),
            address_limit: limit,
            stats: stats.clone(),
        };
        let task = tokio::spawn(directory.run(stop_rx));
        Ok(Self {
            stats,
            addresses,
            stop,
            task,
        })
    }

    /// The directory's counters, live.
    #[must_use]
    pub fn stats(&self) -> Arc<DirectoryStats> {
        self.stats.clone()
    }

    /// The addresses it listens on, each ending with `/p2p/<peer id>`.
    #[must_use]
    pub fn addresses(&self) -> Vec<Multiaddr> {
        self.addresses.clone()
    }

    /// Stops the swarm and waits for its task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Which source addresses the per-address look-up limit ([`IP_LOOKUP_BURST`],
/// [`IP_LOOKUPS_PER_SECOND`]) applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressLimit {
    /// Every address, loopback included.
    All,
    /// Every address but loopback (the default): connections from this host — a local proxy
    /// in front of the rendezvous, a benchmark — are not one source, and share no budget.
    NotLoopback,
    /// No per-address limit; the per-peer limit only.
    Off,
}

impl AddressLimit {
    fn applies_to(self, ip: &IpAddr) -> bool {
        match self {
            Self::All => true,
            Self::NotLoopback => !ip.is_loopback(),
            Self::Off => false,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
struct Bucket {
    tokens: f64,
    at: Instant,
    burst: f64,
    rate: f64,
}

impl Bucket {
    fn full(burst: f64, rate: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
            burst,
            rate,
        }
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
    }

    /// How long until a token is there (zero when one is).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// True once the bucket would be full again at `now`: it can be forgotten.
    fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
}

struct Directory {
    swarm: Swarm<Behaviour>,
    registry: Registry,
    online: HashMap<Username, (PeerId, Vec<Multiaddr>)>,
    buckets: HashMap<PeerId, Bucket>,
    ip_buckets: HashMap<IpAddr, Bucket>,
    /// The source address of each open connection, for the per-address limit.
    connections: HashMap<ConnectionId, IpAddr>,
    address_limit: AddressLimit,
    stats: Arc<DirectoryStats>,
}

impl Directory {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = prune.tick() => self.prune(),
            }
        }
    }

    /// Forgets the buckets that have refilled: they hold nothing a new one would not.
    fn prune(&mut self) {
        let now = Instant::now();
        self.buckets.retain(|_, b| !b.refilled(now));
        self.ip_buckets.retain(|_, b| !b.refilled(now));
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Directory(
                request_response::Event::Message {
                    peer,
                    connection_id,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                },
            )) => self.on_request(peer, connection_id, request, channel),
            SwarmEvent::ConnectionEstablished {
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(ip) = guard::ip_of(endpoint.get_remote_address()) {
                    self.connections.insert(connection_id, ip);
                }
                if num_established.get() == 1 {
                    DirectoryStats::bump(&self.stats.connected_peers);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connections.remove(&connection_id);
                if num_established > 0 {
                    return;
                }
                self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
                self.registry.forget(&peer_id);
                self.online.retain(|_, (peer, _)| *peer != peer_id);
                self.count_online();
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                DirectoryStats::bump(&self.stats.refused_connections);
                tracing::info!(%send_back_addr, error = %error, "refused a connection");
            }
            _ => {}
        }
    }

    /// Takes one look-up from `peer`'s bucket and from its source address's, or says how long
    /// to wait. Nothing is taken unless both have a token.
    fn take_lookup(&mut self, peer: PeerId, connection: ConnectionId) -> Result<(), Duration> {
        let now = Instant::now();
        let by_peer = self
            .buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(LOOKUP_BURST, LOOKUPS_PER_SECOND, now));
        by_peer.refill(now);
        let mut wait = by_peer.wait();
        let address = self
            .connections
            .get(&connection)
            .filter(|ip| self.address_limit.applies_to(ip));
        let by_ip = address.map(|ip| {
            let bucket = self
                .ip_buckets
                .entry(*ip)
                .or_insert_with(|| Bucket::full(IP_LOOKUP_BURST, IP_LOOKUPS_PER_SECOND, now));
            bucket.refill(now);
            wait = wait.max(bucket.wait());
            bucket
        });
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if let Some(bucket) = by_ip {
            bucket.tokens -= 1.0;
        }
        if let Some(bucket) = self.buckets.get_mut(&peer) {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }

    fn count_online(&self) {
        let online = u64::try_from(self.online.len()).unwrap_or(u64::MAX);
        self.stats.online_users.store(online, Ordering::Relaxed);
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: DirectoryRequest,
        channel: ResponseChannel<DirectoryResponse>,
    ) {
        let span = match &request {
            DirectoryRequest::Lookup { meta, .. } => {
                let span =
                    tracing::info_span!("directory.lookup", %peer, found = tracing::field::Empty);
                crate::trace::adopt(&span, meta);
                span
            }
            DirectoryRequest::Publish { .. } => tracing::debug_span!("directory.publish", %peer),
        };
        let _entered = span.enter();
        let response = self.answer(peer, connection, request);
        if let DirectoryResponse::Lookup { peer } = &response {
            span.record("found", peer.is_some());
        }
        match &response {
            DirectoryResponse::Lookup { .. } => DirectoryStats::bump(&self.stats.lookups),
            DirectoryResponse::RateLimited { .. } => DirectoryStats::bump(&self.stats.rate_limited),
            DirectoryResponse::Refused { .. } => DirectoryStats::bump(&self.stats.refused_requests),
            DirectoryResponse::Published => self.count_online(),
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .directory
            .send_response(channel, response);
    }

    fn answer(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: DirectoryRequest,
    ) -> DirectoryResponse {
        // The upgrade only admits enrolled users; the role check keeps that true here too.
        let Some(Role::User(user)) = self.registry.certified(&peer).map(|c| c.role) else {
            return DirectoryResponse::Refused {
                reason: "an enrolled certificate is required".into(),
            };
        };
        match request {
            DirectoryRequest::Publish { addrs, meta } => {
                if !meta_within_bounds(&meta) || addrs.len() > MAX_PUBLISHED_ADDRS {
                    return DirectoryResponse::Refused {
                        reason: "too many addresses or metadata".into(),
                    };
                }
                let addrs = addrs
                    .iter()
                    .filter(|a| a.len() <= 256)
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .filter(|a| {
                        !a.iter()
                            .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                    })
                    .map(|a| swarm::with_peer(&a, peer))
                    .collect();
                tracing::info!(%user, %peer, "peer online");
                self.online.insert(user, (peer, addrs));
                DirectoryResponse::Published
            }
            DirectoryRequest::Lookup { username, meta } => {
                if !meta_within_bounds(&meta) {
                    return DirectoryResponse::Refused {
                        reason: "metadata too large".into(),
                    };
                }
                if let Err(wait) = self.take_lookup(peer, connection) {
                    tracing::info!(%user, "look-up rate limit reached");
                    return DirectoryResponse::RateLimited {
                        // Rounded up, so a client that waits exactly this long gets through.
                        retry_after_ms: u64::try_from(wait.as_millis())
                            .unwrap_or(u64::MAX)
                            .saturating_add(1),
                    };
                }
                let found = Username::parse(&username)
                    .ok()
                    .and_then(|name| self.online.get(&name));
                DirectoryResponse::Lookup {
                    peer: found.map(|(peer, addrs)| PeerRecord {
                        peer_id: peer.to_string(),
                        addrs: addrs.iter().map(ToString::to_string).collect(),
                    }),
                }
            }
        }
    }
}
