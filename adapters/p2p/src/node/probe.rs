//! First contacts: connecting to a peer only to learn (or check) the keys of its certificate,
//! before anything is sent to it.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId, Swarm, swarm::dial_opts::DialOpts};
use parley_domain::{CertifiedPeer, PeerKeys, Role, Username};
use parley_usecases::ports::TransportError;

use super::{behaviour::Behaviour, task::DeliveryReply};
use crate::registry::{Expectation, Refusal, Registry};

/// First contacts waiting for the connection that reveals the peer's certificate.
#[derive(Default)]
pub(super) struct Probes {
    waiting: HashMap<PeerId, Vec<(Username, DeliveryReply)>>,
}

/// Holds an already verified connection to the identity a caller asked for: `to`, with the
/// `pinned` keys when given. Returns the certificate's keys.
pub(super) fn hold_to(
    certified: &CertifiedPeer,
    to: &Username,
    pinned: Option<PeerKeys>,
) -> Result<PeerKeys, TransportError> {
    if certified.role != Role::User(to.clone()) {
        Err(TransportError::WrongIdentity {
            expected: to.clone(),
        })
    } else if pinned.is_some_and(|k| k != certified.keys()) {
        Err(TransportError::KeysChanged {
            presented: certified.keys(),
        })
    } else {
        Ok(certified.keys())
    }
}

impl Probes {
    /// Connects to `peer` (if not connected yet) to learn the keys of its certificate,
    /// holding it to `pinned` keys when given.
    pub(super) fn start(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        registry: &Registry,
        to: Username,
        at: (PeerId, Vec<Multiaddr>),
        pinned: Option<PeerKeys>,
        reply: DeliveryReply,
    ) {
        let (peer, addrs) = at;
        if let Some(certified) = registry.certified(&peer) {
            let _ = reply.send(hold_to(&certified, &to, pinned));
            return;
        }
        registry.set_expectation(
            peer,
            Expectation {
                role: Role::User(to.clone()),
                keys: pinned,
            },
        );
        let waiting = self.waiting.entry(peer).or_default();
        waiting.push((to, reply));
        if waiting.len() > 1 {
            return; // a dial is already under way
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = swarm.dial(opts) {
            for (_, reply) in self.waiting.remove(&peer).unwrap_or_default() {
                let _ = reply.send(Err(TransportError::Unreachable(e.to_string())));
            }
        }
    }

    /// Answers the first contacts waiting on `peer` once its connection is up or failed.
    pub(super) fn finish(&mut self, registry: &Registry, peer: &PeerId, connected: bool) {
        let Some(waiting) = self.waiting.remove(peer) else {
            return;
        };
        let refusal = if connected {
            None
        } else {
            registry.take_refusal(peer)
        };
        let keys = registry.certified(peer).map(|c| c.keys());
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
}
