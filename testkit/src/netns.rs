//! A network lab of Linux network namespaces, for tests that run real processes across an
//! "internet" and home routers doing NAT.
//!
//! - The **public network** ("the internet") is a bridge `br0` in a namespace of its own,
//!   `203.0.113.0/24` ([`PUBLIC_NET`], TEST-NET-3, a documentation prefix that is never
//!   routed anywhere). Each thing cabled to it (a public host, a home router's wan side) gets
//!   the next address, `203.0.113.1` first, in the order the test adds them.
//! - A **public host** ([`Lab::public_host`]) is one namespace on that network, with its
//!   public address on `eth0`: where the rendezvous runs.
//! - A **home** ([`Lab::home`]), the N-th one made, is a router namespace with `wan` on the
//!   public network (its own public address) and `lan` = `192.168.N.1/24`, and one host
//!   namespace whose `eth0` is `192.168.N.2/24`, default route the router. The router
//!   forwards and does NAT with nftables as a home router does ([`Nat`]): source NAT on the
//!   way out, from the wan side only what belongs to a connection from inside, everything
//!   else dropped without an answer, no port forwarding. Each router's wan link delays every
//!   packet by [`WAN_DELAY`] each way (tc netem) unless [`Lab::with_wan_delay`] says other,
//!   so that timing is not loopback-perfect.
//!
//! Programs run inside a namespace through [`Namespace::launcher`] (`ip netns exec NS`, for
//! the `via(..)` of [`Rendezvous::options`](crate::Rendezvous::options) and
//! [`Daemon::options`](crate::Daemon::options)); a home host listening on `0.0.0.0` listens
//! inside its home only. Faults: [`Host::cable`] (pulled, plugged back), [`Host::lose`] and
//! [`Host::heal`] (packet loss), [`Host::drop_connections`], [`Home::flush_conntrack`] (the
//! router forgets every mapping).
//!
//! Names are unique per process and lab (`pl<pid>n<k>-…`), so that labs in one test binary
//! never collide. Every namespace is deleted when the [`Lab`] drops, also on a panic. The
//! processes inside are the caller's: make the lab before them, so that they drop (and are
//! killed) first. Every command the lab runs that fails panics, naming the command and
//! quoting its stderr.
//!
//! ```no_run
//! use parley_testkit::netns::{Lab, Nat};
//!
//! let Some(mut lab) = Lab::try_new("my_test") else { return };
//! let rv = lab.public_host("rv");
//! let alice = lab.home("alice", Nat::PortPreserving);
//! let carol = lab.home("carol", Nat::Symmetric);
//! println!("{} behind {}", alice.host().addr(), alice.router().public_addr());
//! let seen = carol.host().ns().run(&["ip", "route"]);
//! # let _ = (rv, seen);
//! ```

mod namespace;
mod router;

use std::{
    io::Write,
    net::Ipv4Addr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

pub use namespace::Namespace;
pub use router::Nat;

use namespace::{ip, output, shown};
use router::{LAN, WAN};

use crate::tools::root_with;

/// The public network, `203.0.113.0/24`: its addresses are `203.0.113.1` onwards.
pub const PUBLIC_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);
/// How long each router's wan link delays a packet, each way, unless said other.
pub const WAN_DELAY: Duration = Duration::from_millis(5);
/// The programs a lab needs, with their Debian packages.
pub const TOOLS: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("tc", "iproute2"),
    ("conntrack", "conntrack"),
];

/// The host interface in every host namespace.
const ETH: &str = "eth0";
/// The bridge of the public network.
const BRIDGE: &str = "br0";
/// The nftables table that [`Host::lose`] adds and [`Host::heal`] deletes.
const LOSS_TABLE: &str = "parley_loss";

/// Labs made by this process so far, for unique names.
static LABS: AtomicU32 = AtomicU32::new(0);

/// The namespaces of one lab, deleted when it drops.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// Every namespace made, in order; the public network's first.
    made: Vec<Namespace>,
    /// How many things are cabled to the public network.
    public: u8,
    /// How many homes there are.
    homes: u8,
    /// The delay given to the next router's wan link; `None` when none is (to be) given.
    wan_delay: Option<Duration>,
}

impl Lab {
    /// A lab with its public network, when the machine can make one; otherwise the loud
    /// [`skip`](crate::skip) of `test` (a failure under `CI`) and `None`.
    ///
    /// # Panics
    /// Under `CI` when root or one of [`TOOLS`] is missing; as [`Lab::new`].
    pub fn try_new(test: &str) -> Option<Self> {
        root_with(&format!("`{test}` builds network namespaces"), &TOOLS).then(Self::new)
    }

    /// A lab holding only its public network, with [`WAN_DELAY`] for the routers to come.
    ///
    /// # Panics
    /// When a command fails (not root, a tool missing, the kernel without namespaces).
    pub fn new() -> Self {
        let mut lab = Self {
            prefix: format!(
                "pl{}n{}",
                std::process::id(),
                LABS.fetch_add(1, Ordering::Relaxed)
            ),
            made: Vec::new(),
            public: 0,
            homes: 0,
            wan_delay: Some(WAN_DELAY),
        };
        let net = lab.namespace("internet");
        net.run(&["ip", "link", "add", BRIDGE, "type", "bridge"]);
        net.run(&["ip", "link", "set", BRIDGE, "up"]);
        lab
    }

    /// The same lab, giving routers made from now on a wan delay of `delay` each way
    /// (`Duration::ZERO` for none).
    pub fn with_wan_delay(mut self, delay: Duration) -> Self {
        self.wan_delay = (!delay.is_zero()).then_some(delay);
        self
    }

    /// The delay the next router's wan link gets each way, `None` when it gets none (also
    /// when the kernel turned out to have no netem, see [`Lab::home`]).
    pub fn wan_delay(&self) -> Option<Duration> {
        self.wan_delay
    }

    /// The namespace holding the public network's bridge.
    pub fn internet(&self) -> &Namespace {
        &self.made[0]
    }

    /// A new host called `name` on the public network, with the next public address.
    ///
    /// # Panics
    /// When `name` is already taken in this lab, the public network is full, or a command
    /// fails.
    pub fn public_host(&mut self, name: &str) -> Host {
        let ns = self.namespace(name);
        let (addr, port) = self.cable_to_internet(&ns, ETH);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        Host {
            ns,
            addr,
            far_end: (self.internet().clone(), port),
        }
    }

    /// A new home called `name`: a router doing `nat` (namespace `…-<name>-router`) and one
    /// host behind it (namespace `…-<name>`), see the module's documentation for addresses.
    ///
    /// On a kernel without netem (`tc` answers that the qdisc kind is unknown) it says so on
    /// stderr and gives this and later routers no delay: [`Lab::wan_delay`] is `None` then.
    ///
    /// # Panics
    /// When `name` is already taken, there are 254 homes already, or a command fails.
    pub fn home(&mut self, name: &str, nat: Nat) -> Home {
        self.homes = self
            .homes
            .checked_add(1)
            .filter(|n| *n < 255)
            .expect("a lab holds at most 254 homes");
        let n = self.homes;
        let lan_net = |host: u8| Ipv4Addr::new(192, 168, n, host);
        let (router_lan, host_addr) = (lan_net(1), lan_net(2));

        let router_ns = self.namespace(&format!("{name}-router"));
        let host_ns = self.namespace(name);
        let (public_addr, port) = self.cable_to_internet(&router_ns, WAN);
        router_ns.run(&["ip", "link", "set", "lo", "up"]);
        router_ns.run(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        router_ns.run_with_input(&["nft", "-f", "-"], &router::ruleset(nat));
        // Like a home router that lost its table: a TCP segment of a connection it no longer
        // tracks is not picked up as a new one (Linux does that by default), so a flushed
        // mapping breaks the connections that went through it.
        router_ns.run(&[
            "sh",
            "-c",
            "echo 0 > /proc/sys/net/netfilter/nf_conntrack_tcp_loose",
        ]);
        if let Some(delay) = self.wan_delay {
            let delayed = netem(&router_ns, WAN, delay) && netem(self.internet(), &port, delay);
            if !delayed {
                self.wan_delay = None;
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTE: this kernel has no netem (tc qdisc netem); the lab's wan links get no delay"
                );
            }
        }

        ip(&[
            "link",
            "add",
            "name",
            ETH,
            "netns",
            host_ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            LAN,
            "netns",
            router_ns.name(),
        ]);
        let router_cidr = format!("{router_lan}/24");
        router_ns.run(&["ip", "addr", "add", &router_cidr, "dev", LAN]);
        router_ns.run(&["ip", "link", "set", LAN, "up"]);
        let host_cidr = format!("{host_addr}/24");
        host_ns.run(&["ip", "addr", "add", &host_cidr, "dev", ETH]);
        host_ns.run(&["ip", "link", "set", ETH, "up"]);
        host_ns.run(&["ip", "link", "set", "lo", "up"]);
        host_ns.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &router_lan.to_string(),
        ]);

        Home {
            nat,
            router: Router {
                ns: router_ns.clone(),
                public_addr,
                lan_addr: router_lan,
            },
            host: Host {
                ns: host_ns,
                addr: host_addr,
                far_end: (router_ns, LAN.to_owned()),
            },
        }
    }

    /// A new namespace `<prefix>-<name>`, recorded at once so that the drop deletes it.
    fn namespace(&mut self, name: &str) -> Namespace {
        let ns = Namespace::new(format!("{}-{name}", self.prefix));
        ip(&["netns", "add", ns.name()]);
        self.made.push(ns.clone());
        ns
    }

    /// Cables interface `ifname` of `ns` to the public network and gives it the next public
    /// address; returns that address and the name of the bridge port at the far end.
    fn cable_to_internet(&mut self, ns: &Namespace, ifname: &str) -> (Ipv4Addr, String) {
        self.public = self
            .public
            .checked_add(1)
            .filter(|n| *n < 255)
            .expect("the public network holds at most 254 addresses");
        let n = self.public;
        let [a, b, c, _] = PUBLIC_NET.0.octets();
        let addr = Ipv4Addr::new(a, b, c, n);
        let port = format!("p{n}");
        let net = self.internet().clone();
        ip(&[
            "link",
            "add",
            "name",
            ifname,
            "netns",
            ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            net.name(),
        ]);
        let cidr = format!("{addr}/{}", PUBLIC_NET.1);
        ns.run(&["ip", "addr", "add", &cidr, "dev", ifname]);
        ns.run(&["ip", "link", "set", ifname, "up"]);
        net.run(&["ip", "link", "set", &port, "master", BRIDGE]);
        net.run(&["ip", "link", "set", &port, "up"]);
        (addr, port)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns.name()])
                .status();
        }
    }
}

/// Delays every packet leaving `ifname` in `ns` by `delay`; `false` when the kernel has no
/// netem.
///
/// # Panics
/// When `tc` fails otherwise.
fn netem(ns: &Namespace, ifname: &str, delay: Duration) -> bool {
    let micros = format!("{}us", delay.as_micros());
    let mut cmd = ns.command("tc");
    cmd.args([
        "qdisc", "add", "dev", ifname, "root", "netem", "delay", &micros,
    ]);
    let out = output(cmd, "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return true;
    }
    assert!(
        stderr.contains("qdisc kind is unknown"),
        "`{}` failed ({}): {}",
        shown(&out.cmd),
        out.status,
        stderr.trim()
    );
    false
}

/// A host of a lab: a namespace with one cable (`eth0`) and one address.
#[derive(Debug, Clone)]
pub struct Host {
    ns: Namespace,
    addr: Ipv4Addr,
    /// Where the far end of its cable is: the public network's bridge port, or its router's
    /// `lan`.
    far_end: (Namespace, String),
}

impl Host {
    /// Its namespace, to run programs in.
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// Its address: public for a public host, `192.168.N.2` in a home.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Drops `percent` % (1 to 100) of the packets arriving at it (nftables `numgen
    /// random`), until [`heal`](Self::heal).
    ///
    /// # Panics
    /// When `percent` is 0 or above 100, or `nft` fails.
    pub fn lose(&self, percent: u32) {
        assert!(
            (1..=100).contains(&percent),
            "a host loses 1 to 100 % of its packets, not {percent}"
        );
        // `numgen random mod 100` is 0 to 99: nft refuses `< 100` as out of its range.
        let which = if percent == 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        let rules = format!(
            "table inet {LOSS_TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{ETH}\" {which}drop
  }}
}}
"
        );
        self.ns.run_with_input(&["nft", "-f", "-"], &rules);
    }

    /// Ends the packet loss of [`lose`](Self::lose).
    ///
    /// # Panics
    /// When it is not losing packets, or `nft` fails.
    pub fn heal(&self) {
        self.ns.run(&["nft", "delete", "table", "inet", LOSS_TABLE]);
    }

    /// Aborts every established TCP connection of its own (as a laptop that slept or changed
    /// networks): the other ends keep half-open connections until they next use them.
    ///
    /// # Panics
    /// When `ss -K` fails.
    pub fn drop_connections(&self) {
        self.ns.run(&["ss", "-K", "-t", "state", "established"]);
    }

    /// Pulls its cable out at the far end (the public network's bridge, or its router), or
    /// plugs it back in: its own `eth0` loses its carrier meanwhile, keeping its address.
    ///
    /// # Panics
    /// When `ip` fails.
    pub fn cable(&self, plugged: bool) {
        let (ns, port) = &self.far_end;
        let state = if plugged { "up" } else { "down" };
        ns.run(&["ip", "link", "set", port, state]);
    }
}

/// A home router of a lab.
#[derive(Debug, Clone)]
pub struct Router {
    ns: Namespace,
    public_addr: Ipv4Addr,
    lan_addr: Ipv4Addr,
}

impl Router {
    /// Its namespace.
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// Its wan address on the public network: what the world sees of its home's host.
    pub fn public_addr(&self) -> Ipv4Addr {
        self.public_addr
    }

    /// Its lan address, `192.168.N.1`: the home host's default route.
    pub fn lan_addr(&self) -> Ipv4Addr {
        self.lan_addr
    }
}

/// A home of a lab: one host behind one router doing NAT.
#[derive(Debug, Clone)]
pub struct Home {
    nat: Nat,
    router: Router,
    host: Host,
}

impl Home {
    /// Its host, `192.168.N.2`.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Its router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The kind of NAT its router does.
    pub fn nat(&self) -> Nat {
        self.nat
    }

    /// Makes the router forget every connection and mapping it tracks (`conntrack -F`), as a
    /// router that rebooted or timed them out: what comes back from outside on them is
    /// dropped, and what goes out again gets a new mapping.
    ///
    /// # Panics
    /// When `conntrack` fails.
    pub fn flush_conntrack(&self) {
        self.router.ns.run(&["conntrack", "-F"]);
    }
}
