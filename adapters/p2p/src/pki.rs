//! Reading certificates against the Parley CA policy.

use libp2p::PeerId;
use parley_domain::{CaFingerprint, CertifiedPeer, Role, pki::X25519_EXTENSION_OID};
use x509_parser::{extensions::GeneralName, oid_registry::OID_SIG_ED25519, prelude::*};

use crate::Error;

/// Reads who a (chain-verified) certificate names: its role from the single policy URI SAN, its
/// Ed25519 key and its X25519 key.
///
/// # Errors
/// [`Error::Certificate`] when the key is not Ed25519 or the names do not follow the policy
/// (no URI, several URIs, an unknown URI).
pub fn inspect(der: &[u8]) -> Result<CertifiedPeer, Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Certificate(format!("unparsable certificate: {e}")))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(Error::Certificate("the key is not Ed25519".into()));
    }
    let ed25519: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| Error::Certificate("the Ed25519 key is not 32 bytes".into()))?;

    let mut roles = Vec::new();
    let mut x25519 = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::URI(uri) => {
                            roles.push(Role::from_uri(uri).ok_or_else(|| {
                                Error::Certificate(format!("unexpected name {uri:?}"))
                            })?)
                        }
                        _ => {
                            return Err(Error::Certificate(
                                "the certificate carries a name the Parley CA never issues".into(),
                            ));
                        }
                    }
                }
            }
            _ if is_x25519_oid(&ext.oid) => {
                x25519 = Some(
                    parley_domain::pki::x25519_from_extension_value(ext.value)
                        .ok_or_else(|| Error::Certificate("malformed X25519 extension".into()))?,
                );
            }
            _ => {}
        }
    }
    let role = match roles.as_slice() {
        [role] => role.clone(),
        [] => return Err(Error::Certificate("the certificate names nobody".into())),
        _ => {
            return Err(Error::Certificate(
                "the certificate names more than one identity".into(),
            ));
        }
    };
    Ok(CertifiedPeer {
        role,
        ed25519,
        x25519,
    })
}

fn is_x25519_oid(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    oid.iter()
        .is_some_and(|arcs| arcs.eq(X25519_EXTENSION_OID.iter().copied()))
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
    let (_, cert) = X509Certificate::from_der(ca_der)
        .map_err(|e| Error::Certificate(format!("unparsable CA certificate: {e}")))?;
    Ok(CaFingerprint::of_spki(cert.public_key().raw))
}
