//! A peer's node: one task owns the libp2p swarm; the rest talk to it through bounded channels.
//!
//! The swarm runs one composed behaviour ([`behaviour`]), one field per concern, each concern
//! in its own file with its state and its event handler: the directory client
//! ([`directory`]), reaching the peers messages are for ([`messaging`], with the
//! [`violations`] policy), first contacts ([`probe`]), the mailbox client ([`mailbox`]), the
//! prekey client ([`prekeys`]). The swarm task ([`task`]) dispatches commands and events to
//! them. Raw `libp2p-stream` streams run on tasks of their own: messages (`/parley/message/3`,
//! sending in [`links`], receiving in [`receiving`]) and attachments ([`crate::attachment`]). A
//! new capability (relay client, hole punching, a mailbox, rooms) is one more file here, one
//! more field of the behaviour and one more arm in the task.
//!
//! Queues and their caps: commands to the swarm task ([`COMMAND_QUEUE`]), inbound messages to
//! the application ([`NodeConfig::inbound_queue`], at most [`MAX_INBOUND_QUEUE`]; when full, a
//! message is refused with "busy" and the sender's outbox retries later), message streams per
//! peer ([`MESSAGE_STREAMS_PER_PEER`]) and requests in flight on each
//! ([`crate::message::MAX_IN_FLIGHT`]), look-ups in flight per connection
//! ([`DIRECTORY_STREAMS_PER_CONNECTION`]), mailbox requests per connection
//! ([`MAILBOX_STREAMS_PER_CONNECTION`]), prekey requests per connection
//! ([`PREKEY_CLIENT_STREAMS_PER_CONNECTION`]). Connection admission is in [`crate::guard`].
//!
//! A peer that breaks the message protocol — a frame that does not parse or is too large, a
//! request refused for good before its envelope is read, or an envelope the application
//! rejects for good (forged, altered, not for us) — [`MAX_VIOLATIONS_PER_PEER`] times loses its
//! connections once the last answer is sent.

mod account;
mod asking;
mod behaviour;
mod directory;
mod inbound;
mod links;
mod mailbox;
mod messaging;
mod nat;
mod ports;
mod prekeys;
mod probe;
mod receiving;
mod relay;
mod renew;
mod task;
mod violations;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use libp2p::Multiaddr;
use parley_domain::{Role, Username};
use parley_pki::CaRoot;
use parley_usecases::ports::{NodeSnapshot, Reachability, RelaySnapshot};
use tokio::sync::{Notify, mpsc, oneshot, watch};

pub use directory::{DIRECTORY_STREAMS_PER_CONNECTION, PeerAddress};
pub use inbound::Inbound;
pub use mailbox::MAILBOX_STREAMS_PER_CONNECTION;
pub use prekeys::PREKEY_CLIENT_STREAMS_PER_CONNECTION;
pub use receiving::MESSAGE_STREAMS_PER_PEER;
pub use renew::HeldCertificate;
pub use violations::{CLOSE_GRACE, MAX_VIOLATIONS_PER_PEER};

pub(crate) use self::behaviour::{identify, ping};
use self::{
    behaviour::Behaviour,
    directory::Rendezvous,
    links::Links,
    messaging::{CLOSE_QUEUE, Messaging},
    nat::Nat,
    probe::Probes,
    receiving::Receiving,
    relay::Reservation,
    renew::Renewal,
    task::{Command, Task},
    violations::Violations,
};
use crate::{
    Credentials, Error,
    attachment::{self, ATTACHMENT_PROTOCOL, AttachmentConfig},
    message::MESSAGE_PROTOCOL,
    refresh::Refresh,
    registry::{Expectation, Registry},
    swarm,
};

/// Cap of the command queue into the swarm task.
pub const COMMAND_QUEUE: usize = 64;
/// The largest inbound-message queue a node accepts; [`NodeConfig::inbound_queue`] is clamped
/// to `1..=MAX_INBOUND_QUEUE`. Each waiting message holds at most one 24 KiB envelope.
pub const MAX_INBOUND_QUEUE: usize = 4096;

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
    /// Whether the node renews its certificate when renewal is due. A short-lived node that
    /// only publishes prekeys does not: only a node whose renewals are kept in the store may.
    pub renew: bool,
    /// Each connection refreshes its TLS traffic keys (a TLS 1.3 `KeyUpdate`) after a random
    /// time drawn uniformly in `min..=max`, again and again
    /// ([`crate::refresh::DEFAULT_TLS_REFRESH`] by default: 30 s to 120 s).
    pub tls_refresh: (Duration, Duration),
}

type Stopper = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Handle on a running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    snapshot: Arc<Mutex<NodeSnapshot>>,
    shutdown: Arc<Mutex<Option<Stopper>>>,
    streams: libp2p_stream::Control,
    /// The tasks that accept message and attachment streams.
    receiving: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// The message stream to each contact.
    links: Links,
    registry: Registry,
    /// The CA root the mutual-TLS upgrade trusts, for certificates the rendezvous hands out.
    ca: CaRoot,
    waiting: Arc<Notify>,
    certificate: watch::Receiver<HeldCertificate>,
    refresh: Refresh,
}

impl Node {
    /// Starts the node: listens, dials the rendezvous and publishes there. Resolves once
    /// listening. Inbound messages arrive on the returned receiver.
    ///
    /// # Errors
    /// [`Error`] when the credentials are unusable or the address cannot be listened on.
    pub async fn start(config: NodeConfig) -> Result<(Self, mpsc::Receiver<Inbound>), Error> {
        let registry = Registry::default();
        let ca = CaRoot::new(&config.credentials.ca)?;
        let me = config.credentials.keypair.public();
        let identity = crate::tls::Identity::new(&config.credentials)?;
        let (renewal, certificate) = Renewal::new(identity.clone(), ca.clone(), config.renew)?;
        let refresh = Refresh::new(config.tls_refresh);
        let mut swarm = swarm::build_with_relay(
            &config.credentials,
            identity,
            registry.clone(),
            refresh.clone(),
            |relay| Behaviour::new(&me, relay),
        )?;
        let mut streams = swarm.behaviour().streams.new_control();
        let mut receiving = Vec::new();
        if let Some(attachments) = config.attachments.clone() {
            let incoming = streams
                .accept(ATTACHMENT_PROTOCOL)
                .map_err(|e| Error::Address(e.to_string()))?;
            receiving.push(tokio::spawn(attachment::serve(
                registry.clone(),
                attachments,
                incoming,
            )));
        }
        let (inbound_tx, inbound_rx) =
            mpsc::channel(config.inbound_queue.clamp(1, MAX_INBOUND_QUEUE));
        let violations = Violations::default();
        let (closes_tx, closes_rx) = mpsc::channel(CLOSE_QUEUE);
        let messages = streams
            .accept(MESSAGE_PROTOCOL)
            .map_err(|e| Error::Address(e.to_string()))?;
        receiving.push(tokio::spawn(receiving::serve(
            Arc::new(Receiving::new(
                registry.clone(),
                inbound_tx,
                violations.clone(),
                closes_tx,
                config.credentials.keypair.clone(),
            )),
            messages,
        )));
        let links = Links::default();
        let listen_addrs = swarm::listen(&mut swarm, config.listen.clone()).await?;
        let peer_id = config.credentials.peer_id();

        let rendezvous = rendezvous(&config.rendezvous)?;
        if let Some(Rendezvous { peer, .. }) = &rendezvous {
            registry.set_expectation(
                *peer,
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
            reachability: Reachability::Unknown,
            relay: RelaySnapshot::default(),
            connections: Vec::new(),
        }));
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let waiting = Arc::new(Notify::new());
        let task = Task {
            swarm,
            registry: registry.clone(),
            listen_addrs,
            snapshot: snapshot.clone(),
            reservation: Reservation::new(rendezvous.as_ref()),
            mailbox: mailbox::Client::new(rendezvous.as_ref().map(|r| r.peer), waiting.clone()),
            prekeys: prekeys::Client::new(rendezvous.as_ref().map(|r| r.peer)),
            account: account::Client::new(rendezvous.as_ref().map(|r| r.peer)),
            directory: directory::Client::new(rendezvous, snapshot.clone()),
            messaging: Messaging::new(violations, closes_rx, links.clone()),
            probes: Probes::default(),
            nat: Nat::default(),
            renewal,
        };
        let handle = tokio::spawn(task.run(command_rx, stop_rx));
        Ok((
            Self {
                commands,
                snapshot,
                shutdown: Arc::new(Mutex::new(Some((stop_tx, handle)))),
                streams,
                receiving: Arc::new(Mutex::new(receiving)),
                links,
                registry,
                ca,
                waiting,
                certificate,
                refresh,
            },
            inbound_rx,
        ))
    }

    /// Fires when mail may wait at the rendezvous: it said so (`Waiting`), or it acknowledged
    /// this node's publication (a (re)connection, after which mail held meanwhile may wait).
    /// Fetch when it fires. It holds one wake-up (`notify_one`) while nobody waits, so none is
    /// lost between two fetches.
    #[must_use]
    pub fn mail_waiting(&self) -> Arc<Notify> {
        Arc::clone(&self.waiting)
    }

    /// The certificate the node presents, following each renewal (see `renew.rs`): keep the
    /// newest on disk.
    #[must_use]
    pub fn certificate(&self) -> watch::Receiver<HeldCertificate> {
        self.certificate.clone()
    }

    /// How many times this node's connections refreshed their TLS traffic keys so far (see
    /// [`NodeConfig::tls_refresh`]), for metrics and tests.
    #[must_use]
    pub fn tls_refreshes(&self) -> u64 {
        self.refresh.count()
    }

    /// How many `/parley/message/3` streams this node opened so far: one per contact it sent
    /// to, and one more each time such a stream broke. For metrics and tests.
    #[must_use]
    pub fn message_streams_opened(&self) -> u64 {
        self.links.opened()
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
        self.links.close_all();
        let receiving = std::mem::take(
            &mut *self
                .receiving
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in receiving {
            task.abort();
        }
    }

    /// How the node is connected to `peer` now: `direct` or `relayed`, for spans.
    fn path_to(&self, peer: &libp2p::PeerId) -> Option<&'static str> {
        let id = peer.to_string();
        self.snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .iter()
            .find(|c| c.peer_id == id)
            .map(|c| match c.path {
                parley_usecases::ports::Path::Direct => "direct",
                parley_usecases::ports::Path::Relayed => "relayed",
            })
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)
    }
}

/// The rendezvous named by `addrs` (each ending in `/p2p/<id>`, all the same id), if any.
fn rendezvous(addrs: &[Multiaddr]) -> Result<Option<Rendezvous>, Error> {
    let mut rendezvous: Option<Rendezvous> = None;
    for addr in addrs {
        let (peer, base) =
            swarm::split_peer(addr).ok_or_else(|| Error::Address(addr.to_string()))?;
        match &mut rendezvous {
            Some(r) if r.peer != peer => {
                return Err(Error::Address(format!(
                    "{addr} (a second rendezvous peer id)"
                )));
            }
            Some(r) => r.addrs.push(base),
            None => {
                rendezvous = Some(Rendezvous {
                    peer,
                    addrs: vec![base],
                });
            }
        }
    }
    Ok(rendezvous)
}
