//! Enrollment client: makes the device keys here, sends a CSR with the username and password
//! to the rendezvous over TLS 1.3 with its CA pinned, checks the certificate it returns, and
//! hands back the [`DeviceIdentity`] to keep.
//!
//! **Architecture invariant:** the private keys never leave this process; only the CSR (public
//! keys, signed) is sent. Nothing is kept on failure.
//!
//! Layout: `keys` (device keys and CSR), [`verifier`] (the pinned-CA server check),
//! `client` (the HTTPS call), `answer` (checking what came back).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod answer;
mod client;
mod keys;
pub mod verifier;

use std::time::Duration;

use parley_domain::DeviceIdentity;
use parley_usecases::ports::{EnrollError, EnrollRequest, Enrollment};

/// The [`Enrollment`] port over the rendezvous's HTTPS API.
///
/// When the request carries no `ca_pin`, the CA is trusted on first use: the returned
/// identity's `ca_fingerprint` is the one that was seen and trusted, and the caller is expected
/// to show it with a warning.
#[derive(Debug, Clone)]
pub struct HttpsEnrollment {
    connect_timeout: Duration,
    total_timeout: Duration,
}

impl HttpsEnrollment {
    /// A client with the default deadlines: 15 s to connect, 30 s for the whole call (the
    /// server hashes the password with Argon2id before answering).
    #[must_use]
    pub fn new() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            total_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for HttpsEnrollment {
    fn default() -> Self {
        Self::new()
    }
}

impl Enrollment for HttpsEnrollment {
    /// Cancel safety: dropping the future abandons the call; the server may still have issued
    /// a certificate, which is then simply never used.
    async fn enroll(&self, request: &EnrollRequest) -> Result<DeviceIdentity, EnrollError> {
        let device = match &request.keys {
            Some((ed25519, x25519)) => {
                keys::DeviceKeys::from_secrets(ed25519.clone(), x25519.clone())?
            }
            None => keys::DeviceKeys::generate()?,
        };
        let csr_pem = device.csr_pem(&request.user)?;
        let call = client::post_enroll(request, &csr_pem, self.connect_timeout);
        let (answer, ca_fingerprint) = tokio::time::timeout(self.total_timeout, call)
            .await
            .map_err(|_| EnrollError::Unreachable(request.server.clone()))??;
        let checked = answer::check(&answer, &request.user, &device, ca_fingerprint)?;
        Ok(DeviceIdentity {
            user: request.user.clone(),
            ed25519: device.ed25519_secret().clone(),
            x25519: device.x25519_secret(),
            certificate_der: checked.certificate_der,
            ca_der: checked.ca_der,
            ca_fingerprint,
            server: request.server.clone(),
            rendezvous_addrs: answer.p2p_addrs,
        })
    }
}
