//! The peer's store: a [sled] database behind the use-case ports
//! [`MessageStore`](parley_usecases::ports::MessageStore) and
//! [`IdentityStore`](parley_usecases::ports::IdentityStore).
//!
//! One [`Store`] owns one folder (created with mode 0700). The `parley daemon` opens it and
//! keeps it open; a second process that tries to open the same folder gets
//! [`Error::InUse`] instead of a sled message.
//!
//! **Architecture invariant:** no sled type, and no serde record, appears in this crate's public
//! API. Domain types cross the edge through private serde mirrors (`records`), and every sled
//! error becomes [`StoreError::Unavailable`] with one sentence.
//!
//! # Layout
//!
//! | tree       | key                                                   | value                              |
//! |------------|-------------------------------------------------------|------------------------------------|
//! | `identity` | `device`                                              | JSON mirror of `DeviceIdentity`, keys and DER as hex |
//! | `messages` | contact username ‖ `0x00` ‖ local sequence (u64, big-endian) | JSON mirror of `StoredMessage` |
//! | `seen`     | sender username ‖ `0x00` ‖ 16 message-id bytes         | the `messages` key                 |
//! | `outbox`   | local sequence (u64, big-endian)                      | the `messages` key                 |
//! | `contacts` | contact username                                      | JSON mirror of `Contact` (pinned and pending keys, hex) |
//!
//! * The local sequence comes from sled's `generate_id`, which is unique and increasing across
//!   restarts (it may skip numbers). A prefix scan of `messages` on `contact ‖ 0x00` therefore
//!   yields one conversation oldest first; usernames never contain `0x00`, so `bob` and `bob2`
//!   cannot mix.
//! * `seen` makes `store_incoming` idempotent per (sender, id). Outgoing messages are recorded
//!   under their own sender (`message.from`, this device's user), which makes a repeated
//!   `append_outgoing` of the same message a no-op.
//! * `outbox` holds the outgoing messages still waiting for a receipt, in the order they were
//!   written.
//!
//! **The store is plaintext for now**: message text and the device's private keys are written
//! as they are, protected only by the folder's mode 0700. The encrypted store (key from a
//! passphrase through Argon2id, one key per message) comes with a later issue and will change
//! this layout.
//!
//! # Durability and atomicity
//!
//! Writes that touch several trees run in one sled transaction (sled serialises transactions),
//! so a crash never leaves a message without its `seen` or `outbox` entry. Every write method
//! calls sled's `flush()` before it returns `Ok`, so a receipt is only ever given for a flushed
//! message; `store_incoming` flushes even when it answers `Duplicate`, because the first copy
//! may have been written a moment earlier by another thread. On Linux sled's `flush()` uses
//! `sync_file_range`: a flushed message survives a killed process, not necessarily a power
//! cut.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod identity;
mod messages;
mod records;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use parley_usecases::ports::StoreError;

/// How often [`Store::open`] tries to take sled's file lock before it reports
/// [`Error::InUse`], and how long it waits between tries.
///
/// sled releases its lock on a background thread a moment *after* the last handle is dropped
/// (sled issue #1289), so closing and reopening a store in one process needs a short grace.
const LOCK_ATTEMPTS: u32 = 20;
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Failure to open a [`Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another open handle) holds the store's lock.
    #[error(
        "the store at {} is in use by another Parley process (is a daemon running?)",
        path.display()
    )]
    InUse {
        /// The folder that was asked for.
        path: PathBuf,
    },
    /// The folder could not be created, or the database could not be read (I/O error,
    /// corruption, a newer format).
    #[error("the store at {} could not be opened: {reason}", path.display())]
    Unavailable {
        /// The folder that was asked for.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The peer's durable store: identity, conversations and outbox in one sled database.
///
/// Cheap to share behind an `Arc`; every method takes `&self` and is safe to call from many
/// threads at once. Dropping the last handle closes the database.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    identity: sled::Tree,
    messages: sled::Tree,
    seen: sled::Tree,
    outbox: sled::Tree,
    contacts: sled::Tree,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in the folder `path`, creating the folder (mode 0700) and the database
    /// when they do not exist yet.
    ///
    /// When the store's lock is taken, this retries for about half a second (sled frees the
    /// lock of a just-dropped handle asynchronously) before it gives up.
    ///
    /// # Errors
    /// [`Error::InUse`] when another process or another open [`Store`] holds the folder;
    /// [`Error::Unavailable`] when the folder cannot be created or the database cannot be
    /// read.
    pub fn open(path: &Path) -> Result<Self, Error> {
        create_private_folder(path).map_err(|e| Error::Unavailable {
            path: path.to_owned(),
            reason: format!("the folder could not be created ({e})"),
        })?;
        let db = open_db(path)?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| Error::Unavailable {
                path: path.to_owned(),
                reason: format!("the {name} tree could not be opened ({e})"),
            })
        };
        let store = Self {
            identity: tree("identity")?,
            messages: tree("messages")?,
            seen: tree("seen")?,
            outbox: tree("outbox")?,
            contacts: tree("contacts")?,
            path: path.to_owned(),
            db,
        };
        tracing::debug!(path = %path.display(), "store opened");
        Ok(store)
    }

    /// The folder this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes everything written so far durable; the last step of every write method.
    fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| unavailable("flush the store to disk", e))
    }
}

fn open_db(path: &Path) -> Result<sled::Db, Error> {
    let mut attempt = 1;
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_conflict(&e) && attempt < LOCK_ATTEMPTS => {
                attempt += 1;
                thread::sleep(LOCK_RETRY_PAUSE);
            }
            Err(e) if is_lock_conflict(&e) => {
                return Err(Error::InUse {
                    path: path.to_owned(),
                });
            }
            Err(e) => {
                return Err(Error::Unavailable {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// sled 0.34 reports a held lock as an `Other` I/O error whose text names the `WouldBlock`
/// from `flock`; a later sled may pass the `WouldBlock` through. Both count.
fn is_lock_conflict(error: &sled::Error) -> bool {
    match error {
        sled::Error::Io(e) => {
            e.kind() == io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

#[cfg(unix)]
fn create_private_folder(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    // An existing folder keeps whatever mode it had: tighten it, the store is ours alone.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn create_private_folder(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

/// A sled failure, as the ports report it: one sentence naming what could not be done.
fn unavailable(action: &str, error: impl fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("could not {action}: {error}"))
}
