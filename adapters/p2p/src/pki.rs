//! Reading certificates against the Parley CA policy (the policy itself is `parley-pki`), and
//! the libp2p identity of a certificate's key.

use libp2p::PeerId;
use parley_domain::{CaFingerprint, CertifiedPeer};

use crate::Error;

/// Reads who a (chain-verified) certificate names: its role from the single policy URI SAN, its
/// Ed25519 key and its X25519 key.
///
/// # Errors
/// [`Error::Certificate`] when the key is not Ed25519 or the names do not follow the policy
/// (no URI, several URIs, an unknown URI).
pub fn inspect(der: &[u8]) -> Result<CertifiedPeer, Error> {
    Ok(parley_pki::inspect(der)?)
}

/// The libp2p peer id of an Ed25519 public key.
///
/// # Errors
/// [`Error::Certificate`] for bytes that are not a valid Ed25519 point.
pub fn peer_id(ed25519: &[u8; 32]) -> Result<PeerId, Error> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(ed25519)
        .map_err(|e| Error::Certificate(format!("invalid Ed25519 key: {e}")))?;
    Ok(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// The fingerprint of a CA certificate: SHA-256 over its SubjectPublicKeyInfo.
///
/// # Errors
/// [`Error::Certificate`] when the certificate cannot be parsed.
pub fn ca_fingerprint(ca_der: &[u8]) -> Result<CaFingerprint, Error> {
    Ok(parley_pki::ca_fingerprint(ca_der)?)
}
