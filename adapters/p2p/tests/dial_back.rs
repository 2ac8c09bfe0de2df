//! The rendezvous as a port scanner, tried from the attacker's side: an enrolled device asks
//! the rendezvous's AutoNAT server to dial it back at an address of another host
//! (`127.0.0.2`, standing for a machine inside the operator's network). The rendezvous must
//! never connect there, while the same device's own address (the IP it connects from) is
//! dialled back as AutoNAT needs.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    collections::VecDeque,
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use common::Ca;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};
use parley_domain::Role;
use parley_p2p::registry::{Expectation, Registry};

/// Hands the swarm the addresses to have tested, as if identify had observed them.
#[derive(Default)]
struct Candidates(VecDeque<Multiaddr>);

impl NetworkBehaviour for Candidates {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.0.pop_front() {
            Some(addr) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr)),
            None => Poll::Pending,
        }
    }
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Prober {
    identify: libp2p::identify::Behaviour,
    autonat: libp2p::autonat::v2::client::Behaviour,
    candidates: Candidates,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendezvous_dials_a_device_back_only_at_the_ip_it_connects_from() {
    let ca = Ca::new("Parley CA");
    let dir = common::directory(&ca).await;
    let at = dir.addresses()[0].clone();
    let Some(Protocol::P2p(rendezvous)) = at.iter().last() else {
        panic!("the directory's address names no peer: {at}");
    };
    // "Another host": a listener on 127.0.0.2 that counts who connects.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let knocked = tokio::spawn(async move { elsewhere.accept().await.is_ok() });

    let credentials = ca.user("mallory", 70);
    let registry = Registry::default();
    registry.set_expectation(
        rendezvous,
        Expectation {
            role: Role::Rendezvous,
            keys: None,
        },
    );
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(*common::secret(70).expose()).unwrap();
    let behaviour = Prober {
        identify: libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
            "/parley/1".into(),
            keypair.public(),
        )),
        autonat: libp2p::autonat::v2::client::Behaviour::new(
            rand::make_rng::<rand::rngs::StdRng>(),
            libp2p::autonat::v2::client::Config::default()
                .with_probe_interval(Duration::from_millis(500)),
        ),
        candidates: Candidates::default(),
    };
    let mut swarm = common::scripted_swarm(&credentials, 70, registry, behaviour);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let own = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let other: Multiaddr = format!("/ip4/127.0.0.2/tcp/{elsewhere_port}")
        .parse()
        .unwrap();
    // The other host is the stronger candidate, so it is asked about first and most.
    let candidates = &mut swarm.behaviour_mut().candidates.0;
    for _ in 0..3 {
        candidates.push_back(other.clone());
    }
    candidates.push_back(own.clone());
    swarm.dial(at).unwrap();

    let (mut own_reached, mut other_refused) = (false, false);
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while !(own_reached && other_refused) {
            if let SwarmEvent::Behaviour(ProberEvent::Autonat(event)) =
                swarm.select_next_some().await
            {
                if event.tested_addr == own {
                    own_reached |= event.result.is_ok();
                } else if event.tested_addr == other {
                    assert!(
                        event.result.is_err(),
                        "the rendezvous claims it reached another host"
                    );
                    other_refused = true;
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "within 30 s: own address dialled back {own_reached}, other host refused {other_refused}"
    );
    // Give a late dial every chance to show, then check nobody knocked at the other host.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !knocked.is_finished(),
        "the rendezvous connected to another host on a device's word"
    );
    knocked.abort();
}
