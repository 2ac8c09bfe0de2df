//! The home folder's layout, named in this one place, and opening its store.
//!
//! ```text
//! <home>/                 0700
//!   store/                the encrypted message store (parley-store), with the identity:
//!                         keys, certificate, CA, the rendezvous's addresses
//!     store.key           the store's key, when no passphrase protects it
//!   control.sock          the daemon's control socket (0600), while it runs
//!   outgoing/             the desktop's files picked for sending, until sealed (0700)
//! ```

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use parley_store::{Store, Unlock};

use crate::{PeerError, blocking};

/// The store's folder.
const STORE: &str = "store";
/// The store's key file, inside its folder (written by `parley-store` when no passphrase is
/// chosen).
const KEY_FILE: &str = "store.key";
/// The daemon's control socket.
const CONTROL_SOCKET: &str = "control.sock";
/// Files picked in the window for sending.
const OUTGOING: &str = "outgoing";

/// A home folder: one device's keys, store and sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home(PathBuf);

impl Home {
    /// The home at `path` (nothing is created).
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self(path)
    }

    /// `~/.parley`, when `HOME` is set.
    #[must_use]
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".parley"))
    }

    /// The folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The store's folder.
    #[must_use]
    pub fn store(&self) -> PathBuf {
        self.0.join(STORE)
    }

    /// The store's key file (present only when no passphrase protects the store).
    #[must_use]
    pub fn key_file(&self) -> PathBuf {
        self.store().join(KEY_FILE)
    }

    /// The daemon's control socket.
    #[must_use]
    pub fn control_socket(&self) -> PathBuf {
        self.0.join(CONTROL_SOCKET)
    }

    /// Where the window keeps files picked for sending.
    #[must_use]
    pub fn outgoing(&self) -> PathBuf {
        self.0.join(OUTGOING)
    }

    /// Whether the home has a store (it may still be locked, or not enrolled).
    #[must_use]
    pub fn has_store(&self) -> bool {
        Store::exists(&self.store())
    }

    /// Creates the folder (mode 0700) if it is missing.
    ///
    /// # Errors
    /// [`PeerError::HomeUnavailable`].
    pub fn create(&self) -> Result<(), PeerError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|source| PeerError::HomeUnavailable {
                home: self.0.clone(),
                source,
            })
    }

    /// Opens the store, creating it with `unlock` when there is none, off the async workers.
    ///
    /// # Errors
    /// The store's own error (in use, wrong passphrase, unreadable); [`PeerError`] has a
    /// `From` for the window's words.
    pub fn open(&self, unlock: Unlock) -> Result<Store, parley_store::Error> {
        let path = self.store();
        blocking(|| Store::open(&path, unlock))
    }
}

impl From<parley_store::Error> for PeerError {
    fn from(e: parley_store::Error) -> Self {
        match e {
            parley_store::Error::InUse { path } => PeerError::HomeInUse {
                home: path.parent().map_or(path.clone(), Path::to_owned),
            },
            parley_store::Error::WrongPassphrase => PeerError::WrongPassphrase,
            other => PeerError::Open(other),
        }
    }
}
