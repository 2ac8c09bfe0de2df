//! What a device keeps after enrollment: its keys, its certificate and how to reach the
//! rendezvous.

use std::fmt;

use crate::{CaFingerprint, Secret32, Username};

/// A password on its way to the rendezvous. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    #[must_use]
    pub fn new(raw: String) -> Self {
        Self(raw)
    }

    /// The password, for the adapter that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Everything a peer needs to run: made at enrollment, kept in the peer's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The enrolled name.
    pub user: Username,
    /// The Ed25519 device key (also the libp2p identity). Never leaves the device.
    pub ed25519: Secret32,
    /// The X25519 key for end-to-end encryption. Never leaves the device.
    pub x25519: Secret32,
    /// The device certificate, DER, signed by the CA.
    pub certificate_der: Vec<u8>,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The CA key's fingerprint, as pinned at enrollment.
    pub ca_fingerprint: CaFingerprint,
    /// The rendezvous's HTTPS address, as given to `enroll`.
    pub server: String,
    /// The rendezvous's libp2p addresses (each ending in `/p2p/<id>`).
    pub rendezvous_addrs: Vec<String>,
}
