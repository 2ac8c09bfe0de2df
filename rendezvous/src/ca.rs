//! The certificate authority: its Ed25519 key, its self-signed certificate, and the device and
//! rendezvous certificates it issues from its own policy.
//!
//! The CA never copies anything a requester asked for: every issued certificate is built from a
//! fresh parameter set holding only the subject's name, its Ed25519 key and (for a user) its
//! X25519 key.

use std::path::Path;

use parley_domain::pki::{MAX_CERT_VALIDITY_DAYS, RENDEZVOUS_URI, user_uri};
use parley_domain::{CaFingerprint, Secret32, Username};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, pem::PemObject};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files;

/// File name of the CA key inside the data folder (when `--ca-key` is not given).
pub const KEY_FILE: &str = "ca-key.pem";
/// File name of the CA certificate inside the data folder.
pub const CERT_FILE: &str = "ca-cert.pem";
/// Common name of the CA certificate.
pub const CA_NAME: &str = "Parley CA";
/// How long the self-signed CA certificate is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of the rendezvous's own certificate. It is issued afresh at every start; the
/// 30-day cap is for device certificates, and a rendezvous left running longer than that must
/// not lock every peer out. Restart a rendezvous at least once a year.
const RENDEZVOUS_VALIDITY: Duration = Duration::days(365);
/// Clock skew tolerated between the CA and the peers that check its certificates.
const BACKDATE: Duration = Duration::minutes(5);

/// DER prefix that turns a raw 32-byte Ed25519 public key into a SubjectPublicKeyInfo.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why the CA could not start or issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key or certificate file could not be read or written.
    #[error(transparent)]
    File(#[from] files::Error),
    /// A key file does not hold an Ed25519 private key.
    #[error("{0} does not hold an Ed25519 private key in PKCS#8 PEM form")]
    Key(String),
    /// rcgen could not build or sign a certificate.
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A device certificate's validity outside 1 to 30 days.
    #[error("--certificate-days {0} is not between 1 and 30")]
    Validity(u32),
}

/// Whom a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An enrolled user's device, with its X25519 key for end-to-end encryption.
    User {
        /// The enrolled name.
        name: Username,
        /// The device's X25519 public key, when its CSR offered one.
        x25519: Option<[u8; 32]>,
    },
    /// The rendezvous itself (HTTPS API and libp2p directory).
    Rendezvous,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding.
    pub pem: String,
    /// Serial number, lower-case hex.
    pub serial: String,
}

/// The certificate authority, ready to issue.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    pem: String,
    fingerprint: CaFingerprint,
    user_days: u32,
    totp: crate::totp::Vault,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `data`, creating what is missing.
    ///
    /// The key comes from `ca_key` when given (nothing is written for it), else from
    /// `<data>/ca-key.pem`, generated (mode 0600) at first start. The certificate is kept in
    /// `<data>/ca-cert.pem` so restarts present the same one; it is made anew when missing or
    /// when it does not belong to the key.
    ///
    /// # Errors
    /// [`Error`] when a file cannot be read or written, or the key is not Ed25519.
    pub fn open(data: &Path, ca_key: Option<&Path>, now: OffsetDateTime) -> Result<Self, Error> {
        let key = match ca_key {
            Some(path) => read_key(path)?.ok_or_else(|| {
                Error::File(files::Error::new(
                    "read",
                    path,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))
            })?,
            None => load_or_create_key(&data.join(KEY_FILE))?,
        };
        let cert_path = data.join(CERT_FILE);
        let stored = files::read_optional(&cert_path)?
            .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
            .filter(|der| spki_of(der).is_some_and(|spki| spki == key.subject_public_key_info()));
        let der = match stored {
            Some(der) => der,
            None => {
                let der = self_signed(&key, now)?;
                files::write_public(&cert_path, pem_certificate(&der).as_bytes())?;
                tracing::info!(path = %cert_path.display(), "made a new CA certificate");
                der
            }
        };
        // Keyed from the CA key before the issuer takes it: instances sharing the key share
        // the second factor's secrets too.
        let totp = crate::totp::Vault::new(&key.serialize_der());
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        let fingerprint =
            fingerprint(&der).ok_or(Error::Certificate(rcgen::Error::CouldNotParseCertificate))?;
        Ok(Self {
            issuer,
            pem: pem_certificate(&der),
            der: der.to_vec(),
            fingerprint,
            user_days: MAX_CERT_VALIDITY_DAYS,
            totp,
        })
    }

    /// Where the second factor's secrets are sealed and checked, keyed from the CA key.
    #[must_use]
    pub fn totp(&self) -> &crate::totp::Vault {
        &self.totp
    }

    /// Device certificates issued from now on last `days` days instead of
    /// [`MAX_CERT_VALIDITY_DAYS`] (1 to that maximum, which peers enforce).
    ///
    /// # Errors
    /// [`Error::Validity`] for 0 or more than the maximum.
    pub fn with_certificate_days(mut self, days: u32) -> Result<Self, Error> {
        if !(1..=MAX_CERT_VALIDITY_DAYS).contains(&days) {
            return Err(Error::Validity(days));
        }
        self.user_days = days;
        Ok(self)
    }

    /// SHA-256 of the CA certificate's SubjectPublicKeyInfo.
    #[must_use]
    pub fn fingerprint(&self) -> CaFingerprint {
        self.fingerprint
    }

    /// The CA certificate, DER.
    #[must_use]
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// Issues a leaf certificate for `subject` holding the Ed25519 public key `ed25519`:
    /// CA:false, digitalSignature, serverAuth + clientAuth, exactly one URI SAN, valid from
    /// five minutes ago for [`MAX_CERT_VALIDITY_DAYS`] days, or those set with
    /// [`Ca::with_certificate_days`] (a year for the rendezvous's own).
    ///
    /// # Errors
    /// [`Error::Certificate`] when rcgen refuses (an invalid key, for example).
    pub fn issue(
        &self,
        subject: &Subject,
        ed25519: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<Issued, Error> {
        let (common_name, uri) = match subject {
            Subject::User { name, .. } => (name.as_str().to_owned(), user_uri(name)),
            Subject::Rendezvous => ("Parley rendezvous".to_owned(), RENDEZVOUS_URI.to_owned()),
        };
        let serial = random_serial();
        let mut params = CertificateParams::default();
        params.not_before = now - BACKDATE;
        params.not_after = now
            + match subject {
                Subject::User { .. } => Duration::days(self.user_days.into()),
                Subject::Rendezvous => RENDEZVOUS_VALIDITY,
            };
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(uri)?)];
        params.use_authority_key_identifier_extension = true;
        if let Subject::User {
            x25519: Some(x25519),
            ..
        } = subject
        {
            params.custom_extensions.push(x25519_extension(x25519));
        }
        let mut spki = SPKI_ED25519_PREFIX.to_vec();
        spki.extend_from_slice(ed25519);
        let public_key = SubjectPublicKeyInfo::from_der(&spki)?;
        let certificate = params.signed_by(&public_key, &self.issuer)?;
        Ok(Issued {
            der: certificate.der().to_vec(),
            pem: certificate.pem(),
            serial: hex::encode(serial),
        })
    }
}

pub use parley_pki::x25519_extension;

/// The fingerprint of a CA certificate (SHA-256 of its SubjectPublicKeyInfo), `None` when the
/// DER does not parse.
#[must_use]
pub fn fingerprint(ca_der: &[u8]) -> Option<CaFingerprint> {
    parley_pki::ca_fingerprint(ca_der).ok()
}

/// Turns 32 secret bytes into an rcgen key pair.
///
/// # Errors
/// [`Error::Certificate`] when the crypto provider refuses the key.
pub fn key_pair(secret: &Secret32) -> Result<KeyPair, Error> {
    let der = PrivatePkcs8KeyDer::from(parley_domain::pki::ed25519_pkcs8(secret));
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ED25519)?)
}

/// 32 fresh random bytes.
#[must_use]
pub fn random_secret() -> Secret32 {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    Secret32::new(bytes)
}

/// Reads an Ed25519 key in PKCS#8 PEM, `None` when the file does not exist.
fn read_key(path: &Path) -> Result<Option<KeyPair>, Error> {
    let Some(bytes) = files::read_optional(path)? else {
        return Ok(None);
    };
    let not_a_key = || Error::Key(path.display().to_string());
    let text = std::str::from_utf8(&bytes).map_err(|_| not_a_key())?;
    let key = KeyPair::from_pem(text).map_err(|_| not_a_key())?;
    if key.algorithm() != &PKCS_ED25519 {
        return Err(not_a_key());
    }
    Ok(Some(key))
}

fn load_or_create_key(path: &Path) -> Result<KeyPair, Error> {
    if let Some(key) = read_key(path)? {
        return Ok(key);
    }
    let key = key_pair(&random_secret())?;
    files::write_secret(path, key.serialize_pem().as_bytes())?;
    tracing::info!(path = %path.display(), "made a new CA key");
    Ok(key)
}

fn self_signed(key: &KeyPair, now: OffsetDateTime) -> Result<CertificateDer<'static>, Error> {
    let mut params = CertificateParams::default();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params.self_signed(key)?.der().clone())
}

/// The raw SubjectPublicKeyInfo DER of a certificate.
fn spki_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// A PEM `CERTIFICATE` block, lines of 64 characters ending in `\n` (as rcgen prints the
/// certificates it makes; a stored CA certificate is read back as DER).
#[must_use]
pub fn pem_certificate(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Fills `bytes` from the operating system's random source.
///
/// A CA that cannot draw randomness must not issue anything: like `OsRng`, this panics when
/// the kernel's generator fails, which on Linux only happens on an unusable system.
pub fn fill_random(bytes: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(bytes).expect("the operating system's random source must work");
}

/// 16 random bytes, positive and without a leading zero byte as a DER INTEGER.
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    fill_random(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_certificate_reads_back_and_is_printed_as_rcgen_prints_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = OffsetDateTime::now_utc();
        let ca = Ca::open(dir.path(), None, now).expect("CA");
        let issued = ca
            .issue(&Subject::Rendezvous, &[7; 32], now)
            .expect("issued");
        assert_eq!(pem_certificate(&issued.der), issued.pem);
        let back = CertificateDer::from_pem_slice(ca.certificate_pem().as_bytes()).expect("PEM");
        assert_eq!(back.as_ref(), ca.certificate_der());
    }

    #[test]
    fn device_certificates_last_30_days_and_the_rendezvous_own_a_year() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = OffsetDateTime::now_utc();
        let ca = Ca::open(dir.path(), None, now).expect("CA");
        let lifetime = |subject: &Subject| {
            let issued = ca.issue(subject, &[7; 32], now).expect("issued");
            let (_, cert) = X509Certificate::from_der(&issued.der).expect("parses");
            (cert.validity().not_after.timestamp() - now.unix_timestamp()) / 86_400
        };
        let user = Subject::User {
            name: parley_domain::Username::parse("bob").expect("name"),
            x25519: None,
        };
        assert_eq!(lifetime(&user), 30);
        assert_eq!(lifetime(&Subject::Rendezvous), 365);
    }

    #[test]
    fn a_new_ca_round_trips_through_its_data_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = OffsetDateTime::now_utc();
        let first = Ca::open(dir.path(), None, now).expect("first start");
        let again = Ca::open(dir.path(), None, now).expect("second start");
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.certificate_der(), again.certificate_der());
        assert_eq!(
            fingerprint(first.certificate_der()),
            Some(first.fingerprint())
        );
    }
}
