//! The rendezvous under test, a raw HTTPS client of it pinned to its CA with the enrollment
//! client's own verifier, and a device's swarm for speaking its p2p protocols by hand.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, swarm::NetworkBehaviour};
use parley_domain::{CaFingerprint, Role, Secret32};
use parley_enroll::verifier::PinnedCa;
use parley_p2p::{
    Credentials,
    registry::{Expectation, Registry},
    upgrade::{Accept, MutualTls},
};
use parley_testkit::{Log, Rendezvous, https::Client};

/// A device's swarm over the product's own transport (TCP, mutual TLS, yamux), holding the
/// device key `secret` and its certificate, expecting the rendezvous `server` at the other
/// end: the swarm, the rendezvous's p2p address and its peer id. Not dialled yet.
pub fn device_swarm<B: NetworkBehaviour>(
    server: &Rendezvous,
    secret: &Secret32,
    certificate: Vec<u8>,
    ca: Vec<u8>,
    behaviour: B,
) -> (Swarm<B>, Multiaddr, PeerId) {
    let credentials = Credentials::new(secret, certificate, ca).expect("credentials");
    let addr: Multiaddr = server.p2p.parse().expect("the p2p line is a multiaddr");
    let Some(libp2p::multiaddr::Protocol::P2p(server_id)) = addr.iter().last() else {
        panic!("the p2p line ends with /p2p/<id>: {addr}");
    };
    let registry = Registry::default();
    registry.set_expectation(
        server_id,
        Expectation {
            role: Role::Rendezvous,
            keys: None,
        },
    );
    let upgrade = MutualTls::new(&credentials, registry, Accept::Users).expect("upgrade");
    let mut key = *secret.expose();
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut key).expect("key");
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            move |_: &libp2p::identity::Keypair| Ok::<_, std::convert::Infallible>(upgrade),
            libp2p::yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    (swarm, addr, server_id)
}

/// The binary on `data` with free ports and `extra` arguments, its warnings on stderr.
pub fn start(data: &Path, extra: &[&str]) -> Rendezvous {
    Rendezvous::options(data)
        .args(extra)
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start()
}

/// TLS 1.3 to `server`, pinned to its CA.
pub fn https(server: &Rendezvous) -> Client {
    let fingerprint = CaFingerprint::parse(&server.fingerprint).expect("a valid fingerprint line");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCa::new(Some(fingerprint), provider.clone()));
    Client::new(&server.addr, verifier, provider)
}
