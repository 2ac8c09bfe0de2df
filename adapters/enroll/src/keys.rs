//! The device's keys and its certificate signing request.

use parley_domain::pki::user_uri;
use parley_domain::{Secret32, Username};
use parley_pki::x25519_extension;
use parley_usecases::ports::EnrollError;
use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ED25519, SanType};
use rustls_pki_types::PrivatePkcs8KeyDer;
use x25519_dalek::{PublicKey, StaticSecret};

/// Fresh device keys: Ed25519 (identity, signs the CSR) and X25519 (end-to-end encryption).
pub struct DeviceKeys {
    ed25519: Secret32,
    key_pair: KeyPair,
    x25519: StaticSecret,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeys(..)")
    }
}

impl DeviceKeys {
    /// Draws both keys from the operating system's random source.
    ///
    /// # Errors
    /// [`EnrollError::Failed`] when the crypto provider refuses the key (it should not).
    pub fn generate() -> Result<Self, EnrollError> {
        Self::from_secrets(
            Secret32::new(random_bytes()?),
            Secret32::new(random_bytes()?),
        )
    }

    /// The device's existing keys, to renew its certificate without changing its identity.
    ///
    /// # Errors
    /// [`EnrollError::Failed`] when the crypto provider refuses the key.
    pub fn from_secrets(ed25519: Secret32, x25519: Secret32) -> Result<Self, EnrollError> {
        let der = parley_domain::pki::ed25519_pkcs8(&ed25519);
        let key_pair =
            KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &PKCS_ED25519)
                .map_err(|e| EnrollError::Failed(format!("cannot use the device key: {e}")))?;
        Ok(Self {
            ed25519,
            key_pair,
            x25519: StaticSecret::from(*x25519.expose()),
        })
    }

    /// The Ed25519 secret.
    #[must_use]
    pub fn ed25519_secret(&self) -> &Secret32 {
        &self.ed25519
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn ed25519_public(&self) -> &[u8] {
        self.key_pair.public_key_raw()
    }

    /// The X25519 secret.
    #[must_use]
    pub fn x25519_secret(&self) -> Secret32 {
        Secret32::new(self.x25519.to_bytes())
    }

    /// The X25519 public key.
    #[must_use]
    pub fn x25519_public(&self) -> [u8; 32] {
        PublicKey::from(&self.x25519).to_bytes()
    }

    /// A PEM CSR signed with the Ed25519 key: CN and URI SAN name `user`, and the X25519 key
    /// rides in a non-critical extension. (The CA takes only the two keys from it.)
    ///
    /// # Errors
    /// [`EnrollError::Failed`] when rcgen cannot build it.
    pub fn csr_pem(&self, user: &Username) -> Result<String, EnrollError> {
        let failed = |e: rcgen::Error| EnrollError::Failed(format!("cannot make the CSR: {e}"));
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, user.as_str());
        params.subject_alt_names = vec![SanType::URI(
            Ia5String::try_from(user_uri(user)).map_err(failed)?,
        )];
        params
            .custom_extensions
            .push(x25519_extension(&self.x25519_public()));
        params
            .serialize_request(&self.key_pair)
            .and_then(|csr| csr.pem())
            .map_err(failed)
    }
}

/// 32 bytes from the operating system's random source.
fn random_bytes() -> Result<[u8; 32], EnrollError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| EnrollError::Failed(format!("the system's random source failed: {e}")))?;
    Ok(bytes)
}
