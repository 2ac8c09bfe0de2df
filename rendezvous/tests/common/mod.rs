//! The rendezvous under test, a raw HTTPS client of it pinned to its CA with the enrollment
//! client's own verifier, and a device's swarm for speaking its p2p protocols by hand.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, swarm::NetworkBehaviour};
use parley_domain::{CaFingerprint, Password, Role, Secret32, Username};
use parley_enroll::HttpsEnrollment;
use parley_enroll::verifier::PinnedCa;
use parley_p2p::{
    Credentials,
    registry::{Expectation, Registry},
    upgrade::{Accept, MutualTls},
};
use parley_testkit::{Log, Rendezvous, https::Client};
use parley_usecases::ports::{EnrollRequest, Enrollment};

/// A device enrolled over HTTPS: its key, its certificate and the CA's, DER.
pub struct Enrolled {
    pub secret: Secret32,
    pub certificate: Vec<u8>,
    pub ca: Vec<u8>,
}

/// The DER inside a PEM text.
pub fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).expect("PEM").contents().to_vec()
}

/// Enrolls a fresh device (Ed25519 and X25519 keys) as `name`, password `pw-<name>`.
pub async fn enroll(server: &Rendezvous, name: &str) -> Enrolled {
    use parley_rendezvous::ca::{key_pair, random_secret, x25519_extension};
    let secret = random_secret();
    let key = key_pair(&secret).expect("Ed25519 key");
    let x25519 = *random_secret().expose();
    let mut params = rcgen::CertificateParams::default();
    params.custom_extensions.push(x25519_extension(&x25519));
    let csr = params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");
    let answer = https(server)
        .post_json(
            "/v1/enroll",
            &serde_json::json!({"username": name, "password": format!("pw-{name}"), "csr_pem": csr}),
        )
        .await;
    assert_eq!(answer.status, 200, "enrolling {name}: {answer:?}");
    let body = answer.json();
    Enrolled {
        secret,
        certificate: der(body["certificate_pem"].as_str().expect("certificate_pem")),
        ca: der(body["ca_pem"].as_str().expect("ca_pem")),
    }
}

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

/// `requests`, one after the other on one connection of `device` to `server` over the JSON
/// request-response `protocol`, and their answers, within `within` (twice, for the
/// connection too). Panics when the connection or a request fails.
pub async fn ask<Q, R>(
    server: &Rendezvous,
    device: &Enrolled,
    protocol: libp2p::StreamProtocol,
    requests: Vec<Q>,
    within: Duration,
) -> Vec<R>
where
    Q: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt as _;
    use libp2p::{
        request_response::{self, ProtocolSupport},
        swarm::SwarmEvent,
    };
    let behaviour = request_response::json::Behaviour::<Q, R>::new(
        [(protocol, ProtocolSupport::Outbound)],
        request_response::Config::default().with_request_timeout(within),
    );
    let (mut swarm, addr, server_id) = device_swarm(
        server,
        &device.secret,
        device.certificate.clone(),
        device.ca.clone(),
        behaviour,
    );
    swarm.dial(addr).expect("dial");
    let total = requests.len();
    let mut pending = requests.into_iter();
    let mut answers = Vec::new();
    let done = tokio::time::timeout(within * 2, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    if let Some(request) = pending.next() {
                        swarm.behaviour_mut().send_request(&server_id, request);
                    }
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    panic!("cannot connect to the rendezvous: {error}")
                }
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    answers.push(response);
                    if answers.len() == total {
                        return;
                    }
                    if let Some(request) = pending.next() {
                        swarm.behaviour_mut().send_request(&server_id, request);
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => panic!("a request got no answer: {error}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "no answer in time: {answers:?}");
    answers
}

/// `POST /v1/enroll` with `body` (JSON) from 127.0.0.`source` (Linux answers all of 127/8, so
/// each is a distinct client address).
pub async fn enroll_json_from(
    server: &Rendezvous,
    source: u8,
    body: &serde_json::Value,
) -> parley_testkit::https::Answer {
    let body = body.to_string();
    let head = format!(
        "POST /v1/enroll HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let ip: std::net::IpAddr = format!("127.0.0.{source}").parse().expect("an address");
    https(server)
        .raw_from(Some(ip), &head, body.as_bytes())
        .await
}

/// A device the CA in `data` signed for `name` outside enrollment, with a fresh key bound to
/// nobody: what a rendezvous that lies, or a thief of its CA key, could present.
pub fn forged(data: &Path, name: &str, ca_der: &[u8]) -> Enrolled {
    use parley_rendezvous::ca::{Ca, Subject, random_secret};
    let now = time::OffsetDateTime::now_utc();
    let ca = Ca::open(data, None, now).expect("the CA in the data folder");
    let secret = random_secret();
    let issued = ca
        .issue(
            &Subject::User {
                name: Username::parse(name).expect("name"),
                x25519: None,
            },
            &parley_rendezvous::identity::public_key(&secret),
            now,
        )
        .expect("issued");
    Enrolled {
        secret,
        certificate: issued.der,
        ca: ca_der.to_vec(),
    }
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

/// A real enrollment of `user` with the password "a password", through the enrollment client.
pub fn enroll_with_client(server: &Rendezvous, user: &str) {
    let request = EnrollRequest {
        server: server.url.clone(),
        user: Username::parse(user).expect("a valid username"),
        password: Password::new("a password".into()),
        ca_pin: Some(CaFingerprint::parse(&server.fingerprint).expect("a fingerprint line")),
        keys: None,
        totp: None,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let identity = runtime
        .block_on(HttpsEnrollment::new().enroll(&request))
        .unwrap_or_else(|e| panic!("{user} enrolls: {e}"));
    assert_eq!(identity.user.as_str(), user);
}
