//! rustls configurations for mutual TLS 1.3 against the Parley CA.
//!
//! Both sides present their CA-issued certificate and verify the other's chain against the CA
//! root only. TLS 1.3 is the only version; key exchange prefers the hybrid post-quantum group
//! X25519MLKEM768 (the aws-lc-rs provider with `prefer-post-quantum`), X25519 as fallback.
//! Host names are not checked: a peer has none. Who the peer is comes from the certificate's
//! policy URI and key, checked in [`crate::upgrade`] before any application byte flows.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    server::{ParsedCertificate, WebPkiClientVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{Credentials, Error};

/// The one crypto provider Parley uses, passed explicitly so no process-wide default matters.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(roots))
}

/// The server half: requires a client certificate chaining to the CA.
///
/// # Errors
/// [`Error::Tls`] when the CA or the own certificate cannot be used.
pub fn server_config(credentials: &Credentials) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&credentials.ca)?, provider.clone())
            .build()
            .map_err(|e| Error::Credentials(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![credentials.certificate.clone()],
            credentials.private_key(),
        )?;
    config.alpn_protocols = Vec::new();
    Ok(config)
}

/// The client half: presents the own certificate, verifies the server's chain against the CA.
///
/// # Errors
/// [`Error::Tls`] when the CA or the own certificate cannot be used.
pub fn client_config(credentials: &Credentials) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let verifier = CaServerVerifier {
        roots: roots(&credentials.ca)?,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            vec![credentials.certificate.clone()],
            credentials.private_key(),
        )?)
}

/// Verifies a server's chain against the CA root, without a host name (peers have none; the
/// upgrade checks the certified identity instead).
#[derive(Debug)]
struct CaServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
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
