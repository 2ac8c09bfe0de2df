//! Messaging, on the swarm task: reaching the peer a delivery is for (holding an existing
//! connection to the identity it is meant for, or dialling it), and closing the connections of
//! peers past their violations.
//!
//! The envelopes themselves travel over `/parley/message/3` streams outside the swarm task:
//! the sending side in [`super::links`], the receiving side in [`super::receiving`].

use std::collections::HashMap;

use libp2p::{
    Multiaddr, PeerId, Swarm,
    swarm::{
        ConnectionId,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use parley_domain::{PeerKeys, Role, Username};
use parley_usecases::ports::TransportError;
use tokio::sync::mpsc;

use super::{behaviour, links::Links, probe, task::DeliveryReply, violations::Violations};
use crate::registry::{Expectation, Refusal, Registry};

type PeerSwarm = Swarm<behaviour::Behaviour>;

/// Disconnections due (a peer past its violations, after its grace) waiting for the swarm
/// task: at most one per peer is scheduled, and the senders wait when it is full.
pub(super) const CLOSE_QUEUE: usize = 16;

/// Local work of the messaging concern.
pub(super) enum Due {
    /// `peer` is past its violations and its grace: close its connections.
    Disconnect(PeerId),
}

/// The peer a delivery is for, as the swarm task receives it.
pub(super) struct Reach {
    /// The recipient, as the certificate must name it.
    pub(super) to: Username,
    /// The keys the recipient must present, when pinned.
    pub(super) pinned: Option<PeerKeys>,
    /// Where to reach it.
    pub(super) peer: PeerId,
    /// Its addresses (may be empty when connected).
    pub(super) addrs: Vec<Multiaddr>,
}

/// A delivery waiting for its connection.
struct Waiting {
    to: Username,
    pinned: Option<PeerKeys>,
    reply: DeliveryReply,
}

/// Deliveries waiting for a connection, the dials they started, and the disconnections due.
pub(super) struct Messaging {
    waiting: HashMap<PeerId, Vec<Waiting>>,
    /// The dials deliveries started and that have not ended yet, and to whom.
    dialing: HashMap<ConnectionId, PeerId>,
    violations: Violations,
    closes: mpsc::Receiver<PeerId>,
    links: Links,
}

impl Messaging {
    pub(super) fn new(
        violations: Violations,
        closes: mpsc::Receiver<PeerId>,
        links: Links,
    ) -> Self {
        Self {
            waiting: HashMap::new(),
            dialing: HashMap::new(),
            violations,
            closes,
            links,
        }
    }

    /// Answers with the recipient's certified keys once a verified connection to the identity
    /// the delivery is meant for is open, dialling it when there is none.
    pub(super) fn reach(
        &mut self,
        swarm: &mut PeerSwarm,
        registry: &Registry,
        reach: Reach,
        reply: DeliveryReply,
    ) {
        let Reach {
            to,
            pinned,
            peer,
            addrs,
        } = reach;
        // An existing connection was checked against whatever was expected when it opened;
        // hold it to this delivery's expectation too.
        if swarm.is_connected(&peer)
            && let Some(certified) = registry.certified(&peer)
        {
            let _ = reply.send(probe::hold_to(&certified, &to, pinned));
            return;
        }
        registry.set_expectation(
            peer,
            Expectation {
                role: Role::User(to.clone()),
                keys: pinned,
            },
        );
        // Dialled here, whatever other dial to the peer is under way (unless it is a
        // delivery's own): a hole punch's dial to an address that will not answer would
        // otherwise hold the delivery until it times out (and its failure would fail the
        // delivery with it), never trying the addresses the directory gave, such as the relay's
        // circuit. Deliveries share one dial per peer, so retries do not pile up circuits.
        if !self.dialing.values().any(|p| *p == peer) {
            if addrs.is_empty() {
                let _ = reply.send(Err(TransportError::Unreachable(
                    "no connection could be made".into(),
                )));
                return;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::Always)
                .build();
            let connection = opts.connection_id();
            if let Err(e) = swarm.dial(opts) {
                let _ = reply.send(Err(TransportError::Unreachable(e.to_string())));
                return;
            }
            self.dialing.insert(connection, peer);
        }
        self.waiting
            .entry(peer)
            .or_default()
            .push(Waiting { to, pinned, reply });
    }

    /// A connection to `peer` is up: the deliveries waiting for it go on.
    pub(super) fn established(
        &mut self,
        registry: &Registry,
        peer: &PeerId,
        connection: ConnectionId,
    ) {
        self.dialing.remove(&connection);
        let Some(waiting) = self.waiting.remove(peer) else {
            return;
        };
        let certified = registry.certified(peer);
        for Waiting { to, pinned, reply } in waiting {
            let answer = match &certified {
                Some(certified) => probe::hold_to(certified, &to, pinned),
                None => Err(TransportError::Unreachable(
                    "the connection closed at once".into(),
                )),
            };
            let _ = reply.send(answer);
        }
    }

    /// A dial failed: when it was a delivery's, the deliveries waiting on that peer fail, as
    /// refused at the handshake (not who we dialled, other keys than the pinned ones) or as
    /// unreachable.
    pub(super) fn dial_failed(
        &mut self,
        registry: &Registry,
        peer: Option<PeerId>,
        connection: ConnectionId,
        error: &str,
    ) {
        if self.dialing.remove(&connection).is_none() {
            return;
        }
        let Some(peer) = peer else { return };
        let Some(waiting) = self.waiting.remove(&peer) else {
            return;
        };
        let refusal = registry.take_refusal(&peer);
        for Waiting { to, reply, .. } in waiting {
            let answer = match &refusal {
                Some(Refusal::WrongIdentity(reason)) => {
                    tracing::warn!(%peer, %reason, "refused a peer that is not who we dialled");
                    Err(TransportError::WrongIdentity { expected: to })
                }
                Some(Refusal::KeysChanged(presented)) => {
                    tracing::warn!(%peer, user = %to, "refused a peer whose keys are not the pinned ones");
                    Err(TransportError::KeysChanged {
                        presented: *presented,
                    })
                }
                None => Err(TransportError::Unreachable(format!(
                    "no connection could be made: {error}"
                ))),
            };
            let _ = reply.send(answer);
        }
    }

    /// Waits for the next piece of local work: a peer to disconnect for its violations. Never
    /// resolves while there is none. Cancel-safe.
    pub(super) async fn next_due(&mut self) -> Due {
        loop {
            match self.closes.recv().await {
                Some(peer) if self.violations.close_due(&peer) => return Due::Disconnect(peer),
                Some(_) => {}
                // Every sender is gone (the streams' tasks hold them): nothing will come due.
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Whether a delivery to `peer` waits for its connection or its receipt.
    pub(super) fn in_flight_to(&self, peer: &PeerId) -> bool {
        self.waiting.contains_key(peer) || self.links.in_flight_to(peer)
    }

    /// Forgets `peer`'s violations once its last connection closed.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.violations.forget(peer);
    }
}
