//! A peer's node: one task owns the libp2p swarm; the rest talk to it through bounded channels.
//!
//! Queues and their caps: commands to the swarm task ([`COMMAND_QUEUE`]), inbound messages to
//! the application ([`NodeConfig::inbound_queue`], at most [`MAX_INBOUND_QUEUE`]; when full, a
//! message is refused with "busy" and the sender's outbox retries later), message streams per
//! connection ([`MESSAGE_STREAMS_PER_CONNECTION`]), look-ups in flight per connection
//! ([`DIRECTORY_STREAMS_PER_CONNECTION`]). Connection admission is in [`crate::guard`].
//!
//! A peer that breaks the message protocol — a request that does not parse or is too large, or
//! an envelope the application rejects for good (forged, altered, not for us) —
//! [`MAX_VIOLATIONS_PER_PEER`] times loses its connections once the last answer is sent.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use base64::Engine as _;
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, Swarm,
    request_response::{
        self, OutboundFailure, OutboundRequestId, ProtocolSupport, ResponseChannel,
    },
    swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts},
};
use parley_domain::{Digest, PeerKeys, Role, Username};
use parley_usecases::ports::{
    Directory, DirectoryError, NodeInfo, NodeSnapshot, OutgoingEnvelope, PeerAddress, Transport,
    TransportError,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Credentials, Error,
    attachment::{self, ATTACHMENT_PROTOCOL, AttachmentConfig},
    guard::{self, Guard},
    protocol::{
        DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse, MAX_DIRECTORY_REQUEST_BYTES,
        MAX_DIRECTORY_RESPONSE_BYTES, MAX_ENVELOPE_BASE64, MAX_MESSAGE_REQUEST_BYTES,
        MAX_MESSAGE_RESPONSE_BYTES, MAX_REASON_BYTES, MESSAGE_PROTOCOL, MessageRequest,
        MessageResponse, Meta, meta_within_bounds,
    },
    registry::{Expectation, Refusal, Registry},
    swarm, trace,
};

/// Cap of the command queue into the swarm task.
pub const COMMAND_QUEUE: usize = 64;
/// The largest inbound-message queue a node accepts; [`NodeConfig::inbound_queue`] is clamped
/// to `1..=MAX_INBOUND_QUEUE`. Each waiting message holds at most one 24 KiB envelope.
pub const MAX_INBOUND_QUEUE: usize = 4096;
/// `/parley/message/2` streams open at once on one connection, in either direction (libp2p's
/// request-response counts both); an inbound stream beyond it is dropped unanswered.
pub const MESSAGE_STREAMS_PER_CONNECTION: usize = 64;
/// `/parley/directory/1` streams open at once on one connection.
pub const DIRECTORY_STREAMS_PER_CONNECTION: usize = 32;
/// Protocol violations (requests that do not parse or are too large, envelopes rejected for
/// good) a connected peer may commit before its connections are closed. A plain retry of an
/// envelope already stored is answered with a receipt and is no violation.
pub const MAX_VIOLATIONS_PER_PEER: u32 = 4;
/// How long a peer past [`MAX_VIOLATIONS_PER_PEER`] keeps its connections after its last
/// answer was sent, so that it can read that answer; its requests meanwhile are refused unread.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for a receipt or a directory answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a lost rendezvous connection is re-dialled.
const REDIAL_EVERY: Duration = Duration::from_secs(2);

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The device's credentials.
    pub credentials: Credentials,
    /// The enrolled user (must match the certificate).
    pub user: Username,
    /// Where to listen (port 0 picks one).
    pub listen: Multiaddr,
    /// The rendezvous's addresses, each ending in `/p2p/<id>`.
    pub rendezvous: Vec<Multiaddr>,
    /// Cap of the inbound-message queue (clamped to `1..=`[`MAX_INBOUND_QUEUE`]).
    pub inbound_queue: usize,
    /// Where incoming attachments are staged, and their cap; `None` refuses attachments.
    pub attachments: Option<AttachmentConfig>,
}

/// A sealed message that arrived, waiting for the application to open and store it.
#[derive(Debug)]
pub struct Inbound {
    /// The sender, from the connection's verified certificate.
    pub from: Username,
    /// The keys of the sender's certificate.
    pub keys: PeerKeys,
    /// The sealed envelope, as received (not yet checked).
    pub envelope: Vec<u8>,
    meta: Meta,
    reply: oneshot::Sender<Result<(), (String, bool)>>,
}

impl Inbound {
    /// A `p2p.receive` span for handling this message, joined to the sender's trace.
    #[must_use]
    pub fn span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "p2p.receive",
            from = %self.from,
            size = self.envelope.len()
        );
        trace::adopt(&span, &self.meta);
        span
    }

    /// The message is stored durably: send the receipt.
    pub fn accept(self) {
        let _ = self.reply.send(Ok(()));
    }

    /// The message was not stored: refuse it with a sentence (no receipt); the sender tries
    /// again later.
    pub fn refuse(self, reason: String) {
        let _ = self.reply.send(Err((reason, false)));
    }

    /// The message was not stored and never will be (forged, altered, not for us): refuse it
    /// for good, so the sender stops sending it.
    pub fn reject(self, reason: String) {
        let _ = self.reply.send(Err((reason, true)));
    }
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    guard: Guard,
    messages: request_response::json::Behaviour<MessageRequest, MessageResponse>,
    directory: request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>,
    streams: libp2p_stream::Behaviour,
}

type LookupReply = oneshot::Sender<Result<Option<PeerAddress>, DirectoryError>>;
type DeliveryReply = oneshot::Sender<Result<PeerKeys, TransportError>>;
type Stopper = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

enum Command {
    Lookup {
        user: Username,
        meta: Meta,
        reply: LookupReply,
    },
    Deliver {
        to: Username,
        pinned: Option<PeerKeys>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Box<MessageRequest>,
        digest: Digest,
        reply: DeliveryReply,
    },
    KeysOf {
        to: Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        pinned: Option<PeerKeys>,
        reply: DeliveryReply,
    },
}

struct PendingDelivery {
    peer: PeerId,
    to: Username,
    digest: Digest,
    reply: DeliveryReply,
}

/// Handle on a running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    snapshot: Arc<Mutex<NodeSnapshot>>,
    shutdown: Arc<Mutex<Option<Stopper>>>,
    streams: libp2p_stream::Control,
    receiving: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Node {
    /// Starts the node: listens, dials the rendezvous and publishes there. Resolves once
    /// listening. Inbound messages arrive on the returned receiver.
    ///
    /// # Errors
    /// [`Error`] when the credentials are unusable or the address cannot be listened on.
    pub async fn start(config: NodeConfig) -> Result<(Self, mpsc::Receiver<Inbound>), Error> {
        let registry = Registry::default();
        let rr = |streams| {
            request_response::Config::default()
                .with_request_timeout(REQUEST_TIMEOUT)
                .with_max_concurrent_streams(streams)
        };
        let behaviour = Behaviour {
            guard: Guard::new(guard::PEER),
            messages: request_response::json::Behaviour::with_codec(
                request_response::json::codec::Codec::default()
                    .set_request_size_maximum(MAX_MESSAGE_REQUEST_BYTES)
                    .set_response_size_maximum(MAX_MESSAGE_RESPONSE_BYTES),
                [(MESSAGE_PROTOCOL, ProtocolSupport::Full)],
                rr(MESSAGE_STREAMS_PER_CONNECTION),
            ),
            directory: request_response::json::Behaviour::with_codec(
                request_response::json::codec::Codec::default()
                    .set_request_size_maximum(MAX_DIRECTORY_REQUEST_BYTES)
                    .set_response_size_maximum(MAX_DIRECTORY_RESPONSE_BYTES),
                [(DIRECTORY_PROTOCOL, ProtocolSupport::Outbound)],
                rr(DIRECTORY_STREAMS_PER_CONNECTION),
            ),
            streams: libp2p_stream::Behaviour::new(),
        };
        let mut streams = behaviour.streams.new_control();
        let receiving = match config.attachments.clone() {
            Some(attachments) => {
                let incoming = streams
                    .accept(ATTACHMENT_PROTOCOL)
                    .map_err(|e| Error::Address(e.to_string()))?;
                Some(tokio::spawn(attachment::serve(
                    registry.clone(),
                    attachments,
                    incoming,
                )))
            }
            None => None,
        };
        let mut swarm = swarm::build(&config.credentials, registry.clone(), behaviour)?;
        let listen_addrs = swarm::listen(&mut swarm, config.listen.clone()).await?;
        let peer_id = config.credentials.peer_id();

        let mut rendezvous_addrs = Vec::new();
        let mut rendezvous_peer = None;
        for addr in &config.rendezvous {
            let (peer, base) =
                swarm::split_peer(addr).ok_or_else(|| Error::Address(addr.to_string()))?;
            if rendezvous_peer.is_some_and(|p| p != peer) {
                return Err(Error::Address(format!(
                    "{addr} (a second rendezvous peer id)"
                )));
            }
            rendezvous_peer = Some(peer);
            rendezvous_addrs.push(base);
        }
        if let Some(peer) = rendezvous_peer {
            registry.expect(
                peer,
                Expectation {
                    role: Role::Rendezvous,
                    keys: None,
                },
            );
        }

        let snapshot = Arc::new(Mutex::new(NodeSnapshot {
            peer_id: peer_id.to_string(),
            listen_addrs: listen_addrs
                .iter()
                .map(|a| swarm::with_peer(a, peer_id).to_string())
                .collect(),
            rendezvous_connected: false,
        }));
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inbound_tx, inbound_rx) =
            mpsc::channel(config.inbound_queue.clamp(1, MAX_INBOUND_QUEUE));
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = Task {
            swarm,
            registry,
            rendezvous: rendezvous_peer.map(|p| (p, rendezvous_addrs)),
            listen_addrs,
            snapshot: snapshot.clone(),
            inbound: inbound_tx,
            lookups: HashMap::new(),
            deliveries: HashMap::new(),
            probes: HashMap::new(),
            replies: FuturesUnordered::new(),
            violations: HashMap::new(),
            closing: HashSet::new(),
            closes: FuturesUnordered::new(),
            scheduled: HashSet::new(),
        };
        let handle = tokio::spawn(task.run(command_rx, stop_rx));
        Ok((
            Self {
                commands,
                snapshot,
                shutdown: Arc::new(Mutex::new(Some((stop_tx, handle)))),
                streams,
                receiving: Arc::new(Mutex::new(receiving)),
            },
            inbound_rx,
        ))
    }

    /// Stops the swarm task and waits for it. Idempotent.
    pub async fn shutdown(&self) {
        let taken = self
            .shutdown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, handle)) = taken {
            let _ = stop.send(());
            let _ = handle.await;
        }
        let receiving = self
            .receiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(receiving) = receiving {
            receiving.abort();
        }
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)
    }
}

impl NodeInfo for Node {
    fn snapshot(&self) -> NodeSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Directory for Node {
    #[tracing::instrument(name = "p2p.lookup", skip_all, fields(%user, found), err(Display, level = "info"))]
    async fn lookup(&self, user: &Username) -> Result<Option<PeerAddress>, DirectoryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Lookup {
            user: user.clone(),
            meta: trace::current(),
            reply,
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let found = rx
            .await
            .map_err(|_| DirectoryError::Unavailable("the network task stopped".into()))??;
        tracing::Span::current().record("found", found.is_some());
        Ok(found)
    }
}

impl Transport for Node {
    #[tracing::instrument(
        name = "p2p.deliver",
        skip_all,
        fields(%to, peer.id = %at.peer_id, message.id = %message.id, pinned = pinned.is_some(), outcome),
        err(Display, level = "info")
    )]
    async fn deliver(
        &self,
        to: &Username,
        at: &PeerAddress,
        message: &OutgoingEnvelope,
        pinned: Option<&PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let (peer, addrs) = dial_target(at)?;
        if !message.attachments.is_empty() {
            // Connect (holding the peer to its pinned keys), then send the files ahead of the
            // envelope that names them.
            self.connect(to, peer, addrs.clone(), pinned.copied())
                .await?;
            let mut streams = self.streams.clone();
            for file in &message.attachments {
                attachment::upload(
                    &mut streams,
                    peer,
                    std::path::Path::new(&file.locator),
                    &file.sha256,
                    file.size,
                )
                .await?;
            }
        }
        let request = Box::new(MessageRequest {
            envelope: base64::engine::general_purpose::STANDARD.encode(&message.bytes),
            meta: trace::current(),
        });
        let (reply, rx) = oneshot::channel();
        self.command(Command::Deliver {
            to: to.clone(),
            pinned: pinned.copied(),
            peer,
            addrs,
            request,
            digest: digest_of(&message.bytes),
            reply,
        })
        .await
        .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let outcome = rx
            .await
            .map_err(|_| TransportError::NoReceipt("the network task stopped".into()))?;
        let code = outcome
            .as_ref()
            .map_or_else(TransportError::code, |_| "receipt");
        tracing::Span::current().record("outcome", code);
        outcome
    }

    #[tracing::instrument(
        name = "p2p.keys_of",
        skip_all,
        fields(%to, peer.id = %at.peer_id),
        err(Display, level = "info")
    )]
    async fn keys_of(&self, to: &Username, at: &PeerAddress) -> Result<PeerKeys, TransportError> {
        let (peer, addrs) = dial_target(at)?;
        self.connect(to, peer, addrs, None).await
    }
}

impl Node {
    /// Connects to `peer` as `to` (with `pinned` keys, if any) and returns its keys.
    async fn connect(
        &self,
        to: &Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        pinned: Option<PeerKeys>,
    ) -> Result<PeerKeys, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::KeysOf {
            to: to.clone(),
            peer,
            addrs,
            pinned,
            reply,
        })
        .await
        .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        rx.await
            .map_err(|_| TransportError::Unreachable("the network task stopped".into()))?
    }
}

fn dial_target(at: &PeerAddress) -> Result<(PeerId, Vec<Multiaddr>), TransportError> {
    let peer: PeerId = at
        .peer_id
        .parse()
        .map_err(|_| TransportError::Unreachable(format!("bad peer id {}", at.peer_id)))?;
    let addrs = at
        .addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .collect();
    Ok((peer, addrs))
}

/// SHA-256 of an envelope, as receipts name it.
fn digest_of(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

type Reply = (PeerId, ResponseChannel<MessageResponse>, MessageResponse);

struct Task {
    swarm: Swarm<Behaviour>,
    registry: Registry,
    rendezvous: Option<(PeerId, Vec<Multiaddr>)>,
    listen_addrs: Vec<Multiaddr>,
    snapshot: Arc<Mutex<NodeSnapshot>>,
    inbound: mpsc::Sender<Inbound>,
    lookups: HashMap<OutboundRequestId, LookupReply>,
    deliveries: HashMap<OutboundRequestId, PendingDelivery>,
    /// First contacts waiting for the connection that reveals the peer's certificate.
    probes: HashMap<PeerId, Vec<(Username, DeliveryReply)>>,
    replies: FuturesUnordered<BoxFuture<'static, Reply>>,
    /// Protocol violations per connected peer (forgotten when its last connection closes).
    violations: HashMap<PeerId, u32>,
    /// Peers past [`MAX_VIOLATIONS_PER_PEER`], disconnected once their last answer is sent.
    closing: HashSet<PeerId>,
    /// Disconnections waiting out [`CLOSE_GRACE`]: at most one per peer in `closing`.
    closes: FuturesUnordered<BoxFuture<'static, PeerId>>,
    /// Peers whose disconnection is scheduled.
    scheduled: HashSet<PeerId>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut stop: oneshot::Receiver<()>) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                // Local work first: finish replies before taking new remote work.
                Some((peer, channel, response)) = self.replies.next(), if !self.replies.is_empty() => {
                    self.respond(peer, channel, response);
                }
                Some(peer) = self.closes.next(), if !self.closes.is_empty() => {
                    self.scheduled.remove(&peer);
                    if self.closing.contains(&peer) {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                }
                Some(command) = commands.recv() => self.on_command(command),
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = redial.tick() => self.dial_rendezvous_if_needed(),
            }
        }
        tracing::debug!("node task stopped");
    }

    fn set_connected(&self, connected: bool) {
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rendezvous_connected = connected;
    }

    fn dial_rendezvous_if_needed(&mut self) {
        let Some((peer, addrs)) = &self.rendezvous else {
            return;
        };
        if self.swarm.is_connected(peer) {
            return;
        }
        let opts = DialOpts::peer_id(*peer).addresses(addrs.clone()).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(error = %e, "rendezvous dial not started");
        }
    }

    fn publish(&mut self) {
        let Some((peer, _)) = &self.rendezvous else {
            return;
        };
        let addrs = self.listen_addrs.iter().map(ToString::to_string).collect();
        self.swarm.behaviour_mut().directory.send_request(
            peer,
            DirectoryRequest::Publish {
                addrs,
                meta: Meta::new(),
            },
        );
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Lookup { user, meta, reply } => {
                // A verified connection to the user is open: no need to ask the rendezvous
                // (one round trip and one look-up of the rate limit saved per message).
                if let Some(peer) = self.registry.peer_of(&Role::User(user.clone()))
                    && self.swarm.is_connected(&peer)
                {
                    let _ = reply.send(Ok(Some(PeerAddress {
                        peer_id: peer.to_string(),
                        addrs: Vec::new(),
                    })));
                    return;
                }
                let Some((peer, addrs)) = &self.rendezvous else {
                    let _ = reply.send(Err(DirectoryError::Unavailable(
                        "no rendezvous is configured".into(),
                    )));
                    return;
                };
                let request = DirectoryRequest::Lookup {
                    username: user.to_string(),
                    meta,
                };
                let id = self
                    .swarm
                    .behaviour_mut()
                    .directory
                    .send_request_with_addresses(peer, request, addrs.clone());
                self.lookups.insert(id, reply);
            }
            Command::Deliver {
                to,
                pinned,
                peer,
                addrs,
                request,
                digest,
                reply,
            } => {
                let expected = Expectation {
                    role: Role::User(to.clone()),
                    keys: pinned,
                };
                // An existing connection was checked against whatever was expected when it
                // opened; hold it to this delivery's expectation too.
                if let Some(certified) = self.registry.certified(&peer) {
                    if certified.role != expected.role {
                        let _ = reply.send(Err(TransportError::WrongIdentity { expected: to }));
                        return;
                    }
                    if pinned.is_some_and(|k| k != certified.keys()) {
                        let presented = certified.keys();
                        let _ = reply.send(Err(TransportError::KeysChanged { presented }));
                        return;
                    }
                }
                self.registry.expect(peer, expected);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .messages
                    .send_request_with_addresses(&peer, *request, addrs);
                self.deliveries.insert(
                    id,
                    PendingDelivery {
                        peer,
                        to,
                        digest,
                        reply,
                    },
                );
            }
            Command::KeysOf {
                to,
                peer,
                addrs,
                pinned,
                reply,
            } => self.probe(to, peer, addrs, pinned, reply),
        }
    }

    /// Connects to `peer` (if not connected yet) to learn the keys of its certificate,
    /// holding it to `pinned` keys when given.
    fn probe(
        &mut self,
        to: Username,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        pinned: Option<PeerKeys>,
        reply: DeliveryReply,
    ) {
        let role = Role::User(to.clone());
        if let Some(certified) = self.registry.certified(&peer) {
            let _ = reply.send(if certified.role != role {
                Err(TransportError::WrongIdentity { expected: to })
            } else if pinned.is_some_and(|k| k != certified.keys()) {
                Err(TransportError::KeysChanged {
                    presented: certified.keys(),
                })
            } else {
                Ok(certified.keys())
            });
            return;
        }
        self.registry
            .expect(peer, Expectation { role, keys: pinned });
        let waiting = self.probes.entry(peer).or_default();
        waiting.push((to, reply));
        if waiting.len() > 1 {
            return; // a dial is already under way
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            for (_, reply) in self.probes.remove(&peer).unwrap_or_default() {
                let _ = reply.send(Err(TransportError::Unreachable(e.to_string())));
            }
        }
    }

    /// Answers the first contacts waiting on `peer` once its connection is up or failed.
    fn finish_probes(&mut self, peer: &PeerId, connected: bool) {
        let Some(waiting) = self.probes.remove(peer) else {
            return;
        };
        let refusal = if connected {
            None
        } else {
            self.registry.take_refusal(peer)
        };
        let keys = self.registry.certified(peer).map(|c| c.keys());
        for (to, reply) in waiting {
            let answer = match (&refusal, keys) {
                (Some(Refusal::WrongIdentity(_)), _) => {
                    Err(TransportError::WrongIdentity { expected: to })
                }
                (Some(Refusal::KeysChanged(presented)), _) => Err(TransportError::KeysChanged {
                    presented: *presented,
                }),
                (None, Some(keys)) if connected => Ok(keys),
                _ => Err(TransportError::Unreachable(
                    "no connection could be made".into(),
                )),
            };
            let _ = reply.send(answer);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Messages(event)) => self.on_message_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Directory(event)) => {
                self.on_directory_event(event)
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if self.rendezvous.as_ref().is_some_and(|(p, _)| *p == peer_id) =>
            {
                tracing::info!(%peer_id, "connected to the rendezvous");
                self.publish();
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.finish_probes(&peer_id, true);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.registry.forget(&peer_id);
                self.violations.remove(&peer_id);
                self.closing.remove(&peer_id);
                if self.rendezvous.as_ref().is_some_and(|(p, _)| *p == peer_id) {
                    tracing::warn!("lost the rendezvous connection; re-dialling");
                    self.set_connected(false);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } if !self.listen_addrs.contains(&address) => {
                self.listen_addrs.push(address);
                let me = *self.swarm.local_peer_id();
                self.snapshot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .listen_addrs = self
                    .listen_addrs
                    .iter()
                    .map(|a| swarm::with_peer(a, me).to_string())
                    .collect();
                if self
                    .rendezvous
                    .as_ref()
                    .is_some_and(|(p, _)| self.swarm.is_connected(p))
                {
                    self.publish();
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::info!(%send_back_addr, error = %error, "refused an incoming connection");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, error = %error, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    self.finish_probes(&peer, false);
                }
            }
            _ => {}
        }
    }

    fn on_directory_event(
        &mut self,
        event: request_response::Event<DirectoryRequest, DirectoryResponse>,
    ) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if response == DirectoryResponse::Published {
                    // Only now is this peer findable: status says "connected" from here on.
                    self.set_connected(true);
                    return;
                }
                let Some(reply) = self.lookups.remove(&request_id) else {
                    return;
                };
                let answer = match response {
                    DirectoryResponse::Lookup { peer } => Ok(peer.map(|p| PeerAddress {
                        peer_id: p.peer_id,
                        addrs: p.addrs,
                    })),
                    DirectoryResponse::RateLimited { retry_after_ms } => {
                        Err(DirectoryError::Refused(format!(
                            "too many look-ups; retry in {} s",
                            retry_after_ms.div_ceil(1000)
                        )))
                    }
                    DirectoryResponse::Refused { reason } => Err(DirectoryError::Refused(reason)),
                    DirectoryResponse::Published => {
                        Err(DirectoryError::Unavailable("unexpected answer".into()))
                    }
                };
                let _ = reply.send(answer);
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.lookups.remove(&request_id) {
                    let _ = reply.send(Err(DirectoryError::Unavailable(describe(&error))));
                } else {
                    tracing::warn!(error = %error, "publishing to the rendezvous failed");
                }
            }
            _ => {}
        }
    }

    fn on_message_event(
        &mut self,
        event: request_response::Event<MessageRequest, MessageResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_inbound_message(peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(PendingDelivery {
                    peer,
                    digest,
                    reply,
                    ..
                }) = self.deliveries.remove(&request_id)
                else {
                    return;
                };
                // The answer came over the connection, so its certificate is still on record.
                let keys = self.registry.certified(&peer).map(|c| c.keys());
                let _ = reply.send(match (response, keys) {
                    (MessageResponse::Receipt { digest: named }, Some(keys))
                        if Digest::parse(&named) == Some(digest) =>
                    {
                        Ok(keys)
                    }
                    (MessageResponse::Receipt { .. }, Some(_)) => Err(TransportError::NoReceipt(
                        "the receipt names another envelope".into(),
                    )),
                    (MessageResponse::Receipt { .. }, None) => Err(TransportError::NoReceipt(
                        "the connection closed with the receipt".into(),
                    )),
                    (MessageResponse::Refused { reason, permanent }, _) => Err(if permanent {
                        TransportError::Rejected(reason)
                    } else {
                        TransportError::Refused(reason)
                    }),
                });
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                let Some(PendingDelivery {
                    peer, to, reply, ..
                }) = self.deliveries.remove(&request_id)
                else {
                    return;
                };
                let answer = match (&error, self.registry.take_refusal(&peer)) {
                    (OutboundFailure::DialFailure, Some(Refusal::WrongIdentity(reason))) => {
                        tracing::warn!(%peer, %reason, "refused a peer that is not who we dialled");
                        Err(TransportError::WrongIdentity { expected: to })
                    }
                    (OutboundFailure::DialFailure, Some(Refusal::KeysChanged(presented))) => {
                        tracing::warn!(%peer, user = %to, "refused a peer whose keys are not the pinned ones");
                        Err(TransportError::KeysChanged { presented })
                    }
                    (OutboundFailure::DialFailure, None) => {
                        Err(TransportError::Unreachable(describe(&error)))
                    }
                    _ => Err(TransportError::NoReceipt(describe(&error))),
                };
                let _ = reply.send(answer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, error = %error, "inbound message failed");
                // A request that does not parse, or is cut at the size cap, breaks the
                // protocol; a timeout or a closed connection does not.
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    self.violation(peer);
                }
                self.close_if_due(peer);
            }
            request_response::Event::ResponseSent { peer, .. } => self.close_if_due(peer),
        }
    }

    fn on_inbound_message(
        &mut self,
        peer: PeerId,
        request: MessageRequest,
        channel: ResponseChannel<MessageResponse>,
    ) {
        let refuse = |reason: &str, permanent: bool| MessageResponse::Refused {
            reason: reason.to_owned(),
            permanent,
        };
        let certified = self.registry.certified(&peer);
        let (from, keys) = match certified.as_ref().map(|c| (&c.role, c.keys())) {
            Some((Role::User(user), keys)) => (user.clone(), keys),
            _ => {
                let _ = self.swarm.behaviour_mut().messages.send_response(
                    channel,
                    refuse("only enrolled users may send messages", false),
                );
                return;
            }
        };
        if self.closing.contains(&peer) {
            let _ = self.swarm.behaviour_mut().messages.send_response(
                channel,
                refuse("too many protocol violations on this connection", true),
            );
            return;
        }
        let envelope = match parse_request(&request) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::info!(%from, %reason, "refused a malformed message");
                // No honest sender produces it: the same request can never succeed.
                self.respond(peer, channel, refuse(reason, true));
                return;
            }
        };
        let digest = digest_of(&envelope).to_string();
        let meta = request.meta;
        let (reply, rx) = oneshot::channel();
        match self.inbound.try_send(Inbound {
            from,
            keys,
            envelope,
            meta,
            reply,
        }) {
            Ok(()) => self.replies.push(
                async move {
                    let response = match rx.await {
                        Ok(Ok(())) => MessageResponse::Receipt { digest },
                        Ok(Err((reason, permanent))) => {
                            MessageResponse::Refused { reason, permanent }
                        }
                        Err(_) => MessageResponse::Refused {
                            reason: "the recipient is shutting down".into(),
                            permanent: false,
                        },
                    };
                    (peer, channel, response)
                }
                .boxed(),
            ),
            Err(_) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .messages
                    .send_response(channel, refuse("the recipient is busy; retry later", false));
            }
        }
    }
}

impl Task {
    /// Sends `response` to `peer`; a refusal for good counts as a violation.
    fn respond(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<MessageResponse>,
        response: MessageResponse,
    ) {
        let response = match response {
            MessageResponse::Refused { reason, permanent } => {
                if permanent {
                    self.violation(peer);
                }
                MessageResponse::Refused {
                    reason: cut(reason, MAX_REASON_BYTES),
                    permanent,
                }
            }
            receipt => receipt,
        };
        if self
            .swarm
            .behaviour_mut()
            .messages
            .send_response(channel, response)
            .is_err()
        {
            // The stream is gone (closed or timed out): nothing left to wait for.
            self.close_if_due(peer);
        }
    }

    /// Counts a protocol violation by `peer`; past the limit its connections close once the
    /// answer in flight is sent.
    fn violation(&mut self, peer: PeerId) {
        let count = self.violations.entry(peer).or_default();
        *count = count.saturating_add(1);
        if *count >= MAX_VIOLATIONS_PER_PEER && self.closing.insert(peer) {
            tracing::warn!(%peer, violations = *count, "closing the connection of a peer that breaks the protocol");
        }
    }

    /// Schedules the closing of `peer`'s connections if it is past the limit.
    fn close_if_due(&mut self, peer: PeerId) {
        if self.closing.contains(&peer) && self.scheduled.insert(peer) {
            self.closes.push(
                async move {
                    tokio::time::sleep(CLOSE_GRACE).await;
                    peer
                }
                .boxed(),
            );
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The envelope bytes of a `/parley/message/2` request, or why it is refused before the
/// envelope is read (metadata out of bounds, too long, not base64). Public for the fuzz
/// targets.
#[doc(hidden)]
pub fn parse_request(request: &MessageRequest) -> Result<Vec<u8>, &'static str> {
    if !meta_within_bounds(&request.meta) {
        return Err("the message metadata is too large");
    }
    if request.envelope.len() > MAX_ENVELOPE_BASE64 {
        return Err("the envelope is too large");
    }
    base64::engine::general_purpose::STANDARD
        .decode(&request.envelope)
        .map_err(|_| "the envelope is not valid base64")
}

fn describe(error: &OutboundFailure) -> String {
    match error {
        OutboundFailure::DialFailure => "no connection could be made".into(),
        OutboundFailure::Timeout => "timed out waiting for an answer".into(),
        OutboundFailure::ConnectionClosed => "the connection closed before the answer".into(),
        OutboundFailure::UnsupportedProtocols => {
            "the other side does not speak the protocol".into()
        }
        other => other.to_string(),
    }
}
