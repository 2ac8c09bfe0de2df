//! Enrollment as the rendezvous decides it, without HTTP: check the password (or set it for a
//! new name), bind the device key to the name, issue the certificate, persist, answer.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
use parley_domain::{Password, Username};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ca::{Ca, Subject};
use crate::csr::DeviceKeys;
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
}

impl Service {
    /// Wires the CA, the registry and the addresses handed to enrolled peers.
    #[must_use]
    pub fn new(ca: Arc<Ca>, registry: Registry, p2p_addrs: Vec<String>) -> Self {
        Self {
            ca,
            registry,
            p2p_addrs,
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
                if !verify(password, existing.password_hash).await? {
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

/// Argon2id runs on this many long-lived threads, no more: each hash needs 19 MiB, and the
/// allocator keeps a thread's memory for that thread, so a bounded set of threads bounds the
/// rendezvous's memory (and a CPU-bound job gains nothing from more threads than cores).
const HASHING_THREADS: usize = 2;
/// Hashing jobs waiting; more wait in their requests (backpressure, not memory).
const HASHING_QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' queue, started at first use.
fn hashing_queue() -> &'static tokio::sync::mpsc::Sender<Job> {
    static QUEUE: std::sync::OnceLock<tokio::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Job>(HASHING_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for n in 0..HASHING_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        tx
    })
}

/// Runs `work` on a hashing thread.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    hashing_queue()
        .send(Box::new(move || {
            let _ = tx.send(work());
        }))
        .await
        .map_err(|_| Error::Internal("the hashing threads stopped".into()))?;
    rx.await
        .map_err(|_| Error::Internal("a hashing job was lost".into()))?
}

thread_local! {
    /// Each hashing thread's Argon2 memory, allocated once and reused: freed and allocated
    /// again for every hash, 19 MiB blocks stay with the allocator (its threshold for giving
    /// large blocks back to the system rises after the first), and the rendezvous grows by
    /// that much per thread that ever hashed.
    static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2id with the crate's default parameters over the calling thread's reused memory.
fn argon2_raw(password: &[u8], salt: &[u8]) -> Result<[u8; 32], Error> {
    let params = argon2::Params::DEFAULT;
    let mut out = [0u8; 32];
    MEMORY
        .with_borrow_mut(|memory| {
            memory.resize(params.block_count(), argon2::Block::default());
            Argon2::default().hash_password_into_with_memory(
                password,
                salt,
                &mut out,
                &mut memory[..],
            )
        })
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))?;
    Ok(out)
}

/// The start of the PHC string of an Argon2id hash with the default parameters.
fn phc_prefix() -> String {
    let p = argon2::Params::DEFAULT;
    format!(
        "$argon2id$v=19$m={},t={},p={}$",
        p.m_cost(),
        p.t_cost(),
        p.p_cost()
    )
}

/// The PHC string of an Argon2id hash with the default parameters.
fn phc(salt: &[u8], hash: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    format!("{}{}${}", phc_prefix(), b64.encode(salt), b64.encode(hash))
}

/// Argon2id with the crate's default parameters and a fresh 16-byte salt, on a hashing thread.
async fn hash(password: Password) -> Result<String, Error> {
    on_hashing_thread(move || {
        let mut salt = [0u8; 16];
        crate::ca::fill_random(&mut salt);
        let hash = argon2_raw(password.expose().as_bytes(), &salt)?;
        Ok(phc(&salt, &hash))
    })
    .await
}

/// Checks `password` against a stored PHC string: with the reused memory when the string has
/// the default parameters (every hash this rendezvous makes), else with the crate's own check.
async fn verify(password: Password, stored: String) -> Result<bool, Error> {
    on_hashing_thread(move || {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let ours = stored
            .strip_prefix(&phc_prefix())
            .and_then(|rest| rest.split_once('$'))
            .and_then(|(salt, hash)| Some((b64.decode(salt).ok()?, b64.decode(hash).ok()?)))
            .filter(|(_, hash)| hash.len() == 32);
        if let Some((salt, expected)) = ours {
            let got = argon2_raw(password.expose().as_bytes(), &salt)?;
            // Constant time: every byte is compared whatever the first difference.
            let diff = got
                .iter()
                .zip(&expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            return Ok(diff == 0);
        }
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| Error::Internal(format!("stored hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod hashing_tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    #[tokio::test]
    async fn hashes_are_standard_phc_strings_both_ways() {
        let ours = hash(Password::new("pw".into())).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        let theirs = PasswordHasher::<PasswordHash>::hash_password(&Argon2::default(), b"pw")
            .expect("hash")
            .to_string();
        for stored in [ours, theirs] {
            assert!(
                verify(Password::new("pw".into()), stored.clone())
                    .await
                    .expect("verify")
            );
            assert!(
                !verify(Password::new("pv".into()), stored)
                    .await
                    .expect("verify")
            );
        }
    }
}
