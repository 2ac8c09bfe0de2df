//! The directory's counters, for the operator's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the directory, for the operator's metrics. Read with [`DirectoryStats::snapshot`].
#[derive(Debug, Default)]
pub struct DirectoryStats {
    pub(super) lookups: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) refused_requests: AtomicU64,
    pub(super) refused_connections: AtomicU64,
    pub(super) connected_peers: AtomicU64,
    pub(super) online_users: AtomicU64,
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

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
