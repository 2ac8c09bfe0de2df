//! The store key: made at the first open, found again at every later one, and checked before
//! sled is opened, so a wrong passphrase or key file changes nothing on disk.
//!
//! `keyring.json` (plaintext, mode 0600) says how the key is made — from a passphrase through
//! Argon2id with its salt and cost, or read from `store.key` — and carries a check value:
//! AES-256-GCM under the store key of the empty text, with associated data
//! `parley/store/check/v1`. A key that opens the check value is the store's key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::crypto::{self, KEY_LEN, Key32};
use crate::{Error, KeySource, Passphrase, Unlock};

/// The keyring's file name in the store folder.
pub(crate) const KEYRING_FILE: &str = "keyring.json";
/// The key file's name in the store folder (key-file stores only).
pub(crate) const KEY_FILE: &str = "store.key";
/// Files sled makes in the folder: one of them without a keyring is a store this code did not
/// make (a plaintext store from before encryption), which it must not touch.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// The associated data of the check value.
const CHECK_AAD: &[u8] = b"parley/store/check/v1";
/// The keyring format this code writes and reads.
const VERSION: u32 = 1;
/// Bytes of the Argon2id salt.
const SALT_LEN: usize = 16;
/// Argon2id cost of a new store: argon2 0.6's defaults (19 MiB, 2 passes, 1 lane), the
/// OWASP minimum.
const M_KIB: u32 = Params::DEFAULT_M_COST;
const T_COST: u32 = Params::DEFAULT_T_COST;
const P_COST: u32 = Params::DEFAULT_P_COST;
/// The most a keyring may ask for (an altered keyring must not exhaust memory or time).
const MAX_M_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

#[derive(Serialize, Deserialize)]
struct KeyringRecord {
    version: u32,
    mode: ModeRecord,
    /// Passphrase stores only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfRecord>,
    /// Hex of `nonce ‖ tag`: the empty text sealed under the store key.
    check: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ModeRecord {
    Passphrase,
    KeyFile,
}

#[derive(Serialize, Deserialize)]
struct KdfRecord {
    /// Always `argon2id`.
    algorithm: String,
    /// Argon2 version, 19 (0x13).
    version: u32,
    /// Hex.
    salt: String,
    /// Memory in KiB.
    m_kib: u32,
    /// Passes.
    t: u32,
    /// Lanes.
    p: u32,
}

/// True when `folder` holds a keyring or a sled database.
pub(crate) fn holds_store(folder: &Path) -> bool {
    folder.join(KEYRING_FILE).exists() || SLED_FILES.iter().any(|f| folder.join(f).exists())
}

/// Finds (or, in a fresh folder, makes) the store key, and checks it against the keyring.
/// Reads `keyring.json` (and `store.key`) only; writes only when the folder holds no store.
pub(crate) fn unlock(folder: &Path, unlock: Unlock) -> Result<(Key32, KeySource), Error> {
    let keyring = folder.join(KEYRING_FILE);
    match fs::read(&keyring) {
        Ok(bytes) => existing(folder, &bytes, unlock),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if SLED_FILES.iter().any(|f| folder.join(f).exists()) {
                return Err(unavailable(
                    folder,
                    "the folder holds a database but no keyring.json (a store from before \
                     encryption, or a keyring that was removed); nothing was changed",
                ));
            }
            create(folder, unlock)
        }
        Err(e) => Err(unavailable(
            folder,
            format!("keyring.json could not be read ({e})"),
        )),
    }
}

fn existing(folder: &Path, bytes: &[u8], unlock: Unlock) -> Result<(Key32, KeySource), Error> {
    let record: KeyringRecord = serde_json::from_slice(bytes)
        .map_err(|_| unavailable(folder, "keyring.json is not a Parley keyring"))?;
    if record.version != VERSION {
        return Err(unavailable(
            folder,
            format!(
                "keyring.json has version {}, which this Parley does not know",
                record.version
            ),
        ));
    }
    let check = hex::decode(&record.check)
        .ok()
        .ok_or_else(|| unavailable(folder, "keyring.json has a malformed check value"))?;
    match (record.mode, unlock) {
        (ModeRecord::Passphrase, Unlock::Passphrase(passphrase)) => {
            let kdf = record
                .kdf
                .as_ref()
                .ok_or_else(|| unavailable(folder, "keyring.json names no key derivation"))?;
            let (salt, params) = kdf_params(kdf).map_err(|why| unavailable(folder, why))?;
            let key = derive(&passphrase, &salt, params).map_err(|why| unavailable(folder, why))?;
            if !opens_check(&key, &check) {
                return Err(Error::WrongPassphrase);
            }
            Ok((key, KeySource::Passphrase))
        }
        (ModeRecord::Passphrase, Unlock::KeyFile) => Err(Error::PassphraseRequired),
        (ModeRecord::KeyFile, Unlock::Passphrase(_)) => Err(Error::KeyFileStore),
        (ModeRecord::KeyFile, Unlock::KeyFile) => {
            let path = folder.join(KEY_FILE);
            let key = read_key_file(&path)?;
            if !opens_check(&key, &check) {
                return Err(Error::KeyFile {
                    path,
                    reason: "its key does not open this store".into(),
                });
            }
            Ok((key, KeySource::KeyFile))
        }
    }
}

/// A fresh folder: a new key the way `unlock` asks, then the keyring, written last (through a
/// temporary file and a hard link, so a keyring is either whole or absent, and two processes
/// making one at once cannot overwrite each other's).
fn create(folder: &Path, unlock: Unlock) -> Result<(Key32, KeySource), Error> {
    let random_error = |e: parley_usecases::ports::StoreError| unavailable(folder, e.to_string());
    let (key, source, kdf) = match &unlock {
        Unlock::Passphrase(passphrase) => {
            let salt: [u8; SALT_LEN] = crypto::random().map_err(random_error)?;
            let params = Params::new(M_KIB, T_COST, P_COST, Some(KEY_LEN))
                .map_err(|e| unavailable(folder, format!("bad Argon2id parameters ({e})")))?;
            let key = derive(passphrase, &salt, params).map_err(|why| unavailable(folder, why))?;
            let kdf = KdfRecord {
                algorithm: "argon2id".into(),
                version: 0x13,
                salt: hex::encode(salt),
                m_kib: M_KIB,
                t: T_COST,
                p: P_COST,
            };
            (key, KeySource::Passphrase, Some(kdf))
        }
        Unlock::KeyFile => {
            let path = folder.join(KEY_FILE);
            let key = Key32::random().map_err(random_error)?;
            let key = match write_new_private(&path, &key.0) {
                Ok(()) => key,
                // Left by a first open that stopped before its keyring was written: nothing
                // was ever encrypted under it, and it may be reused.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(&path)?,
                Err(e) => {
                    return Err(Error::KeyFile {
                        path,
                        reason: format!("it could not be written ({e})"),
                    });
                }
            };
            (key, KeySource::KeyFile, None)
        }
    };
    let check = crypto::seal(&key.cipher(), CHECK_AAD, b"").map_err(random_error)?;
    let record = KeyringRecord {
        version: VERSION,
        mode: match source {
            KeySource::Passphrase => ModeRecord::Passphrase,
            KeySource::KeyFile => ModeRecord::KeyFile,
        },
        kdf,
        check: hex::encode(&check),
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| unavailable(folder, format!("the keyring could not be encoded ({e})")))?;
    let suffix: [u8; 8] = crypto::random().map_err(random_error)?;
    let temporary = folder.join(format!("{KEYRING_FILE}.{}.new", hex::encode(suffix)));
    let written = write_new_private(&temporary, &json)
        .and_then(|()| fs::hard_link(&temporary, folder.join(KEYRING_FILE)));
    let _ = fs::remove_file(&temporary);
    match written {
        Ok(()) => {
            sync_folder(folder).map_err(|e| {
                unavailable(
                    folder,
                    format!("the keyring could not be made durable ({e})"),
                )
            })?;
            tracing::info!(folder = %folder.display(), mode = ?source, "new encrypted store");
            Ok((key, source))
        }
        // Another process made the store a moment ago: open it as it is.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let bytes = fs::read(folder.join(KEYRING_FILE)).map_err(|e| {
                unavailable(folder, format!("keyring.json could not be read ({e})"))
            })?;
            existing(folder, &bytes, unlock)
        }
        Err(e) => Err(unavailable(
            folder,
            format!("the keyring could not be written ({e})"),
        )),
    }
}

fn kdf_params(kdf: &KdfRecord) -> Result<(Vec<u8>, Params), String> {
    if kdf.algorithm != "argon2id" || kdf.version != 0x13 {
        return Err("keyring.json names a key derivation this Parley does not know".into());
    }
    let salt = hex::decode(&kdf.salt)
        .ok()
        .filter(|s| (argon2::MIN_SALT_LEN..=64).contains(&s.len()))
        .ok_or("keyring.json has a malformed salt")?;
    if kdf.m_kib > MAX_M_KIB || kdf.t > MAX_T_COST || kdf.p > MAX_P_COST {
        return Err("keyring.json asks for an unreasonable Argon2id cost".into());
    }
    let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(KEY_LEN))
        .map_err(|e| format!("keyring.json has bad Argon2id parameters ({e})"))?;
    Ok((salt, params))
}

/// Argon2id(passphrase, salt) with `params`: the store key.
fn derive(passphrase: &Passphrase, salt: &[u8], params: Params) -> Result<Key32, String> {
    let mut key = [0u8; KEY_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), salt, &mut key)
        .map_err(|e| format!("the passphrase could not be turned into a key ({e})"))?;
    Ok(Key32(key))
}

fn opens_check(key: &Key32, check: &[u8]) -> bool {
    crypto::open(&key.cipher(), CHECK_AAD, check).is_some_and(|plain| plain.is_empty())
}

fn read_key_file(path: &Path) -> Result<Key32, Error> {
    let bytes = fs::read(path).map_err(|e| Error::KeyFile {
        path: path.to_owned(),
        reason: format!("it could not be read ({e})"),
    })?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::KeyFile {
        path: path.to_owned(),
        reason: format!("it does not hold exactly {KEY_LEN} bytes"),
    })?;
    Ok(Key32(key))
}

/// Writes a new file (never an existing one) readable by its owner only, durably.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = private_options().create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Open options for a file only its owner may read (mode 0600 on Unix).
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes a folder's new entries durable (Unix; elsewhere the file system does it).
pub(crate) fn sync_folder(folder: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(folder)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

fn unavailable(folder: &Path, reason: impl Into<String>) -> Error {
    Error::Unavailable {
        path: folder.to_owned(),
        reason: reason.into(),
    }
}
