//! Devices that ask for certificates: key pairs and the CSRs a test shapes.
//! (Shared by several test files, each of which uses part of it.)
#![allow(dead_code)]

use parley_domain::Username;
use rcgen::{CertificateParams, CustomExtension, KeyPair};

/// A device: Ed25519 key pair and X25519 public key.
pub struct Device {
    pub key: KeyPair,
    pub x25519: [u8; 32],
}

impl Device {
    pub fn new() -> Self {
        let secret = parley_rendezvous::ca::random_secret();
        let x25519 = *parley_rendezvous::ca::random_secret().expose();
        Self {
            key: parley_rendezvous::ca::key_pair(&secret).expect("Ed25519 key"),
            x25519,
        }
    }

    /// A CSR with the X25519 extension and whatever `shape` adds.
    pub fn csr_with(&self, shape: impl FnOnce(&mut CertificateParams)) -> String {
        let mut params = CertificateParams::default();
        params
            .custom_extensions
            .push(parley_rendezvous::ca::x25519_extension(&self.x25519));
        shape(&mut params);
        params
            .serialize_request(&self.key)
            .expect("CSR")
            .pem()
            .expect("PEM")
    }

    pub fn csr(&self) -> String {
        self.csr_with(|_| {})
    }
}

pub fn x25519_ext(key: &[u8; 32]) -> CustomExtension {
    parley_rendezvous::ca::x25519_extension(key)
}

pub fn name(raw: &str) -> Username {
    Username::parse(raw).expect("valid test name")
}
