//! The rendezvous's circuit relay (libp2p circuit relay v2): a peer that cannot be dialled
//! holds a slot here, and others reach it through a circuit. Every link into the relay is
//! already `/parley/mtls/1.0.0` with a certificate of this CA, so only enrolled users reserve
//! or open circuits; the two peers then run their own mutual TLS over the circuit, and the
//! relay copies ciphertext.
//!
//! libp2p's defaults are made for hole-punch signalling (16 circuits of 2 minutes and 128 KiB);
//! here the relay also carries conversations that cannot be punched, so the limits are larger
//! and the operator's to set ([`RelayLimits`], flags of `parley-rendezvous`).

use std::{sync::atomic::Ordering, time::Duration};

use libp2p::relay;

use super::stats::DirectoryStats;

/// What the relay allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Slots held at once, all peers together (0 turns the relay off).
    pub max_reservations: usize,
    /// Slots one peer id may hold at once.
    pub max_reservations_per_peer: usize,
    /// How long a slot lasts before the peer must renew it (the peer renews on its own).
    pub reservation_duration: Duration,
    /// Circuits open at once, all peers together.
    pub max_circuits: usize,
    /// Circuits open at once from or to one peer id.
    pub max_circuits_per_peer: usize,
    /// How long one circuit may stay open; the peers open a new one when they need it.
    pub max_circuit_duration: Duration,
    /// Bytes one circuit may carry, both ways together; the peers open a new one when they
    /// need it.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 1024,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 256,
            max_circuits_per_peer: 16,
            max_circuit_duration: Duration::from_secs(60 * 60),
            max_circuit_bytes: 256 * 1024 * 1024,
        }
    }
}

impl RelayLimits {
    /// The relay behaviour's configuration; libp2p's rate limits per peer and per address on
    /// new slots and circuits stay as they are.
    ///
    /// libp2p refuses a peer's new slot or circuit only once the peer holds *more* than its
    /// per-peer cap (`held > cap`), which grants one past it; handing it one less makes the cap
    /// the number a peer may hold. A per-peer cap of 0 cannot be expressed (the rendezvous's
    /// flags refuse it); it is taken as 1.
    pub(super) fn config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: self.max_reservations_per_peer.saturating_sub(1),
            reservation_duration: self.reservation_duration,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer.saturating_sub(1),
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// Counts what the relay did, for the operator's metrics.
pub(super) fn count(stats: &DirectoryStats, event: &relay::Event) {
    let relay = &stats.relay;
    match event {
        relay::Event::ReservationReqAccepted {
            src_peer_id,
            renewed,
        } => {
            tracing::debug!(peer = %src_peer_id, renewed, "relay slot granted");
            if !renewed {
                relay.reservations.fetch_add(1, Ordering::Relaxed);
            }
        }
        relay::Event::ReservationReqDenied {
            src_peer_id,
            status,
        } => {
            tracing::info!(peer = %src_peer_id, ?status, "relay slot refused");
            relay.refused("reservation", reason(status));
        }
        relay::Event::ReservationClosed { .. } | relay::Event::ReservationTimedOut { .. } => {
            let _ = relay
                .reservations
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        relay::Event::CircuitReqDenied {
            src_peer_id,
            dst_peer_id,
            status,
        } => {
            tracing::info!(src = %src_peer_id, dst = %dst_peer_id, ?status, "circuit refused");
            relay.refused("circuit", reason(status));
        }
        relay::Event::CircuitReqAccepted {
            src_peer_id,
            dst_peer_id,
        } => {
            tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "circuit opened");
            DirectoryStats::bump(&relay.circuits_opened);
            relay.circuits.fetch_add(1, Ordering::Relaxed);
        }
        relay::Event::CircuitClosed {
            src_peer_id,
            dst_peer_id,
            ..
        } => {
            tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "circuit closed");
            let _ = relay
                .circuits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        #[allow(deprecated)]
        relay::Event::ReservationReqAcceptFailed { .. }
        | relay::Event::ReservationReqDenyFailed { .. }
        | relay::Event::CircuitReqDenyFailed { .. }
        | relay::Event::CircuitReqOutboundConnectFailed { .. }
        | relay::Event::CircuitReqAcceptFailed { .. } => {
            relay.refused("circuit", "failed");
        }
        relay::Event::StatusChanged { status } => {
            tracing::info!(?status, "relay status");
        }
    }
}

/// The metric label of a refusal's status.
fn reason(status: &relay::StatusCode) -> &'static str {
    match status {
        relay::StatusCode::OK => "ok",
        relay::StatusCode::ReservationRefused => "reservation_refused",
        relay::StatusCode::ResourceLimitExceeded => "resource_limit_exceeded",
        relay::StatusCode::PermissionDenied => "permission_denied",
        relay::StatusCode::ConnectionFailed => "connection_failed",
        relay::StatusCode::NoReservation => "no_reservation",
        relay::StatusCode::MalformedMessage => "malformed_message",
        relay::StatusCode::UnexpectedMessage => "unexpected_message",
    }
}
