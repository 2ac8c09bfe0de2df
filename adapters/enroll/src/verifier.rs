//! The server check for the enrollment call: the rendezvous is whoever presents a certificate
//! with the URI SAN [`RENDEZVOUS_URI`] that chains to the pinned CA.
//!
//! Host names are deliberately not checked. The CA puts [`RENDEZVOUS_URI`] only in the
//! rendezvous's own certificate and never in a user's, so a peer holding a perfectly valid
//! CA-issued user certificate still cannot pose as the rendezvous; and the rendezvous is often
//! reached by IP address or through names the CA cannot know about.

use std::sync::{Arc, Mutex, PoisonError};

use parley_domain::CaFingerprint;
use parley_domain::pki::RENDEZVOUS_URI;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The CA a handshake presented, kept so the caller can report a mismatch and check the
/// answer against the same CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCa {
    /// SHA-256 of the CA's SubjectPublicKeyInfo.
    pub fingerprint: CaFingerprint,
}

/// Verifies the rendezvous against a pinned CA fingerprint, or trusts the presented CA on
/// first use when there is no pin.
#[derive(Debug)]
pub struct PinnedCa {
    pin: Option<CaFingerprint>,
    seen: Arc<Mutex<Option<SeenCa>>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCa {
    /// A verifier insisting on `pin` (`None`: trust on first use) with the crypto `provider`.
    #[must_use]
    pub fn new(pin: Option<CaFingerprint>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin,
            seen: Arc::new(Mutex::new(None)),
            provider,
        }
    }

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
    let (_, cert) = X509Certificate::from_der(ca_der).ok()?;
    Some(CaFingerprint::of_spki(cert.public_key().raw))
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

/// True when the certificate's subject alternative names include the URI `uri`.
#[must_use]
pub fn has_uri_san(der: &[u8], uri: &str) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|name| matches!(name, GeneralName::URI(u) if *u == uri))
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &ParsedCertificate::try_from(end_entity)?,
            &roots,
            between,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if !has_uri_san(end_entity, RENDEZVOUS_URI) {
            return Err(refuse(
                "the server's certificate does not name the rendezvous",
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refuse("TLS 1.2 is not accepted"))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
