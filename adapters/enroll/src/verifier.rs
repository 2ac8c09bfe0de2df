//! The server check for the enrollment call: the rendezvous is whoever presents a certificate
//! with the URI SAN [`RENDEZVOUS_URI`] that chains to the pinned CA.
//!
//! Host names are deliberately not checked. The CA puts [`RENDEZVOUS_URI`] only in the
//! rendezvous's own certificate and never in a user's, so a peer holding a perfectly valid
//! CA-issued user certificate still cannot pose as the rendezvous; and the rendezvous is often
//! reached by IP address or through names the CA cannot know about.
//!
//! The TLS 1.3-only part of the verifier is `parley-pki`'s [`Tls13Verifier`]; this module is
//! the chain policy ([`Pin`]).

use std::sync::{Mutex, PoisonError};

use parley_domain::CaFingerprint;
use parley_domain::pki::RENDEZVOUS_URI;
use parley_pki::{ChainPolicy, Tls13Verifier, has_uri_san, verify::signed_by};
use rustls::RootCertStore;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The CA a handshake presented, kept so the caller can report a mismatch and check the
/// answer against the same CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCa {
    /// SHA-256 of the CA's SubjectPublicKeyInfo.
    pub fingerprint: CaFingerprint,
}

/// Verifies the rendezvous against a pinned CA fingerprint, or trusts the presented CA on
/// first use when there is no pin: `PinnedCa::new(pin, provider)`.
pub type PinnedCa = Tls13Verifier<Pin>;

/// The chain policy of [`PinnedCa`]: the chain ends in a self-issued CA whose fingerprint is
/// the pin (any, on first use), and the leaf names the rendezvous.
#[derive(Debug)]
pub struct Pin {
    pin: Option<CaFingerprint>,
    seen: Mutex<Option<SeenCa>>,
}

impl From<Option<CaFingerprint>> for Pin {
    /// The policy insisting on `pin` (`None`: trust on first use).
    fn from(pin: Option<CaFingerprint>) -> Self {
        Self {
            pin,
            seen: Mutex::new(None),
        }
    }
}

impl Pin {
    /// The CA the last handshake presented, if it got that far.
    #[must_use]
    pub fn seen(&self) -> Option<SeenCa> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The fingerprint of a CA certificate (SHA-256 of its SubjectPublicKeyInfo), `None` when it
/// does not parse.
#[must_use]
pub fn fingerprint(ca_der: &[u8]) -> Option<CaFingerprint> {
    parley_pki::ca_fingerprint(ca_der).ok()
}

fn refuse(reason: &str) -> rustls::Error {
    rustls::Error::General(reason.to_owned())
}

/// Checks that `der` is a self-issued CA certificate and returns its fingerprint. Its
/// self-signature is not checked: what makes it trusted is its key (the pin), and that key must
/// have signed the leaf, which webpki checks next.
fn self_issued_ca(der: &[u8]) -> Result<CaFingerprint, rustls::Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| refuse("the rendezvous's CA certificate cannot be parsed"))?;
    if cert.subject().as_raw() != cert.issuer().as_raw() || !cert.is_ca() {
        return Err(refuse(
            "the last certificate of the rendezvous's chain is not a self-issued CA",
        ));
    }
    Ok(CaFingerprint::of_spki(cert.public_key().raw))
}

impl ChainPolicy for Pin {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<(), rustls::Error> {
        let (ca, between) = intermediates
            .split_last()
            .ok_or_else(|| refuse("the rendezvous sent no CA certificate"))?;
        let fingerprint = self_issued_ca(ca)?;
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(SeenCa { fingerprint });
        if self.pin.is_some_and(|pin| pin != fingerprint) {
            return Err(refuse("the rendezvous's CA is not the pinned one"));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        signed_by(&roots, end_entity, between, now, algorithms)?;
        if !has_uri_san(end_entity, RENDEZVOUS_URI) {
            return Err(refuse(
                "the server's certificate does not name the rendezvous",
            ));
        }
        Ok(())
    }
}
