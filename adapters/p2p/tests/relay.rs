//! The rendezvous's circuit relay under attack, on loopback with real swarms and real TLS: a
//! peer from another CA, a certified peer greedy for circuits and slots, a relay that reads or
//! alters what it copies, and a circuit that leads to someone else than the dialer meant. Each
//! test checks the refusal and, in the same setup, that the legitimate path still works.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::Ca;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder,
    core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    multiaddr::Protocol,
    relay,
    swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts, dial_opts::PeerCondition},
};
use parley_domain::{Role, Username};
use parley_p2p::{
    Credentials, DirectoryServer, RelayLimits, ServerOptions, StatsSnapshot,
    registry::{Expectation, Refusal, Registry},
    upgrade::{Accept, MutualTls, PROTOCOL},
};
use tokio::sync::mpsc;

/// How long anything legitimate may take on loopback.
const PROMPTLY: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_secs(2);
/// The test protocol the peers talk over their (relayed) connections.
const NOTE: StreamProtocol = StreamProtocol::new("/parley-test/note/1");
/// The largest note a peer reads.
const MAX_NOTE: u64 = 64 * 1024;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Seed of the rendezvous's key, and the CA everyone but the attacker from elsewhere trusts.
const RENDEZVOUS_SEED: u8 = 200;

/// A real directory on loopback with `limits` for its relay.
async fn relay_with(ca: &Ca, limits: RelayLimits) -> DirectoryServer {
    let options = ServerOptions {
        relay: limits,
        ..ServerOptions::default()
    };
    DirectoryServer::start_with(
        ca.rendezvous(RENDEZVOUS_SEED),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        options,
    )
    .await
    .unwrap()
}

/// The relay's address (ending in `/p2p/<relay id>`) and its peer id.
fn relay_address(server: &DirectoryServer) -> (Multiaddr, PeerId) {
    let addr = server.addresses()[0].clone();
    let Some(Protocol::P2p(id)) = addr.iter().last() else {
        panic!("the directory's address {addr} ends without its peer id");
    };
    (addr, id)
}

/// `<relay>/p2p/<relay id>/p2p-circuit`: where a peer listens to hold a slot.
fn slot_on(relay: &Multiaddr) -> Multiaddr {
    relay.clone().with(Protocol::P2pCircuit)
}

/// `<relay>/p2p/<relay id>/p2p-circuit/p2p/<peer>`: where a peer with a slot is dialled.
fn circuit_to(relay: &Multiaddr, peer: PeerId) -> Multiaddr {
    slot_on(relay).with(Protocol::P2p(peer))
}

/// The count of `kind` refusals for `reason` in `stats`.
fn refusals(stats: &StatsSnapshot, kind: &str, reason: &str) -> u64 {
    stats
        .relay_refusals
        .iter()
        .filter(|(k, r, _)| *k == kind && *r == reason)
        .map(|(_, _, n)| *n)
        .sum()
}

/// Caps small enough for a test to reach, large enough not to get in the way.
fn small_limits() -> RelayLimits {
    RelayLimits {
        max_reservations: 8,
        max_reservations_per_peer: 2,
        max_circuits: 16,
        max_circuits_per_peer: 4,
        ..RelayLimits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// A peer: the product's pieces (the relay client transport and direct TCP, both under
// `/parley/mtls/1.0.0` and yamux, like `build_with_relay`), with a plain note protocol instead
// of the message protocol, so that every step can be watched.

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Relayed {
    relay: relay::client::Behaviour,
    notes: libp2p_stream::Behaviour,
}

/// What a peer's swarm did, in order.
#[derive(Debug, Clone)]
enum Seen {
    /// The relay granted (or renewed) a slot.
    Reserved,
    /// A circuit listener closed, with the reason.
    SlotClosed(String),
    /// A connection was established; `relayed` when it is a circuit.
    Connected { peer: PeerId, relayed: bool },
    /// A connection closed.
    Closed { peer: PeerId },
    /// A dial failed, with the error.
    DialFailed { peer: Option<PeerId>, error: String },
}

/// Notes a peer received: (sender, bytes).
type Inbox = Arc<Mutex<Vec<(PeerId, Vec<u8>)>>>;

enum Command {
    Listen(Multiaddr),
    Dial(PeerId, Multiaddr),
}

/// A running peer; its swarm runs on its own task until dropped.
struct Peer {
    id: PeerId,
    registry: Registry,
    commands: mpsc::Sender<Command>,
    notes: libp2p_stream::Control,
    seen: Arc<Mutex<Vec<Seen>>>,
    inbox: Inbox,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Peer {
    /// A peer with `credentials` (whose key is `seed`'s), holding the relay `relay` to be the
    /// rendezvous.
    fn start(credentials: &Credentials, seed: u8, relay: PeerId) -> Self {
        let registry = Registry::default();
        registry.set_expectation(
            relay,
            Expectation {
                role: Role::Rendezvous,
                keys: None,
            },
        );
        let upgrade = MutualTls::new(credentials, registry.clone(), Accept::Users).unwrap();
        let relayed = upgrade.clone();
        let mut secret = *common::secret(seed).expose();
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).unwrap();
        let id = keypair.public().to_peer_id();
        let Ok(builder) = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                move |_: &libp2p::identity::Keypair| Ok::<_, Infallible>(upgrade),
                libp2p::yamux::Config::default,
            );
        let Ok(builder) = builder.with_relay_client(
            move |_: &libp2p::identity::Keypair| Ok::<_, Infallible>(relayed),
            libp2p::yamux::Config::default,
        );
        let Ok(builder) = builder.with_behaviour(|_, relay| Relayed {
            relay,
            notes: libp2p_stream::Behaviour::new(),
        });
        let swarm = builder
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let mut notes = swarm.behaviour().notes.new_control();
        let incoming = notes.accept(NOTE).unwrap();
        let (commands, rx) = mpsc::channel(16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            tokio::spawn(run(swarm, rx, seen.clone())),
            tokio::spawn(receive(incoming, inbox.clone())),
        ];
        Self {
            id,
            registry,
            commands,
            notes,
            seen,
            inbox,
            tasks,
        }
    }

    /// Declares that `peer` must be `name`, as a look-up would.
    fn expect(&self, peer: PeerId, name: &str) {
        self.registry.set_expectation(
            peer,
            Expectation {
                role: Role::User(user(name)),
                keys: None,
            },
        );
    }

    /// Asks the relay at `relay` for a slot (by listening on its circuit address).
    async fn reserve(&self, relay: &Multiaddr) {
        let slot = slot_on(relay);
        self.commands.send(Command::Listen(slot)).await.unwrap();
    }

    /// Asks for a slot and waits until the relay granted it.
    async fn reserved(&self, relay: &Multiaddr) {
        if let Err(reason) = self.slot(relay).await {
            panic!("the relay refused a slot: {reason}");
        }
    }

    /// Asks for a slot and waits for the answer: the refusal's reason, if refused.
    async fn slot(&self, relay: &Multiaddr) -> Result<(), String> {
        self.reserve(relay).await;
        let outcome = self
            .wait_for("the relay's answer to a slot request", |s| {
                matches!(s, Seen::Reserved | Seen::SlotClosed(_))
            })
            .await;
        match outcome {
            Seen::Reserved => Ok(()),
            Seen::SlotClosed(reason) => Err(reason),
            _ => unreachable!("only slot answers are waited for"),
        }
    }

    /// Dials `peer` at `addr`, even when already connected.
    async fn dial(&self, peer: PeerId, addr: Multiaddr) {
        self.commands.send(Command::Dial(peer, addr)).await.unwrap();
    }

    /// Dials `peer` at `addr` and waits for the connection or the failure: `Ok(relayed)` or
    /// `Err(error)`.
    async fn connect(&self, peer: PeerId, addr: Multiaddr) -> Result<bool, String> {
        let from = self.log().len();
        self.dial(peer, addr).await;
        let outcome = self
            .wait_from(from, "the dial's outcome", |s| match s {
                Seen::Connected { peer: p, .. } => *p == peer,
                Seen::DialFailed { peer: p, .. } => *p == Some(peer),
                _ => false,
            })
            .await;
        match outcome {
            Seen::Connected { relayed, .. } => Ok(relayed),
            Seen::DialFailed { error, .. } => Err(error),
            _ => unreachable!("only connections and dial failures are waited for"),
        }
    }

    /// Sends `note` to `peer` over the open connection.
    async fn send(&self, peer: PeerId, note: &[u8]) -> Result<(), String> {
        let mut notes = self.notes.clone();
        let send = async {
            let mut stream = notes
                .open_stream(peer, NOTE)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(note).await.map_err(|e| e.to_string())?;
            stream.close().await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(PROMPTLY, send)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }

    /// Waits until a note from `from` arrived, and returns it.
    async fn received_from(&self, from: PeerId) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + PROMPTLY;
        while tokio::time::Instant::now() < deadline {
            let found = self
                .inbox
                .lock()
                .unwrap()
                .iter()
                .find(|(p, _)| *p == from)
                .map(|(_, note)| note.clone());
            if let Some(note) = found {
                return note;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no note from {from} within {PROMPTLY:?}");
    }

    fn log(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for the first event matching `check`.
    async fn wait_for(&self, what: &str, check: impl Fn(&Seen) -> bool) -> Seen {
        self.wait_from(0, what, check).await
    }

    /// Waits for the first event from index `from` on matching `check`.
    async fn wait_from(&self, from: usize, what: &str, check: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + PROMPTLY;
        while tokio::time::Instant::now() < deadline {
            if let Some(found) = self.log().iter().skip(from).find(|s| check(s)) {
                return found.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{what} did not come within {PROMPTLY:?}; seen: {:?}",
            self.log()
        );
    }

    /// Whether a connection with `peer` was ever established.
    fn ever_connected_to(&self, peer: PeerId) -> bool {
        self.log()
            .iter()
            .any(|s| matches!(s, Seen::Connected { peer: p, .. } if *p == peer))
    }
}

async fn run(
    mut swarm: Swarm<Relayed>,
    mut commands: mpsc::Receiver<Command>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let record = |s: Seen| seen.lock().unwrap().push(s);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Listen(addr)) => {
                    if let Err(e) = swarm.listen_on(addr) {
                        record(Seen::SlotClosed(e.to_string()));
                    }
                }
                Some(Command::Dial(peer, addr)) => {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(PeerCondition::Always)
                        .build();
                    if let Err(e) = swarm.dial(opts) {
                        record(Seen::DialFailed { peer: Some(peer), error: e.to_string() });
                    }
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(RelayedEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) => record(Seen::Reserved),
                SwarmEvent::ListenerClosed { reason, .. } => {
                    let reason = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => format!("{e} ({e:?})"),
                    };
                    record(Seen::SlotClosed(reason));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    record(Seen::SlotClosed(format!("{error} ({error:?})")));
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    record(Seen::Connected { peer: peer_id, relayed: endpoint.is_relayed() });
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } => {
                    record(Seen::Closed { peer: peer_id });
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    record(Seen::DialFailed { peer: peer_id, error: format!("{error} ({error:?})") });
                }
                _ => {}
            },
        }
    }
}

/// Reads every incoming note into `inbox`.
async fn receive(mut incoming: libp2p_stream::IncomingStreams, inbox: Inbox) {
    while let Some((peer, stream)) = incoming.next().await {
        let mut note = Vec::new();
        if stream.take(MAX_NOTE).read_to_end(&mut note).await.is_ok() {
            inbox.lock().unwrap().push((peer, note));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A relay's copy loop, in the open: a TCP proxy between two mutual-TLS endpoints that records
// every byte it forwards and, once armed, flips one byte of what goes from dialer to listener.

struct Pipe {
    /// Where the dialer connects.
    addr: std::net::SocketAddr,
    /// Everything forwarded, both ways.
    recorded: Arc<Mutex<Vec<u8>>>,
    /// When set, the next chunk from dialer to listener gets one byte flipped.
    tamper: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pipe {
    /// A pipe in front of `target`, for one connection.
    async fn to(target: std::net::SocketAddr) -> Self {
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let tamper = Arc::new(AtomicBool::new(false));
        let (rec, flip) = (recorded.clone(), tamper.clone());
        let task = tokio::spawn(async move {
            let (dialer, _) = front.accept().await.unwrap();
            let listener = tokio::net::TcpStream::connect(target).await.unwrap();
            let (dialer_rx, dialer_tx) = dialer.into_split();
            let (listener_rx, listener_tx) = listener.into_split();
            let forth = copy(dialer_rx, listener_tx, rec.clone(), Some(flip));
            let back = copy(listener_rx, dialer_tx, rec, None);
            let _ = tokio::join!(forth, back);
        });
        Self {
            addr,
            recorded,
            tamper,
            task,
        }
    }

    fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().unwrap().clone()
    }
}

/// Copies `from` to `to`, recording; flips one byte of the first chunk after `tamper` is set.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    recorded: Arc<Mutex<Vec<u8>>>,
    tamper: Option<Arc<AtomicBool>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        recorded.lock().unwrap().extend_from_slice(chunk);
        if let Some(flag) = &tamper
            && flag.swap(false, Ordering::SeqCst)
        {
            // Past the 5-byte record header: a byte of the encrypted record itself.
            let at = (5 + n / 2).min(n - 1);
            chunk[at] ^= 0x01;
        }
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

type Tls = parley_p2p::refresh::Refreshing<libp2p::tcp::tokio::TcpStream>;

/// Mutual TLS between `alice` (dialing, expecting bob) and `bob` (listening) through `pipe`.
async fn handshake_through(
    ca: &Ca,
    listener: tokio::net::TcpListener,
    pipe: &Pipe,
) -> ((PeerId, Tls), (PeerId, Tls)) {
    let alice = ca.user("alice", 1);
    let bob = ca.user("bob", 2);
    let alice_side = Registry::default();
    alice_side.set_expectation(
        bob.peer_id(),
        Expectation {
            role: Role::User(user("bob")),
            keys: None,
        },
    );
    let dialer = MutualTls::new(&alice, alice_side, Accept::Users).unwrap();
    let acceptor = MutualTls::new(&bob, Registry::default(), Accept::Users).unwrap();
    let accept = async {
        let (socket, _) = listener.accept().await.unwrap();
        acceptor
            .upgrade_inbound(libp2p::tcp::tokio::TcpStream(socket), PROTOCOL)
            .await
            .unwrap()
    };
    let dial = async {
        let socket = tokio::net::TcpStream::connect(pipe.addr).await.unwrap();
        dialer
            .upgrade_outbound(libp2p::tcp::tokio::TcpStream(socket), PROTOCOL)
            .await
            .unwrap()
    };
    let (at_bob, at_alice) = tokio::time::timeout(PROMPTLY, async { tokio::join!(accept, dial) })
        .await
        .expect("the handshake through the pipe took too long");
    (at_alice, at_bob)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_another_ca_can_neither_reserve_nor_open_a_circuit_while_a_certified_peer_is_reached_through_one()
 {
    let ca = Ca::new("Parley CA");
    let server = relay_with(&ca, small_limits()).await;
    let (relay, relay_id) = relay_address(&server);

    let bob = Peer::start(&ca.user("bob", 2), 2, relay_id);
    bob.reserved(&relay).await;
    let alice = Peer::start(&ca.user("alice", 1), 1, relay_id);
    alice.expect(bob.id, "bob");

    // Mallory's certificate is from another CA; she trusts the real one, so only the relay's
    // check (and bob's) can refuse her.
    let elsewhere = Ca::new("Other CA");
    let mallory = Peer::start(&elsewhere.user_trusting("mallory", 9, &ca.der), 9, relay_id);
    mallory.expect(bob.id, "bob");
    let refused_before = server.stats().snapshot().refused_connections;

    mallory.reserve(&relay).await;
    let closed = mallory
        .wait_for("mallory's slot request to end", |s| {
            matches!(s, Seen::SlotClosed(_))
        })
        .await;
    println!("mallory's slot: {closed:?}");
    let error = mallory
        .connect(bob.id, circuit_to(&relay, bob.id))
        .await
        .expect_err("a circuit from a peer of another CA");
    println!("mallory's circuit: {error}");
    // TLS 1.3 completes on the client's side before the server has checked the client's
    // certificate, so mallory may see her connection to the relay open; the relay then drops
    // it, and it never carries a relay request.
    common::eventually("mallory's connections to the relay to close", async || {
        let log = mallory.log();
        let count = |closed: bool| {
            log.iter()
                .filter(|s| match s {
                    Seen::Connected { peer, .. } => !closed && *peer == relay_id,
                    Seen::Closed { peer } => closed && *peer == relay_id,
                    _ => false,
                })
                .count()
        };
        count(false) == count(true)
    })
    .await;
    assert!(
        !mallory.log().iter().any(|s| matches!(s, Seen::Reserved)),
        "the relay granted a slot to a peer of another CA"
    );
    let stats = server.stats().snapshot();
    assert!(
        stats.refused_connections >= refused_before + 2,
        "the relay did not refuse both of mallory's handshakes: {stats:?}"
    );
    assert_eq!(stats.relay_reservations, 1, "only bob holds a slot");
    assert_eq!(stats.relay_circuits_opened, 0, "no circuit for mallory");
    assert!(!bob.ever_connected_to(mallory.id));

    // Meanwhile alice, certified, reaches bob through a circuit, and her note arrives.
    let relayed = alice
        .connect(bob.id, circuit_to(&relay, bob.id))
        .await
        .unwrap();
    assert!(relayed, "alice's connection to bob is a circuit");
    alice
        .send(bob.id, b"hello through the relay")
        .await
        .unwrap();
    assert_eq!(
        bob.received_from(alice.id).await,
        b"hello through the relay"
    );
    assert_eq!(server.stats().snapshot().relay_circuits_opened, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_certified_peer_gets_no_circuit_past_its_cap_and_another_peer_still_gets_one() {
    let ca = Ca::new("Parley CA");
    let limits = RelayLimits {
        max_circuits_per_peer: 2,
        ..small_limits()
    };
    let server = relay_with(&ca, limits).await;
    let (relay, relay_id) = relay_address(&server);
    let bob = Peer::start(&ca.user("bob", 2), 2, relay_id);
    bob.reserved(&relay).await;

    // Mallory, enrolled, opens circuit after circuit to bob and keeps them all open.
    let mallory = Peer::start(&ca.user("mallory", 9), 9, relay_id);
    mallory.expect(bob.id, "bob");
    let mut opened = 0;
    let mut refused = Vec::new();
    for _ in 0..5 {
        match mallory.connect(bob.id, circuit_to(&relay, bob.id)).await {
            Ok(relayed) => {
                assert!(relayed, "mallory's connection to bob is a circuit");
                opened += 1;
            }
            Err(error) => refused.push(error),
        }
    }
    assert_eq!(
        opened, 2,
        "circuits opened past the cap of 2; refusals: {refused:?}"
    );
    assert!(
        refused.iter().all(|e| e.contains("ResourceLimitExceeded")),
        "a circuit refused for another reason: {refused:?}"
    );
    let stats = server.stats().snapshot();
    assert_eq!(
        refusals(&stats, "circuit", "resource_limit_exceeded"),
        3,
        "{stats:?}"
    );
    assert_eq!(stats.relay_circuits, 2, "{stats:?}");

    // Bob is not locked out: alice still reaches him through the relay.
    let alice = Peer::start(&ca.user("alice", 1), 1, relay_id);
    alice.expect(bob.id, "bob");
    let relayed = alice
        .connect(bob.id, circuit_to(&relay, bob.id))
        .await
        .unwrap();
    assert!(relayed, "alice's connection to bob is a circuit");
    alice.send(bob.id, b"still here").await.unwrap();
    assert_eq!(bob.received_from(alice.id).await, b"still here");
    assert_eq!(server.stats().snapshot().relay_circuits, 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_certified_peer_holds_no_more_slots_than_its_cap_and_another_peer_still_gets_one()
{
    let ca = Ca::new("Parley CA");
    let limits = RelayLimits {
        max_reservations: 2,
        max_reservations_per_peer: 1,
        ..small_limits()
    };
    let server = relay_with(&ca, limits).await;
    let (relay, relay_id) = relay_address(&server);

    // Mallory runs three devices' worth of swarms with one enrolled identity (one peer id),
    // each with its own connection to the relay, each asking for a slot.
    let mallory = ca.user("mallory", 9);
    let mut granted = 0;
    let mut refused = Vec::new();
    let mut swarms = Vec::new();
    for _ in 0..3 {
        let greedy = Peer::start(&mallory, 9, relay_id);
        match greedy.slot(&relay).await {
            Ok(()) => granted += 1,
            Err(reason) => refused.push(reason),
        }
        swarms.push(greedy);
    }
    assert_eq!(granted, 1, "mallory holds more slots than her cap of 1");
    assert!(
        refused.iter().all(|r| r.contains("ResourceLimitExceeded")),
        "a slot refused for another reason: {refused:?}"
    );
    let stats = server.stats().snapshot();
    assert_eq!(
        refusals(&stats, "reservation", "resource_limit_exceeded"),
        2,
        "{stats:?}"
    );

    // Bob still gets a slot, and is reached through it.
    let bob = Peer::start(&ca.user("bob", 2), 2, relay_id);
    bob.slot(&relay).await.expect("a slot for bob");
    assert_eq!(server.stats().snapshot().relay_reservations, 2);
    let alice = Peer::start(&ca.user("alice", 1), 1, relay_id);
    alice.expect(bob.id, "bob");
    assert!(
        alice
            .connect(bob.id, circuit_to(&relay, bob.id))
            .await
            .unwrap()
    );

    // The relay's total holds as well: with both slots taken, carol gets none.
    let carol = Peer::start(&ca.user("carol", 3), 3, relay_id);
    let refusal = carol
        .slot(&relay)
        .await
        .expect_err("a slot for carol past the total");
    assert!(refusal.contains("ResourceLimitExceeded"), "{refusal}");
    let stats = server.stats().snapshot();
    assert_eq!(
        refusals(&stats, "reservation", "resource_limit_exceeded"),
        3,
        "{stats:?}"
    );
    assert_eq!(stats.relay_reservations, 2, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_copying_the_bytes_never_sees_the_plaintext_nor_the_certificates() {
    let ca = Ca::new("Parley CA");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pipe = Pipe::to(listener.local_addr().unwrap()).await;
    let ((bob_id, mut at_alice), (alice_id, mut at_bob)) =
        handshake_through(&ca, listener, &pipe).await;
    assert_eq!(bob_id, ca.user("bob", 2).peer_id());
    assert_eq!(alice_id, ca.user("alice", 1).peer_id());

    let secret = b"meet me at the old mill at nine; the password is swordfish";
    at_alice.write_all(secret).await.unwrap();
    at_alice.flush().await.unwrap();
    let mut got = vec![0u8; secret.len()];
    tokio::time::timeout(PROMPTLY, at_bob.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, secret, "the message arrives intact through the pipe");
    at_bob.write_all(b"see you there").await.unwrap();
    at_bob.flush().await.unwrap();
    let mut reply = vec![0u8; 13];
    at_alice.read_exact(&mut reply).await.unwrap();

    let seen = pipe.recorded();
    let contains = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    // The pipe saw the traffic: TLS application-data records went through it.
    assert!(
        contains(&[0x17, 0x03, 0x03]),
        "no TLS record passed the pipe"
    );
    assert!(seen.len() > secret.len() + 13);
    for plaintext in [&secret[..], b"swordfish", b"see you there"] {
        assert!(
            !contains(plaintext),
            "the relay saw {:?} in clear",
            String::from_utf8_lossy(plaintext)
        );
    }
    // TLS 1.3 encrypts both certificates too: who talks is not in the bytes either.
    for name in ["alice", "bob"] {
        let uri = parley_domain::pki::user_uri(&user(name));
        assert!(!contains(uri.as_bytes()), "the relay saw {uri} in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_by_the_relay_fails_the_read_instead_of_altering_the_message() {
    let ca = Ca::new("Parley CA");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pipe = Pipe::to(listener.local_addr().unwrap()).await;
    let ((_, mut at_alice), (_, mut at_bob)) = handshake_through(&ca, listener, &pipe).await;

    // Untouched, a message arrives as sent.
    at_alice.write_all(b"first: pay bob 10").await.unwrap();
    at_alice.flush().await.unwrap();
    let mut first = vec![0u8; 17];
    tokio::time::timeout(PROMPTLY, at_bob.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, b"first: pay bob 10");

    // One flipped bit in the next record: bob's read fails; no altered text comes out.
    pipe.tamper.store(true, Ordering::SeqCst);
    at_alice.write_all(b"second: pay bob 20").await.unwrap();
    at_alice.flush().await.unwrap();
    let mut second = vec![0u8; 18];
    let outcome = tokio::time::timeout(PROMPTLY, at_bob.read_exact(&mut second))
        .await
        .expect("bob's read neither failed nor returned");
    assert!(
        !pipe.tamper.load(Ordering::SeqCst),
        "the pipe did not flip a byte"
    );
    let error = outcome.expect_err("a tampered record was read as a message");
    println!("bob's read: {error} ({error:?})");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error:?}");
    assert_eq!(
        second,
        vec![0u8; 18],
        "bytes of the tampered record came out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_to_someone_else_than_the_expected_user_is_refused_and_carries_no_message() {
    let ca = Ca::new("Parley CA");
    let server = relay_with(&ca, small_limits()).await;
    let (relay, relay_id) = relay_address(&server);
    let carol = Peer::start(&ca.user("carol", 3), 3, relay_id);
    carol.reserved(&relay).await;

    // Alice was told (by a lying directory, say) that carol's peer id is bob's.
    let alice = Peer::start(&ca.user("alice", 1), 1, relay_id);
    alice.expect(carol.id, "bob");
    let error = alice
        .connect(carol.id, circuit_to(&relay, carol.id))
        .await
        .expect_err("a circuit to carol when bob was expected");
    println!("alice's dial: {error}");
    assert!(
        error.contains("the peer is user carol, not user bob"),
        "the dial error does not name the wrong identity: {error}"
    );
    match alice.registry.take_refusal(&carol.id) {
        Some(Refusal::WrongIdentity(reason)) => {
            assert!(
                reason.contains("carol") && reason.contains("bob"),
                "{reason}"
            );
        }
        other => panic!("the refusal is not a wrong identity: {other:?}"),
    }
    assert!(
        alice.send(carol.id, b"for bob's eyes only").await.is_err(),
        "a note went out without a verified connection"
    );
    tokio::time::sleep(QUIET).await;
    assert!(
        carol.inbox.lock().unwrap().is_empty(),
        "carol received a note meant for bob"
    );
    assert!(!alice.ever_connected_to(carol.id));

    // Expecting carol, the same circuit works and the note arrives.
    alice.expect(carol.id, "carol");
    let relayed = alice
        .connect(carol.id, circuit_to(&relay, carol.id))
        .await
        .unwrap();
    assert!(relayed);
    alice.send(carol.id, b"hello carol").await.unwrap();
    assert_eq!(carol.received_from(alice.id).await, b"hello carol");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_delivers_to_a_node_it_can_reach_only_through_its_circuit_address() {
    use parley_p2p::{NodeConfig, PeerAddress};
    use parley_usecases::ports::{Directory as _, NodeInfo as _, OutgoingEnvelope, Transport as _};

    let ca = Ca::new("Parley CA");
    let server = relay_with(&ca, small_limits()).await;
    let (bob, mut bob_rx) = common::node(ca.user("bob", 2), "bob", server.addresses()).await;
    common::eventually("bob's relay slot", async || {
        let relay = bob.snapshot().relay;
        relay.reserved && !relay.addrs.is_empty()
    })
    .await;
    let circuit: Multiaddr = bob.snapshot().relay.addrs[0].parse().unwrap();
    let bob_id: PeerId = bob.snapshot().peer_id.parse().unwrap();
    assert_eq!(circuit, circuit_to(&relay_address(&server).0, bob_id));

    let config = NodeConfig {
        credentials: ca.user("alice", 1),
        user: user("alice"),
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        rendezvous: server.addresses(),
        inbound_queue: 16,
        attachments: None,
        renew: true,
        tls_refresh: parley_p2p::refresh::DEFAULT_TLS_REFRESH,
    };
    let (alice, _alice_rx) = parley_p2p::Node::start(config).await.unwrap();
    // The directory hands out bob's circuit address beside his direct ones.
    common::eventually("bob's circuit address in the directory", async || {
        alice
            .lookup(&user("bob"))
            .await
            .is_ok_and(|found| found.iter().any(|d| d.addrs.contains(&circuit)))
    })
    .await;

    let received = tokio::spawn(async move {
        let inbound = bob_rx.recv().await.expect("bob's node stopped");
        let got = (inbound.from.clone(), inbound.envelope.clone());
        inbound.accept();
        got
    });
    let only_the_circuit = PeerAddress {
        peer: bob_id,
        addrs: vec![circuit],
    };
    let message = OutgoingEnvelope {
        id: parley_domain::MessageId::from_bytes([5; 16]),
        to: user("bob"),
        bytes: b"sealed: hello bob, through the relay".to_vec(),
        attachments: vec![],
    };
    tokio::time::timeout(
        PROMPTLY,
        alice.deliver(&user("bob"), &only_the_circuit, &message, None),
    )
    .await
    .expect("the relayed delivery took too long")
    .expect("the relayed delivery failed");
    let (from, envelope) = tokio::time::timeout(PROMPTLY, received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, user("alice"));
    assert_eq!(envelope, message.bytes);
    assert!(server.stats().snapshot().relay_circuits_opened >= 1);
    alice.shutdown().await;
    bob.shutdown().await;
    server.shutdown().await;
}
