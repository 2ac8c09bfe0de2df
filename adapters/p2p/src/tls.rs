//! rustls configurations for mutual TLS 1.3 against the Parley CA.
//!
//! Both sides present their CA-issued certificate and verify the other's chain against the CA
//! root only. TLS 1.3 is the only version; key exchange prefers the hybrid post-quantum group
//! X25519MLKEM768 (the aws-lc-rs provider with `prefer-post-quantum`), X25519 as fallback.
//! Host names are not checked: a peer has none. Who the peer is comes from the certificate's
//! policy URI and key, checked in [`crate::upgrade`] before any application byte flows.

use std::sync::Arc;

use parley_pki::{CaRoot, Tls13Verifier};
use rustls::{crypto::CryptoProvider, server::WebPkiClientVerifier};

use crate::{Credentials, Error};

/// The one crypto provider Parley uses, passed explicitly so no process-wide default matters.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    parley_pki::provider()
}

/// The server half: requires a client certificate chaining to the CA.
///
/// # Errors
/// [`Error::Tls`] when the CA or the own certificate cannot be used.
pub fn server_config(credentials: &Credentials) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let roots = CaRoot::new(&credentials.ca)?.roots();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
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

/// The client half: presents the own certificate, verifies the server's chain against the CA
/// root, without a host name (peers have none; the upgrade checks the certified identity
/// instead).
///
/// # Errors
/// [`Error::Tls`] when the CA or the own certificate cannot be used.
pub fn client_config(credentials: &Credentials) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let verifier = Tls13Verifier::<CaRoot>::new(CaRoot::new(&credentials.ca)?, provider.clone());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            vec![credentials.certificate.clone()],
            credentials.private_key(),
        )?)
}
