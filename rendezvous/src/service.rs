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
    /// A second-factor code, as typed; required when the name has the second factor on.
    pub totp: Option<String>,
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
    /// The name has the second factor on and the request carries no code.
    #[error("the name needs a second-factor code")]
    TotpRequired,
    /// The code is not a current one, or was used already.
    #[error("wrong or used second-factor code")]
    InvalidTotp,
    /// The second factor is on already (enabling it again would replace the secret).
    #[error("the second factor is on already")]
    TotpAlreadyOn,
    /// The second factor is off (there is nothing to disable).
    #[error("the second factor is off")]
    TotpOff,
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

    /// The same service (sharing its lockouts), answering `p2p_addrs` to enrollments: the
    /// directory's addresses are known only once it listens, and the directory's account
    /// requests need the service before that.
    #[must_use]
    pub fn with_p2p_addrs(mut self, p2p_addrs: Vec<String>) -> Self {
        self.p2p_addrs = p2p_addrs;
        self
    }

    /// The registry it writes.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
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
            totp,
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
                    // The password is right: the second factor, when on, decides. A request
                    // without a code counts neither way, so that it cannot clear the wrong
                    // codes counted against the name.
                    match self.use_code(&user, totp.as_deref(), |record| record) {
                        Ok(()) => attempt.succeeded(),
                        Err(Error::InvalidTotp) => {
                            attempt.failed(Instant::now());
                            tracing::info!(user = %user, "wrong second-factor code");
                            return Err(Error::InvalidTotp);
                        }
                        Err(e) => return Err(e),
                    }
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
                    totp: None,
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

impl Service {
    /// Checks `raw` against the second factor of `user` and, when it holds, records its step
    /// as used and writes `then` of the record, in one compare-and-swap: of two requests with
    /// one code, one wins. `Ok` at once when the second factor is off. Does not flush.
    fn use_code(
        &self,
        user: &Username,
        raw: Option<&str>,
        then: impl Fn(User) -> User,
    ) -> Result<(), Error> {
        // A lost race reads again; a code can win only once, so this ends.
        for _ in 0..8 {
            let (record, stored) = self
                .registry
                .user_as_stored(user)?
                .ok_or_else(|| Error::Internal(format!("{user} vanished from the registry")))?;
            let Some(totp) = record.totp.clone() else {
                return Ok(());
            };
            let code = raw.ok_or(Error::TotpRequired)?;
            let code =
                parley_domain::totp::TotpCode::parse(code).map_err(|_| Error::InvalidTotp)?;
            let step = match self.ca.totp().check(user, &totp, code, unix_now()) {
                Ok(step) => step,
                Err(Some(_)) => return Err(Error::InvalidTotp),
                Err(None) => {
                    return Err(Error::Internal(format!(
                        "the second-factor secret of {user} does not open with this CA key"
                    )));
                }
            };
            let used = User {
                totp: Some(crate::totp::TotpRecord {
                    last_step: Some(step),
                    ..totp
                }),
                ..record
            };
            if self.registry.replace_user(user, &stored, &then(used))? {
                return Ok(());
            }
        }
        Err(Error::Busy)
    }

    /// Turns the second factor of `user` on with a fresh secret and makes it durable; returns
    /// the secret in base32, to show once. Blocks (a flush).
    ///
    /// # Errors
    /// [`Error::TotpAlreadyOn`] (a second `enable` must not silently replace the secret the
    /// user's app holds), [`Error::Internal`].
    pub fn totp_enable(&self, user: &Username) -> Result<String, Error> {
        let (record, stored) = self
            .registry
            .user_as_stored(user)?
            .ok_or_else(|| Error::Internal(format!("{user} is not enrolled")))?;
        if record.totp.is_some() {
            return Err(Error::TotpAlreadyOn);
        }
        let new = self.ca.totp().new_secret(user);
        let on = User {
            totp: Some(new.record),
            ..record
        };
        if !self.registry.replace_user(user, &stored, &on)? {
            return Err(Error::Busy);
        }
        self.registry.flush_blocking()?;
        tracing::info!(user = %user, "second factor on");
        Ok(new.base32)
    }

    /// Turns the second factor of `user` off, given a current code; wrong codes count toward
    /// the name's lockout as wrong passwords do. Blocks (a flush).
    ///
    /// # Errors
    /// [`Error::TotpOff`], [`Error::InvalidTotp`], [`Error::LockedOut`], [`Error::Internal`].
    pub fn totp_disable(&self, user: &Username, code: &str) -> Result<(), Error> {
        if self
            .registry
            .user(user)?
            .is_none_or(|record| record.totp.is_none())
        {
            return Err(Error::TotpOff);
        }
        let attempt = self
            .lockouts
            .begin(user.as_str(), Instant::now())
            .map_err(Error::LockedOut)?;
        match self.use_code(user, Some(code), |record| User {
            totp: None,
            ..record
        }) {
            Ok(()) => {
                attempt.succeeded();
                self.registry.flush_blocking()?;
                tracing::info!(user = %user, "second factor off");
                Ok(())
            }
            Err(Error::InvalidTotp) => {
                attempt.failed(Instant::now());
                tracing::info!(user = %user, "wrong second-factor code");
                Err(Error::InvalidTotp)
            }
            Err(e) => Err(e),
        }
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
