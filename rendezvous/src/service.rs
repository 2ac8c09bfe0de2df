//! Enrollment as the rendezvous decides it, without HTTP: check the password (or set it for a
//! new name), bind the device key to the name, issue the certificate, persist, answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_domain::{Password, Username};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ca::{Ca, Subject};
use crate::csr::DeviceKeys;
use crate::hashing::{hash, verify};
use crate::lockout::Lockouts;
use crate::registry::{Binding, IssuedRecord, Registry, User};

/// The longest password accepted, in bytes, checked before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A checked enrollment request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The name to enroll.
    pub user: Username,
    /// Its password: 1 to [`MAX_PASSWORD_BYTES`] bytes (the API checks before calling).
    pub password: Password,
    /// The keys the CSR proved.
    pub keys: DeviceKeys,
}

/// What a successful enrollment returns.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The device certificate, PEM.
    pub certificate_pem: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The directory's libp2p addresses.
    pub p2p_addrs: Vec<String>,
}

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name exists and the password is not its password.
    #[error("wrong password for an enrolled name")]
    InvalidCredentials,
    /// Another enrollment created the same new name first.
    #[error("the name was created by a concurrent enrollment")]
    UsernameTaken,
    /// The device key is bound to another name.
    #[error("the device key belongs to another name")]
    KeyInUse,
    /// Too many password checks wait already: retry in a moment.
    #[error("the password checks are busy")]
    Busy,
    /// Too many wrong passwords for this name: its password is not checked for this long.
    #[error("the name is locked after wrong passwords")]
    LockedOut(Duration),
    /// Storage, hashing or signing failed; the detail is for the log only.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl From<crate::registry::Error> for Error {
    fn from(e: crate::registry::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The enrollment service.
#[derive(Debug, Clone)]
pub struct Service {
    ca: Arc<Ca>,
    registry: Registry,
    p2p_addrs: Vec<String>,
    lockouts: Arc<Lockouts>,
}

/// Names with a wrong-password record at most (each a few dozen bytes).
const LOCKOUT_NAMES: usize = 100_000;

impl Service {
    /// Wires the CA, the registry and the addresses handed to enrolled peers.
    #[must_use]
    pub fn new(ca: Arc<Ca>, registry: Registry, p2p_addrs: Vec<String>) -> Self {
        Self {
            ca,
            registry,
            p2p_addrs,
            lockouts: Arc::new(Lockouts::new(LOCKOUT_NAMES)),
        }
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        self.ca.certificate_pem()
    }

    /// Enrolls a device: the first enrollment of a name sets its password; later ones must give
    /// it. Answers only once everything is flushed to disk.
    ///
    /// Order of the checks, so that a refusal that does not depend on whether the name exists
    /// cannot reveal it: the API has already refused a bad name, password length or CSR before
    /// calling; here the device key's binding (a read of the key table, not of the user) comes
    /// next; only then is the user read, and the password checked (Argon2id) or set (Argon2id
    /// too, so both paths pay one hash).
    ///
    /// Cancel safety: dropping the future may leave a user created without a certificate, which
    /// is harmless (the same password enrolls it later).
    ///
    /// # Errors
    /// [`Error`]; no certificate is issued on failure.
    #[tracing::instrument(name = "ca.enroll", skip_all, fields(user = %request.user), err(Display, level = "info"))]
    pub async fn enroll(&self, request: Request) -> Result<Enrolled, Error> {
        let Request {
            user,
            password,
            keys,
        } = request;
        if self
            .registry
            .key_owner(&keys.ed25519)?
            .is_some_and(|owner| owner != user.as_str())
        {
            return Err(Error::KeyInUse);
        }
        let now = OffsetDateTime::now_utc();
        match self.registry.user(&user)? {
            Some(existing) => {
                let attempt = self
                    .lockouts
                    .begin(user.as_str(), Instant::now())
                    .map_err(Error::LockedOut)?;
                if verify(password, existing.password_hash).await? {
                    attempt.succeeded();
                } else {
                    attempt.failed(Instant::now());
                    tracing::info!(user = %user, "wrong password");
                    return Err(Error::InvalidCredentials);
                }
            }
            None => {
                let record = User {
                    password_hash: hash(password).await?,
                    created_at: rfc3339(now),
                };
                if !self.registry.create_user(&user, &record)? {
                    return Err(Error::UsernameTaken);
                }
                tracing::info!(user = %user, "new user");
            }
        }
        if self.registry.bind_key(&keys.ed25519, &user)? == Binding::Taken {
            return Err(Error::KeyInUse);
        }
        let subject = Subject::User {
            name: user.clone(),
            x25519: keys.x25519,
        };
        let issued = self
            .ca
            .issue(&subject, &keys.ed25519, now)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.registry.record_certificate(
            &issued.serial,
            &IssuedRecord {
                username: user.to_string(),
                certificate_pem: issued.pem.clone(),
                issued_at: rfc3339(now),
            },
        )?;
        self.registry.flush().await?;
        tracing::info!(user = %user, serial = %issued.serial, "issued a certificate");
        Ok(Enrolled {
            certificate_pem: issued.pem,
            ca_pem: self.ca.certificate_pem().to_owned(),
            p2p_addrs: self.p2p_addrs.clone(),
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
