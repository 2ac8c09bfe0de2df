//! Stock libp2p security (libp2p-tls, noise, plaintext) is neither offered nor accepted, and a
//! stock libp2p-tls certificate fails the TLS handshake. Real handshakes, real sockets.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{Ca, node};
use futures::StreamExt;
use libp2p::{Multiaddr, SwarmBuilder, swarm::SwarmEvent};
use parley_domain::{MessageId, Username};
use parley_p2p::{PeerAddress, tls};
use parley_usecases::ports::{NodeInfo, OutgoingEnvelope, Transport, TransportError};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a TLS handshake in memory between the two configurations.
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
) -> Result<ClientConnection, rustls::Error> {
    let name = ServerName::IpAddress(std::net::IpAddr::from([0, 0, 0, 0]).into());
    let mut c = ClientConnection::new(Arc::new(client), name)?;
    let mut s = ServerConnection::new(Arc::new(server))?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut wire.as_slice()).unwrap();
        let server_state = s.process_new_packets();
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).unwrap();
        }
        server_state?;
        c.read_tls(&mut back.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(c);
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn mutual_tls_between_enrolled_peers_is_tls13_with_hybrid_post_quantum_key_exchange() {
    let ca = Ca::new("Parley CA");
    let client = tls::client_config(&ca.user("alice", 1)).unwrap();
    let server = tls::server_config(&ca.user("bob", 2)).unwrap();
    let done = handshake(client, server).unwrap();
    assert_eq!(
        done.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let group = done.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
}

#[test]
fn a_stock_libp2p_tls_certificate_is_refused_both_ways() {
    let ca = Ca::new("Parley CA");
    let stock = libp2p::identity::Keypair::generate_ed25519();
    let stock_client = libp2p::tls::make_client_config(&stock, None).unwrap();
    let stock_server = libp2p::tls::make_server_config(&stock).unwrap();

    let ours_as_server = tls::server_config(&ca.user("bob", 2)).unwrap();
    assert!(
        handshake(stock_client, ours_as_server).is_err(),
        "server accepted a self-signed libp2p certificate"
    );
    let ours_as_client = tls::client_config(&ca.user("alice", 1)).unwrap();
    assert!(
        handshake(ours_as_client, stock_server).is_err(),
        "client accepted a self-signed libp2p certificate"
    );
}

#[test]
fn a_rogue_ca_certificate_fails_the_handshake_both_ways() {
    let ca = Ca::new("Parley CA");
    let rogue = Ca::new("Parley CA");
    let rogue_bob = rogue.user_trusting("bob", 3, &ca.der);
    assert!(
        handshake(
            tls::client_config(&rogue_bob).unwrap(),
            tls::server_config(&ca.user("carol", 4)).unwrap()
        )
        .is_err()
    );
    assert!(
        handshake(
            tls::client_config(&ca.user("alice", 1)).unwrap(),
            tls::server_config(&rogue_bob).unwrap()
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_stock_libp2p_peer_offering_tls_and_noise_cannot_connect() {
    let ca = Ca::new("Parley CA");
    let (bob, mut bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let bob_at = bob.snapshot();

    let mut stock = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            (libp2p::tls::Config::new, libp2p::noise::Config::new),
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build();
    let target: Multiaddr = bob_at.listen_addrs[0].parse().unwrap();
    stock.dial(target).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stock.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return Ok(()),
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await
    .expect("the dial neither failed nor succeeded");
    assert!(outcome.is_err(), "a stock libp2p peer connected");
    assert!(bob_rx.try_recv().is_err(), "nothing may reach bob");

    // And bob, dialling a stock listener, refuses it.
    stock
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let listen = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = stock.select_next_some().await {
            break address;
        }
    };
    let stock_id = *stock.local_peer_id();
    tokio::spawn(async move {
        loop {
            stock.select_next_some().await;
        }
    });
    let at = PeerAddress {
        peer: stock_id,
        addrs: vec![listen.clone()],
    };
    let message = OutgoingEnvelope {
        id: MessageId::from_bytes([1; 16]),
        to: Username::parse("bob").unwrap(),
        bytes: b"hi".to_vec(),
        attachments: vec![],
    };
    let err = bob
        .deliver(&Username::parse("bob").unwrap(), &at, &message, None)
        .await;
    assert!(
        matches!(err, Err(TransportError::Unreachable(_))),
        "{err:?}"
    );
}

fn multistream(line: &str) -> Vec<u8> {
    let mut out = vec![u8::try_from(line.len() + 1).unwrap()];
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

#[tokio::test]
async fn no_plaintext_or_unauthenticated_path_is_offered() {
    let ca = Ca::new("Parley CA");
    let (bob, mut bob_rx) = node(ca.user("bob", 2), "bob", vec![]).await;
    let addr: Multiaddr = bob.snapshot().listen_addrs[0].parse().unwrap();
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut ask = multistream("/multistream/1.0.0");
    for protocol in [
        "/plaintext/2.0.0",
        "/noise",
        "/tls/1.0.0",
        "/parley/message/1",
    ] {
        ask.extend(multistream(protocol));
    }
    tcp.write_all(&ask).await.unwrap();
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 512];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answers.extend_from_slice(&buf[..n]),
            }
            if answers.windows(3).filter(|w| w == b"na\n").count() >= 4 {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answers);
    assert_eq!(
        text.matches("na\n").count(),
        4,
        "every protocol but /parley/mtls must be refused: {text:?}"
    );
    assert!(bob_rx.try_recv().is_err());
}
