//! A device's (or the rendezvous's) key, certificate and CA, ready for TLS and libp2p.

use libp2p::{PeerId, identity::Keypair};
use parley_domain::Secret32;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Error, pki};

/// Key, certificate and CA of one endpoint. The Ed25519 key is both the TLS key and the libp2p
/// identity, so the PeerId a connection proves is the certificate's key.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) keypair: Keypair,
    pub(crate) pkcs8: Vec<u8>,
    pub(crate) certificate: CertificateDer<'static>,
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) peer_id: PeerId,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks that `certificate_der` certifies the key `ed25519_secret` and wraps all three.
    ///
    /// # Errors
    /// [`Error::Credentials`] when the key is unusable or the certificate is for another key.
    pub fn new(
        ed25519_secret: &Secret32,
        certificate_der: Vec<u8>,
        ca_der: Vec<u8>,
    ) -> Result<Self, Error> {
        let mut secret = *ed25519_secret.expose();
        let keypair = Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| Error::Credentials(format!("bad Ed25519 key: {e}")))?;
        let peer_id = keypair.public().to_peer_id();
        let certified = pki::inspect(&certificate_der)?;
        if pki::peer_id(&certified.ed25519)? != peer_id {
            return Err(Error::Credentials(
                "the certificate is for another key than this device's".into(),
            ));
        }
        let pkcs8 = parley_domain::pki::ed25519_pkcs8(ed25519_secret);
        Ok(Self {
            keypair,
            pkcs8,
            certificate: CertificateDer::from(certificate_der),
            ca: CertificateDer::from(ca_der),
            peer_id,
        })
    }

    /// The libp2p peer id of this endpoint.
    #[must_use]
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}
