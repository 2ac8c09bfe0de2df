//! Per-source limits of the HTTPS API: who the client is, a token bucket per client for
//! enrollments, and a cap on each client's connections at once.
//!
//! A *source* is an IPv4 address, or the /64 prefix of an IPv6 address (one subscriber usually
//! holds a whole /64, so counting single IPv6 addresses would hand an attacker billions of
//! buckets). The client is the TCP peer, unless the peer is a configured trusted proxy: then it
//! is the right-most `X-Forwarded-For` address that is not itself a trusted proxy.
//!
//! The bucket table is a state machine without I/O or clock reads: every call takes `now`.
//! It tracks at most [`Buckets::new`]'s `max_sources` clients; when full it first forgets the
//! clients whose bucket has refilled (they are indistinguishable from new ones), then the one
//! seen longest ago.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::HeaderMap;

/// A client as the limits count it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source an address belongs to.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// How the client of a request is found: the TCP peer, or a trusted proxy's forwarded address.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    trusted_proxies: Vec<IpAddr>,
}

impl Clients {
    /// Takes `X-Forwarded-For` into account only on connections from `trusted_proxies`.
    #[must_use]
    pub fn new(trusted_proxies: Vec<IpAddr>) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into_iter().map(canonical).collect(),
        }
    }

    /// Whether `peer` is a configured proxy.
    #[must_use]
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.contains(&canonical(peer))
    }

    /// The client of a request that arrived from `peer` with `headers`. From a trusted proxy:
    /// the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries further left
    /// were written by the client itself and prove nothing); the proxy itself when the header
    /// is missing or unreadable. From anyone else: `peer`, whatever the header says.
    #[must_use]
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return peer;
            };
            hops.extend(text.split(',').map(str::trim));
        }
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                return peer;
            };
            if !self.is_trusted_proxy(ip) {
                return ip;
            }
        }
        peer
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A token bucket's shape: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests a fresh client may make at once (at least 1).
    pub burst: u32,
    /// Tokens added per minute (at least 1).
    pub per_minute: u32,
}

impl Rate {
    /// Seconds per token.
    fn interval(self) -> f64 {
        60.0 / f64::from(self.per_minute.max(1))
    }

    fn capacity(self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

/// What a bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead (one token was taken).
    Allow,
    /// Refused; a token will be there after this long.
    Refuse {
        /// Time until the next token.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per source, at most `max_sources` of them.
#[derive(Debug)]
pub struct Buckets {
    rate: Rate,
    max_sources: usize,
    table: Mutex<HashMap<Source, Bucket>>,
}

impl Buckets {
    /// Buckets of shape `rate` for at most `max_sources` sources (at least 1).
    #[must_use]
    pub fn new(rate: Rate, max_sources: usize) -> Self {
        Self {
            rate,
            max_sources: max_sources.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `source`'s bucket at `now`, or says how long until one is there.
    pub fn check(&self, source: Source, now: Instant) -> Decision {
        let rate = self.rate;
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&source) && table.len() >= self.max_sources {
            self.make_room(&mut table, now);
        }
        let bucket = table.entry(source).or_insert(Bucket {
            tokens: rate.capacity(),
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed / rate.interval()).min(rate.capacity());
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allow
        } else {
            let wait = (1.0 - bucket.tokens) * rate.interval();
            Decision::Refuse {
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }

    /// How many sources are tracked now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forgets every source whose bucket is full again; if none is, the one seen longest ago.
    fn make_room(&self, table: &mut HashMap<Source, Bucket>, now: Instant) {
        let rate = self.rate;
        table.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed / rate.interval() < rate.capacity()
        });
        if table.len() >= self.max_sources {
            let oldest = table
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(source, _)| *source);
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
    }
}

/// Counts each source's open connections and refuses one over `per_source`.
#[derive(Debug)]
pub struct Slots {
    per_source: u32,
    open: Mutex<HashMap<Source, u32>>,
}

/// One open connection; its slot is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    source: Source,
    first: bool,
}

impl Slot {
    /// Whether its source had no other connection open when it was taken.
    #[must_use]
    pub fn is_first(&self) -> bool {
        self.first
    }
}

impl Slots {
    /// At most `per_source` connections per source (at least 1).
    #[must_use]
    pub fn new(per_source: u32) -> Arc<Self> {
        Arc::new(Self {
            per_source: per_source.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `source`, or `None` when it has its share. The
    /// table holds only sources with open connections, so it is bounded by the listener's
    /// connection cap.
    #[must_use]
    pub fn take(self: &Arc<Self>, source: Source) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(source).or_insert(0);
        if *count >= self.per_source {
            return None;
        }
        let first = *count == 0;
        *count += 1;
        Some(Slot {
            slots: Arc::clone(self),
            source,
            first,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP literal")
    }

    fn source(text: &str) -> Source {
        Source::of(ip(text))
    }

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let buckets = Buckets::new(
            Rate {
                burst: 3,
                per_minute: 6,
            },
            16,
        );
        let t0 = Instant::now();
        let a = source("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(buckets.check(a, t0), Decision::Allow);
        }
        let Decision::Refuse { retry_after } = buckets.check(a, t0) else {
            panic!("the fourth request at once is refused");
        };
        assert_eq!(retry_after, Duration::from_secs(10));
        assert_eq!(
            buckets.check(source("192.0.2.2"), t0),
            Decision::Allow,
            "another source has its own bucket"
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(buckets.check(a, later), Decision::Allow);
        assert!(matches!(buckets.check(a, later), Decision::Refuse { .. }));
        let much_later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(buckets.check(a, much_later), Decision::Allow);
        }
        assert!(
            matches!(buckets.check(a, much_later), Decision::Refuse { .. }),
            "tokens never exceed the burst"
        );
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_refilled_sources_first() {
        let buckets = Buckets::new(
            Rate {
                burst: 2,
                per_minute: 60,
            },
            4,
        );
        let t0 = Instant::now();
        let busy = source("192.0.2.1");
        buckets.check(busy, t0);
        buckets.check(busy, t0);
        for n in 2..200 {
            let _ = buckets.check(source(&format!("198.51.100.{}", n % 250)), t0);
            assert!(buckets.tracked() <= 4);
        }
        // After 3 s every bucket is full again; the busy source spends its tokens anew.
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(buckets.check(busy, t1), Decision::Allow);
        assert_eq!(buckets.check(busy, t1), Decision::Allow);
        let t2 = t1 + Duration::from_millis(100);
        let _ = buckets.check(source("203.0.113.1"), t2);
        assert!(buckets.tracked() <= 4);
        assert!(
            matches!(buckets.check(busy, t2), Decision::Refuse { .. }),
            "the drained source was kept; refilled ones made room"
        );
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source("2001:db8:1:2::1"), source("2001:db8:1:2:ffff::9"));
        assert_ne!(source("2001:db8:1:2::1"), source("2001:db8:1:3::1"));
        assert_eq!(source("::ffff:192.0.2.7"), source("192.0.2.7"));
    }

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let clients = Clients::new(vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.4"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        assert_eq!(
            clients.client(ip("192.0.2.1"), &headers),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            clients.client(ip("10.0.0.1"), &headers),
            ip("198.51.100.4"),
            "the right-most address that is not a proxy; the client's own entries are skipped"
        );
        assert_eq!(
            clients.client(ip("::ffff:10.0.0.1"), &headers),
            ip("198.51.100.4")
        );
        assert_eq!(
            clients.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let mut garbage = HeaderMap::new();
        garbage.append("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
        assert_eq!(clients.client(ip("10.0.0.1"), &garbage), ip("10.0.0.1"));
    }

    #[test]
    fn slots_cap_each_source_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let a = source("192.0.2.1");
        let first = slots.take(a).expect("first");
        let second = slots.take(a).expect("second");
        assert!(slots.take(a).is_none());
        assert!(slots.take(source("192.0.2.2")).is_some());
        drop(first);
        let third = slots.take(a).expect("a slot came back");
        drop((second, third));
        assert!(
            slots
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
    }
}
