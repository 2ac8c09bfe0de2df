//! The rendezvous's directory: who is online where, over `/parley/directory/2`.
//!
//! A peer publishes its listen addresses; the directory files them under the username and the
//! device (the peer id) of the peer's verified certificate (the request names no user), one
//! entry per device ([`online`]): several certificates of one name are several devices, and
//! none replaces or removes another's entry. A look-up needs an enrolled certificate (the TLS
//! handshake refuses anyone else), is rate-limited per peer and per source IP address (one
//! person may enroll several devices; each device's limit alone would multiply), answers every
//! device of the user (the newest publications first, a bounded number), and answers an unknown
//! user and an offline user alike. There is no listing. An entry lives as long as the device's
//! connection. A rate-limit bucket outlives the connection until it has refilled, so
//! reconnecting does not reset it.

mod account;
mod dial_back;
mod limit;
mod mailbox;
mod online;
mod prekeys;
mod relay;
mod renew;
mod stats;
mod vouch;

pub use account::{
    ACCOUNT_STREAMS_PER_CONNECTION, AccountKeeper, AccountRefusal, MAX_ACCOUNT_JOBS,
};
pub use mailbox::{MailboxOptions, SERVER_MAILBOX_STREAMS_PER_CONNECTION};
pub use prekeys::{
    MAX_PREKEY_JOBS, PREKEY_STREAMS_PER_CONNECTION, PrekeyOptions, PrekeyStore, PrekeyStoreError,
    TakenPrekeys,
};
pub use relay::RelayLimits;
pub use renew::{MAX_RENEWALS_IN_FLIGHT, RENEW_EVERY, RenewError, Renewer};

pub use limit::{
    AddressLimit, IP_LOOKUP_BURST, IP_LOOKUPS_PER_SECOND, LOOKUP_BURST, LOOKUPS_PER_SECOND,
};
pub use stats::{DirectoryStats, StatsSnapshot};

use self::{
    limit::Limits,
    online::{Device, Key, Online},
};

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
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

/// `/parley/directory/2` streams open at once on one connection; more are dropped.
pub const STREAMS_PER_CONNECTION: usize = 32;
/// How often full (idle) rate-limit buckets are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    guard: Guard,
    /// Outbound dials only to connected peers, at their own IP ([`dial_back`]).
    dial_back: dial_back::DialBackOnly,
    directory: request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>,
    /// `/parley/mailbox/1` ([`mailbox`]).
    mailbox: mailbox::Behaviour,
    /// `/parley/renew/1` ([`renew`]).
    renew: renew::Behaviour,
    /// `/parley/prekeys/1` ([`prekeys`]).
    prekeys: prekeys::Behaviour,
    /// `/parley/account/1` ([`account`]).
    account: account::Behaviour,
    /// Circuit relay v2, server side ([`relay`]).
    relay: libp2p::relay::Behaviour,
    /// Tells each peer the address it is seen at (its NAT's, for a peer at home).
    identify: libp2p::identify::Behaviour,
    /// AutoNAT v2, server side: dials a peer's observed address back, on a new port.
    autonat: libp2p::autonat::v2::server::Behaviour,
    /// Liveness of every connection.
    ping: libp2p::ping::Behaviour,
}

/// How the directory runs.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Whom the per-address look-up limit applies to.
    pub address_limit: AddressLimit,
    /// The relay's limits.
    pub relay: RelayLimits,
    /// The addresses peers reach this server at, when not the listen addresses (a server
    /// behind a port forward); the relay hands them out in its circuit addresses.
    pub announce: Vec<Multiaddr>,
    /// The mailbox; without it every mailbox request is refused `mailbox_disabled`.
    pub mailbox: Option<MailboxOptions>,
    /// The CA, for `/parley/renew/1`; without it every renewal is refused.
    pub renewer: Option<Arc<dyn Renewer>>,
    /// The prekey store, for `/parley/prekeys/1`; without it every prekey request is refused
    /// `prekeys_disabled`.
    pub prekeys: Option<PrekeyOptions>,
    /// The registry, for `/parley/account/1`; without it every account request is refused
    /// `accounts_disabled`.
    pub accounts: Option<Arc<dyn AccountKeeper>>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("address_limit", &self.address_limit)
            .field("relay", &self.relay)
            .field("announce", &self.announce)
            .field("mailbox", &self.mailbox)
            .field("renews", &self.renewer.is_some())
            .field("prekeys", &self.prekeys.is_some())
            .field("accounts", &self.accounts.is_some())
            .finish()
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
        Self::start_with(credentials, listen, ServerOptions::default()).await
    }

    /// [`DirectoryServer::start`] with `options`.
    ///
    /// # Errors
    /// [`Error`] when the credentials are unusable or the address cannot be listened on.
    pub async fn start_with(
        credentials: Credentials,
        listen: Multiaddr,
        options: ServerOptions,
    ) -> Result<Self, Error> {
        let registry = Registry::default();
        let me = credentials.keypair.public();
        let stats = Arc::new(DirectoryStats::default());
        let mailbox = mailbox::Mailbox::new(options.mailbox.clone(), stats.clone());
        let behaviour = Behaviour {
            guard: Guard::new(guard::DIRECTORY),
            dial_back: dial_back::DialBackOnly::default(),
            directory: request_response::json::Behaviour::with_codec(
                request_response::json::codec::Codec::default()
                    .set_request_size_maximum(MAX_DIRECTORY_REQUEST_BYTES)
                    .set_response_size_maximum(MAX_DIRECTORY_RESPONSE_BYTES),
                [(DIRECTORY_PROTOCOL, ProtocolSupport::Inbound)],
                request_response::Config::default()
                    .with_max_concurrent_streams(STREAMS_PER_CONNECTION),
            ),
            mailbox: mailbox::behaviour(mailbox.limits()),
            renew: renew::behaviour(),
            prekeys: prekeys::behaviour(),
            account: account::behaviour(),
            relay: libp2p::relay::Behaviour::new(me.to_peer_id(), options.relay.config()),
            identify: crate::node::identify(&me),
            autonat: libp2p::autonat::v2::server::Behaviour::default(),
            ping: crate::node::ping(),
        };
        let mut swarm = swarm::build(
            &credentials,
            registry.clone(),
            behaviour,
            stats.traffic.clone(),
        )?;
        let listened = swarm::listen(&mut swarm, listen).await?;
        let me = credentials.peer_id();
        // The relay serves circuits only once it knows an address of its own to hand out.
        let external = if options.announce.is_empty() {
            listened.clone()
        } else {
            options.announce.clone()
        };
        for addr in &external {
            swarm.add_external_address(addr.clone());
        }
        // The relay parts a published circuit may name: where peers reach this rendezvous.
        let mut own: Vec<Multiaddr> = listened.clone();
        own.extend(
            external
                .iter()
                .map(|a| swarm::split_peer(a).map_or_else(|| a.clone(), |(_, base)| base)),
        );
        let vouch = vouch::Vouch { me, own };
        let addresses = listened.iter().map(|a| swarm::with_peer(a, me)).collect();
        let (stop, stop_rx) = oneshot::channel();
        let directory = Directory {
            swarm,
            registry,
            vouch,
            online: Online::default(),
            limits: Limits::new(options.address_limit),
            mailbox,
            renewals: renew::Renewals::new(options.renewer.clone()),
            prekeys: prekeys::Prekeys::new(options.prekeys.clone()),
            accounts: account::Accounts::new(options.accounts.clone()),
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

struct Directory {
    swarm: Swarm<Behaviour>,
    registry: Registry,
    vouch: vouch::Vouch,
    online: Online,
    limits: Limits,
    mailbox: mailbox::Mailbox,
    renewals: renew::Renewals,
    prekeys: prekeys::Prekeys,
    accounts: account::Accounts,
    stats: Arc<DirectoryStats>,
}

impl Directory {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = self.swarm.select_next_some() => self.on_event(event),
                answer = self.mailbox.next_answer() => {
                    let registry = &self.registry;
                    mailbox::Mailbox::send(
                        &mut self.swarm.behaviour_mut().mailbox,
                        answer,
                        |user| registry.peers_of(&Role::User(user.clone())),
                    );
                }
                (channel, response) = self.renewals.next_answer() => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .renew
                        .send_response(channel, response);
                }
                (channel, response) = self.prekeys.next_answer() => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .prekeys
                        .send_response(channel, response);
                }
                answer = self.accounts.next_answer() => {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .account
                        .send_response(answer.channel, answer.response);
                }
                _ = prune.tick() => {
                    self.renewals.prune();
                    self.limits.prune();
                    self.mailbox.prune();
                }
            }
        }
        self.mailbox.stop().await;
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
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(request_response::Event::Message {
                peer,
                connection_id,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
            })) => {
                let user = match self.registry.certified(&peer).map(|c| c.role) {
                    Some(Role::User(user)) => Some(user),
                    _ => None,
                };
                let limits = &mut self.limits;
                self.mailbox.on_request(
                    &mut self.swarm.behaviour_mut().mailbox,
                    mailbox::Request {
                        peer,
                        user,
                        request,
                        channel,
                    },
                    || limits.take_lookup(peer, connection_id).is_ok(),
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Renew(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let certified = self.registry.certified(&peer);
                self.renewals.on_request(
                    &mut self.swarm.behaviour_mut().renew,
                    certified,
                    &request,
                    channel,
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Prekeys(request_response::Event::Message {
                peer,
                connection_id,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
            })) => {
                let certified = self.registry.certified(&peer);
                let limits = &mut self.limits;
                self.prekeys.on_request(
                    &mut self.swarm.behaviour_mut().prekeys,
                    certified,
                    request,
                    channel,
                    || limits.take_lookup(peer, connection_id).is_ok(),
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Account(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let certified = self.registry.certified(&peer);
                self.accounts.on_request(
                    &mut self.swarm.behaviour_mut().account,
                    certified,
                    request,
                    channel,
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                relay::count(&self.stats, &event);
            }
            // A connection that misses its pings is closed, as peers close theirs: a device
            // whose router forgot the mapping comes back on a new connection, and the relay
            // must not keep its slot (or a circuit's other end) on the silent old one.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) if !matches!(failure, libp2p::ping::Failure::Unsupported) => {
                tracing::info!(%peer, error = %failure, "connection silent: closing it");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(ip) = guard::ip_of(endpoint.get_remote_address()) {
                    self.limits.connected(connection_id, ip);
                }
                self.online.connected(peer_id, connection_id);
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
                self.limits.closed(connection_id);
                // Only the entry this connection holds goes (or passes to another open
                // connection of the same device): another device of the same name stays.
                self.online.closed(peer_id, connection_id);
                self.count_online();
                if num_established > 0 {
                    return;
                }
                self.stats.connected_peers.fetch_sub(1, Ordering::Relaxed);
                self.registry.forget(&peer_id);
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
        let online = u64::try_from(self.online.users()).unwrap_or(u64::MAX);
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
                let span = tracing::info_span!("directory.lookup", %peer, found = tracing::field::Empty, devices = tracing::field::Empty);
                crate::trace::adopt(&span, meta);
                span
            }
            DirectoryRequest::Publish { .. } => tracing::debug_span!("directory.publish", %peer),
        };
        let _entered = span.enter();
        let response = self.answer(peer, connection, request);
        if let DirectoryResponse::Lookup { devices } = &response {
            span.record("found", !devices.is_empty());
            span.record("devices", devices.len());
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
                // Only what the publisher can plausibly be reached at (`vouch.rs`): its
                // connection's own IP, or a circuit through this relay.
                let Some(observed) = self.limits.source(connection) else {
                    return DirectoryResponse::Refused {
                        reason: "the connection has no address to vouch for".into(),
                    };
                };
                let published = addrs.len();
                let addrs: Vec<Multiaddr> = addrs
                    .iter()
                    .filter(|a| a.len() <= 256)
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .filter(|a| self.vouch.vouches(a, observed))
                    .map(|a| swarm::with_peer(&a, peer))
                    .collect();
                if addrs.len() < published {
                    tracing::debug!(%peer, published, kept = addrs.len(), "addresses not vouched for were dropped");
                }
                tracing::info!(%user, %peer, "peer online");
                let device = Device { peer };
                self.online.publish(Key { user, device }, connection, addrs);
                DirectoryResponse::Published
            }
            DirectoryRequest::Lookup { username, meta } => {
                if !meta_within_bounds(&meta) {
                    return DirectoryResponse::Refused {
                        reason: "metadata too large".into(),
                    };
                }
                if let Err(wait) = self.limits.take_lookup(peer, connection) {
                    tracing::info!(%user, "look-up rate limit reached");
                    return DirectoryResponse::RateLimited {
                        // Rounded up, so a client that waits exactly this long gets through.
                        retry_after_ms: u64::try_from(wait.as_millis())
                            .unwrap_or(u64::MAX)
                            .saturating_add(1),
                    };
                }
                let devices = match Username::parse(&username) {
                    Ok(name) => self
                        .online
                        .devices(&name)
                        .map(|(peer, addrs)| PeerRecord {
                            peer_id: peer.to_string(),
                            addrs: addrs.iter().map(ToString::to_string).collect(),
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                DirectoryResponse::Lookup { devices }
            }
        }
    }
}
