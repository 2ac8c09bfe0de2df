//! The rendezvous's own Ed25519 key: generated once into `<data>/rendezvous-key.pem` (PKCS#8
//! PEM, mode 0600) so its libp2p peer id is stable across restarts. Its certificate is issued
//! anew by the CA at every start.

use std::path::Path;

use parley_domain::Secret32;
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};

use crate::ca;
use crate::files;

/// File name of the rendezvous key inside the data folder.
pub const KEY_FILE: &str = "rendezvous-key.pem";

/// Loads the rendezvous key from `data`, generating it at first start.
///
/// # Errors
/// [`ca::Error`] when the file cannot be read or written or holds something else.
pub fn load_or_create(data: &Path) -> Result<Secret32, ca::Error> {
    let path = data.join(KEY_FILE);
    if let Some(bytes) = files::read_optional(&path)? {
        let der = PrivatePkcs8KeyDer::from_pem_slice(&bytes)
            .map_err(|_| ca::Error::Key(path.display().to_string()))?;
        return parley_domain::pki::ed25519_from_pkcs8(der.secret_pkcs8_der())
            .ok_or_else(|| ca::Error::Key(path.display().to_string()));
    }
    let secret = ca::random_secret();
    let pem = ca::key_pair(&secret)?.serialize_pem();
    files::write_secret(&path, pem.as_bytes())?;
    tracing::info!(path = %path.display(), "made a new rendezvous key");
    Ok(secret)
}

/// The Ed25519 public key of a secret.
#[must_use]
pub fn public_key(secret: &Secret32) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(secret.expose())
        .verifying_key()
        .to_bytes()
}
