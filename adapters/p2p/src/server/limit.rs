//! The directory's look-up rate limits: a token bucket per peer and one per source address.
//! A bucket outlives the connection until it has refilled, so reconnecting does not reset it.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use libp2p::{PeerId, swarm::ConnectionId};

/// Look-ups a peer may make in a burst.
pub const LOOKUP_BURST: f64 = 20.0;
/// Look-ups a peer may make per second, sustained.
pub const LOOKUPS_PER_SECOND: f64 = 5.0;
/// Look-ups all peers connected from one IP address may make in a burst (three devices' worth).
pub const IP_LOOKUP_BURST: f64 = 3.0 * LOOKUP_BURST;
/// Look-ups all peers connected from one IP address may make per second, sustained.
pub const IP_LOOKUPS_PER_SECOND: f64 = 3.0 * LOOKUPS_PER_SECOND;

/// Which source addresses the per-address look-up limit ([`IP_LOOKUP_BURST`],
/// [`IP_LOOKUPS_PER_SECOND`]) applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AddressLimit {
    /// Every address, loopback included.
    All,
    /// Every address but loopback (the default): connections from this host — a local proxy
    /// in front of the rendezvous, a benchmark — are not one source, and share no budget.
    #[default]
    NotLoopback,
    /// No per-address limit; the per-peer limit only.
    Off,
}

impl AddressLimit {
    fn applies_to(self, ip: &IpAddr) -> bool {
        match self {
            Self::All => true,
            Self::NotLoopback => !ip.is_loopback(),
            Self::Off => false,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
    burst: f64,
    rate: f64,
}

impl Bucket {
    pub(super) fn full(burst: f64, rate: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
            burst,
            rate,
        }
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
    }

    /// How long until a token is there (zero when one is).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes one token at `now` if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True once the bucket would be full again at `now`: it can be forgotten.
    pub(super) fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
}

/// The buckets and what they are keyed by.
pub(super) struct Limits {
    buckets: HashMap<PeerId, Bucket>,
    ip_buckets: HashMap<IpAddr, Bucket>,
    /// The source address of each open connection, for the per-address limit.
    connections: HashMap<ConnectionId, IpAddr>,
    address_limit: AddressLimit,
}

impl Limits {
    pub(super) fn new(address_limit: AddressLimit) -> Self {
        Self {
            buckets: HashMap::new(),
            ip_buckets: HashMap::new(),
            connections: HashMap::new(),
            address_limit,
        }
    }

    /// Records the source address of a new connection.
    pub(super) fn connected(&mut self, connection: ConnectionId, ip: IpAddr) {
        self.connections.insert(connection, ip);
    }

    /// The source address of an open connection.
    pub(super) fn source(&self, connection: ConnectionId) -> Option<IpAddr> {
        self.connections.get(&connection).copied()
    }

    /// Forgets a closed connection (its buckets stay until refilled).
    pub(super) fn closed(&mut self, connection: ConnectionId) {
        self.connections.remove(&connection);
    }

    /// Forgets the buckets that have refilled: they hold nothing a new one would not.
    pub(super) fn prune(&mut self) {
        let now = Instant::now();
        self.buckets.retain(|_, b| !b.refilled(now));
        self.ip_buckets.retain(|_, b| !b.refilled(now));
    }

    /// Takes one look-up from `peer`'s bucket and from its source address's, or says how long
    /// to wait. Nothing is taken unless both have a token.
    pub(super) fn take_lookup(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let by_peer = self
            .buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(LOOKUP_BURST, LOOKUPS_PER_SECOND, now));
        by_peer.refill(now);
        let mut wait = by_peer.wait();
        let address = self
            .connections
            .get(&connection)
            .filter(|ip| self.address_limit.applies_to(ip));
        let by_ip = address.map(|ip| {
            let bucket = self
                .ip_buckets
                .entry(*ip)
                .or_insert_with(|| Bucket::full(IP_LOOKUP_BURST, IP_LOOKUPS_PER_SECOND, now));
            bucket.refill(now);
            wait = wait.max(bucket.wait());
            bucket
        });
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if let Some(bucket) = by_ip {
            bucket.tokens -= 1.0;
        }
        if let Some(bucket) = self.buckets.get_mut(&peer) {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}
