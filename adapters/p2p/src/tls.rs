//! rustls configurations for mutual TLS 1.3 against the Parley CA.
//!
//! Both sides present their CA-issued certificate and verify the other's chain against the CA
//! root only. TLS 1.3 is the only version; key exchange prefers the hybrid post-quantum group
//! X25519MLKEM768 (the aws-lc-rs provider with `prefer-post-quantum`), X25519 as fallback.
//! Host names are not checked: a peer has none. Who the peer is comes from the certificate's
//! policy URI and key, checked in [`crate::upgrade`] before any application byte flows.
//!
//! The own certificate is an [`Identity`]: both halves read it at every handshake, so a renewed
//! certificate is presented on the next connection without rebuilding anything.

use std::sync::{Arc, PoisonError, RwLock};

use parley_pki::{CaRoot, Tls13Verifier};
use rustls::{
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::CertificateDer;

use crate::{Credentials, Error};

/// The own certificate and key as presented in handshakes, swappable while connections run
/// (existing connections keep the certificate they were made with). Cheap to clone; clones
/// share the certificate.
#[derive(Clone)]
pub struct Identity {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
    credentials: Credentials,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.credentials.peer_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The credentials' certificate and key.
    ///
    /// # Errors
    /// [`Error::Tls`] when the key cannot sign.
    pub fn new(credentials: &Credentials) -> Result<Self, Error> {
        let key = certified(credentials, credentials.certificate.clone())?;
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(key))),
            credentials: credentials.clone(),
        })
    }

    /// Presents `certificate` from the next handshake on. It must certify the same key (the
    /// caller checked the chain and the name).
    ///
    /// # Errors
    /// [`Error::Credentials`] when it certifies another key.
    pub fn replace(&self, certificate: CertificateDer<'static>) -> Result<(), Error> {
        let certified_key = crate::pki::inspect(&certificate)?;
        if crate::pki::peer_id(&certified_key.ed25519)? != self.credentials.peer_id {
            return Err(Error::Credentials(
                "the certificate is for another key than this device's".into(),
            ));
        }
        let key = certified(&self.credentials, certificate)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// The certificate presented now, DER.
    #[must_use]
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.now()
            .cert
            .first()
            .cloned()
            .unwrap_or_else(|| self.credentials.certificate.clone())
    }

    fn now(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn certified(
    credentials: &Credentials,
    certificate: CertificateDer<'static>,
) -> Result<CertifiedKey, Error> {
    let key = provider()
        .key_provider
        .load_private_key(credentials.private_key())?;
    Ok(CertifiedKey::new(vec![certificate], key))
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

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
    server_config_with(credentials, Identity::new(credentials)?)
}

/// [`server_config`] presenting whatever `identity` holds at each handshake.
///
/// # Errors
/// [`Error::Tls`] when the CA cannot be used.
pub fn server_config_with(
    credentials: &Credentials,
    identity: Identity,
) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let roots = CaRoot::new(&credentials.ca)?.roots();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Error::Credentials(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(identity));
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
    client_config_with(credentials, Identity::new(credentials)?)
}

/// [`client_config`] presenting whatever `identity` holds at each handshake.
///
/// # Errors
/// [`Error::Tls`] when the CA cannot be used.
pub fn client_config_with(
    credentials: &Credentials,
    identity: Identity,
) -> Result<rustls::ClientConfig, Error> {
    let provider = provider();
    let verifier = Tls13Verifier::<CaRoot>::new(CaRoot::new(&credentials.ca)?, provider.clone());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(identity)))
}
