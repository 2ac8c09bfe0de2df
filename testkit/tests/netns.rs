//! The network lab behaves like the internet with home routers in it: a server on a public
//! host sees a port-preserving home's connections come from its router's public address and
//! the host's own port, whatever the destination; a symmetric home's connections from one
//! local port get a different public port per destination; nothing from outside reaches a
//! router or a home host unless asked for; and a router's connection tracking can be
//! flushed.
//!
//! Needs root, `ip`, `nft`, `tc`, `conntrack` and `python3`. Where one is missing the test
//! says so on stderr and is skipped; under `CI` it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use parley_testkit::{
    Log, Proc,
    netns::{Host, Lab, Nat},
    tools::tool_available,
};

/// The ports the public server answers on, and the local port the home hosts connect from.
const PORTS: [u16; 2] = [7001, 7002];
const LOCAL_PORT: u16 = 40123;

/// Accepts on every port given and answers each connection with the address it came from,
/// `ip:port`, then closes.
const SERVER: &str = r#"
import socket, sys, threading
def serve(s):
    while True:
        c, (ip, port) = s.accept()
        c.sendall(f"{ip}:{port}\n".encode())
        c.close()
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen()
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

/// Connects to `host port` (from local port `lport` unless it is 0, within 1 s) and prints
/// the first line the server sends, or `timeout`, `refused` or `unreachable`.
const CLIENT: &str = r#"
import errno, socket, sys
host, port, lport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if lport:
    s.bind(("0.0.0.0", lport))
s.settimeout(1.0)
try:
    s.connect((host, port))
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        print("unreachable")
    else:
        raise
else:
    print(s.makefile().readline().strip())
"#;

/// What `from` gets when it connects to `to:port` from local port `lport`.
fn connect(from: &Host, to: Ipv4Addr, port: u16, lport: u16) -> String {
    from.ns()
        .run(&[
            "python3",
            "-c",
            CLIENT,
            &to.to_string(),
            &port.to_string(),
            &lport.to_string(),
        ])
        .trim()
        .to_owned()
}

/// The address the server saw `from` connect from, to `to:port`, from local port `lport`.
fn seen(from: &Host, to: Ipv4Addr, port: u16, lport: u16) -> SocketAddrV4 {
    let answer = connect(from, to, port, lport);
    answer
        .parse()
        .unwrap_or_else(|_| panic!("the server did not answer with an address: {answer:?}"))
}

#[test]
fn the_lab_routes_and_translates_like_home_routers_on_the_internet() {
    let Some(mut lab) = Lab::try_new("the_lab_routes_and_translates_like_home_routers") else {
        return;
    };
    if !tool_available("python3", "python3") {
        return;
    }
    let started = Instant::now();
    let server = lab.public_host("server");
    let other = lab.public_host("other");
    let alice = lab.home("alice", Nat::PortPreserving);
    let carol = lab.home("carol", Nat::Symmetric);
    assert_eq!(server.addr(), Ipv4Addr::new(203, 0, 113, 1));
    assert_eq!(alice.host().addr(), Ipv4Addr::new(192, 168, 1, 2));
    assert_eq!(carol.router().lan_addr(), Ipv4Addr::new(192, 168, 2, 1));

    let mut cmd = server.ns().command("python3");
    cmd.args(["-c", SERVER]).args(PORTS.map(|p| p.to_string()));
    let mut echo = Proc::spawn("the address server", cmd, &Log::Inherit);
    echo.line_where("the server's ready line", |l| l == "ready");

    // Port preserving: the router's address, the host's own port, for either destination.
    for port in PORTS {
        assert_eq!(
            seen(alice.host(), server.addr(), port, LOCAL_PORT),
            SocketAddrV4::new(alice.router().public_addr(), LOCAL_PORT),
            "alice's router keeps her port towards port {port}"
        );
    }

    // Symmetric: the router's address, a new public port per destination.
    let [first, second] = PORTS.map(|port| seen(carol.host(), server.addr(), port, LOCAL_PORT));
    for outside in [first, second] {
        assert_eq!(
            *outside.ip(),
            carol.router().public_addr(),
            "carol's router"
        );
    }
    assert_ne!(
        first.port(),
        second.port(),
        "carol's router maps one local port to one public port per destination"
    );

    // Unsolicited: a router's address and a home host's, even routed towards it, stay
    // silent (dropped, not refused), on a port in use and on one that is not.
    other.ns().run(&[
        "ip",
        "route",
        "add",
        "192.168.1.0/24",
        "via",
        &alice.router().public_addr().to_string(),
    ]);
    for (target, port) in [
        (alice.router().public_addr(), LOCAL_PORT),
        (alice.router().public_addr(), 22),
        (carol.router().public_addr(), first.port()),
        (alice.host().addr(), LOCAL_PORT),
    ] {
        assert_eq!(
            connect(&other, target, port, 0),
            "timeout",
            "an unsolicited connection to {target}:{port} is dropped"
        );
    }
    assert_eq!(
        connect(&other, carol.host().addr(), PORTS[0], 0),
        "unreachable",
        "a home's private address has no route from the public network"
    );

    // The router tracks alice's connections until it is flushed.
    let tracked = || {
        let listing = alice.router().ns().run(&["conntrack", "-L"]);
        listing.contains(&format!("dport={}", PORTS[0]))
    };
    assert!(tracked(), "alice's router tracks her connections");
    alice.flush_conntrack();
    assert!(!tracked(), "the flush forgot them");
    assert_eq!(
        seen(alice.host(), server.addr(), PORTS[0], LOCAL_PORT),
        SocketAddrV4::new(alice.router().public_addr(), LOCAL_PORT),
        "after the flush alice connects out again"
    );

    // Faults: a pulled cable and total packet loss cut a host off, until undone.
    let reaches = |from: &Host| connect(from, server.addr(), PORTS[0], 0).contains(':');
    alice.host().cable(false);
    assert!(
        !reaches(alice.host()),
        "with her cable out alice reaches nothing"
    );
    alice.host().cable(true);
    assert!(
        reaches(alice.host()),
        "plugged back in, alice reaches the server"
    );
    server.lose(100);
    assert!(
        !reaches(&other),
        "a server losing every packet answers no one"
    );
    server.heal();
    assert!(reaches(&other), "healed, the server answers again");

    // The wan links are slowed where the kernel can do it.
    if lab.wan_delay().is_some() {
        let qdisc = carol
            .router()
            .ns()
            .run(&["tc", "qdisc", "show", "dev", "wan"]);
        assert!(
            qdisc.contains("netem"),
            "carol's wan link is delayed: {qdisc}"
        );
    }

    drop(echo);
    let names: Vec<String> = [server.ns(), alice.host().ns(), carol.router().ns()]
        .map(|ns| ns.name().to_owned())
        .to_vec();
    drop(lab);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    for name in names {
        assert!(!left.contains(&name), "{name} was deleted with the lab");
    }
    eprintln!(
        "network lab: built, checked and removed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
