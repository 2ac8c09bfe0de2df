//! A real node under attack by a real, enrolled attacker on loopback: oversized frames, floods
//! of streams and connections, garbage in protocol negotiation, forged and replayed envelopes.
//! Each test checks that the attack is cut off, that memory stays bounded (the process's VmRSS,
//! against a generous stated bound), and that a well-behaved peer is still served. "Promptly"
//! means within generous timeouts that fail only when the node is starved.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Ca, node};
use futures::{AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts, dial_opts::PeerCondition},
};
use parley_domain::{MessageId, Role, Username};
use parley_p2p::{
    Inbound, Node, PeerAddress,
    guard::PEER,
    message::{
        self, Answer, MAX_ENVELOPE_BYTES, MAX_REQUEST_FRAME_BYTES, MAX_RESPONSE_FRAME_BYTES,
        MESSAGE_PROTOCOL, Request, Response,
    },
    protocol::{DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse},
    registry::{Expectation, Registry},
};
use parley_usecases::ports::{NodeInfo, OutgoingEnvelope, Transport};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Growth of the test process's resident memory that no attack here may exceed. Every limit
/// together allows far less; the bound is generous so that allocator noise never fails it.
const RSS_GROWTH_BOUND_KIB: u64 = 96 * 1024;
/// How long a well-behaved peer may wait while the node is under attack.
const PROMPTLY: Duration = Duration::from_secs(10);

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// The process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn check_rss(what: &str, before: u64) {
    let after = rss_kib();
    let growth = after.saturating_sub(before);
    println!("{what}: VmRSS {before} KiB before, {after} KiB after, growth {growth} KiB");
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "{what}: memory grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
}

async fn address_of(node: &Node) -> PeerAddress {
    let snapshot = node.snapshot();
    PeerAddress {
        peer: snapshot.peer_id.parse().expect("the node's own peer id"),
        addrs: snapshot
            .listen_addrs
            .iter()
            .map(|a| a.parse().expect("the node's own address"))
            .collect(),
    }
}

/// The victim's TCP address (without `/p2p/`), as a socket address.
async fn socket_of(node: &Node) -> std::net::SocketAddr {
    let at = address_of(node).await;
    let addr: Multiaddr = at.addrs[0].clone();
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            libp2p::multiaddr::Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            libp2p::multiaddr::Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.unwrap(), port.unwrap())
}

/// The scene of most attacks: a CA, bob (the victim) with a [`verifying_app`], and alice, a
/// well-behaved peer who must be served throughout.
async fn victim_and_friend() -> (Ca, Node, Stored, Node) {
    let ca = Ca::new("Parley CA");
    let (bob, bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let stored = verifying_app(bob_rx);
    let (alice, _) = node(ca.user("alice", 1), "alice", vec![]).await;
    (ca, bob, stored, alice)
}

/// What a victim's application stored: (sender, envelope).
type Stored = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The application side of a victim: envelopes that start with `signed:` are genuine (a
/// stand-in for the envelope's signature check, which is the use case's work); a genuine one
/// seen before is a duplicate and gets its receipt again; anything else is refused for good.
fn verifying_app(mut rx: mpsc::Receiver<Inbound>) -> Stored {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let keep = stored.clone();
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        while let Some(inbound) = rx.recv().await {
            if !inbound.envelope.starts_with(b"signed:") {
                inbound.reject_for_good("the envelope's signature does not verify".into());
                continue;
            }
            // `signed:from=NAME:...` names its sender, which must be the connection's.
            if let Some(claimed) = inbound.envelope.strip_prefix(b"signed:from=")
                && !claimed.starts_with(format!("{}:", inbound.from).as_bytes())
            {
                inbound.reject_for_good("the envelope's sender is not the connection's".into());
                continue;
            }
            if seen.insert(inbound.envelope.clone()) {
                keep.lock()
                    .await
                    .push((inbound.from.to_string(), inbound.envelope.clone()));
            }
            inbound.accept();
        }
    });
    stored
}

fn envelope(to: &str, n: u8, bytes: &[u8]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        id: MessageId::from_bytes([n; 16]),
        to: user(to),
        bytes: bytes.to_vec(),
        attachments: vec![],
    }
}

/// `from` delivers a genuine envelope to `to` within [`PROMPTLY`].
async fn delivers_promptly(from: &Node, to: &Node, to_name: &str, n: u8) {
    let at = address_of(to).await;
    let message = envelope(to_name, n, format!("signed:{n}").as_bytes());
    let outcome = tokio::time::timeout(PROMPTLY, from.deliver(&user(to_name), &at, &message, None))
        .await
        .unwrap_or_else(|_| panic!("delivery {n} to {to_name} took over {PROMPTLY:?}"));
    outcome.unwrap_or_else(|e| panic!("delivery {n} to {to_name} failed: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The attacker: an enrolled device whose software misbehaves, built from the same libp2p pieces.

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Attack {
    directory: request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>,
    streams: libp2p_stream::Behaviour,
}

type DirectoryAnswer = oneshot::Sender<Result<DirectoryResponse, String>>;

enum Command {
    Dial(Multiaddr),
    Ask(DirectoryRequest, DirectoryAnswer),
    Disconnect,
}

/// A running attacker; its swarm runs on its own task until dropped.
struct Attacker {
    commands: mpsc::Sender<Command>,
    streams: libp2p_stream::Control,
    /// Connections open now.
    open: Arc<AtomicUsize>,
    /// Connections closed, or refused during their handshake, so far.
    closed: Arc<AtomicUsize>,
    victim: PeerId,
    /// The attacker's `/parley/message/3` stream, opened on the first [`Attacker::send`], and
    /// the number of its next request.
    wire: Mutex<Option<(libp2p::Stream, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Attacker {
    /// Device `name` (certificate from `ca`, key from `seed`) aiming at `victim`'s node.
    async fn new(ca: &Ca, name: &str, seed: u8, victim: &Node, victim_name: &str) -> Self {
        let at = address_of(victim).await;
        let victim_id: PeerId = at.peer;
        Self::aiming_at(ca, name, seed, victim_id, Role::User(user(victim_name)))
    }

    /// Device `name` aiming at the peer `victim_id`, whose certificate must name `role`.
    fn aiming_at(ca: &Ca, name: &str, seed: u8, victim_id: PeerId, role: Role) -> Self {
        let credentials = ca.user(name, seed);
        let registry = Registry::default();
        registry.set_expectation(victim_id, Expectation { role, keys: None });
        let behaviour = Attack {
            directory: request_response::json::Behaviour::new(
                [(DIRECTORY_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            ),
            streams: libp2p_stream::Behaviour::new(),
        };
        let streams = behaviour.streams.new_control();
        let swarm = common::scripted_swarm(&credentials, seed, registry, behaviour);
        let (commands, rx) = mpsc::channel(16);
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(swarm, victim_id, rx, open.clone(), closed.clone()));
        Self {
            commands,
            streams,
            open,
            closed,
            victim: victim_id,
            wire: Mutex::new(None),
            task,
        }
    }

    async fn dial(&self, at: &Node) {
        let addr: Multiaddr = address_of(at).await.addrs[0].clone();
        self.dial_addr(addr).await;
    }

    async fn dial_addr(&self, addr: Multiaddr) {
        self.commands.send(Command::Dial(addr)).await.unwrap();
    }

    /// Asks the directory and waits (up to 20 s) for the answer or the failure.
    async fn ask(&self, request: DirectoryRequest) -> Result<DirectoryResponse, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Ask(request, tx)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("the directory neither answered nor failed within 20 s")
            .unwrap()
    }

    async fn lookup(&self, name: &str) -> Result<DirectoryResponse, String> {
        self.ask(DirectoryRequest::Lookup {
            username: name.into(),
            meta: Default::default(),
        })
        .await
    }

    /// Opens a fresh `/parley/message/3` stream to the victim.
    async fn open(&self) -> libp2p::Stream {
        let mut control = self.streams.clone();
        let open = control.open_stream(self.victim, MESSAGE_PROTOCOL);
        tokio::time::timeout(Duration::from_secs(10), open)
            .await
            .expect("a message stream within 10 s")
            .expect("a message stream")
    }

    /// Sends `envelope` as the next request on the attacker's stream (opened on first use, and
    /// again after a failure) and waits (up to 20 s) for its answer or the failure.
    async fn send(&self, envelope: &[u8]) -> Result<Answer, String> {
        let mut wire = self.wire.lock().await;
        if wire.is_none() {
            *wire = Some((self.open().await, 0));
        }
        let Some((stream, next)) = wire.as_mut() else {
            unreachable!("opened above")
        };
        let n = *next;
        *next += 1;
        let request = Request {
            n,
            envelope: envelope.to_vec(),
            meta: Default::default(),
        };
        let outcome = exchange(stream, &message::frame(&request.encode())).await;
        match outcome {
            Ok(Response {
                n: answered,
                answer,
            }) if answered == n => Ok(answer),
            Ok(other) => Err(format!("an answer to another request: {other:?}")),
            Err(e) => {
                *wire = None;
                Err(e)
            }
        }
    }

    async fn connected(&self) {
        let open = self.open.clone();
        common::eventually("the attacker to be connected", async || {
            open.load(Ordering::SeqCst) > 0
        })
        .await;
    }
}

/// Hands the outcome of a request to whoever waits for it.
fn settle<Request, Response>(
    waiting: &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
    event: request_response::Event<Request, Response>,
) {
    let (id, outcome) = match event {
        request_response::Event::Message {
            message:
                request_response::Message::Response {
                    request_id,
                    response,
                },
            ..
        } => (request_id, Ok(response)),
        request_response::Event::OutboundFailure {
            request_id, error, ..
        } => (request_id, Err(error.to_string())),
        _ => return,
    };
    if let Some(answer) = waiting.remove(&id) {
        let _ = answer.send(outcome);
    }
}

async fn run(
    mut swarm: Swarm<Attack>,
    victim: PeerId,
    mut commands: mpsc::Receiver<Command>,
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
) {
    let mut asking: HashMap<OutboundRequestId, DirectoryAnswer> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Dial(addr)) => {
                    let opts = DialOpts::peer_id(victim)
                        .addresses(vec![addr])
                        .condition(PeerCondition::Always)
                        .build();
                    let _ = swarm.dial(opts);
                }
                Some(Command::Disconnect) => {
                    let _ = swarm.disconnect_peer_id(victim);
                }
                Some(Command::Ask(request, answer)) => {
                    let id = swarm.behaviour_mut().directory.send_request(&victim, request);
                    asking.insert(id, answer);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => {
                    open.fetch_add(1, Ordering::SeqCst);
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    open.fetch_sub(1, Ordering::SeqCst);
                    closed.fetch_add(1, Ordering::SeqCst);
                }
                // Refused during its handshake: it ends as well.
                SwarmEvent::OutgoingConnectionError { .. } => {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
                SwarmEvent::Behaviour(AttackEvent::Directory(event)) => settle(&mut asking, event),
                _ => {}
            },
        }
    }
}

/// Writes `bytes` on `stream` and reads one answer frame (up to 20 s); an error when the
/// stream is dropped or ends unanswered.
async fn exchange(stream: &mut libp2p::Stream, bytes: &[u8]) -> Result<Response, String> {
    let exchange = async {
        stream.write_all(bytes).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        match message::read_frame(stream, MAX_RESPONSE_FRAME_BYTES).await {
            Ok(Some(item)) => Response::decode(&item).map_err(|e| e.to_string()),
            Ok(None) => Err("the stream ended unanswered".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the victim neither answered nor dropped the stream within 20 s")
}

/// A frame of the CBOR map `entries` (key, value), in that order, as no honest encoder writes.
type Value<'a> = &'a dyn Fn(&mut minicbor::Encoder<Vec<u8>>);

fn hand_made(entries: &[(&str, Value<'_>)]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.map(entries.len() as u64).unwrap();
    for (key, value) in entries {
        e.str(key).unwrap();
        value(&mut e);
    }
    message::frame(&e.into_writer())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_frame_is_dropped_and_the_node_keeps_serving() {
    let (ca, bob, stored, alice) = victim_and_friend().await;
    let mallory = Attacker::new(&ca, "mallory", 9, &bob, "bob").await;
    mallory.dial(&bob).await;
    mallory.connected().await;
    let before = rss_kib();

    // A frame announcing 1 MiB, far beyond the cap, and sending it: the stream is dropped
    // before its body is read, never answered.
    let mut stream = mallory.open().await;
    let mut huge = u32::try_from(1 << 20).unwrap().to_be_bytes().to_vec();
    huge.extend(std::iter::repeat_n(0u8, 1 << 20));
    let answer = exchange(&mut stream, &huge).await;
    assert!(
        answer.is_err(),
        "an oversized frame got an answer: {answer:?}"
    );
    // Within the frame's cap but over the envelope's: refused for good, unread.
    let over = vec![b'x'; MAX_ENVELOPE_BYTES + 1];
    assert!(
        message::frame(
            &Request {
                n: 0,
                envelope: over.clone(),
                meta: Default::default()
            }
            .encode()
        )
        .len()
            <= MAX_REQUEST_FRAME_BYTES + 4
    );
    let answer = mallory.send(&over).await;
    assert!(
        matches!(
            answer,
            Ok(Answer::Refused {
                permanent: true,
                ..
            })
        ),
        "{answer:?}"
    );

    delivers_promptly(&alice, &bob, "bob", 1).await;
    check_rss("oversized frames", before);
    assert_eq!(
        stored
            .lock()
            .await
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        vec!["alice"],
        "nothing of the attacker's was stored"
    );
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_drop_the_stream_and_a_foreign_sender_is_refused_for_good() {
    let (ca, bob, stored, alice) = victim_and_friend().await;
    let mallory = Attacker::new(&ca, "mallory", 9, &bob, "bob").await;
    mallory.dial(&bob).await;
    mallory.connected().await;

    // Bytes that are not CBOR at all, and a request with a field the protocol does not name
    // (a sender of its own choosing): each drops its stream unanswered, and nothing arrives.
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 7919 % 251) as u8).collect();
    let n = |e: &mut minicbor::Encoder<Vec<u8>>| {
        e.u64(0).unwrap();
    };
    let envelope = |e: &mut minicbor::Encoder<Vec<u8>>| {
        e.bytes(b"signed:from=bob:hello").unwrap();
    };
    let from = |e: &mut minicbor::Encoder<Vec<u8>>| {
        e.str("bob").unwrap();
    };
    let unknown_field = hand_made(&[("n", &n), ("envelope", &envelope), ("from", &from)]);
    for (what, frame) in [
        ("garbage", message::frame(&garbage)),
        ("an unknown field", unknown_field),
    ] {
        let mut stream = mallory.open().await;
        let answer = exchange(&mut stream, &frame).await;
        assert!(answer.is_err(), "{what} got an answer: {answer:?}");
    }

    // A well-formed request whose envelope names another sender than the connection's
    // certificate: refused for good by the application, and the stream goes on.
    let answer = mallory.send(b"signed:from=bob:hello").await;
    assert!(
        matches!(
            answer,
            Ok(Answer::Refused {
                permanent: true,
                ..
            })
        ),
        "{answer:?}"
    );
    // On the same stream, an honest request of mallory's own still gets its receipt; the
    // sender is the certificate's, whatever the frames said.
    let answer = mallory.send(b"signed:from=mallory:hi").await;
    let Ok(Answer::Receipt { digest, sig }) = answer else {
        panic!("a receipt: {answer:?}");
    };
    // Signed by bob's device over what it stored, and over nothing else.
    let mut seed = *common::secret(2).expose();
    let bob_key = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
        .unwrap()
        .public()
        .try_into_ed25519()
        .unwrap()
        .to_bytes();
    let sig = sig.expect("the receipt carries a signature");
    assert!(parley_domain::receipt::verifies(
        &bob_key,
        &parley_domain::Digest(digest),
        &sig
    ));
    assert!(!parley_domain::receipt::verifies(
        &bob_key,
        &parley_domain::Digest([0; 32]),
        &sig
    ));

    delivers_promptly(&alice, &bob, "bob", 1).await;
    let stored = stored.lock().await;
    assert_eq!(
        stored.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        vec!["mallory", "alice"]
    );
    assert_eq!(stored[0].1, b"signed:from=mallory:hi");
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_streams_on_one_connection_is_bounded_and_another_peer_is_served() {
    let (ca, bob, stored, alice) = victim_and_friend().await;
    let mallory = Attacker::new(&ca, "mallory", 9, &bob, "bob").await;
    mallory.dial(&bob).await;
    mallory.connected().await;
    let before = rss_kib();

    // 400 message streams, each with half a request, left open.
    let attempts = 400;
    // A stream the node still holds after a few seconds is one it waits on; one it refused
    // (yamux's cap, the negotiation cap, the message streams' cap per peer) ends or resets.
    let held = Arc::new(AtomicUsize::new(0));
    let half = message::frame(
        &Request {
            n: 0,
            envelope: b"signed:half".to_vec(),
            meta: Default::default(),
        }
        .encode(),
    );
    let half = half[..half.len() / 2].to_vec();
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..attempts {
        let mut control = mallory.streams.clone();
        let victim = mallory.victim;
        let held = held.clone();
        let half = half.clone();
        streams.spawn(async move {
            let open = control.open_stream(victim, MESSAGE_PROTOCOL);
            if let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(10), open).await {
                let _ = stream.write_all(&half).await;
                let _ = stream.flush().await;
                let mut byte = [0u8; 1];
                let read = futures::AsyncReadExt::read(&mut stream, &mut byte);
                if tokio::time::timeout(Duration::from_secs(3), read)
                    .await
                    .is_err()
                {
                    held.fetch_add(1, Ordering::SeqCst);
                    // Hold it, never finishing the request.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                drop(stream);
            }
        });
    }
    // And streams of protocols nobody speaks.
    for _ in 0..50 {
        let answer = mallory
            .streams
            .clone()
            .open_stream(mallory.victim, StreamProtocol::new("/parley/nonsense/1"))
            .await;
        assert!(answer.is_err(), "an unknown protocol was accepted");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let held = held.load(Ordering::SeqCst);
    println!("stream flood: the node holds {held} of {attempts} streams");
    assert!(
        held <= parley_p2p::MESSAGE_STREAMS_PER_PEER,
        "the node holds {held} streams of one connection"
    );

    delivers_promptly(&alice, &bob, "bob", 1).await;
    delivers_promptly(&alice, &bob, "bob", 2).await;
    check_rss("stream flood", before);
    assert_eq!(stored.lock().await.len(), 2);
    streams.abort_all();
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_refused_past_the_limits_and_a_peer_still_gets_through() {
    let (ca, bob, stored, alice) = victim_and_friend().await;
    let target = socket_of(&bob).await;
    let before = rss_kib();

    // 200 TCP connections from one other address (127.0.0.2) that never start a handshake.
    let silent = 200;
    let mut sockets = Vec::new();
    for _ in 0..silent {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(stream) = socket.connect(target).await {
            sockets.push(stream);
        }
    }
    // Those past the per-address cap are closed at once; the others when the handshake
    // timeout strikes. Every one of them ends.
    let refused = Arc::new(AtomicUsize::new(0));
    let mut waits = tokio::task::JoinSet::new();
    for mut stream in sockets {
        let refused = refused.clone();
        waits.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            let ended = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await;
            if matches!(ended, Ok(Ok(0) | Err(_))) {
                refused.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            let ended = tokio::time::timeout(
                parley_p2p::HANDSHAKE_TIMEOUT + Duration::from_secs(10),
                stream.read(&mut byte),
            )
            .await;
            matches!(ended, Ok(Ok(0) | Err(_)))
        });
    }

    // Meanwhile one enrolled device opens 30 connections at once: all but a few are refused
    // after the handshake (per peer), and other devices' connections are counted globally.
    let mallory = Attacker::new(&ca, "mallory", 9, &bob, "bob").await;
    for _ in 0..30 {
        mallory.dial(&bob).await;
    }
    let (open, closed) = (mallory.open.clone(), mallory.closed.clone());
    common::eventually("the extra connections to be closed", async || {
        closed.load(Ordering::SeqCst) >= 30 - PEER.established_per_peer as usize
    })
    .await;
    let still_open = open.load(Ordering::SeqCst);
    assert!(
        still_open <= PEER.established_per_peer as usize,
        "{still_open} connections from one peer stayed open"
    );

    // A well-behaved peer from 127.0.0.1 gets through while the silent sockets are held.
    delivers_promptly(&alice, &bob, "bob", 1).await;
    check_rss("connection flood", before);

    let refused_at_once = refused.load(Ordering::SeqCst);
    println!("connection flood: {refused_at_once} of {silent} silent connections closed at once");
    assert!(
        refused_at_once >= silent - PEER.pending_per_ip,
        "only {refused_at_once} of {silent} silent connections were refused at once"
    );
    let mut all_ended = true;
    while let Some(ended) = waits.join_next().await {
        all_ended &= ended.unwrap();
    }
    assert!(
        all_ended,
        "a silent connection outlived the handshake timeout"
    );
    assert_eq!(stored.lock().await.len(), 1);
    drop(mallory);
    alice.shutdown().await;
    bob.shutdown().await;
}

/// A multistream-select message: a varint length, then the line.
fn ms(line: &str) -> Vec<u8> {
    let mut out = vec![u8::try_from(line.len() + 1).unwrap()];
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

/// Reads until the peer closes (true) or 15 s pass (false).
fn closed_by_peer(stream: &mut impl Read) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn tcp(target: std::net::SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(target).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_protocol_negotiation_closes_the_connection() {
    let (ca, bob, stored, alice) = victim_and_friend().await;
    let target = socket_of(&bob).await;
    let mallory = ca.user("mallory", 9);

    let outcomes = tokio::task::spawn_blocking(move || {
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut outcomes = Vec::new();

        // Random bytes right after the TCP connect.
        let mut s = tcp(target);
        s.write_all(&garbage).unwrap();
        outcomes.push(("random bytes after connect", closed_by_peer(&mut s)));

        // A valid multistream header, then a security protocol we do not speak, then garbage.
        let mut s = tcp(target);
        s.write_all(&ms("/multistream/1.0.0")).unwrap();
        s.write_all(&ms("/noise")).unwrap();
        s.write_all(&garbage).unwrap();
        outcomes.push(("unknown security protocol", closed_by_peer(&mut s)));

        // A complete mutual-TLS handshake with an enrolled certificate, then garbage where
        // multistream-select should choose the muxer.
        let mut s = tcp(target);
        s.write_all(&ms("/multistream/1.0.0")).unwrap();
        s.write_all(&ms(parley_p2p::upgrade::PROTOCOL)).unwrap();
        let mut echo =
            vec![0u8; ms("/multistream/1.0.0").len() + ms(parley_p2p::upgrade::PROTOCOL).len()];
        s.read_exact(&mut echo).unwrap();
        let config = parley_p2p::tls::client_config(&mallory).unwrap();
        let name =
            rustls_pki_types::ServerName::IpAddress(std::net::IpAddr::from([0, 0, 0, 0]).into());
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, s);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls.write_all(&ms("/multistream/1.0.0")).unwrap();
        tls.write_all(&ms("/not-a-muxer/9")).unwrap();
        tls.write_all(&garbage).unwrap();
        tls.flush().unwrap();
        outcomes.push(("garbage after the TLS handshake", closed_by_peer(&mut tls)));
        outcomes
    })
    .await
    .unwrap();
    for (what, closed) in outcomes {
        assert!(closed, "{what}: the node kept the connection open");
    }

    delivers_promptly(&alice, &bob, "bob", 1).await;
    assert_eq!(stored.lock().await.len(), 1);
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_envelope_is_refused_for_good_a_replay_is_acknowledged_and_others_are_unaffected()
{
    let (ca, bob, stored, alice) = victim_and_friend().await;

    // Alice sends, then sends the very same envelope again (a retry, or a replay of it):
    // both get a receipt, it is stored once, and nothing is held against her.
    let at = address_of(&bob).await;
    let genuine = envelope("bob", 1, b"signed:hello");
    for _ in 0..(2 * parley_p2p::MAX_VIOLATIONS_PER_PEER) {
        alice
            .deliver(&user("bob"), &at, &genuine, None)
            .await
            .expect("a duplicate is acknowledged");
    }
    assert_eq!(stored.lock().await.len(), 1, "stored once");

    // Mallory sends forged and altered envelopes: each is refused for good, and past the
    // limit her connection is closed.
    let mallory = Attacker::new(&ca, "mallory", 9, &bob, "bob").await;
    mallory.dial(&bob).await;
    mallory.connected().await;
    for n in 0..parley_p2p::MAX_VIOLATIONS_PER_PEER {
        let forged = format!("forged:{n}");
        match mallory.send(forged.as_bytes()).await {
            Ok(Answer::Refused { permanent, reason }) => {
                assert!(permanent, "{reason}");
            }
            other => panic!("a forged envelope was not refused: {other:?}"),
        }
    }
    let closed = mallory.closed.clone();
    common::eventually("the forger's connection to be closed", async || {
        closed.load(Ordering::SeqCst) >= 1
    })
    .await;

    // Alice's conversation goes on, on the connection she already had.
    delivers_promptly(&alice, &bob, "bob", 2).await;
    let stored = stored.lock().await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|(from, _)| from == "alice"));
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_lookups_are_limited_per_device_and_per_address_with_a_retry_after() {
    let ca = Ca::new("Parley CA");
    // Every device here connects from 127.0.0.1, which the default exempts (a local proxy).
    let dir = parley_p2p::DirectoryServer::start_with(
        ca.rendezvous(200),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        parley_p2p::ServerOptions {
            address_limit: parley_p2p::AddressLimit::All,
            ..parley_p2p::ServerOptions::default()
        },
    )
    .await
    .unwrap();
    let at = dir.addresses()[0].clone();
    let Some(libp2p::multiaddr::Protocol::P2p(rendezvous)) = at.iter().last() else {
        panic!("the directory's address names no peer: {at}");
    };
    let devices: Vec<Attacker> = (0..4u8)
        .map(|i| {
            Attacker::aiming_at(
                &ca,
                &format!("eve-{i}"),
                40 + i,
                rendezvous,
                Role::Rendezvous,
            )
        })
        .collect();
    for device in &devices {
        device.dial_addr(at.clone()).await;
        device.connected().await;
    }

    // One device: its burst, then RateLimited with a retry-after.
    let first = &devices[0];
    let burst = parley_p2p::LOOKUP_BURST as usize;
    let mut answered = 0;
    let mut retry_after = None;
    for i in 0..burst + 5 {
        match first.lookup(&format!("nobody{i:03}")).await {
            Ok(DirectoryResponse::Lookup { devices }) if devices.is_empty() => answered += 1,
            Ok(DirectoryResponse::RateLimited { retry_after_ms }) => {
                retry_after.get_or_insert(retry_after_ms);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let retry_after = retry_after.expect("the device met its limit");
    assert!(answered >= burst, "{answered} look-ups answered");
    assert!(
        (1..=1000).contains(&retry_after),
        "retry after {retry_after} ms"
    );
    // Waiting as told lets it through again.
    tokio::time::sleep(Duration::from_millis(retry_after)).await;
    let again = first.lookup("nobody").await;
    assert!(
        matches!(again, Ok(DirectoryResponse::Lookup { ref devices }) if devices.is_empty()),
        "{again:?}"
    );
    // Reconnecting does not bring a fresh bucket: a new burst right after is still limited
    // (a fresh bucket would answer all of it; this fails only if reconnecting takes seconds).
    first.commands.send(Command::Disconnect).await.unwrap();
    let open = first.open.clone();
    common::eventually("the device to disconnect", async || {
        open.load(Ordering::SeqCst) == 0
    })
    .await;
    first.dial_addr(at.clone()).await;
    first.connected().await;
    let mut limited_after_reconnect = 0;
    for i in 0..burst {
        if let Ok(DirectoryResponse::RateLimited { .. }) =
            first.lookup(&format!("again{i:03}")).await
        {
            limited_after_reconnect += 1;
        }
    }
    assert!(
        limited_after_reconnect > 0,
        "a reconnect reset the device's look-up budget"
    );

    // The other devices share the address's budget: together they meet its limit long
    // before each meets its own.
    let mut limited = 0;
    for device in &devices[1..] {
        for i in 0..burst {
            if let Ok(DirectoryResponse::RateLimited { retry_after_ms }) =
                device.lookup(&format!("someone{i:03}")).await
            {
                assert!(retry_after_ms > 0);
                limited += 1;
            }
        }
    }
    println!(
        "directory: {limited} of {} look-ups from three more devices on one address were rate-limited",
        3 * burst
    );
    // Each of them stayed within its own burst: only the address's budget can refuse them.
    assert!(
        limited > 0,
        "devices on one address together exceeded its budget of {} unrefused",
        parley_p2p::IP_LOOKUP_BURST
    );
    let stats = dir.stats().snapshot();
    assert!(stats.rate_limited >= limited as u64);
    drop(devices);
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_hands_out_only_addresses_it_can_vouch_for() {
    let ca = Ca::new("Parley CA");
    let dir = common::directory(&ca).await;
    let at = dir.addresses()[0].clone();
    let Some(libp2p::multiaddr::Protocol::P2p(rendezvous)) = at.iter().last() else {
        panic!("the directory's address names no peer: {at}");
    };
    let relay_part = {
        let mut a = at.clone();
        a.pop();
        a
    };
    let mallory = Attacker::aiming_at(&ca, "mallory", 60, rendezvous, Role::Rendezvous);
    mallory.dial_addr(at.clone()).await;
    mallory.connected().await;
    // Mallory connects from 127.0.0.1: only that IP, or a circuit through this relay at its
    // own address, may be handed out; the rest aims lookers-up at other hosts.
    let honest = [
        "/ip4/127.0.0.1/tcp/4001".to_owned(),
        format!("{relay_part}/p2p/{rendezvous}/p2p-circuit"),
    ];
    let hostile = [
        "/ip4/10.1.2.3/tcp/22".to_owned(),
        "/ip4/192.168.1.1/tcp/80".to_owned(),
        "/dns4/intranet.example/tcp/80".to_owned(),
        "/ip4/127.0.0.1/tcp/0".to_owned(),
        "/ip4/127.0.0.1/udp/4001/quic-v1".to_owned(),
        format!("/ip4/10.1.2.3/tcp/22/p2p/{rendezvous}/p2p-circuit"),
    ];
    let published = mallory
        .ask(DirectoryRequest::Publish {
            addrs: honest.iter().chain(&hostile).cloned().collect(),
            meta: Default::default(),
        })
        .await;
    assert!(
        matches!(published, Ok(DirectoryResponse::Published)),
        "{published:?}"
    );
    let eve = Attacker::aiming_at(&ca, "eve", 61, rendezvous, Role::Rendezvous);
    eve.dial_addr(at).await;
    eve.connected().await;
    let Ok(DirectoryResponse::Lookup { devices }) = eve.lookup("mallory").await else {
        panic!("mallory's look-up is answered");
    };
    let [found] = devices.as_slice() else {
        panic!("mallory is listed once: {devices:?}");
    };
    let handed: Vec<String> = found
        .addrs
        .iter()
        .map(|a| {
            a.trim_end_matches(&format!("/p2p/{}", found.peer_id))
                .to_owned()
        })
        .collect();
    assert_eq!(handed, honest, "only what the directory vouches for");
}
