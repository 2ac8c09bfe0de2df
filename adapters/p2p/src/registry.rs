//! Who is on the other end of each connection, as proven by its verified certificate.
//!
//! The security upgrade writes here once the TLS handshake verified the chain; the protocols
//! read here to learn who sent a request. Nothing a peer *says* ever lands here. It also holds
//! what a dialer *expects* of a peer id (which user, or the rendezvous), checked by the upgrade
//! before any application byte flows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use libp2p::PeerId;
use parley_domain::{CertifiedPeer, PeerKeys, Role};

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    certified: HashMap<PeerId, CertifiedPeer>,
    expected: HashMap<PeerId, Expectation>,
    refused: HashMap<PeerId, Refusal>,
}

/// What a dialer requires of a peer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Whom the certificate must name.
    pub role: Role,
    /// The keys it must carry, when pinned.
    pub keys: Option<PeerKeys>,
}

/// Why the upgrade refused a connection the dialer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The certificate names someone else.
    WrongIdentity(String),
    /// The certificate names the right user with other keys than the pinned ones.
    KeysChanged(PeerKeys),
}

impl Registry {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the maps consistent (single inserts and
        // removes), so the data stays usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a verified peer.
    pub fn certify(&self, peer: PeerId, certified: CertifiedPeer) {
        let mut inner = self.inner();
        inner.refused.remove(&peer);
        inner.certified.insert(peer, certified);
    }

    /// The verified identity of `peer`, while connected.
    #[must_use]
    pub fn certified(&self, peer: &PeerId) -> Option<CertifiedPeer> {
        self.inner().certified.get(peer).cloned()
    }

    /// Every connected peer whose verified certificate names `role` (several certificates of
    /// one name are several peers: a user's devices, or someone posing as the user).
    #[must_use]
    pub fn peers_of(&self, role: &Role) -> Vec<PeerId> {
        self.inner()
            .certified
            .iter()
            .filter(|(_, c)| c.role == *role)
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// Forgets `peer` once its last connection closed.
    pub fn forget(&self, peer: &PeerId) {
        self.inner().certified.remove(peer);
    }

    /// Declares who `peer` must be on any connection made to or from it from now on: the
    /// upgrade refuses a connection whose certificate does not meet `expectation`.
    pub fn set_expectation(&self, peer: PeerId, expectation: Expectation) {
        self.inner().expected.insert(peer, expectation);
    }

    /// What `peer` must be, if declared.
    #[must_use]
    pub fn expectation(&self, peer: &PeerId) -> Option<Expectation> {
        self.inner().expected.get(peer).cloned()
    }

    /// Records why a connection with `peer` was refused, for the dialer's error message. A
    /// user expectation ends with the refusal: it came from one look-up, and must not bar the
    /// peer's genuine identity later. The rendezvous expectation is configuration and stays.
    pub fn record_refusal(&self, peer: PeerId, refusal: Refusal) {
        let mut inner = self.inner();
        if inner
            .expected
            .get(&peer)
            .is_some_and(|e| matches!(e.role, Role::User(_)))
        {
            inner.expected.remove(&peer);
        }
        inner.refused.insert(peer, refusal);
    }

    /// Takes the last refusal for `peer`.
    #[must_use]
    pub fn take_refusal(&self, peer: &PeerId) -> Option<Refusal> {
        self.inner().refused.remove(peer)
    }
}
