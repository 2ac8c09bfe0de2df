//! The Parley certificate policy as code, shared by the transport (`parley-p2p`), the
//! enrollment client (`parley-enroll`) and the CA (`parley-rendezvous`):
//!
//! - [`certificate`]: reading who a certificate names ([`inspect`]: the single policy URI, the
//!   Ed25519 key, the X25519 key), a CA's fingerprint, URI SANs, and writing the X25519 key
//!   extension ([`x25519_extension`]);
//! - [`verify`]: the building blocks of a server-certificate verifier that speaks TLS 1.3 only
//!   ([`Tls13Verifier`], a [`ChainPolicy`] such as [`CaRoot`]) and the one crypto provider
//!   ([`provider`]).
//!
//! The names and numbers of the policy (URI forms, the OID, validity) are in
//! `parley_domain::pki`; this crate is their encoding and checking.
//!
//! **Architecture invariant:** no I/O and no networking: certificates come in as DER bytes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod certificate;
pub mod verify;

pub use certificate::{ca_fingerprint, has_uri_san, inspect, validity, x25519_extension};
pub use verify::{CaRoot, ChainPolicy, Tls13Verifier, provider};

/// Why a certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not parse as an X.509 certificate.
    #[error("unparsable certificate: {0}")]
    Unparsable(String),
    /// The CA certificate's bytes do not parse.
    #[error("unparsable CA certificate: {0}")]
    UnparsableCa(String),
    /// The certificate's key is not Ed25519 (or not 32 bytes).
    #[error("{0}")]
    Key(&'static str),
    /// The certificate's names or extensions do not follow the policy.
    #[error("{0}")]
    Policy(String),
}
