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
use parley_domain::{CertifiedPeer, Role};

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    certified: HashMap<PeerId, CertifiedPeer>,
    expected: HashMap<PeerId, Role>,
    refused: HashMap<PeerId, String>,
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

    /// Forgets `peer` once its last connection closed.
    pub fn forget(&self, peer: &PeerId) {
        self.inner().certified.remove(peer);
    }

    /// Declares who `peer` must be on any connection made to or from it from now on.
    pub fn expect(&self, peer: PeerId, role: Role) {
        self.inner().expected.insert(peer, role);
    }

    /// What `peer` must be, if declared.
    #[must_use]
    pub fn expected(&self, peer: &PeerId) -> Option<Role> {
        self.inner().expected.get(peer).cloned()
    }

    /// Records why a connection with `peer` was refused, for the dialer's error message. A
    /// user expectation ends with the refusal: it came from one look-up, and must not bar the
    /// peer's genuine identity later. The rendezvous expectation is configuration and stays.
    pub fn refuse(&self, peer: PeerId, reason: String) {
        let mut inner = self.inner();
        if matches!(inner.expected.get(&peer), Some(Role::User(_))) {
            inner.expected.remove(&peer);
        }
        inner.refused.insert(peer, reason);
    }

    /// Takes the last refusal reason for `peer`.
    #[must_use]
    pub fn take_refusal(&self, peer: &PeerId) -> Option<String> {
        self.inner().refused.remove(peer)
    }
}
