//! Files picked in the window: kept in the home until their message is sealed, and fresh
//! paths in the downloads folder for saved attachments.

use std::{
    collections::HashMap,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, PoisonError},
};

use parley_peer::{Attachment, view};

use crate::Error;

/// Files picked for sending, by token.
pub struct Staging {
    /// Where they wait (mode 0700).
    folder: PathBuf,
    max_attachment: u64,
    downloads: OnceLock<PathBuf>,
    staged: Mutex<HashMap<String, Attachment>>,
}

impl Staging {
    /// Files wait in `folder`, none larger than `max_attachment` bytes.
    pub fn new(folder: PathBuf, max_attachment: u64) -> Self {
        Self {
            folder,
            max_attachment,
            downloads: OnceLock::new(),
            staged: Mutex::new(HashMap::new()),
        }
    }

    /// Where saved attachments go (set once, when the window connects).
    pub fn set_downloads(&self, folder: PathBuf) {
        let _ = self.downloads.set(folder);
    }

    /// Deletes files left from a crash while sending: their messages either were sealed or
    /// never were.
    pub fn clear_leftovers(&self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }

    /// Keeps a file picked for sending until the message is sealed.
    ///
    /// # Errors
    /// [`Error`] when it is too large or cannot be written.
    pub fn stage(&self, name: &str, bytes: &[u8]) -> Result<view::Staged, Error> {
        let name = safe_file_name(name);
        if bytes.len() as u64 > self.max_attachment {
            return Err(Error::AttachmentTooLarge {
                name,
                max_mib: self.max_attachment / (1024 * 1024),
            });
        }
        let token = random_hex()?;
        let write = || -> std::io::Result<PathBuf> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.folder)?;
            let path = self.folder.join(&token);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut file, bytes)?;
            Ok(path)
        };
        let path = parley_peer::blocking(write).map_err(|source| Error::StagingFailed {
            name: name.clone(),
            source,
        })?;
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                token.clone(),
                Attachment {
                    name: name.clone(),
                    path,
                },
            );
        Ok(view::Staged {
            name,
            size: bytes.len(),
            token,
        })
    }

    /// The staged files named by `tokens`, to attach.
    ///
    /// # Errors
    /// [`Error::StagedGone`] for a token that names nothing (already sent, or never staged).
    pub fn files(&self, tokens: &[String]) -> Result<Vec<Attachment>, Error> {
        let staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .iter()
            .map(|token| staged.get(token).cloned().ok_or(Error::StagedGone))
            .collect()
    }

    /// Deletes staged files once their message is sealed and kept, or taken off the composer.
    pub fn unstage(&self, tokens: &[String]) {
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        for token in tokens {
            if let Some(s) = staged.remove(token) {
                let _ = std::fs::remove_file(s.path);
            }
        }
    }

    /// Deletes every staged file (the window closed).
    pub fn unstage_all(&self) {
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, s) in staged.drain() {
            let _ = std::fs::remove_file(s.path);
        }
    }

    /// A fresh path in the downloads folder (else `fallback`) for a file called `name`.
    pub fn download_path(&self, fallback: &Path, name: &str) -> PathBuf {
        let folder = self
            .downloads
            .get()
            .cloned()
            .unwrap_or_else(|| fallback.to_owned());
        let _ = std::fs::create_dir_all(&folder);
        fresh_path(&folder, &safe_file_name(name))
    }
}

/// A plain file name from one a peer or the window gave: no folders, no hidden file, no
/// control characters.
fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    if cleaned.is_empty() {
        "attachment".to_owned()
    } else {
        cleaned.chars().take(120).collect()
    }
}

/// `folder/name`, or `folder/stem (2).ext` and so on when taken.
fn fresh_path(folder: &Path, name: &str) -> PathBuf {
    let first = folder.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| folder.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn random_hex() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_given_file_name_cannot_leave_the_folder_or_hide() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(safe_file_name(".."), "attachment");
        assert_eq!(safe_file_name(""), "attachment");
        assert_eq!(safe_file_name(&"x".repeat(500)).len(), 120);
    }

    #[test]
    fn a_taken_download_name_gets_a_number() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(fresh_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        std::fs::write(dir.path().join("a.txt"), b"1").expect("write");
        assert_eq!(
            fresh_path(dir.path(), "a.txt"),
            dir.path().join("a (2).txt")
        );
        std::fs::write(dir.path().join("a (2).txt"), b"2").expect("write");
        assert_eq!(
            fresh_path(dir.path(), "a.txt"),
            dir.path().join("a (3).txt")
        );
        std::fs::write(dir.path().join("notes"), b"3").expect("write");
        assert_eq!(
            fresh_path(dir.path(), "notes"),
            dir.path().join("notes (2)")
        );
    }
}
