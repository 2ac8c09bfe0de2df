//! A test CA issuing certificates by the Parley policy (and, for attacks, against it), and
//! helpers to start real nodes and a real directory on loopback.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::{convert::Infallible, time::Duration};

use libp2p::{Swarm, SwarmBuilder, swarm::NetworkBehaviour};
use parley_domain::{Secret32, Username, pki};
use parley_p2p::{
    Credentials, DirectoryServer, Inbound, Multiaddr, Node, NodeConfig,
    registry::Registry,
    upgrade::{Accept, MutualTls},
};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType,
};
use tokio::sync::mpsc;

pub fn secret(seed: u8) -> Secret32 {
    let mut bytes = [seed; 32];
    bytes[0] = bytes[0].wrapping_add(101);
    Secret32::new(bytes)
}

pub fn keypair(secret: &Secret32) -> KeyPair {
    let der = pki::ed25519_pkcs8(secret);
    KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519).unwrap()
}

/// A swarm over the product's own transport (TCP, mutual TLS, yamux) with the identity of
/// `seed`, driving a behaviour the test scripts: for endpoints that speak the protocols by hand.
pub fn scripted_swarm<B: NetworkBehaviour>(
    credentials: &Credentials,
    seed: u8,
    registry: Registry,
    behaviour: B,
) -> Swarm<B> {
    let upgrade = MutualTls::new(credentials, registry, Accept::Users).unwrap();
    let mut secret = *secret(seed).expose();
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).unwrap();
    let Ok(builder) = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            move |_: &libp2p::identity::Keypair| Ok::<_, Infallible>(upgrade),
            libp2p::yamux::Config::default,
        );
    let Ok(builder) = builder.with_behaviour(|_| behaviour);
    builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

pub struct Ca {
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf by the policy, naming `uri`.
    pub fn issue(&self, secret: &Secret32, uri: &str) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        let value = pki::x25519_extension_value(&[7u8; 32]);
        let mut ext = CustomExtension::from_oid_content(pki::X25519_EXTENSION_OID, value);
        ext.set_criticality(false);
        params.custom_extensions = vec![ext];
        params
            .signed_by(&keypair(secret), &self.issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    pub fn user(&self, name: &str, seed: u8) -> Credentials {
        self.user_trusting(name, seed, &self.der)
    }

    /// A user certificate from this CA, in credentials that trust `ca_der` (another CA, for
    /// attacks where only the victim's check may refuse).
    pub fn user_trusting(&self, name: &str, seed: u8, ca_der: &[u8]) -> Credentials {
        let s = secret(seed);
        let user = Username::parse(name).unwrap();
        let cert = self.issue(&s, &pki::user_uri(&user));
        Credentials::new(&s, cert, ca_der.to_vec()).unwrap()
    }

    pub fn rendezvous(&self, seed: u8) -> Credentials {
        let s = secret(seed);
        Credentials::new(&s, self.issue(&s, pki::RENDEZVOUS_URI), self.der.clone()).unwrap()
    }
}

pub async fn directory(ca: &Ca) -> DirectoryServer {
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    DirectoryServer::start(ca.rendezvous(200), listen)
        .await
        .unwrap()
}

pub async fn node(
    credentials: Credentials,
    name: &str,
    rendezvous: Vec<Multiaddr>,
) -> (Node, mpsc::Receiver<Inbound>) {
    node_with(credentials, name, rendezvous, None).await
}

pub async fn node_with(
    credentials: Credentials,
    name: &str,
    rendezvous: Vec<Multiaddr>,
    attachments: Option<parley_p2p::AttachmentConfig>,
) -> (Node, mpsc::Receiver<Inbound>) {
    Node::start(config(credentials, name, rendezvous, attachments))
        .await
        .unwrap()
}

/// A node's configuration on loopback, with the defaults the product uses.
pub fn config(
    credentials: Credentials,
    name: &str,
    rendezvous: Vec<Multiaddr>,
    attachments: Option<parley_p2p::AttachmentConfig>,
) -> NodeConfig {
    NodeConfig {
        credentials,
        user: Username::parse(name).unwrap(),
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        rendezvous,
        inbound_queue: 16,
        attachments,
        renew: true,
        tls_refresh: parley_p2p::refresh::DEFAULT_TLS_REFRESH,
    }
}

/// Waits up to 10 s for `check` to hold, failing with `what`.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}
