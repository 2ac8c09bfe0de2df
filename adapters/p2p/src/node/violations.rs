//! The violation policy: a peer that keeps breaking the message protocol loses its
//! connections, once the answer in flight has been sent.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::PeerId;

/// Protocol violations (requests that do not parse or are too large, envelopes rejected for
/// good) a connected peer may commit before its connections are closed. A plain retry of an
/// envelope already stored is answered with a receipt and is no violation.
pub const MAX_VIOLATIONS_PER_PEER: u32 = 4;
/// How long a peer past [`MAX_VIOLATIONS_PER_PEER`] keeps its connections after its last
/// answer was sent, so that it can read that answer; its requests meanwhile are refused unread.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Violations per connected peer and the disconnections they lead to.
#[derive(Default)]
pub(super) struct Violations {
    /// Protocol violations per connected peer (forgotten when its last connection closes).
    counts: HashMap<PeerId, u32>,
    /// Peers past [`MAX_VIOLATIONS_PER_PEER`], disconnected once their last answer is sent.
    closing: HashSet<PeerId>,
    /// Disconnections waiting out [`CLOSE_GRACE`]: at most one per peer in `closing`.
    closes: FuturesUnordered<BoxFuture<'static, PeerId>>,
    /// Peers whose disconnection is scheduled.
    scheduled: HashSet<PeerId>,
}

impl Violations {
    /// Counts a protocol violation by `peer`; past the limit its connections close once the
    /// answer in flight is sent.
    pub(super) fn count(&mut self, peer: PeerId) {
        let count = self.counts.entry(peer).or_default();
        *count = count.saturating_add(1);
        if *count >= MAX_VIOLATIONS_PER_PEER && self.closing.insert(peer) {
            tracing::warn!(%peer, violations = *count, "closing the connection of a peer that breaks the protocol");
        }
    }

    /// True when `peer` is past the limit: its requests are refused unread.
    pub(super) fn is_closing(&self, peer: &PeerId) -> bool {
        self.closing.contains(peer)
    }

    /// Schedules the closing of `peer`'s connections if it is past the limit.
    pub(super) fn close_if_due(&mut self, peer: PeerId) {
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

    /// Waits for the next peer whose grace is over and which is still to be disconnected;
    /// never resolves while no disconnection is scheduled. Cancel-safe.
    pub(super) async fn next_due(&mut self) -> PeerId {
        loop {
            if self.closes.is_empty() {
                std::future::pending::<()>().await;
            }
            if let Some(peer) = self.closes.next().await {
                self.scheduled.remove(&peer);
                if self.closing.contains(&peer) {
                    return peer;
                }
            }
        }
    }

    /// Forgets `peer` once its last connection closed.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.counts.remove(peer);
        self.closing.remove(peer);
    }
}
