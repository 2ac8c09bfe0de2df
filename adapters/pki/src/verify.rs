//! Building blocks of a server-certificate verifier for TLS 1.3 only: a [`ChainPolicy`] says
//! which chains to trust; [`Tls13Verifier`] adds what every Parley verifier does the same way
//! (TLS 1.2 signatures refused, TLS 1.3 signatures checked by the provider's algorithms).
//!
//! Host names are not part of any policy here: peers have none, and the rendezvous is often
//! reached by IP address; who the server is comes from its certificate's policy URI.

use std::{fmt::Debug, sync::Arc};

use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    server::ParsedCertificate,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The one crypto provider Parley uses (aws-lc-rs, preferring the hybrid post-quantum key
/// exchange), passed explicitly so no process-wide default matters.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Which server chains a verifier trusts.
pub trait ChainPolicy: Debug + Send + Sync {
    /// Accepts the server's `end_entity` certificate with the `intermediates` it sent, at
    /// `now`, checking signatures with `algorithms`.
    ///
    /// # Errors
    /// The `rustls::Error` that ends the handshake when the chain is not trusted.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<(), rustls::Error>;
}

/// A server-certificate verifier that trusts what its [`ChainPolicy`] trusts and speaks
/// TLS 1.3 only.
#[derive(Debug)]
pub struct Tls13Verifier<P> {
    policy: P,
    provider: Arc<CryptoProvider>,
}

impl<P> Tls13Verifier<P> {
    /// A verifier applying `policy` with the crypto `provider`.
    #[must_use]
    pub fn new(policy: impl Into<P>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            policy: policy.into(),
            provider,
        }
    }

    /// The chain policy (for what it recorded during a handshake).
    #[must_use]
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P: ChainPolicy> ServerCertVerifier for Tls13Verifier<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy.check(
            end_entity,
            intermediates,
            now,
            &self.provider.signature_verification_algorithms,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
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

/// Checks that `end_entity` chains, through `intermediates`, to one of `roots`.
///
/// # Errors
/// The webpki error when it does not (or does not parse).
pub fn signed_by(
    roots: &RootCertStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), rustls::Error> {
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &ParsedCertificate::try_from(end_entity)?,
        roots,
        intermediates,
        now,
        algorithms.all,
    )
}

/// Trusts chains to one CA root (the Parley CA a device was enrolled with).
#[derive(Debug, Clone)]
pub struct CaRoot {
    roots: Arc<RootCertStore>,
}

impl CaRoot {
    /// The policy trusting chains to `ca`.
    ///
    /// # Errors
    /// The `rustls::Error` when `ca` cannot be a trust anchor.
    pub fn new(ca: &CertificateDer<'static>) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        Ok(Self {
            roots: Arc::new(roots),
        })
    }

    /// The root store, for the other direction (client certificates).
    #[must_use]
    pub fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }
}

impl ChainPolicy for CaRoot {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<(), rustls::Error> {
        signed_by(&self.roots, end_entity, intermediates, now, algorithms)
    }
}
