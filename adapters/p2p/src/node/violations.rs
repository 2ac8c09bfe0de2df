//! The violation policy: a peer that keeps breaking the message protocol loses its
//! connections, once the answer in flight has been sent.
//!
//! The counts are shared between the message streams that find the violations (each served on
//! a task of its own, see [`super::receiving`]) and the swarm task, which closes the
//! connections and forgets a peer once its last connection closed.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use libp2p::PeerId;

/// Protocol violations (frames that do not parse or are too large, requests refused for good
/// before their envelope is read, envelopes rejected for good) a connected peer may commit
/// before its connections are closed. A plain retry of an envelope already stored is answered
/// with a receipt and is no violation.
pub const MAX_VIOLATIONS_PER_PEER: u32 = 4;
/// How long a peer past [`MAX_VIOLATIONS_PER_PEER`] keeps its connections after its last
/// answer was sent, so that it can read that answer; its requests meanwhile are refused unread.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Violations per connected peer, shared by the message streams and the swarm task.
#[derive(Clone, Default)]
pub(super) struct Violations(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    /// Protocol violations per connected peer (forgotten when its last connection closes).
    counts: HashMap<PeerId, u32>,
    /// Peers past [`MAX_VIOLATIONS_PER_PEER`], disconnected once their last answer is sent.
    closing: HashSet<PeerId>,
    /// Peers whose disconnection is scheduled: at most one per peer in `closing`.
    scheduled: HashSet<PeerId>,
}

impl Violations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a protocol violation by `peer`; past the limit its connections close once the
    /// answer in flight is sent.
    pub(super) fn count(&self, peer: PeerId) {
        let mut counts = self.lock();
        let count = counts.counts.entry(peer).or_default();
        *count = count.saturating_add(1);
        let count = *count;
        if count >= MAX_VIOLATIONS_PER_PEER && counts.closing.insert(peer) {
            tracing::warn!(%peer, violations = count, "closing the connection of a peer that breaks the protocol");
        }
    }

    /// True when `peer` is past the limit: its requests are refused unread.
    pub(super) fn is_closing(&self, peer: &PeerId) -> bool {
        self.lock().closing.contains(peer)
    }

    /// True when `peer` is past the limit and its disconnection is not scheduled yet: the
    /// caller schedules it, [`CLOSE_GRACE`] from now.
    pub(super) fn schedule_close(&self, peer: PeerId) -> bool {
        let mut counts = self.lock();
        counts.closing.contains(&peer) && counts.scheduled.insert(peer)
    }

    /// A scheduled disconnection of `peer` is due: true when it is still to be made (the peer
    /// did not leave meanwhile).
    pub(super) fn close_due(&self, peer: &PeerId) -> bool {
        let mut counts = self.lock();
        counts.scheduled.remove(peer);
        counts.closing.contains(peer)
    }

    /// Forgets `peer` once its last connection closed.
    pub(super) fn forget(&self, peer: &PeerId) {
        let mut counts = self.lock();
        counts.counts.remove(peer);
        counts.closing.remove(peer);
    }
}
