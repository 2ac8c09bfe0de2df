//! Encrypted attachment files next to the database, behind the
//! [`AttachmentFiles`](parley_usecases::ports::AttachmentFiles) port.
//!
//! | path                                       | what                                           |
//! |--------------------------------------------|------------------------------------------------|
//! | `attachments/<record id>-<index>`          | one attachment, encrypted under its own key    |
//! | `attachments/incoming/<N(sender)>-<sha256>`| received ahead of its envelope, not yet claimed|
//!
//! An attachment's key lives only inside its message's record, which is sealed under the
//! message's own key: when the message expires its key slot is zeroed and the files go, and
//! even a copy of a file left on the disk's free blocks cannot be decrypted. Files travel and
//! rest in the same encrypted form (`parley-envelope`'s chunked AES-256-GCM), so receiving is
//! a rename, and nothing here ever holds plaintext except [`Store::save`]'s output file, which
//! the user asked for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parley_domain::{Attachment, AttachmentKey, AttachmentRef, Digest, MessageId, Username};
use parley_envelope::{AttachmentError as CipherError, open_attachment, seal_attachment};
use parley_usecases::ports::{AttachmentError, AttachmentFiles, AttachmentSource, StoreError};

use crate::keyring::sync_folder;
use crate::{Store, records};

/// The folder of attachments inside the store.
const FOLDER: &str = "attachments";
/// The staging folder inside it.
const INCOMING: &str = "incoming";
/// The default cap of one attachment, in bytes of plaintext.
pub const DEFAULT_ATTACHMENT_LIMIT: u64 = 64 * 1024 * 1024;

/// Numbers temporary files, so two writers never share one.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

fn temp_name(near: &Path) -> PathBuf {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    let name = near
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    near.with_file_name(format!(".{name}.partial-{}-{n}", std::process::id()))
}

fn io_error(action: &str, e: &io::Error) -> AttachmentError {
    AttachmentError::Store(StoreError::Unavailable(format!("could not {action}: {e}")))
}

/// Staged attachments whose envelope never came are deleted after this long.
const STAGED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Store {
    /// Deletes what a crash or an envelope that never came left behind: half-written files
    /// (`.…partial-…`) and staged attachments older than a day. Best effort: a file that
    /// cannot be deleted now is tried again at the next open.
    pub(crate) fn sweep_attachments(&self, now: std::time::SystemTime) {
        let folder = self.path.join(FOLDER);
        let stale = |path: &Path, older_than: std::time::Duration| {
            fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age >= older_than))
        };
        for (dir, older_than, partial_only) in [
            (folder.clone(), std::time::Duration::ZERO, true),
            (folder.join(INCOMING), STAGED_FOR, false),
        ] {
            let Ok(listing) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let partial =
                    name.starts_with('.') && name.contains(".partial-") || name.contains(".part-");
                if !entry.file_type().is_ok_and(|t| t.is_file()) || (partial_only && !partial) {
                    continue;
                }
                if partial || stale(&path, older_than) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Sets the largest attachment (plaintext bytes) this device sends; received ones are
    /// capped by the transport at the encrypted size of this many bytes.
    pub fn set_attachment_limit(&self, bytes: u64) {
        self.attachment_limit.store(bytes, Ordering::Relaxed);
    }

    /// The largest attachment this device sends, in plaintext bytes.
    #[must_use]
    pub fn attachment_limit(&self) -> u64 {
        self.attachment_limit.load(Ordering::Relaxed)
    }

    /// Where the transport stages an attachment `from` sent with this digest, for
    /// [`AttachmentFiles::claim`] to find. The sender's name appears only as a keyed hash.
    #[must_use]
    pub fn staging_path(&self, from: &Username, sha256: &Digest) -> PathBuf {
        let name = records::record_id(&self.keys.name(from));
        self.path
            .join(FOLDER)
            .join(INCOMING)
            .join(format!("{name}-{sha256}"))
    }

    fn attachment_path(&self, owner: &Username, id: &MessageId, index: usize) -> PathBuf {
        self.path
            .join(FOLDER)
            .join(format!("{}-{index}", self.record_id(owner, id)))
    }

    fn seal_into(
        &self,
        source: &AttachmentSource,
        target: &Path,
    ) -> Result<Attachment, AttachmentError> {
        let unreadable = || AttachmentError::Unreadable(source.path.display().to_string());
        let file = File::open(&source.path).map_err(|_| unreadable())?;
        let size = file.metadata().map_err(|_| unreadable())?.len();
        let max = self.attachment_limit();
        if size > max {
            return Err(AttachmentError::TooLarge {
                name: source.name.clone(),
                size,
                max,
            });
        }
        let folder = target.parent().unwrap_or(&self.path);
        fs::create_dir_all(folder).map_err(|e| io_error("create the attachments folder", &e))?;
        let temp = temp_name(target);
        let written = (|| {
            let out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            let key = parley_envelope::new_attachment_key();
            let mut writer = BufWriter::new(out);
            let sealed = seal_attachment(&key, BufReader::new(file), &mut writer)?;
            writer.flush()?;
            writer.get_ref().sync_all()?;
            Ok::<_, io::Error>((key, sealed))
        })();
        let (key, sealed) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(if e.kind() == io::ErrorKind::NotFound {
                    unreadable()
                } else {
                    io_error("write the encrypted attachment", &e)
                });
            }
        };
        fs::rename(&temp, target).map_err(|e| io_error("keep the encrypted attachment", &e))?;
        sync_folder(folder).map_err(|e| io_error("sync the attachments folder", &e))?;
        Ok(Attachment {
            meta: AttachmentRef {
                name: source.name.clone(),
                size: sealed.size,
                sha256: sealed.sha256,
            },
            key: AttachmentKey {
                key,
                plain_sha256: sealed.plain_sha256,
            },
        })
    }
}

impl AttachmentFiles for Store {
    fn seal_file(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        source: &AttachmentSource,
    ) -> Result<Attachment, AttachmentError> {
        self.seal_into(source, &self.attachment_path(owner, id, index))
    }

    fn locator(&self, owner: &Username, id: &MessageId, index: usize) -> String {
        self.attachment_path(owner, id, index)
            .to_string_lossy()
            .into_owned()
    }

    fn discard(&self, owner: &Username, id: &MessageId, count: usize) {
        for index in 0..count {
            let _ = fs::remove_file(self.attachment_path(owner, id, index));
        }
    }

    fn claim(
        &self,
        from: &Username,
        id: &MessageId,
        index: usize,
        meta: &AttachmentRef,
    ) -> Result<bool, AttachmentError> {
        let target = self.attachment_path(from, id, index);
        let size_is = |path: &Path| fs::metadata(path).is_ok_and(|m| m.len() == meta.size);
        if size_is(&target) {
            return Ok(true); // claimed before: a retry of the same envelope
        }
        let staged = self.staging_path(from, &meta.sha256);
        if !size_is(&staged) {
            return Ok(false);
        }
        fs::rename(&staged, &target).map_err(|e| io_error("keep a received attachment", &e))?;
        if let Some(folder) = target.parent() {
            sync_folder(folder).map_err(|e| io_error("sync the attachments folder", &e))?;
        }
        Ok(true)
    }

    fn save(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
        attachment: &Attachment,
        dest: &Path,
    ) -> Result<u64, AttachmentError> {
        if dest.exists() {
            return Err(AttachmentError::Destination(format!(
                "{} exists already; choose another name (nothing was overwritten)",
                dest.display()
            )));
        }
        let sealed = File::open(self.attachment_path(owner, id, index))
            .map_err(|_| AttachmentError::Damaged)?;
        let temp = temp_name(dest);
        let cannot_write = |e: &io::Error| {
            AttachmentError::Destination(format!("{} cannot be written: {e}", dest.display()))
        };
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| cannot_write(&e))?;
        let mut writer = BufWriter::new(out);
        let opened = open_attachment(
            &attachment.key.key,
            BufReader::new(sealed),
            &mut writer,
            &attachment.key.plain_sha256,
        );
        let finished = opened.and_then(|n| {
            writer.flush().map_err(CipherError::Io)?;
            writer.get_ref().sync_all().map_err(CipherError::Io)?;
            Ok(n)
        });
        drop(writer);
        let written = match finished {
            Ok(n) => n,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(match e {
                    CipherError::Io(e) => cannot_write(&e),
                    _ => AttachmentError::Damaged,
                });
            }
        };
        // A hard link fails when `dest` appeared meanwhile: never overwrite.
        let linked = fs::hard_link(&temp, dest);
        let _ = fs::remove_file(&temp);
        linked.map_err(|e| cannot_write(&e))?;
        Ok(written)
    }

    /// Written to a temporary name, synced, then renamed into the staging path, as a file
    /// received ahead of its envelope would be.
    fn stage_file(
        &self,
        from: &Username,
        meta: &AttachmentRef,
        bytes: &[u8],
    ) -> Result<bool, AttachmentError> {
        if u64::try_from(bytes.len()).ok() != Some(meta.size)
            || parley_envelope::digest(bytes) != meta.sha256
        {
            return Ok(false);
        }
        let target = self.staging_path(from, &meta.sha256);
        let folder = target.parent().unwrap_or(&self.path);
        fs::create_dir_all(folder).map_err(|e| io_error("create the attachments folder", &e))?;
        let temp = temp_name(&target);
        let written = (|| {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            out.write_all(bytes)?;
            out.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error("keep an attachment from the mailbox", &e));
        }
        fs::rename(&temp, &target)
            .map_err(|e| io_error("keep an attachment from the mailbox", &e))?;
        Ok(true)
    }

    fn encrypted(
        &self,
        owner: &Username,
        id: &MessageId,
        index: usize,
    ) -> Result<Vec<u8>, AttachmentError> {
        fs::read(self.attachment_path(owner, id, index)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                AttachmentError::Damaged
            } else {
                io_error("read an encrypted attachment", &e)
            }
        })
    }
}
