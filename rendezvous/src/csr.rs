//! Reading a device's certificate signing request: only the two keys are taken from it.
//!
//! rcgen's `CertificateSigningRequestParams::from_pem` is deliberately not used: it refuses our
//! custom extension and copies the requester's wishes (SANs, CA flag, key usages). Here the CSR
//! is parsed with x509-parser and its Ed25519 signature is checked with `verify_strict`.
//!
//! A request that asks for more than the CA grants is refused rather than quietly trimmed, so
//! a hostile or broken client learns it at once and the refusal shows in the metrics: the
//! requested extensions may be the X25519 key, a SAN naming exactly the enrolling user,
//! `basicConstraints` without CA, a key usage without `keyCertSign`/`cRLSign`, an extended key
//! usage and a subject key identifier, nothing else (a PKCS#10 request has no validity field;
//! an extension that would carry one, such as `privateKeyUsagePeriod`, is refused like every
//! other unknown one). Whatever passes, the certificate still follows the CA's policy only.

use ed25519_dalek::{Signature, VerifyingKey};
use parley_domain::Username;
use parley_domain::pki::{X25519_EXTENSION_OID, user_uri};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_SIG_ED25519, Oid};
use x509_parser::prelude::FromDer;

/// The keys a valid CSR proves its sender holds (Ed25519) or offers (X25519).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The Ed25519 device key; the CSR's signature proves possession.
    pub ed25519: [u8; 32],
    /// The X25519 key for end-to-end encryption, from the CSR's extension request. Parley's
    /// own client always sends one; a CSR made by other tools may not, and then the certificate
    /// carries none (that device can use mutual TLS but cannot be sent sealed messages).
    pub x25519: Option<[u8; 32]>,
}

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a PEM `CERTIFICATE REQUEST` block.
    #[error("the CSR is not a PEM certificate request")]
    NotPem,
    /// Something other than white space around the one PEM block.
    #[error("the CSR has bytes before or after its PEM block")]
    StrayBytes,
    /// The DER inside does not parse as a PKCS#10 request.
    #[error("the CSR cannot be parsed")]
    Malformed,
    /// The key or the signature algorithm is not Ed25519.
    #[error("the CSR's key and signature must be Ed25519")]
    NotEd25519,
    /// The signature does not verify with the CSR's own key.
    #[error("the CSR's signature does not verify")]
    BadSignature,
    /// The X25519 extension is not an OCTET STRING of 32 bytes, or appears twice.
    #[error("the CSR's X25519 key extension is malformed")]
    MalformedX25519,
    /// `basicConstraints` with CA set.
    #[error("the CSR asks to be a certificate authority")]
    AsksForCa,
    /// A key usage for signing certificates or revocation lists.
    #[error("the CSR asks for a key usage that signs certificates")]
    AsksToSign,
    /// A subject alternative name other than exactly the enrolling user's URI.
    #[error("the CSR asks for a name other than the enrolling user's")]
    ForeignName,
    /// An extension the CA does not grant, or one that does not parse.
    #[error("the CSR asks for an extension the CA does not grant")]
    UnknownExtension,
}

/// Parses and checks a PEM CSR sent to enroll `user`.
///
/// # Errors
/// An [`Error`] naming the first rule the request breaks.
pub fn parse(pem: &str, user: &Username) -> Result<DeviceKeys, Error> {
    if !pem.trim_start().starts_with("-----BEGIN ") {
        return Err(Error::NotPem);
    }
    let (rest, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| Error::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(Error::NotPem);
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::StrayBytes);
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(&block.contents).map_err(|_| Error::Malformed)?;
    if !rest.is_empty() {
        return Err(Error::Malformed);
    }
    let info = &csr.certification_request_info;
    if info.subject_pki.algorithm.algorithm != OID_SIG_ED25519
        || csr.signature_algorithm.algorithm != OID_SIG_ED25519
    {
        return Err(Error::NotEd25519);
    }
    let ed25519: [u8; 32] = info
        .subject_pki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| Error::NotEd25519)?;
    let signature: [u8; 64] = csr
        .signature_value
        .data
        .as_ref()
        .try_into()
        .map_err(|_| Error::BadSignature)?;
    let key = VerifyingKey::from_bytes(&ed25519).map_err(|_| Error::NotEd25519)?;
    key.verify_strict(info.raw, &Signature::from_bytes(&signature))
        .map_err(|_| Error::BadSignature)?;
    let x25519 = x25519_of(&csr)?;
    check_wishes(&csr, user)?;
    Ok(DeviceKeys { ed25519, x25519 })
}

/// Refuses a request that asks for more than the CA grants (see the module documentation).
fn check_wishes(csr: &X509CertificationRequest<'_>, user: &Username) -> Result<(), Error> {
    // Invariant: the OID constant is a valid arc list (checked by the unit test below).
    let x25519 = Oid::from(X25519_EXTENSION_OID).expect("X25519_EXTENSION_OID is a valid OID");
    let own_uri = user_uri(user);
    for attribute in csr.certification_request_info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
            continue;
        };
        for extension in request.extensions.iter().filter(|e| e.oid != x25519) {
            match extension.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(Error::AsksForCa),
                ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() || ku.crl_sign() => {
                    return Err(Error::AsksToSign);
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    if !matches!(san.general_names.as_slice(), [GeneralName::URI(uri)] if *uri == own_uri)
                    {
                        return Err(Error::ForeignName);
                    }
                }
                ParsedExtension::BasicConstraints(_)
                | ParsedExtension::KeyUsage(_)
                | ParsedExtension::ExtendedKeyUsage(_)
                | ParsedExtension::SubjectKeyIdentifier(_) => {}
                _ => return Err(Error::UnknownExtension),
            }
        }
    }
    Ok(())
}

fn x25519_of(csr: &X509CertificationRequest<'_>) -> Result<Option<[u8; 32]>, Error> {
    // Invariant: the OID constant is a valid arc list (checked by the unit test below).
    let oid = Oid::from(X25519_EXTENSION_OID).expect("X25519_EXTENSION_OID is a valid OID");
    let mut found = None;
    for attribute in csr.certification_request_info.iter_attributes() {
        let ParsedCriAttribute::ExtensionRequest(request) = attribute.parsed_attribute() else {
            continue;
        };
        for extension in request.extensions.iter().filter(|e| e.oid == oid) {
            if found.is_some() {
                return Err(Error::MalformedX25519);
            }
            found = Some(octet_string_32(extension.value).ok_or(Error::MalformedX25519)?);
        }
    }
    Ok(found)
}

/// The 32 bytes of a DER `OCTET STRING` of length 32, and nothing else.
#[must_use]
pub fn octet_string_32(der: &[u8]) -> Option<[u8; 32]> {
    parley_domain::pki::x25519_from_extension_value(der)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
        string::Ia5String,
    };

    use super::*;
    use crate::ca;

    fn ed25519_key() -> KeyPair {
        ca::key_pair(&ca::random_secret()).expect("fresh Ed25519 key")
    }

    fn request(key: &KeyPair, extensions: Vec<CustomExtension>) -> String {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            Ia5String::try_from("parley://user/bob").expect("ASCII"),
        )];
        params.custom_extensions = extensions;
        params
            .serialize_request(key)
            .expect("CSR")
            .pem()
            .expect("PEM")
    }

    fn bob() -> Username {
        Username::parse("bob").expect("a valid name")
    }

    fn check(pem: &str, expected: Result<(), Error>) {
        assert_eq!(parse(pem, &bob()).map(|_| ()), expected, "{pem}");
    }

    #[test]
    fn the_oid_constant_is_valid() {
        assert!(Oid::from(X25519_EXTENSION_OID).is_ok());
    }

    #[test]
    fn a_well_formed_request_yields_both_keys() {
        let key = ed25519_key();
        let pem = request(&key, vec![ca::x25519_extension(&[7; 32])]);
        let keys = parse(&pem, &bob()).expect("valid CSR");
        assert_eq!(keys.x25519, Some([7; 32]));
        assert_eq!(&keys.ed25519[..], key.public_key_raw());
    }

    #[test]
    fn refuses_garbage_and_other_pem_blocks() {
        check("", Err(Error::NotPem));
        check("hello", Err(Error::NotPem));
        let cert = ca::pem_certificate(b"not a certificate");
        check(&cert, Err(Error::NotPem));
        let junk = cert.replace("CERTIFICATE", "CERTIFICATE REQUEST");
        check(&junk, Err(Error::Malformed));
    }

    #[test]
    fn refuses_stray_bytes_and_wishes_beyond_the_policy() {
        let key = ed25519_key();
        let good = request(&key, vec![ca::x25519_extension(&[7; 32])]);
        check(&format!("\n{good}\n\n"), Ok(()));
        check(&format!("junk\n{good}"), Err(Error::NotPem));
        check(&format!("{good}junk"), Err(Error::StrayBytes));
        check(&format!("{good}{good}"), Err(Error::StrayBytes));
        assert_eq!(
            parse(&good, &Username::parse("eve").expect("name")).map(|_| ()),
            Err(Error::ForeignName),
            "the SAN names bob, not eve"
        );
        let shaped = |shape: &dyn Fn(&mut CertificateParams)| {
            let mut params = CertificateParams::default();
            shape(&mut params);
            params
                .serialize_request(&key)
                .expect("CSR")
                .pem()
                .expect("PEM")
        };
        check(
            &shaped(&|p| p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)),
            Err(Error::AsksForCa),
        );
        check(&shaped(&|p| p.is_ca = rcgen::IsCa::ExplicitNoCa), Ok(()));
        check(
            &shaped(&|p| p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign]),
            Err(Error::AsksToSign),
        );
        check(
            &shaped(&|p| p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature]),
            Ok(()),
        );
        check(
            &shaped(&|p| {
                p.subject_alt_names =
                    vec![SanType::DnsName("bob.example".try_into().expect("DNS"))];
            }),
            Err(Error::ForeignName),
        );
        check(
            &shaped(&|p| {
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[2, 5, 29, 16],
                    vec![0x30, 0x00],
                )];
            }),
            Err(Error::UnknownExtension),
        );
    }

    #[test]
    fn refuses_a_tampered_signature() {
        let pem = request(&ed25519_key(), vec![ca::x25519_extension(&[7; 32])]);
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        let mut der = block.contents;
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let tampered = ca::pem_certificate(&der).replace("CERTIFICATE", "CERTIFICATE REQUEST");
        check(&tampered, Err(Error::BadSignature));
    }

    #[test]
    fn refuses_a_non_ed25519_key() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        check(
            &request(&key, vec![ca::x25519_extension(&[7; 32])]),
            Err(Error::NotEd25519),
        );
    }

    #[test]
    fn refuses_a_malformed_x25519_extension_and_tolerates_none() {
        let key = ed25519_key();
        let without = parse(&request(&key, vec![]), &bob()).expect("a CSR without X25519 is valid");
        assert_eq!(without.x25519, None);
        let short = CustomExtension::from_oid_content(X25519_EXTENSION_OID, vec![0x04, 0x01, 9]);
        check(&request(&key, vec![short]), Err(Error::MalformedX25519));
        let twice = vec![
            ca::x25519_extension(&[1; 32]),
            ca::x25519_extension(&[2; 32]),
        ];
        check(&request(&key, twice), Err(Error::MalformedX25519));
    }

    #[test]
    fn octet_string_needs_exactly_32_bytes() {
        assert_eq!(
            octet_string_32(&[&[0x04, 0x20][..], &[5; 32]].concat()),
            Some([5; 32])
        );
        assert_eq!(
            octet_string_32(&[&[0x04, 0x20][..], &[5; 33]].concat()),
            None
        );
        assert_eq!(
            octet_string_32(&[&[0x03, 0x20][..], &[5; 32]].concat()),
            None
        );
    }
}
