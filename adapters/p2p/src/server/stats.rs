//! The directory's counters, for the operator's metrics.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::swarm::Traffic;

/// Counters of the directory, for the operator's metrics. Read with [`DirectoryStats::snapshot`].
#[derive(Debug, Default)]
pub struct DirectoryStats {
    pub(super) lookups: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) refused_requests: AtomicU64,
    pub(super) refused_connections: AtomicU64,
    pub(super) connected_peers: AtomicU64,
    pub(super) online_users: AtomicU64,
    pub(super) relay: RelayStats,
    pub(super) mailbox: MailboxStats,
    pub(super) traffic: Arc<Traffic>,
}

/// The mailbox's counters.
#[derive(Debug, Default)]
pub(super) struct MailboxStats {
    pub(super) held_entries: AtomicU64,
    pub(super) held_bytes: AtomicU64,
    pub(super) deposits: AtomicU64,
    pub(super) fetches: AtomicU64,
    pub(super) acknowledged: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) key_lookups: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl MailboxStats {
    /// Counts a request refused with `code` ([`parley_domain::mailbox::Refusal::code`]).
    pub(super) fn refused(&self, code: &'static str) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
    }

    /// Sets the held gauges to what the store holds.
    pub(super) fn set_held(&self, entries: u64, bytes: u64) {
        self.held_entries.store(entries, Ordering::Relaxed);
        self.held_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Moves the held gauges by entries and bytes that came (`added`) or went.
    pub(super) fn held(&self, entries: u64, bytes: u64, added: bool) {
        if added {
            self.held_entries.fetch_add(entries, Ordering::Relaxed);
            self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            let down = |gauge: &AtomicU64, by: u64| {
                let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(by))
                });
            };
            down(&self.held_entries, entries);
            down(&self.held_bytes, bytes);
        }
    }
}

/// The relay's counters.
#[derive(Debug, Default)]
pub(super) struct RelayStats {
    pub(super) reservations: AtomicU64,
    pub(super) circuits: AtomicU64,
    pub(super) circuits_opened: AtomicU64,
    refusals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl RelayStats {
    /// Counts a refused `kind` (`reservation`, `circuit`) for `reason`.
    pub(super) fn refused(&self, kind: &'static str, reason: &'static str) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind, reason))
            .or_default() += 1;
    }
}

/// The directory's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Relay slots held now.
    pub relay_reservations: u64,
    /// Circuits open through the relay now.
    pub relay_circuits: u64,
    /// Circuits opened through the relay since the start.
    pub relay_circuits_opened: u64,
    /// Relay slots and circuits refused, by kind (`reservation`, `circuit`) and reason
    /// (`resource_limit_exceeded`, `no_reservation`, `permission_denied`, `failed`, …).
    pub relay_refusals: Vec<(&'static str, &'static str, u64)>,
    /// Mailbox entries held now.
    pub mailbox_held_entries: u64,
    /// Their bytes.
    pub mailbox_held_bytes: u64,
    /// Deposits held since the start.
    pub mailbox_deposits: u64,
    /// Fetches answered since the start.
    pub mailbox_fetches: u64,
    /// Entries deleted on their recipient's acknowledgement since the start.
    pub mailbox_acknowledged: u64,
    /// Entries purged at their expiry since the start.
    pub mailbox_expired: u64,
    /// Key look-ups answered (found or not) since the start.
    pub mailbox_key_lookups: u64,
    /// Mailbox requests refused, by code (`mailbox_full`, `unknown_user`, …).
    pub mailbox_refusals: Vec<(&'static str, u64)>,
    /// Bytes read from all p2p connections (relayed circuits cross twice: in, then out).
    pub bytes_received: u64,
    /// Bytes written to all p2p connections.
    pub bytes_sent: u64,
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
            relay_reservations: read(&self.relay.reservations),
            relay_circuits: read(&self.relay.circuits),
            relay_circuits_opened: read(&self.relay.circuits_opened),
            relay_refusals: self
                .relay
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|((kind, reason), n)| (*kind, *reason, *n))
                .collect(),
            mailbox_held_entries: read(&self.mailbox.held_entries),
            mailbox_held_bytes: read(&self.mailbox.held_bytes),
            mailbox_deposits: read(&self.mailbox.deposits),
            mailbox_fetches: read(&self.mailbox.fetches),
            mailbox_acknowledged: read(&self.mailbox.acknowledged),
            mailbox_expired: read(&self.mailbox.expired),
            mailbox_key_lookups: read(&self.mailbox.key_lookups),
            mailbox_refusals: self
                .mailbox
                .refusals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(code, n)| (*code, *n))
                .collect(),
            bytes_received: read(&self.traffic.received),
            bytes_sent: read(&self.traffic.sent),
        }
    }

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
