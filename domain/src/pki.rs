//! The certificate policy shared by the CA, the enrollment client and the transport.
//!
//! These are names and numbers only; encoding and verification live in the adapters.

use std::fmt;

use crate::{Secret32, Username};

/// URI SAN prefix naming a user: `parley://user/<username>`.
pub const USER_URI_PREFIX: &str = "parley://user/";
/// URI SAN naming the rendezvous itself (its HTTPS and libp2p certificate). The CA never puts
/// it in a user's certificate, so no enrolled peer can pose as the rendezvous.
pub const RENDEZVOUS_URI: &str = "parley://rendezvous";
/// Object identifier of the non-critical extension that carries the device's X25519 public key
/// (the extension value is a DER OCTET STRING of 32 bytes). An arc under `2.25` (X.667).
pub const X25519_EXTENSION_OID: &[u64] = &[2, 25, 297_515_270_814_911_873];
/// The longest validity the CA gives a device certificate.
pub const MAX_CERT_VALIDITY_DAYS: u32 = 30;

/// DER prefix that turns a raw 32-byte Ed25519 secret into a PKCS#8 v1 document.
pub const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The PKCS#8 v1 DER document of an Ed25519 secret (what TLS and certificate libraries load).
#[must_use]
pub fn ed25519_pkcs8(secret: &Secret32) -> Vec<u8> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(secret.expose());
    der
}

/// The Ed25519 secret inside a PKCS#8 v1 document made by [`ed25519_pkcs8`], `None` for any
/// other document.
#[must_use]
pub fn ed25519_from_pkcs8(der: &[u8]) -> Option<Secret32> {
    let raw = der.strip_prefix(&ED25519_PKCS8_PREFIX[..])?;
    <[u8; 32]>::try_from(raw).ok().map(Secret32::new)
}

/// The value of the X25519 extension: a DER OCTET STRING holding the 32-byte key.
#[must_use]
pub fn x25519_extension_value(key: &[u8; 32]) -> Vec<u8> {
    let mut value = vec![0x04, 0x20];
    value.extend_from_slice(key);
    value
}

/// The key inside an X25519 extension value, `None` unless it is exactly a 32-byte OCTET
/// STRING.
#[must_use]
pub fn x25519_from_extension_value(value: &[u8]) -> Option<[u8; 32]> {
    match value {
        [0x04, 0x20, key @ ..] => key.try_into().ok(),
        _ => None,
    }
}

/// The URI SAN for `user`.
#[must_use]
pub fn user_uri(user: &Username) -> String {
    format!("{USER_URI_PREFIX}{user}")
}

/// What a certificate's URI SAN says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// An enrolled user's device.
    User(Username),
    /// The rendezvous server.
    Rendezvous,
}

impl Role {
    /// Reads a URI SAN. `None` for anything the CA would never issue.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        if uri == RENDEZVOUS_URI {
            return Some(Self::Rendezvous);
        }
        let name = uri.strip_prefix(USER_URI_PREFIX)?;
        Username::parse(name).ok().map(Self::User)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "user {u}"),
            Self::Rendezvous => f.write_str("the rendezvous"),
        }
    }
}

/// What a CA-verified certificate told us about the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedPeer {
    /// Who the certificate names.
    pub role: Role,
    /// The raw Ed25519 device key (also the libp2p identity).
    pub ed25519: [u8; 32],
    /// The device's X25519 key for end-to-end encryption, when the certificate carries one.
    pub x25519: Option<[u8; 32]>,
}

impl CertifiedPeer {
    /// The public keys the certificate binds to its name.
    #[must_use]
    pub fn keys(&self) -> crate::PeerKeys {
        crate::PeerKeys {
            ed25519: self.ed25519,
            x25519: self.x25519,
        }
    }
}

/// SHA-256 of the CA's SubjectPublicKeyInfo, written `sha256:<64 hex>`.
///
/// It names the CA key, not one certificate, so every rendezvous sharing a CA key prints the
/// same fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaFingerprint([u8; 32]);

/// Why a string is not a CA fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a CA fingerprint is written sha256: followed by 64 hexadecimal digits")]
pub struct FingerprintError;

impl CaFingerprint {
    /// Wraps a SHA-256 digest.
    #[must_use]
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The fingerprint of a CA key given its SubjectPublicKeyInfo DER.
    #[must_use]
    pub fn of_spki(spki_der: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Self(Sha256::digest(spki_der).into())
    }

    /// Parses `sha256:<64 hex>` (hex in either case).
    ///
    /// # Errors
    /// [`FingerprintError`] when the prefix, length or digits are wrong.
    pub fn parse(raw: &str) -> Result<Self, FingerprintError> {
        let hex = raw.strip_prefix("sha256:").ok_or(FingerprintError)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(FingerprintError)?, 16)
                .map_err(|_| FingerprintError)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_and_refuses_junk() {
        let fp = CaFingerprint::from_digest([0x1f; 32]);
        assert_eq!(CaFingerprint::parse(&fp.to_string()), Ok(fp));
        assert_eq!(
            CaFingerprint::parse(&fp.to_string().to_uppercase().replace("SHA256", "sha256")),
            Ok(fp)
        );
        for bad in [
            "",
            "sha256:",
            "md5:00",
            "sha256:zz",
            &format!("sha256:{}", "0".repeat(63)),
            &format!("sha256:{}", "+f".repeat(32)),
        ] {
            assert_eq!(CaFingerprint::parse(bad), Err(FingerprintError), "{bad}");
        }
    }

    #[test]
    fn key_encodings_round_trip_and_refuse_other_shapes() {
        let secret = Secret32::new([9; 32]);
        assert_eq!(ed25519_from_pkcs8(&ed25519_pkcs8(&secret)), Some(secret));
        assert_eq!(ed25519_from_pkcs8(&[0x30, 0x2e]), None);
        let key = [5; 32];
        assert_eq!(
            x25519_from_extension_value(&x25519_extension_value(&key)),
            Some(key)
        );
        assert_eq!(x25519_from_extension_value(&[0x04, 0x21, 0]), None);
        assert_eq!(
            x25519_from_extension_value(&[&[0x04, 0x20][..], &[5; 33]].concat()),
            None
        );
    }

    #[test]
    fn roles_come_only_from_policy_uris() {
        let bob = Username::parse("bob").expect("valid literal");
        assert_eq!(Role::from_uri(&user_uri(&bob)), Some(Role::User(bob)));
        assert_eq!(Role::from_uri(RENDEZVOUS_URI), Some(Role::Rendezvous));
        assert_eq!(Role::from_uri("parley://user/Bob"), None);
        assert_eq!(Role::from_uri("https://user/bob"), None);
        assert_eq!(Role::from_uri("parley://rendezvous/x"), None);
    }
}
