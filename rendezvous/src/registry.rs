//! The rendezvous's records in sled: users (name → password hash), device keys (Ed25519 key →
//! name), issued certificates (serial → certificate) and, for the key look-up of someone never
//! met, each name's newest certificate (name → DER).
//!
//! Creating a user and binding a key use `compare_and_swap` from empty, so of two concurrent
//! writers exactly one wins. Writes are durable only after [`Registry::flush`].

use std::path::Path;

use parley_domain::Username;
use parley_usecases::ports::{CertificateBook, MailboxStoreError};
use serde::{Deserialize, Serialize};
use sled::Transactional;

/// Name of the sled folder inside the data folder.
pub const DB_DIR: &str = "registry";

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// sled could not read or write, or a record is corrupt.
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Unavailable(format!("corrupt record: {e}"))
    }
}

/// An enrolled user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Argon2id PHC string.
    pub password_hash: String,
    /// RFC 3339 time of the first enrollment.
    pub created_at: String,
    /// The second factor, when on (absent in records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<crate::totp::TotpRecord>,
}

/// A certificate as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Whom it names.
    pub username: String,
    /// The certificate.
    pub certificate_pem: String,
    /// RFC 3339 time of issue.
    pub issued_at: String,
}

/// What binding a device key to a user found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The key is (now or already) bound to this user.
    Bound,
    /// The key belongs to another user.
    Taken,
}

/// The sled-backed registry. Cheap to clone (sled trees are shared handles).
#[derive(Clone)]
pub struct Registry {
    db: sled::Db,
    users: sled::Tree,
    device_keys: sled::Tree,
    certificates: sled::Tree,
    newest_certificates: sled::Tree,
    device_lists: sled::Tree,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens (or creates) the registry in `dir`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when sled cannot open it (for example, another process holds it).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let db = sled::open(dir)?;
        let registry = Self {
            users: db.open_tree("users")?,
            device_keys: db.open_tree("device_keys")?,
            certificates: db.open_tree("certificates")?,
            newest_certificates: db.open_tree("newest_certificates")?,
            device_lists: db.open_tree("device_lists")?,
            db,
        };
        // Every certificate recorded since the index exists is indexed with it, so an empty
        // index beside recorded certificates is a registry written before the index.
        if registry.newest_certificates.is_empty() && !registry.certificates.is_empty() {
            registry.index_newest_certificates()?;
        }
        Ok(registry)
    }

    /// Indexes each name's newest certificate from the certificates recorded, once.
    fn index_newest_certificates(&self) -> Result<(), Error> {
        let mut newest: std::collections::HashMap<String, IssuedRecord> =
            std::collections::HashMap::new();
        for record in &self.certificates {
            let (_, value) = record?;
            let issued: IssuedRecord = serde_json::from_slice(&value)?;
            match newest.get(&issued.username) {
                Some(held) if held.issued_at > issued.issued_at => {}
                _ => {
                    newest.insert(issued.username.clone(), issued);
                }
            }
        }
        for (name, issued) in newest {
            self.newest_certificates
                .insert(name.as_bytes(), der_of(&issued.certificate_pem)?)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The user called `name`, if enrolled.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn user(&self, name: &Username) -> Result<Option<User>, Error> {
        match self.users.get(name.as_str())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Creates `name` with `user` unless it exists. `Ok(false)` when someone else created it
    /// first.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn create_user(&self, name: &Username, user: &User) -> Result<bool, Error> {
        let value = serde_json::to_vec(user)?;
        Ok(self
            .users
            .compare_and_swap(name.as_str(), None::<&[u8]>, Some(value))?
            .is_ok())
    }

    /// The user called `name`, if enrolled, with the bytes its record is stored as (for
    /// [`Registry::replace_user`]).
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn user_as_stored(&self, name: &Username) -> Result<Option<(User, Vec<u8>)>, Error> {
        match self.users.get(name.as_str())? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes.to_vec()))),
            None => Ok(None),
        }
    }

    /// Replaces the record of `name` with `new` only if it is still stored as `stored` (the
    /// bytes [`Registry::user_as_stored`] read): `Ok(false)` when another write came between,
    /// and the caller reads again. What makes a second-factor code single-use even when two
    /// requests carry it at once.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn replace_user(&self, name: &Username, stored: &[u8], new: &User) -> Result<bool, Error> {
        let new = serde_json::to_vec(new)?;
        Ok(self
            .users
            .compare_and_swap(name.as_str(), Some(stored), Some(new))?
            .is_ok())
    }

    /// Who holds the device key `ed25519`, if anyone.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn key_owner(&self, ed25519: &[u8; 32]) -> Result<Option<String>, Error> {
        Ok(self
            .device_keys
            .get(ed25519)?
            .map(|owner| String::from_utf8_lossy(&owner).into_owned()))
    }

    /// Binds `ed25519` to `name` unless another user holds it.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn bind_key(&self, ed25519: &[u8; 32], name: &Username) -> Result<Binding, Error> {
        let owner = name.as_str().as_bytes();
        match self
            .device_keys
            .compare_and_swap(ed25519, None::<&[u8]>, Some(owner))?
        {
            Ok(()) => Ok(Binding::Bound),
            Err(clash) if clash.current.as_deref() == Some(owner) => Ok(Binding::Bound),
            Err(_) => Ok(Binding::Taken),
        }
    }

    /// Records an issued certificate under its serial, and as the newest of its user.
    ///
    /// # Errors
    /// [`Error::Unavailable`], also when the record's certificate is not PEM.
    pub fn record_certificate(&self, serial: &str, record: &IssuedRecord) -> Result<(), Error> {
        let value = serde_json::to_vec(record)?;
        let der = der_of(&record.certificate_pem)?;
        (&self.certificates, &self.newest_certificates)
            .transaction(|(certificates, newest)| {
                certificates.insert(serial.as_bytes(), value.as_slice())?;
                newest.insert(record.username.as_bytes(), der.as_slice())?;
                Ok(())
            })
            .map_err(
                |e: sled::transaction::TransactionError<sled::Error>| match e {
                    sled::transaction::TransactionError::Abort(e)
                    | sled::transaction::TransactionError::Storage(e) => Error::from(e),
                },
            )?;
        Ok(())
    }

    /// The newest certificate issued to `name` (DER), from the index (one read: a look-up of
    /// a name nobody enrolled costs no more than one of a name enrolled). A registry written
    /// before the index is indexed from its certificates when opened.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn newest_certificate(&self, name: &Username) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .newest_certificates
            .get(name.as_str())?
            .map(|der| der.to_vec()))
    }

    /// `name`'s signed device list as published (`DeviceList::encode`'s bytes), if any.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn device_list(&self, name: &Username) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .device_lists
            .get(name.as_str())?
            .map(|bytes| bytes.to_vec()))
    }

    /// Replaces `name`'s device list with `new` if it is still `held` (`None`: none yet);
    /// `false` when another write came first. Not flushed.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn replace_device_list(
        &self,
        name: &Username,
        held: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, Error> {
        Ok(self
            .device_lists
            .compare_and_swap(name.as_str(), held, Some(new))?
            .is_ok())
    }

    /// Makes every write so far durable.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn flush(&self) -> Result<(), Error> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`Registry::flush`], blocking the thread (for callers on a blocking thread).
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn flush_blocking(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }
}

/// The DER inside a PEM certificate.
fn der_of(certificate_pem: &str) -> Result<Vec<u8>, Error> {
    pem::parse(certificate_pem)
        .map(|p| p.contents().to_vec())
        .map_err(|e| Error::Unavailable(format!("corrupt record: {e}")))
}

impl CertificateBook for Registry {
    fn certificate_of(&self, user: &Username) -> Result<Option<Vec<u8>>, MailboxStoreError> {
        self.newest_certificate(user)
            .map_err(|e| MailboxStoreError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> Username {
        Username::parse(raw).expect("valid literal")
    }

    fn user(hash: &str) -> User {
        User {
            password_hash: hash.into(),
            created_at: "2026-11-22T00:00:00Z".into(),
            totp: None,
        }
    }

    #[test]
    fn a_name_is_created_once_and_a_key_bound_to_one_user() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open(dir.path()).expect("open");
        assert!(
            registry
                .create_user(&name("bob"), &user("h1"))
                .expect("create")
        );
        assert!(
            !registry
                .create_user(&name("bob"), &user("h2"))
                .expect("create again")
        );
        assert_eq!(
            registry
                .user(&name("bob"))
                .expect("read")
                .map(|u| u.password_hash),
            Some("h1".into())
        );
        assert_eq!(
            registry.bind_key(&[1; 32], &name("bob")).expect("bind"),
            Binding::Bound
        );
        assert_eq!(
            registry
                .bind_key(&[1; 32], &name("bob"))
                .expect("bind again"),
            Binding::Bound
        );
        assert_eq!(
            registry.bind_key(&[1; 32], &name("eve")).expect("steal"),
            Binding::Taken
        );
        assert_eq!(
            registry.key_owner(&[1; 32]).expect("owner"),
            Some("bob".into())
        );
    }

    #[test]
    fn a_record_is_replaced_only_as_it_was_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open(dir.path()).expect("open");
        let bob = name("bob");
        let read = user("h1");
        assert!(registry.create_user(&bob, &read).expect("create"));
        let (_, stored) = registry.user_as_stored(&bob).expect("read").expect("bob");
        let first = User {
            totp: Some(crate::totp::TotpRecord {
                sealed: "s".into(),
                last_step: Some(1),
            }),
            ..read.clone()
        };
        let second = User {
            totp: Some(crate::totp::TotpRecord {
                sealed: "s".into(),
                last_step: Some(2),
            }),
            ..read.clone()
        };
        assert!(
            registry
                .replace_user(&bob, &stored, &first)
                .expect("replace")
        );
        assert!(
            !registry
                .replace_user(&bob, &stored, &second)
                .expect("replace"),
            "a write from a stale read loses"
        );
        let kept = registry.user(&bob).expect("read").expect("bob");
        assert_eq!(kept.totp.and_then(|t| t.last_step), Some(1));
        // A record written before the second factor existed, spaced as no release writes it,
        // reads as without it and is replaced as it is stored.
        registry
            .users
            .insert(
                "ann",
                br#"{ "created_at": "2026-11-22T00:00:00Z", "password_hash": "h" }"#.as_slice(),
            )
            .expect("insert");
        let (ann, stored) = registry
            .user_as_stored(&name("ann"))
            .expect("read")
            .expect("ann");
        assert_eq!(ann.totp, None);
        assert!(
            registry
                .replace_user(&name("ann"), &stored, &first)
                .expect("replace")
        );
    }

    fn issued(user: &str, der: &[u8], at: &str) -> IssuedRecord {
        IssuedRecord {
            username: user.into(),
            certificate_pem: crate::ca::pem_certificate(der),
            issued_at: at.into(),
        }
    }

    #[test]
    fn the_newest_certificate_of_a_name_is_found_with_or_without_the_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::open(dir.path()).expect("open");
        assert_eq!(
            registry.newest_certificate(&name("bob")).expect("read"),
            None
        );
        registry
            .record_certificate("01", &issued("bob", b"old", "2026-11-22T00:00:00Z"))
            .expect("record");
        registry
            .record_certificate("02", &issued("bob", b"new", "2026-11-23T00:00:00Z"))
            .expect("record");
        registry
            .record_certificate("03", &issued("eve", b"eve", "2026-11-24T00:00:00Z"))
            .expect("record");
        assert_eq!(
            registry.certificate_of(&name("bob")).expect("read"),
            Some(b"new".to_vec())
        );
        // A registry written before the index: the certificates tree alone, indexed when
        // opened.
        registry.newest_certificates.clear().expect("clear");
        registry.db.flush().expect("flush");
        assert_eq!(
            registry.newest_certificate(&name("bob")).expect("read"),
            None
        );
        drop(registry);
        let registry = Registry::open(dir.path()).expect("reopen");
        assert_eq!(
            registry.newest_certificate(&name("bob")).expect("read"),
            Some(b"new".to_vec())
        );
        assert_eq!(
            registry.newest_certificate(&name("eve")).expect("read"),
            Some(b"eve".to_vec())
        );
        assert_eq!(
            registry.newest_certificate(&name("ann")).expect("read"),
            None
        );
    }
}
