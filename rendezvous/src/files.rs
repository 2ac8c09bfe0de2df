//! Files in the data folder: a private folder, secret files created with mode 0600.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct Error {
    /// What was being done ("read", "create", …).
    pub action: &'static str,
    /// The file or folder.
    pub path: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: std::io::Error,
}

impl Error {
    pub(crate) fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Creates `dir` (and its parents) with mode 0700 when it does not exist yet.
///
/// # Errors
/// [`Error`] when the folder cannot be created.
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::new("create the folder", dir, e))
}

/// Writes a new secret file with mode 0600 from its creation on; refuses to overwrite.
///
/// # Errors
/// [`Error`] when the file exists or cannot be written.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::new("create", path, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::new("write", path, e))
}

/// Replaces a public file (a certificate) by writing a temporary file and renaming it.
///
/// # Errors
/// [`Error`] when the file cannot be written.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Error::new("write", path, e))
}

/// Reads a file, or `None` when it does not exist.
///
/// # Errors
/// [`Error`] for any other failure.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new("read", path, e)),
    }
}
