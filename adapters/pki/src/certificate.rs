//! Reading certificates against the Parley CA policy, and the X25519 key extension.

use parley_domain::renewal::Validity;
use parley_domain::{
    CaFingerprint, CertifiedPeer, Role, Timestamp,
    pki::{X25519_EXTENSION_OID, x25519_extension_value, x25519_from_extension_value},
};
use rcgen::CustomExtension;
use x509_parser::{extensions::GeneralName, oid_registry::OID_SIG_ED25519, prelude::*};

use crate::Error;

/// Reads who a (chain-verified) certificate names: its role from the single policy URI SAN, its
/// Ed25519 key and its X25519 key.
///
/// # Errors
/// [`Error::Unparsable`] for bytes that are not a certificate; [`Error::Key`] when the key is
/// not Ed25519; [`Error::Policy`] when the names do not follow the policy (no URI, several
/// URIs, an unknown URI, another kind of name) or the X25519 extension is malformed.
pub fn inspect(der: &[u8]) -> Result<CertifiedPeer, Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Unparsable(e.to_string()))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(Error::Key("the key is not Ed25519"));
    }
    let ed25519: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| Error::Key("the Ed25519 key is not 32 bytes"))?;

    let mut roles = Vec::new();
    let mut x25519 = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    let GeneralName::URI(uri) = name else {
                        return Err(Error::Policy(
                            "the certificate carries a name the Parley CA never issues".into(),
                        ));
                    };
                    roles.push(
                        Role::from_uri(uri)
                            .ok_or_else(|| Error::Policy(format!("unexpected name {uri:?}")))?,
                    );
                }
            }
            _ if is_x25519_oid(&ext.oid) => {
                x25519 = Some(
                    x25519_from_extension_value(ext.value)
                        .ok_or_else(|| Error::Policy("malformed X25519 extension".into()))?,
                );
            }
            _ => {}
        }
    }
    let role = match roles.as_slice() {
        [role] => role.clone(),
        [] => return Err(Error::Policy("the certificate names nobody".into())),
        _ => {
            return Err(Error::Policy(
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

/// A certificate's validity period, in milliseconds since the Unix epoch.
///
/// # Errors
/// [`Error::Unparsable`] for bytes that are not a certificate.
pub fn validity(der: &[u8]) -> Result<Validity, Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Unparsable(e.to_string()))?;
    let millis = |t: &ASN1Time| Timestamp(t.timestamp().saturating_mul(1000));
    Ok(Validity {
        not_before: millis(&cert.validity().not_before),
        not_after: millis(&cert.validity().not_after),
    })
}

fn is_x25519_oid(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    oid.iter()
        .is_some_and(|arcs| arcs.eq(X25519_EXTENSION_OID.iter().copied()))
}

/// The fingerprint of a CA certificate: SHA-256 over its SubjectPublicKeyInfo.
///
/// # Errors
/// [`Error::UnparsableCa`] when the certificate cannot be parsed.
pub fn ca_fingerprint(ca_der: &[u8]) -> Result<CaFingerprint, Error> {
    let (_, cert) =
        X509Certificate::from_der(ca_der).map_err(|e| Error::UnparsableCa(e.to_string()))?;
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

/// The non-critical extension carrying an X25519 public key as a DER OCTET STRING, for a CSR
/// (the device) or a certificate (the CA).
#[must_use]
pub fn x25519_extension(x25519: &[u8; 32]) -> CustomExtension {
    let mut extension =
        CustomExtension::from_oid_content(X25519_EXTENSION_OID, x25519_extension_value(x25519));
    extension.set_criticality(false);
    extension
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, PKCS_ED25519, SanType, string::Ia5String};

    use super::*;

    fn certificate(uris: &[&str], x25519: Option<[u8; 32]>) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(Ia5String::try_from(*u).expect("ASCII")))
            .collect();
        params.custom_extensions = x25519.iter().map(x25519_extension).collect();
        params.self_signed(&key).expect("signed").der().to_vec()
    }

    #[test]
    fn reads_the_user_and_both_keys_of_a_certificate_it_wrote_the_extension_for() {
        let der = certificate(&["parley://user/bob"], Some([7; 32]));
        let peer = inspect(&der).expect("follows the policy");
        assert_eq!(
            peer.role,
            Role::from_uri("parley://user/bob").expect("a user")
        );
        assert_eq!(peer.x25519, Some([7; 32]));
        assert!(has_uri_san(&der, "parley://user/bob"));
        assert!(!has_uri_san(&der, parley_domain::pki::RENDEZVOUS_URI));
    }

    #[test]
    fn refuses_certificates_naming_nobody_or_two_identities_and_bytes_that_are_none() {
        assert_eq!(
            inspect(&certificate(&[], None)),
            Err(Error::Policy("the certificate names nobody".into()))
        );
        assert_eq!(
            inspect(&certificate(
                &["parley://user/bob", "parley://rendezvous"],
                None
            )),
            Err(Error::Policy(
                "the certificate names more than one identity".into()
            ))
        );
        assert!(matches!(
            inspect(b"not a certificate"),
            Err(Error::Unparsable(_))
        ));
        assert!(matches!(
            ca_fingerprint(b"not a certificate"),
            Err(Error::UnparsableCa(_))
        ));
    }
}
