//! The rendezvous's directory: who is online where, over `/parley/directory/1`.
//!
//! A peer publishes its listen addresses; the directory files them under the username of the
//! peer's verified certificate (the request names no user). A look-up needs an enrolled
//! certificate (the TLS handshake refuses anyone else), is rate-limited per peer, and answers
//! an unknown user and an offline user alike. There is no listing. An entry lives as long as the
//! peer's connection.

use std::{
    collections::HashMap,
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
    swarm::SwarmEvent,
};
use parley_domain::{Role, Username};
use tokio::sync::oneshot;

use crate::{
    Credentials, Error,
    protocol::{
        DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse, MAX_PUBLISHED_ADDRS, PeerRecord,
        meta_within_bounds,
    },
    registry::Registry,
    swarm,
};

/// Look-ups a peer may make in a burst.
pub const LOOKUP_BURST: f64 = 20.0;
/// Look-ups a peer may make per second, sustained.
pub const LOOKUPS_PER_SECOND: f64 = 5.0;

type Behaviour = request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>;

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
        let registry = Registry::default();
        let behaviour = Behaviour::new(
            [(DIRECTORY_PROTOCOL, ProtocolSupport::Inbound)],
            request_response::Config::default(),
        );
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

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.duration_since(self.at).as_secs_f64() * LOOKUPS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(LOOKUP_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / LOOKUPS_PER_SECOND,
            ))
        }
    }
}

struct Directory {
    swarm: Swarm<Behaviour>,
    registry: Registry,
    online: HashMap<Username, (PeerId, Vec<Multiaddr>)>,
    buckets: HashMap<PeerId, Bucket>,
    stats: Arc<DirectoryStats>,
}

impl Directory {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
    }

    fn on_event(
        &mut self,
        event: SwarmEvent<request_response::Event<DirectoryRequest, DirectoryResponse>>,
    ) {
        match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => self.on_request(peer, request, channel),
            SwarmEvent::ConnectionEstablished {
                num_established, ..
            } if num_established.get() == 1 => {
                DirectoryStats::bump(&self.stats.connected_peers);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
                self.registry.forget(&peer_id);
                self.buckets.remove(&peer_id);
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

    fn count_online(&self) {
        let online = u64::try_from(self.online.len()).unwrap_or(u64::MAX);
        self.stats.online_users.store(online, Ordering::Relaxed);
    }

    fn on_request(
        &mut self,
        peer: PeerId,
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
        let response = self.answer(peer, request);
        if let DirectoryResponse::Lookup { peer } = &response {
            span.record("found", peer.is_some());
        }
        match &response {
            DirectoryResponse::Lookup { .. } => DirectoryStats::bump(&self.stats.lookups),
            DirectoryResponse::RateLimited { .. } => DirectoryStats::bump(&self.stats.rate_limited),
            DirectoryResponse::Refused { .. } => DirectoryStats::bump(&self.stats.refused_requests),
            DirectoryResponse::Published => self.count_online(),
        }
        let _ = self.swarm.behaviour_mut().send_response(channel, response);
    }

    fn answer(&mut self, peer: PeerId, request: DirectoryRequest) -> DirectoryResponse {
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
                let bucket = self.buckets.entry(peer).or_insert_with(|| Bucket {
                    tokens: LOOKUP_BURST,
                    at: Instant::now(),
                });
                if let Err(wait) = bucket.take(Instant::now()) {
                    tracing::info!(%user, "look-up rate limit reached");
                    return DirectoryResponse::RateLimited {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
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
