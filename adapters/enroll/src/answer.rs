//! Checking the rendezvous's answer before anything is kept.

use parley_domain::pki::{X25519_EXTENSION_OID, user_uri, x25519_extension_value};
use parley_domain::{CaFingerprint, Username};
use parley_usecases::ports::EnrollError;
use rustls::RootCertStore;
use rustls::server::ParsedCertificate;
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject};
use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_SIG_ED25519, Oid};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::DeviceKeys;
use crate::verifier;

/// The body of a 200 answer to `POST /v1/enroll`.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    /// The device certificate, PEM.
    pub certificate_pem: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The directory's libp2p addresses.
    pub p2p_addrs: Vec<String>,
}

/// The answer's certificates, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The device certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
}

fn failed(reason: &str) -> EnrollError {
    EnrollError::Failed(format!("the rendezvous's answer was refused: {reason}"))
}

/// Checks that the CA is the one verified during the handshake (`trusted`), and that the
/// certificate chains to it, names exactly `user`, and carries this device's two keys.
///
/// # Errors
/// [`EnrollError::Failed`] naming the first check that failed.
pub fn check(
    answer: &Answer,
    user: &Username,
    device: &DeviceKeys,
    trusted: CaFingerprint,
) -> Result<Checked, EnrollError> {
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|_| failed("ca_pem is not a PEM certificate"))?;
    if verifier::fingerprint(&ca) != Some(trusted) {
        return Err(failed(
            "its CA is not the one that authenticated the connection",
        ));
    }
    let certificate = CertificateDer::from_pem_slice(answer.certificate_pem.as_bytes())
        .map_err(|_| failed("certificate_pem is not a PEM certificate"))?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|_| failed("its CA certificate is unusable"))?;
    let parsed = ParsedCertificate::try_from(&certificate)
        .map_err(|_| failed("the certificate cannot be parsed"))?;
    let provider = parley_pki::provider();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| failed(&format!("the certificate does not chain to the CA ({e})")))?;
    check_contents(&certificate, user, device)?;
    Ok(Checked {
        certificate_der: certificate.to_vec(),
        ca_der: ca.to_vec(),
    })
}

fn check_contents(der: &[u8], user: &Username, device: &DeviceKeys) -> Result<(), EnrollError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| failed("the certificate cannot be parsed"))?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| failed("the certificate names nobody"))?;
    let expected = user_uri(user);
    if !matches!(san.value.general_names.as_slice(), [GeneralName::URI(u)] if *u == expected) {
        return Err(failed("the certificate does not name exactly this user"));
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519
        || spki.subject_public_key.data.as_ref() != device.ed25519_public()
    {
        return Err(failed(
            "the certificate is not for this device's Ed25519 key",
        ));
    }
    // Invariant: the OID constant is a valid arc list (tested in parley-domain's users).
    let oid = Oid::from(X25519_EXTENSION_OID).expect("X25519_EXTENSION_OID is a valid OID");
    let expected_value = x25519_extension_value(&device.x25519_public());
    let carries_key = cert
        .extensions()
        .iter()
        .any(|e| e.oid == oid && !e.critical && e.value == expected_value.as_slice());
    if !carries_key {
        return Err(failed(
            "the certificate does not carry this device's X25519 key",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, PKCS_ED25519, SanType,
    };

    use super::*;
    use parley_pki::x25519_extension;

    /// A CA that issues whatever the test asks for.
    fn ca() -> (KeyPair, Vec<u8>, String) {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("CA key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA cert");
        (key, cert.der().to_vec(), cert.pem())
    }

    fn issue(
        ca_key: KeyPair,
        ca_der: &[u8],
        device: &DeviceKeys,
        uri: &str,
        x25519: [u8; 32],
    ) -> String {
        let issuer = Issuer::from_ca_cert_der(&ca_der.to_vec().into(), ca_key).expect("issuer");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("URI"))];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.custom_extensions.push(x25519_extension(&x25519));
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(device.ed25519_public());
        let public = rcgen::SubjectPublicKeyInfo::from_der(&spki).expect("SPKI");
        params.signed_by(&public, &issuer).expect("leaf").pem()
    }

    fn answer(certificate_pem: String, ca_pem: String) -> Answer {
        Answer {
            certificate_pem,
            ca_pem,
            p2p_addrs: vec![],
        }
    }

    #[test]
    fn accepts_a_faithful_certificate_and_refuses_altered_ones() {
        let user = Username::parse("alice").expect("valid literal");
        let device = DeviceKeys::generate().expect("keys");
        let (key, ca_der, ca_pem) = ca();
        let trusted = verifier::fingerprint(&ca_der).expect("fingerprint");
        let good = issue(
            key,
            &ca_der,
            &device,
            "parley://user/alice",
            device.x25519_public(),
        );
        assert!(
            check(
                &answer(good.clone(), ca_pem.clone()),
                &user,
                &device,
                trusted
            )
            .is_ok()
        );

        let other_ca = CaFingerprint::from_digest([9; 32]);
        assert!(check(&answer(good, ca_pem.clone()), &user, &device, other_ca).is_err());

        let (impostor_key, _, _) = ca();
        let forged = issue(
            impostor_key,
            &ca_der,
            &device,
            "parley://user/alice",
            device.x25519_public(),
        );
        assert!(
            check(&answer(forged, ca_pem.clone()), &user, &device, trusted).is_err(),
            "signed by another key"
        );

        let (key, ca_der, ca_pem) = ca();
        let trusted = verifier::fingerprint(&ca_der).expect("fingerprint");
        let wrong_name = issue(
            key,
            &ca_der,
            &device,
            "parley://user/mallory",
            device.x25519_public(),
        );
        assert!(check(&answer(wrong_name, ca_pem.clone()), &user, &device, trusted).is_err());

        let (key, ca_der, ca_pem) = ca();
        let trusted = verifier::fingerprint(&ca_der).expect("fingerprint");
        let wrong_x25519 = issue(key, &ca_der, &device, "parley://user/alice", [1; 32]);
        assert!(check(&answer(wrong_x25519, ca_pem), &user, &device, trusted).is_err());

        let other_device = DeviceKeys::generate().expect("keys");
        let (key, ca_der, ca_pem) = ca();
        let trusted = verifier::fingerprint(&ca_der).expect("fingerprint");
        let others = issue(
            key,
            &ca_der,
            &other_device,
            "parley://user/alice",
            device.x25519_public(),
        );
        assert!(check(&answer(others, ca_pem), &user, &device, trusted).is_err());
    }
}
