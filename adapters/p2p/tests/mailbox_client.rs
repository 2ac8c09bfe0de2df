//! The node's mailbox client against a scripted rendezvous: a raw libp2p swarm holding the
//! rendezvous's certificate, behind the real mutual-TLS upgrade on loopback, that speaks
//! `/parley/directory/2` and `/parley/mailbox/1` and answers each mailbox request with the next
//! scripted response. Checks how requests and answers map to the `Mailbox` port, that a
//! certificate the rendezvous hands out counts only when it verifies, and who may say "mail is
//! waiting".
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use common::{Ca, node};
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    multiaddr::Protocol,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts},
};
use parley_domain::{MailId, PeerKeys, Role, Timestamp, Username, pki};
use parley_p2p::{
    Credentials, Node,
    protocol::{
        DIRECTORY_PROTOCOL, DirectoryRequest, DirectoryResponse, HeldItem, MAILBOX_PROTOCOL,
        MailboxRequest, MailboxResponse,
    },
    registry::{Expectation, Registry},
};
use parley_usecases::ports::{Deposit, MailBatch, MailItem, Mailbox, MailboxError, NodeInfo};
use tokio::sync::{mpsc, oneshot};

/// Seed of the rendezvous's key.
const RENDEZVOUS_SEED: u8 = 200;
/// How long anything here may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Scripted {
    directory: request_response::json::Behaviour<DirectoryRequest, DirectoryResponse>,
    mailbox: request_response::json::Behaviour<MailboxRequest, MailboxResponse>,
}

type Answer = oneshot::Sender<Result<MailboxResponse, String>>;

/// What the scripted endpoint does besides answering.
enum Command {
    /// Sends `Waiting` to `peer` over an open connection.
    Waiting(PeerId, Answer),
    /// Dials `peer` at `addr`.
    Dial(PeerId, Multiaddr),
}

/// A scripted endpoint on its own task (aborted when dropped).
struct Endpoint {
    addr: Multiaddr,
    /// The mailbox requests received, in order.
    seen: Arc<Mutex<Vec<MailboxRequest>>>,
    /// The answers to give, in order.
    script: Arc<Mutex<VecDeque<MailboxResponse>>>,
    /// Peers connected now.
    connected: Arc<Mutex<HashSet<PeerId>>>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    /// The rendezvous: listens on loopback and acknowledges publications when `publications`.
    async fn rendezvous(ca: &Ca, publications: bool) -> Self {
        Self::start(
            &ca.rendezvous(RENDEZVOUS_SEED),
            RENDEZVOUS_SEED,
            Registry::default(),
            publications,
        )
        .await
    }

    /// An enrolled user's device `name` that will dial the node `target` (user `target_name`).
    async fn user(ca: &Ca, name: &str, seed: u8, target: PeerId, target_name: &str) -> Self {
        let registry = Registry::default();
        registry.set_expectation(
            target,
            Expectation {
                role: Role::User(user(target_name)),
                keys: None,
            },
        );
        Self::start(&ca.user(name, seed), seed, registry, false).await
    }

    async fn start(
        credentials: &Credentials,
        seed: u8,
        registry: Registry,
        publications: bool,
    ) -> Self {
        let peer = PeerId::from_public_key(
            &libp2p::identity::Keypair::ed25519_from_bytes(*common::secret(seed).expose())
                .unwrap()
                .public(),
        );
        let codec = request_response::json::codec::Codec::default()
            .set_request_size_maximum(16 << 20)
            .set_response_size_maximum(16 << 20);
        let behaviour = Scripted {
            directory: request_response::json::Behaviour::new(
                [(DIRECTORY_PROTOCOL, ProtocolSupport::Inbound)],
                request_response::Config::default(),
            ),
            mailbox: request_response::json::Behaviour::with_codec(
                codec,
                [(MAILBOX_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        };
        let mut swarm = common::scripted_swarm(credentials, seed, registry, behaviour);
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = tokio::time::timeout(PATIENCE, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address.with(Protocol::P2p(peer));
                }
            }
        })
        .await
        .expect("the scripted endpoint did not listen");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let connected = Arc::new(Mutex::new(HashSet::new()));
        let (commands, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(
            swarm,
            rx,
            Shared {
                seen: seen.clone(),
                script: script.clone(),
                connected: connected.clone(),
                publications,
            },
        ));
        Self {
            addr,
            seen,
            script,
            connected,
            commands,
            task,
        }
    }

    /// Queues `answers` for the next mailbox requests.
    fn answer(&self, answers: impl IntoIterator<Item = MailboxResponse>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// The mailbox requests received so far, taken.
    fn take_seen(&self) -> Vec<MailboxRequest> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Waits until `peer` is connected here.
    async fn connected_to(&self, peer: PeerId) {
        let connected = self.connected.clone();
        common::eventually("the scripted endpoint's connection", async || {
            connected.lock().unwrap().contains(&peer)
        })
        .await;
    }

    /// Dials the node.
    async fn dial(&self, peer: PeerId, addr: Multiaddr) {
        self.commands.send(Command::Dial(peer, addr)).await.unwrap();
    }

    /// Tells `peer` that mail is waiting, and returns its answer.
    async fn say_waiting(&self, peer: PeerId) -> Result<MailboxResponse, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Waiting(peer, tx))
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, rx)
            .await
            .expect("the node neither answered Waiting nor failed")
            .unwrap()
    }
}

struct Shared {
    seen: Arc<Mutex<Vec<MailboxRequest>>>,
    script: Arc<Mutex<VecDeque<MailboxResponse>>>,
    connected: Arc<Mutex<HashSet<PeerId>>>,
    publications: bool,
}

async fn run(mut swarm: Swarm<Scripted>, mut commands: mpsc::Receiver<Command>, shared: Shared) {
    let mut asking: HashMap<OutboundRequestId, Answer> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Waiting(peer, answer)) => {
                    let id = swarm
                        .behaviour_mut()
                        .mailbox
                        .send_request(&peer, MailboxRequest::Waiting);
                    asking.insert(id, answer);
                }
                Some(Command::Dial(peer, addr)) => {
                    let _ = swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    shared.connected.lock().unwrap().insert(peer_id);
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    shared.connected.lock().unwrap().remove(&peer_id);
                }
                SwarmEvent::Behaviour(ScriptedEvent::Directory(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                })) => {
                    let answer = if shared.publications {
                        DirectoryResponse::Published
                    } else {
                        DirectoryResponse::Refused { reason: "not today".into() }
                    };
                    let _ = swarm.behaviour_mut().directory.send_response(channel, answer);
                }
                SwarmEvent::Behaviour(ScriptedEvent::Mailbox(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    } => {
                        shared.seen.lock().unwrap().push(request);
                        let answer = shared.script.lock().unwrap().pop_front().unwrap_or(
                            MailboxResponse::Refused {
                                code: "unscripted".into(),
                                reason: "the test scripted no answer".into(),
                                permanent: true,
                            },
                        );
                        let _ = swarm.behaviour_mut().mailbox.send_response(channel, answer);
                    }
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Some(answer) = asking.remove(&request_id) {
                            let _ = answer.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(answer) = asking.remove(&request_id) {
                            let _ = answer.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
}

/// Bob's node, holding `rendezvous` for its rendezvous, once that connection is open.
async fn bob_at(ca: &Ca, rendezvous: &Endpoint) -> Node {
    let (bob, _inbound) = node(ca.user("bob", 2), "bob", vec![rendezvous.addr.clone()]).await;
    rendezvous.connected_to(peer_of(&bob)).await;
    bob
}

fn peer_of(node: &Node) -> PeerId {
    node.snapshot().peer_id.parse().unwrap()
}

fn addr_of(node: &Node) -> Multiaddr {
    node.snapshot().listen_addrs[0].parse().unwrap()
}

/// Runs `call` within [`PATIENCE`].
async fn promptly<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {PATIENCE:?}"))
}

fn malformed() -> MailboxError {
    MailboxError::Unavailable("the rendezvous sent a malformed answer".into())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_is_sent_in_base64_and_held_refused_or_misanswered_as_the_rendezvous_says() {
    let ca = Ca::new("Parley CA");
    let rendezvous = Endpoint::rendezvous(&ca, true).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let deposit = Deposit {
        sealed: b"wrapped envelope".to_vec(),
        files: vec![b"file one".to_vec(), Vec::new()],
        expires_at: Some(Timestamp(1_900_000_000_000)),
    };
    rendezvous.answer([
        MailboxResponse::Held,
        MailboxResponse::Refused {
            code: "mailbox_full".into(),
            reason: "carol's mailbox is full".into(),
            permanent: false,
        },
        MailboxResponse::Noted,
    ]);

    promptly("a deposit", bob.deposit(&user("carol"), &deposit))
        .await
        .unwrap();
    let seen = rendezvous.take_seen();
    let [
        MailboxRequest::Deposit {
            to,
            sealed,
            files,
            expires_at_ms,
            ..
        },
    ] = seen.as_slice()
    else {
        panic!("the rendezvous saw {seen:?}");
    };
    assert_eq!(to, "carol");
    assert_eq!(sealed, &b64(b"wrapped envelope"));
    assert_eq!(files, &vec![b64(b"file one"), String::new()]);
    assert_eq!(*expires_at_ms, Some(1_900_000_000_000));

    let refused = promptly("a refused deposit", bob.deposit(&user("carol"), &deposit)).await;
    assert_eq!(
        refused,
        Err(MailboxError::Refused {
            code: "mailbox_full".into(),
            reason: "carol's mailbox is full".into(),
            permanent: false,
        })
    );
    assert_eq!(refused.unwrap_err().code(), "mailbox_full");

    // An answer of another kind than a deposit's does not follow the protocol.
    let odd = promptly(
        "a misanswered deposit",
        bob.deposit(&user("carol"), &deposit),
    )
    .await;
    assert_eq!(odd, Err(malformed()));
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_batch_is_decoded_and_a_malformed_one_is_refused_whole() {
    let ca = Ca::new("Parley CA");
    let rendezvous = Endpoint::rendezvous(&ca, true).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let first = MailId::new(Timestamp(1_700_000_000_000), [1; 8]);
    let second = MailId::new(Timestamp(1_700_000_000_001), [2; 8]);
    let good = |id: MailId, sealed: &[u8]| HeldItem {
        id: id.to_string(),
        sealed: b64(sealed),
        files: vec![b64(b"attachment")],
    };
    rendezvous.answer([
        MailboxResponse::Mail {
            items: vec![good(first, b"one"), good(second, b"two")],
            more: true,
        },
        MailboxResponse::Mail {
            items: vec![
                good(first, b"one"),
                HeldItem {
                    id: "not an id".into(),
                    ..good(second, b"two")
                },
            ],
            more: false,
        },
        MailboxResponse::Mail {
            items: vec![HeldItem {
                sealed: "not base64!".into(),
                ..good(first, b"one")
            }],
            more: false,
        },
        MailboxResponse::Refused {
            code: "mailbox_rate_limited".into(),
            reason: "slow down".into(),
            permanent: false,
        },
    ]);

    let batch = promptly("a fetch", bob.fetch()).await.unwrap();
    assert_eq!(
        batch,
        MailBatch {
            items: vec![
                MailItem {
                    id: first,
                    sealed: b"one".to_vec(),
                    files: vec![b"attachment".to_vec()],
                },
                MailItem {
                    id: second,
                    sealed: b"two".to_vec(),
                    files: vec![b"attachment".to_vec()],
                },
            ],
            more: true,
        }
    );
    assert_eq!(promptly("a fetch", bob.fetch()).await, Err(malformed()));
    assert_eq!(promptly("a fetch", bob.fetch()).await, Err(malformed()));
    let refused = promptly("a fetch", bob.fetch()).await.unwrap_err();
    assert_eq!(refused.code(), "mailbox_rate_limited");
    assert!(
        rendezvous
            .take_seen()
            .iter()
            .all(|r| matches!(r, MailboxRequest::Fetch { .. }))
    );
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_name_the_ids_in_hex_at_most_a_batch_per_request() {
    let ca = Ca::new("Parley CA");
    let rendezvous = Endpoint::rendezvous(&ca, true).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let ids: Vec<MailId> = (0..65u8)
        .map(|n| MailId::new(Timestamp(1_700_000_000_000), [n; 8]))
        .collect();
    rendezvous.answer([MailboxResponse::Acknowledged, MailboxResponse::Acknowledged]);

    promptly("an acknowledgement", bob.acknowledge(&ids))
        .await
        .unwrap();
    let seen: Vec<Vec<String>> = rendezvous
        .take_seen()
        .into_iter()
        .map(|r| match r {
            MailboxRequest::Ack { ids } => ids,
            other => panic!("the rendezvous saw {other:?}"),
        })
        .collect();
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, vec![expected[..64].to_vec(), expected[64..].to_vec()]);

    // Nothing to acknowledge: no request at all.
    promptly("an empty acknowledgement", bob.acknowledge(&[]))
        .await
        .unwrap();
    assert!(rendezvous.take_seen().is_empty());

    rendezvous.answer([MailboxResponse::Held]);
    assert_eq!(
        promptly("a misanswered acknowledgement", bob.acknowledge(&ids[..1])).await,
        Err(malformed())
    );
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_keys_come_only_from_a_certificate_of_this_ca_naming_the_user_asked_for() {
    let ca = Ca::new("Parley CA");
    let elsewhere = Ca::new("Another CA");
    let rendezvous = Endpoint::rendezvous(&ca, true).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let carol_secret = common::secret(3);
    let carol_cert = ca.issue(&carol_secret, &pki::user_uri(&user("carol")));
    let certificate = |der: &[u8]| MailboxResponse::Certificate {
        der: Some(b64(der)),
    };
    rendezvous.answer([
        certificate(&carol_cert),
        MailboxResponse::Certificate { der: None },
        // Carol's genuine certificate, handed out for dave.
        certificate(&carol_cert),
        // Carol by name, from another CA.
        certificate(&elsewhere.issue(&carol_secret, &pki::user_uri(&user("carol")))),
        // The rendezvous's own certificate, for carol.
        certificate(&ca.issue(&carol_secret, pki::RENDEZVOUS_URI)),
        certificate(b"not a certificate"),
        MailboxResponse::Certificate {
            der: Some("not base64!".into()),
        },
    ]);

    let keys = promptly("a key look-up", bob.certified_keys(&user("carol")))
        .await
        .unwrap();
    let mut secret = *carol_secret.expose();
    let carol_key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
        .unwrap()
        .public()
        .try_into_ed25519()
        .unwrap()
        .to_bytes();
    assert_eq!(
        keys,
        Some(PeerKeys {
            ed25519: carol_key,
            x25519: Some([7; 32]),
        })
    );
    assert_eq!(
        promptly("a key look-up", bob.certified_keys(&user("zoe"))).await,
        Ok(None)
    );
    for (asked, what) in [
        ("dave", "carol's certificate for dave"),
        ("carol", "a certificate from another CA"),
        ("carol", "the rendezvous's certificate"),
        ("carol", "garbage"),
    ] {
        let answer = promptly("a key look-up", bob.certified_keys(&user(asked))).await;
        match answer {
            Err(MailboxError::Unavailable(reason)) => {
                assert!(reason.contains("does not verify"), "{what}: {reason}");
            }
            other => panic!("{what} gave {other:?}"),
        }
    }
    assert_eq!(
        promptly("a key look-up", bob.certified_keys(&user("carol"))).await,
        Err(malformed())
    );
    let asked: Vec<String> = rendezvous
        .take_seen()
        .into_iter()
        .map(|r| match r {
            MailboxRequest::Keys { username } => username,
            other => panic!("the rendezvous saw {other:?}"),
        })
        .collect();
    assert_eq!(
        asked,
        ["carol", "zoe", "dave", "carol", "carol", "carol", "carol"]
    );
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_rendezvous_connection_every_request_is_unavailable_at_once() {
    let ca = Ca::new("Parley CA");
    // A rendezvous that is gone: its address refuses connections.
    let gone = Endpoint::rendezvous(&ca, true).await;
    let addr = gone.addr.clone();
    drop(gone);
    let (bob, _inbound) = node(ca.user("bob", 2), "bob", vec![addr]).await;
    let (alone, _inbound) = node(ca.user("alice", 1), "alice", vec![]).await;
    let deposit = Deposit {
        sealed: b"wrapped".to_vec(),
        files: Vec::new(),
        expires_at: None,
    };
    for node in [&bob, &alone] {
        let started = Instant::now();
        let answers = [
            node.deposit(&user("carol"), &deposit).await.err(),
            node.fetch().await.err(),
            node.acknowledge(&[MailId([1; 16])]).await.err(),
            node.certified_keys(&user("carol")).await.err(),
        ];
        let elapsed = started.elapsed();
        for answer in answers {
            assert!(
                matches!(answer, Some(MailboxError::Unavailable(_))),
                "{answer:?}"
            );
        }
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }
    bob.shutdown().await;
    alone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_publication_wakes_the_fetcher() {
    let ca = Ca::new("Parley CA");
    let rendezvous = Endpoint::rendezvous(&ca, true).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let waiting = bob.mail_waiting();
    promptly("the wake-up after publishing", waiting.notified()).await;
    assert!(bob.snapshot().rendezvous_connected);
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_rendezvous_may_say_mail_is_waiting() {
    let ca = Ca::new("Parley CA");
    // Publications refused: only `Waiting` can wake the fetcher here.
    let rendezvous = Endpoint::rendezvous(&ca, false).await;
    let bob = bob_at(&ca, &rendezvous).await;
    let waiting = bob.mail_waiting();

    let mallory = Endpoint::user(&ca, "mallory", 9, peer_of(&bob), "bob").await;
    mallory.dial(peer_of(&bob), addr_of(&bob)).await;
    mallory.connected_to(peer_of(&bob)).await;
    let answer = mallory.say_waiting(peer_of(&bob)).await;
    assert!(
        matches!(
            &answer,
            Ok(MailboxResponse::Refused { code, permanent: true, .. }) if code == "mailbox_disabled"
        ),
        "{answer:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), waiting.notified())
            .await
            .is_err(),
        "a peer that is not the rendezvous woke the fetcher"
    );

    let answer = rendezvous.say_waiting(peer_of(&bob)).await;
    assert_eq!(answer, Ok(MailboxResponse::Noted));
    promptly("the wake-up after Waiting", waiting.notified()).await;
    bob.shutdown().await;
}
