//! Which published addresses the directory vouches for, and hands out to whoever looks the
//! publisher up.
//!
//! Peers dial what the directory hands out, so an address it accepted blindly would let a
//! publisher aim other devices at any host and port (`/ip4/10.1.2.3/tcp/22` inside a victim's
//! network, or `/dns4/intranet.example/…`): a blind port probe. The rule is what the publisher
//! can plausibly be reached at, and nothing else:
//!
//! - **a direct TCP address at the IP its own connection to this rendezvous comes from**:
//!   `/ip4/<that IP>/tcp/<port>` (or `/ip6/…`), port not 0. That is the publisher's public
//!   address, or its router's (a port a cone NAT keeps open, found by AutoNAT); a device on
//!   the rendezvous's own network is reached at the address the rendezvous sees, too;
//! - **a circuit through this rendezvous's relay, at one of the rendezvous's own addresses**:
//!   `<own address>/p2p/<rendezvous id>/p2p-circuit`, so the relay part cannot point elsewhere.
//!
//! Everything else is dropped from the publication: DNS names, other IPs (a device's LAN
//! addresses among them: a peer in the same home reaches it by hole punching or the relay),
//! other transports, addresses carrying a peer id of their own. Pure: the addresses in, the
//! decision out.

use std::net::IpAddr;

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// What the directory knows when a device publishes.
#[derive(Debug, Clone)]
pub(crate) struct Vouch {
    /// This rendezvous's peer id.
    pub(crate) me: PeerId,
    /// This rendezvous's own addresses (without `/p2p/`), the only relay parts of a circuit.
    pub(crate) own: Vec<Multiaddr>,
}

impl Vouch {
    /// Whether `addr`, published over a connection coming from `observed`, is handed out.
    pub(crate) fn vouches(&self, addr: &Multiaddr, observed: IpAddr) -> bool {
        let parts: Vec<Protocol<'_>> = addr.iter().collect();
        match parts.as_slice() {
            [ip, Protocol::Tcp(port)] => {
                *port != 0 && ip_of(ip).is_some_and(|ip| same(ip, observed))
            }
            [relay @ .., Protocol::P2p(id), Protocol::P2pCircuit] if *id == self.me => {
                let relay: Multiaddr = relay.iter().cloned().collect();
                self.own.contains(&relay)
            }
            _ => false,
        }
    }
}

fn ip_of(p: &Protocol<'_>) -> Option<IpAddr> {
    match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(*ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The same host, an IPv4 address and its IPv4-mapped IPv6 form alike.
fn same(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vouch() -> (Vouch, PeerId) {
        let me = PeerId::random();
        (
            Vouch {
                me,
                own: vec!["/ip4/203.0.113.1/tcp/4001".parse().expect("addr")],
            },
            me,
        )
    }

    fn yes(v: &Vouch, addr: &str, from: &str) -> bool {
        v.vouches(&addr.parse().expect("addr"), from.parse().expect("ip"))
    }

    #[test]
    fn the_publishers_own_ip_is_vouched_for_at_any_port_but_zero() {
        let (v, _) = vouch();
        assert!(yes(&v, "/ip4/198.51.100.7/tcp/51234", "198.51.100.7"));
        assert!(yes(&v, "/ip6/2001:db8::7/tcp/4001", "2001:db8::7"));
        assert!(
            yes(&v, "/ip4/198.51.100.7/tcp/4001", "::ffff:198.51.100.7"),
            "a dual-stack listener sees IPv4 as mapped IPv6"
        );
        assert!(!yes(&v, "/ip4/198.51.100.7/tcp/0", "198.51.100.7"));
    }

    #[test]
    fn another_host_a_dns_name_or_another_transport_is_not() {
        let (v, _) = vouch();
        for addr in [
            "/ip4/10.1.2.3/tcp/22",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/192.168.1.5/tcp/4001",
            "/dns4/intranet.example/tcp/80",
            "/dns/intranet.example/tcp/80",
            "/ip4/198.51.100.7/udp/4001/quic-v1",
            "/ip4/198.51.100.7/tcp/4001/ws",
            "/unix/%2Ftmp%2Fsocket",
        ] {
            assert!(!yes(&v, addr, "198.51.100.7"), "{addr}");
        }
        let other = PeerId::random();
        assert!(!yes(
            &v,
            &format!("/ip4/198.51.100.7/tcp/4001/p2p/{other}"),
            "198.51.100.7"
        ));
    }

    #[test]
    fn a_circuit_only_through_this_relay_at_its_own_address() {
        let (v, me) = vouch();
        assert!(yes(
            &v,
            &format!("/ip4/203.0.113.1/tcp/4001/p2p/{me}/p2p-circuit"),
            "198.51.100.7"
        ));
        // The relay part pointed at another host, or another relay, or a circuit onwards.
        assert!(!yes(
            &v,
            &format!("/ip4/10.1.2.3/tcp/22/p2p/{me}/p2p-circuit"),
            "198.51.100.7"
        ));
        let other = PeerId::random();
        assert!(!yes(
            &v,
            &format!("/ip4/203.0.113.1/tcp/4001/p2p/{other}/p2p-circuit"),
            "198.51.100.7"
        ));
        assert!(!yes(
            &v,
            &format!("/ip4/203.0.113.1/tcp/4001/p2p/{me}/p2p-circuit/p2p/{other}"),
            "198.51.100.7"
        ));
    }
}
