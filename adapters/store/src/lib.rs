//! The peer's store: a [sled] database behind the use-case ports (the parts of
//! [`MessageStore`](parley_usecases::ports::MessageStore), each in its own file under
//! `messages/`, [`AttachmentFiles`](parley_usecases::ports::AttachmentFiles) and
//! [`IdentityStore`](parley_usecases::ports::IdentityStore)), encrypted at rest.
//!
//! One [`Store`] owns one folder (created with mode 0700). The `parley daemon` opens it and
//! keeps it open; a second process that tries to open the same folder gets
//! [`Error::InUse`] instead of a sled message.
//!
//! **Architecture invariant:** no sled type, and no serde record, appears in this crate's public
//! API. Domain types cross the edge through private serde mirrors (`records`), and every sled
//! error becomes [`StoreError::Unavailable`] with one sentence.
//!
//! # Encryption at rest
//!
//! Every value in the store is encrypted with AES-256-GCM; no message text, key, contact or
//! username is readable in the folder's files.
//!
//! * **The store key** (32 bytes) comes from a passphrase through Argon2id (salt of 16 random
//!   bytes, 19 MiB, 2 passes, 1 lane; [`Unlock::Passphrase`]), or, when none is given, is 32
//!   random bytes in `store.key` (mode 0600, [`Unlock::KeyFile`]); the caller warns at start
//!   when [`Store::key_source`] is [`KeySource::KeyFile`]. `keyring.json` (plaintext, mode
//!   0600) records which, the Argon2id salt and cost, and a check value: the empty text sealed
//!   under the store key with associated data `parley/store/check/v1`. It is read and the key
//!   checked *before* sled is opened, so a wrong passphrase ([`Error::WrongPassphrase`]) or a
//!   mode mismatch ([`Error::PassphraseRequired`], [`Error::KeyFileStore`]) writes nothing. A
//!   folder with neither keyring nor database is made a new store in the mode asked for; a
//!   database without a keyring (a plaintext store from before) is refused untouched.
//! * **Sub-keys** come from the store key through HKDF-SHA256 (no salt), one per use: `info`
//!   `parley/store/values/v1` seals sled values, `parley/store/slots/v1` seals message keys,
//!   `parley/store/index/v1` keys the username hash.
//! * **Every sled value** is `nonce (12) ‖ ciphertext ‖ tag (16)` under the values sub-key, with
//!   associated data `tree name ‖ 0x00 ‖ sled key`: a value copied to another key or tree does
//!   not decrypt. Nonces are random (96 bits); a value that does not decrypt is reported as
//!   [`StoreError::Unavailable`] ("… could not be decrypted (corrupt or altered)"), never a
//!   panic.
//! * **Each message has its own key** Km (32 random bytes), kept in a slot of `message-keys`:
//!   fixed 60-byte slots `nonce ‖ AES-256-GCM(slots sub-key, Km) ‖ tag`, associated data
//!   `parley/store/slot/v1 ‖ slot index (u64, big-endian)`. The `messages` value is `slot index
//!   (u64, big-endian) ‖ nonce ‖ AES-256-GCM(Km, JSON record)`, associated data `messages ‖
//!   0x00 ‖ sled key ‖ slot index`; the envelope kept in the outbox is sealed under Km too. A
//!   slot is written and `sync_data`'d *before* the sled transaction that names it (fresh keys
//!   are made and synced 32 at a time, ahead of need, so most messages wait for no slot
//!   sync; unused ones are zeroed at the next open). Deleting a
//!   message overwrites its slot with zeros and syncs *first*, then removes its records: sled
//!   keeps old pages until it compacts, but without Km those copies are noise, so a TTL
//!   deletion is real. A record whose slot is zero counts as deleted. Free (zero) slots are
//!   reused; at open, slots that no record names (a crash between slot and transaction) are
//!   zeroed, and records whose slot is zero (a crash inside a deletion) are removed.
//! * **Usernames in sled keys** are replaced by a keyed hash, HMAC-SHA256(index sub-key,
//!   `"user" ‖ 0x00 ‖ name`) truncated to 16 bytes, so who this device talks to cannot be read
//!   from the keys; names come back from decrypted values.
//!
//! What stays readable: tree names, the number and local order of records, the chain
//! positions per (hashed) sender, and the expiry times in the `expiry` keys.
//!
//! # Layout
//!
//! `N(user)` is the 16-byte username hash; `seq` a local sequence (u64, big-endian); every
//! value below is the plaintext *before* sealing.
//!
//! | tree / file     | key                                  | value                                                     |
//! |-----------------|--------------------------------------|-----------------------------------------------------------|
//! | `keyring.json`  | —                                    | JSON: version, mode, Argon2id salt and cost, check value (plaintext) |
//! | `store.key`     | —                                    | the store key, key-file stores only (plaintext, 0600)     |
//! | `message-keys`  | slot index × 60 bytes                | one message key per slot, sealed under the slots sub-key  |
//! | `identity`      | `device`                             | JSON mirror of `DeviceIdentity`, keys and DER as hex      |
//! | `messages`      | `N(contact) ‖ seq`                   | slot index ‖ JSON mirror of `StoredMessage` sealed under Km |
//! | `seen`          | `N(sender) ‖ 16 message-id bytes`    | envelope digest (32) ‖ the `messages` key                 |
//! | `outbox`        | `seq` (that of the `messages` key)   | `messages` key ‖ message id ‖ envelope sealed under Km    |
//! | `heads`         | `N(recipient)`                       | this device's chain head towards them: seq ‖ digest       |
//! | `links`         | `N(sender) ‖ chain position`         | accepted link: digest ‖ prev                              |
//! | `faults`        | `N(sender)`                          | how many of their messages failed the chain (u64)         |
//! | `expiry`        | `expires_at ‖ messages key`          | the message's `seen` key (for its record id)              |
//! | `contacts`      | `N(contact)`                         | JSON mirror of `Contact` (pinned and pending keys, hex)   |
//! | `read`          | `N(contact)`                         | the highest `seq` read in the conversation (u64)          |
//! | `device_lists`  | `N(user)`                            | the signed device list held (`DeviceList::encode`)        |
//! | `attachments/`  | files named `<record id>…`           | written elsewhere; deleted with their message             |
//!
//! * The local sequence comes from sled's `generate_id`, which is unique and increasing across
//!   restarts (it may skip numbers). A prefix scan of `messages` on `N(contact)` therefore
//!   yields one conversation oldest first; the hash has a fixed length, so `bob` and `bob2`
//!   cannot mix.
//! * `seen` makes `store_incoming` idempotent per (sender, id) and tells a replay (same digest:
//!   `Duplicate`) from another envelope under the same id (`Conflicting`). Outgoing messages
//!   are recorded under their own sender (`message.from`, this device's user), which makes a
//!   repeated `append_outgoing` of the same message a no-op. A `seen` entry outlives its
//!   message: a replay of a purged message is still recognised.
//! * `outbox` holds the outgoing messages still waiting for a receipt, in the order they were
//!   written, with their sealed envelopes; a receipt removes the entry and the envelope.
//! * `expiry` keys start with `expires_at` as 8 bytes that sort like the time (big-endian with
//!   the sign bit flipped), so the expired messages are a range scan from the start.
//! * A message's *record id* ([`Store::record_id`]), the name prefix of its files under
//!   `attachments/`, is the 64 hex digits of its `seen` key `N(sender) ‖ id`: known before the
//!   message is stored, unique per (sender, id), and free of the username.
//! * `read` holds, per conversation marked read, the highest local sequence its `messages`
//!   keys had then: a message is unread when it is incoming, not expired, and its key's `seq`
//!   is above the mark (every incoming one without a mark). Sequences are never reused, so a
//!   mark stays right when messages are purged; it outlives its conversation, like `seen`.
//!   Sealed like every value, so how far the user read is not readable either; a store made
//!   before this tree existed simply has no marks.
//!
//! # Durability and atomicity
//!
//! Writes that touch several trees run in one sled transaction (sled serialises transactions),
//! so a crash never leaves a message without its `seen`, `outbox`, chain or `expiry` entry, nor
//! an outgoing message without its chain head. Every write method calls sled's `flush()`
//! before it returns `Ok`, so a receipt is only ever given for a flushed message;
//! `store_incoming` flushes even when it answers `Duplicate`, because the first copy may have
//! been written a moment earlier by another thread. Two writes are not flushed, because losing
//! them in a crash costs nothing but a repeat: a receipt (the message is sent again and the
//! recipient recognises it) and a read mark (the messages show as unread again); sled's
//! background flush writes them a moment later. On Linux sled's `flush()` uses
//! `sync_file_range`: a flushed message survives a killed process, not necessarily a power
//! cut. `message-keys` is synced with `fdatasync` at every change.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod attachments;
mod crypto;
mod device_lists;
mod identity;
mod keyring;
mod messages;
mod prekeys;
mod records;
mod sessions;
mod slots;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use parley_domain::{MessageId, Username};
use parley_usecases::ports::StoreError;

pub use crate::attachments::DEFAULT_ATTACHMENT_LIMIT;
use crate::crypto::Keys;
use crate::slots::{SLOTS_FILE, Slots};

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
    /// The folder could not be created, or the keyring or database could not be read (I/O
    /// error, corruption, a newer format, a plaintext store from before encryption).
    #[error("the store at {} could not be opened: {reason}", path.display())]
    Unavailable {
        /// The folder that was asked for.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The passphrase given is not the store's. Nothing was written.
    #[error("the passphrase does not open this store; nothing was changed")]
    WrongPassphrase,
    /// The store is locked with a passphrase, and none was given.
    #[error(
        "this store is locked with a passphrase: set PARLEY_PASSPHRASE, or run Parley in a \
         terminal to be asked for it"
    )]
    PassphraseRequired,
    /// The store's key is in a key file, and a passphrase was given.
    #[error("this store uses a key file, not a passphrase: unset PARLEY_PASSPHRASE")]
    KeyFileStore,
    /// The key file of a key-file store is missing, unreadable, or holds another key.
    #[error(
        "the store's key file {} is missing or unusable ({reason}); the store cannot be opened \
         without it",
        path.display()
    )]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it, in words.
        reason: String,
    },
}

/// A passphrase that unlocks a store. `Debug` never prints it.
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase (from `PARLEY_PASSPHRASE` or the terminal).
    #[must_use]
    pub fn new(raw: String) -> Self {
        Self(raw)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

impl Drop for Passphrase {
    /// Best effort: overwrites the bytes before they go back to the allocator.
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// How [`Store::open`] finds the store key.
#[derive(Debug)]
pub enum Unlock {
    /// Derive it from this passphrase (Argon2id); a new store is made passphrase-locked.
    Passphrase(Passphrase),
    /// Read it from the store's key file; a new store gets a fresh random key file.
    KeyFile,
}

/// Where an open store's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// A passphrase.
    Passphrase,
    /// The key file in the store folder: anyone who can read the folder can read the store.
    KeyFile,
}

impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// The peer's durable, encrypted store: identity, conversations, outbox and hash chains in one
/// sled database, message keys in `message-keys`.
///
/// Cheap to share behind an `Arc`; every method takes `&self` and is safe to call from many
/// threads at once. Dropping the last handle closes the database.
pub struct Store {
    path: PathBuf,
    source: KeySource,
    keys: Keys,
    slots: Slots,
    /// Held by `purge_expired`: one deletion at a time, so a slot it zeroes is still the one
    /// its record names.
    purging: Mutex<()>,
    /// The largest attachment this device sends (plaintext bytes).
    attachment_limit: std::sync::atomic::AtomicU64,
    /// The first failed flush: sled refuses every write after it, until the store is opened
    /// again.
    broken: std::sync::OnceLock<String>,
    db: sled::Db,
    identity: sled::Tree,
    messages: sled::Tree,
    seen: sled::Tree,
    outbox: sled::Tree,
    heads: sled::Tree,
    links: sled::Tree,
    faults: sled::Tree,
    expiry: sled::Tree,
    contacts: sled::Tree,
    device_lists: sled::Tree,
    read: sled::Tree,
    sessions: sled::Tree,
    prekeys: sled::Tree,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in the folder `path` with the key `unlock` gives, creating the folder
    /// (mode 0700) and a new store — in the mode `unlock` asks for — when there is none yet.
    ///
    /// The key is checked against `keyring.json` before the database is touched. When the
    /// store's lock is taken, this retries for about half a second (sled frees the lock of a
    /// just-dropped handle asynchronously) before it gives up.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`], [`Error::PassphraseRequired`], [`Error::KeyFileStore`] or
    /// [`Error::KeyFile`] when the key does not fit the store (nothing is written then);
    /// [`Error::InUse`] when another process or another open [`Store`] holds the folder;
    /// [`Error::Unavailable`] when the folder cannot be created or the keyring, the database
    /// or the message keys cannot be read.
    pub fn open(path: &Path, unlock: Unlock) -> Result<Self, Error> {
        let unavailable = |reason: String| Error::Unavailable {
            path: path.to_owned(),
            reason,
        };
        create_private_folder(path)
            .map_err(|e| unavailable(format!("the folder could not be created ({e})")))?;
        let (store_key, source) = keyring::unlock(path, unlock)?;
        let keys = Keys::derive(&store_key).map_err(|e| unavailable(e.to_string()))?;
        let db = open_db(path)?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| unavailable(format!("the {name} tree could not be opened ({e})")))
        };
        let (slots, census) = Slots::open(&path.join(SLOTS_FILE), keys.slots.clone())
            .map_err(|e| unavailable(format!("{SLOTS_FILE} could not be opened ({e})")))?;
        let store = Self {
            identity: tree("identity")?,
            messages: tree("messages")?,
            seen: tree("seen")?,
            outbox: tree("outbox")?,
            heads: tree("heads")?,
            links: tree("links")?,
            faults: tree("faults")?,
            expiry: tree("expiry")?,
            contacts: tree("contacts")?,
            device_lists: tree("device_lists")?,
            read: tree("read")?,
            sessions: tree(sessions::TREE)?,
            prekeys: tree(prekeys::TREE)?,
            path: path.to_owned(),
            source,
            keys,
            slots,
            purging: Mutex::new(()),
            attachment_limit: std::sync::atomic::AtomicU64::new(
                attachments::DEFAULT_ATTACHMENT_LIMIT,
            ),
            broken: std::sync::OnceLock::new(),
            db,
        };
        store
            .recover(census.count, &census.used)
            .map_err(|e| unavailable(e.to_string()))?;
        store.sweep_attachments(std::time::SystemTime::now());
        tracing::debug!(path = %path.display(), key_source = ?source, "store opened");
        Ok(store)
    }

    /// True when the folder `path` holds a store already (a keyring, or a database): then
    /// [`Store::open`] opens it rather than making one, and the mode of `unlock` must fit it.
    /// Reads nothing but the folder's entries.
    #[must_use]
    pub fn exists(path: &Path) -> bool {
        keyring::holds_store(path)
    }

    /// Where the store key came from: the caller warns at start when it is a key file.
    #[must_use]
    pub fn key_source(&self) -> KeySource {
        self.source
    }

    /// The record id of the message `id` from `from`: 64 hex digits that name no one. Files
    /// under `<store>/attachments/` whose names start with it are deleted with the message
    /// when it expires.
    #[must_use]
    pub fn record_id(&self, from: &Username, id: &MessageId) -> String {
        records::record_id(&records::seen_key(&self.keys.name(from), id))
    }

    /// The folder this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the store refuses every write, once a write could not be made durable (a failed
    /// sync, a full disk): only opening the store again (after the disk is fixed) recovers
    /// from that, from what reached the disk. `None` while the store is healthy.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.broken
            .get()
            .map(String::as_str)
            .or_else(|| self.slots.broken())
            .map(str::to_owned)
    }

    /// Makes everything written so far durable; the last step of every write method.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| {
            let error = unavailable("flush the store to disk", e);
            if let StoreError::Unavailable(why) = &error {
                let _ = self.broken.set(why.clone());
            }
            error
        })
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
