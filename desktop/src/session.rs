//! The app's state: which screen the home calls for (first run, unlock, running), the running
//! peer, and the files staged for sending.

use std::{
    collections::HashMap,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use parley_domain::{CaFingerprint, Password, Username};
use parley_enroll::HttpsEnrollment;
use parley_peer::{Config, Failure, Peer, view};
use parley_store::{Error as StoreOpenError, Passphrase, Store, Unlock};
use parley_usecases::{
    commands::{Enroll, EnrollCommandError},
    ports::{AttachmentSource, EnrollError, EnrollRequest, IdentityStore},
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::Options;

/// The store's folder inside a home (the same as the `parley` command's).
const STORE: &str = "store";
/// Files picked for sending wait here (mode 0700) until the message is sealed.
const OUTGOING: &str = "outgoing";
/// How often the status line is compared with what the window last saw.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Said once the app runs on a store whose key lies in a file.
const KEY_FILE_WARNING: &str = "This device's messages are protected by a key kept in a file next to them, not by a passphrase: anyone who can read your home folder can read them.";

/// Said when the store failed and the node stopped.
const STORE_FAILED: &str = "Parley stopped because the message store could not write to disk; no message was acknowledged that is not stored. Free space or fix the disk, then start Parley again.";

type Emit = Arc<dyn Fn(Value) + Send + Sync>;

/// Where the app stands.
enum Phase {
    /// No store is open: first run, or a store locked with a passphrase.
    Closed,
    /// The store is open but this home is not enrolled yet.
    Open(Arc<Store>),
    /// Enrolled: the node runs.
    Running(Arc<Peer>),
    /// The home cannot be used by this app now; the sentence says why.
    Fatal(String),
}

/// What the window should show, with what it needs for that screen.
#[derive(Debug, Clone, Serialize)]
pub struct Boot {
    /// `enroll`, `unlock`, `ready` or `fatal`.
    pub phase: &'static str,
    /// The home folder.
    pub home: String,
    /// The enrolled user, once known.
    pub user: Option<String>,
    /// Whether the home has a store already (then enrolling asks no passphrase).
    pub store_exists: bool,
    /// For `fatal`: why.
    pub message: Option<String>,
    /// Something the user should know (trust on first use, a key kept in a file).
    pub warning: Option<String>,
    /// What to offer on the first-run screen.
    pub defaults: Defaults,
}

/// Values offered on the first-run screen.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// The rendezvous's address.
    pub server: Option<String>,
    /// Its CA fingerprint.
    pub fingerprint: Option<String>,
}

/// What the first-run screen sends.
pub struct Enrollment {
    /// The rendezvous's HTTPS address.
    pub server: String,
    /// The CA fingerprint to insist on; empty trusts on first use.
    pub fingerprint: String,
    /// The username.
    pub username: String,
    /// The password.
    pub password: Password,
    /// A passphrase for a new store; empty keeps its key in a file.
    pub passphrase: String,
}

/// A file picked for sending.
struct Staged {
    name: String,
    path: PathBuf,
}

/// The app's state, shared by every command.
pub struct Desktop {
    options: Options,
    /// Shared with the watcher that stops the peer when its store fails.
    phase: Arc<tokio::sync::Mutex<Phase>>,
    emit: OnceLock<Emit>,
    downloads: OnceLock<PathBuf>,
    staged: Mutex<HashMap<String, Staged>>,
}

impl Desktop {
    /// The state for `options`; nothing is opened yet.
    #[must_use]
    pub fn new(options: Options) -> Self {
        Self {
            options,
            phase: Arc::new(tokio::sync::Mutex::new(Phase::Closed)),
            emit: OnceLock::new(),
            downloads: OnceLock::new(),
            staged: Mutex::new(HashMap::new()),
        }
    }

    /// Connects the window: where events go, and where saved attachments go by default.
    pub fn attach_window(&self, emit: impl Fn(Value) + Send + Sync + 'static, downloads: PathBuf) {
        let _ = self.emit.set(Arc::new(emit));
        let _ = self
            .downloads
            .set(self.options.downloads.clone().unwrap_or(downloads));
    }

    /// The home folder.
    #[must_use]
    pub fn home(&self) -> &Path {
        &self.options.home
    }

    fn store_path(&self) -> PathBuf {
        self.options.home.join(STORE)
    }

    /// Opens what the home allows without asking anything, and says which screen comes next.
    pub async fn boot(&self) -> Boot {
        let mut phase = self.phase.lock().await;
        if matches!(*phase, Phase::Closed) && Store::exists(&self.store_path()) {
            let unlock = match std::env::var("PARLEY_PASSPHRASE") {
                Ok(p) if !p.is_empty() => Unlock::Passphrase(Passphrase::new(p)),
                _ => Unlock::KeyFile,
            };
            match open_store(&self.store_path(), unlock) {
                Ok(store) => *phase = self.opened(store).await,
                // The unlock screen asks (again, when PARLEY_PASSPHRASE was wrong).
                Err(StoreOpenError::PassphraseRequired | StoreOpenError::WrongPassphrase) => {}
                Err(e) => *phase = Phase::Fatal(open_failure(&e).message),
            }
        }
        self.describe(&phase, None)
    }

    /// Opens a store locked with a passphrase.
    ///
    /// # Errors
    /// [`Failure`] `wrong_passphrase`, or why the store cannot be opened.
    pub async fn unlock(&self, passphrase: String) -> Result<Boot, Failure> {
        let mut phase = self.phase.lock().await;
        if !matches!(*phase, Phase::Closed) {
            return Ok(self.describe(&phase, None));
        }
        if passphrase.is_empty() {
            return Err(Failure::new(
                "passphrase_required",
                "type the passphrase that protects this device's messages",
            ));
        }
        let store = open_store(
            &self.store_path(),
            Unlock::Passphrase(Passphrase::new(passphrase)),
        )
        .map_err(|e| open_failure(&e))?;
        *phase = self.opened(store).await;
        Ok(self.describe(&phase, None))
    }

    /// Enrolls this home at a rendezvous, creating its store if needed, and starts the node.
    ///
    /// # Errors
    /// [`Failure`] with one sentence: bad input, an unreachable server, a fingerprint mismatch,
    /// a taken name or a wrong password. Nothing is kept on failure.
    pub async fn enroll(&self, form: Enrollment) -> Result<Boot, Failure> {
        let user = Username::parse(form.username.trim()).map_err(|e| {
            Failure::new(
                "invalid_username",
                format!("{:?} cannot be a username: {e}", form.username.trim()),
            )
        })?;
        let server = form.server.trim().to_owned();
        if !server.starts_with("https://") {
            return Err(Failure::new(
                "invalid_server",
                "the server address must start with https:// (for example https://127.0.0.1:8443)",
            ));
        }
        let fingerprint = form.fingerprint.trim();
        let ca_pin = if fingerprint.is_empty() {
            None
        } else {
            Some(CaFingerprint::parse(fingerprint).map_err(|e| {
                Failure::new(
                    "invalid_fingerprint",
                    format!("the CA fingerprint is not valid ({e}); copy it as the rendezvous printed it, sha256: and 64 hex digits"),
                )
            })?)
        };
        let mut phase = self.phase.lock().await;
        let (store, created) = match &*phase {
            Phase::Open(store) => (store.clone(), false),
            Phase::Closed if !Store::exists(&self.store_path()) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.options.home)
                    .map_err(|e| {
                        Failure::new(
                            "home_unavailable",
                            format!(
                                "the home folder {} cannot be created ({e})",
                                self.options.home.display()
                            ),
                        )
                    })?;
                let unlock = if form.passphrase.is_empty() {
                    Unlock::KeyFile
                } else {
                    Unlock::Passphrase(Passphrase::new(form.passphrase))
                };
                let store = open_store(&self.store_path(), unlock).map_err(|e| open_failure(&e))?;
                (Arc::new(store), true)
            }
            _ => return Ok(self.describe(&phase, None)),
        };
        let request = EnrollRequest {
            server,
            user,
            password: form.password,
            ca_pin,
            keys: None,
        };
        let outcome = Enroll::new(&HttpsEnrollment::new(), &*store)
            .run(&request)
            .await;
        if let Err(e) = outcome {
            if created {
                // The store was made for this attempt and holds nothing: leave no trace, so
                // that the next attempt can choose the passphrase again.
                drop(store);
                let _ = std::fs::remove_dir_all(self.store_path());
            } else {
                *phase = Phase::Open(store);
            }
            return Err(enroll_failure(e));
        }
        let mut warnings = Vec::new();
        if ca_pin.is_none()
            && let Ok(Some(identity)) = store.identity()
        {
            warnings.push(format!(
                "No CA fingerprint was given, so the rendezvous's CA {} was trusted on first use. Compare it with the one the rendezvous printed.",
                identity.ca_fingerprint
            ));
        }
        *phase = self.running(store).await;
        let boot = self.describe(&phase, None);
        Ok(Boot {
            warning: join_warnings(warnings, boot.warning.clone()),
            ..boot
        })
    }

    /// The running peer, or why there is none.
    ///
    /// # Errors
    /// [`Failure`] `not_ready` before enrollment or unlocking.
    pub async fn peer(&self) -> Result<Arc<Peer>, Failure> {
        match &*self.phase.lock().await {
            Phase::Running(peer) => Ok(peer.clone()),
            Phase::Fatal(message) => Err(Failure::new("stopped", message.clone())),
            _ => Err(Failure::new(
                "not_ready",
                "Parley is not enrolled or unlocked yet",
            )),
        }
    }

    /// Keeps a file picked for sending until the message is sealed; returns its token.
    ///
    /// # Errors
    /// [`Failure`] when it is too large or cannot be written.
    pub fn stage(&self, name: &str, bytes: &[u8]) -> Result<Value, Failure> {
        let name = safe_file_name(name);
        if bytes.len() as u64 > self.options.max_attachment {
            return Err(Failure::new(
                "attachment_too_large",
                format!(
                    "{name} is larger than the {} MiB an attachment may have",
                    self.options.max_attachment / (1024 * 1024)
                ),
            ));
        }
        let token = random_hex()?;
        let folder = self.options.home.join(OUTGOING);
        let write = || -> std::io::Result<PathBuf> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&folder)?;
            let path = folder.join(&token);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut file, bytes)?;
            Ok(path)
        };
        let path = write().map_err(|e| {
            Failure::new(
                "attachment_unavailable",
                format!("{name} could not be prepared for sending ({e})"),
            )
        })?;
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                token.clone(),
                Staged {
                    name: name.clone(),
                    path,
                },
            );
        Ok(json!({ "token": token, "name": name, "size": bytes.len() }))
    }

    /// The staged files named by `tokens`, to attach.
    ///
    /// # Errors
    /// [`Failure`] for a token that names nothing (already sent, or never staged).
    pub fn staged(&self, tokens: &[String]) -> Result<Vec<AttachmentSource>, Failure> {
        let staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .iter()
            .map(|token| {
                staged
                    .get(token)
                    .map(|s| AttachmentSource {
                        name: s.name.clone(),
                        path: s.path.to_string_lossy().into_owned(),
                    })
                    .ok_or_else(|| {
                        Failure::new(
                            "attachment_unavailable",
                            "an attached file is no longer there; attach it again",
                        )
                    })
            })
            .collect()
    }

    /// Deletes staged files once their message is sealed and kept.
    pub fn unstage(&self, tokens: &[String]) {
        let mut staged = self.staged.lock().unwrap_or_else(PoisonError::into_inner);
        for token in tokens {
            if let Some(s) = staged.remove(token) {
                let _ = std::fs::remove_file(s.path);
            }
        }
    }

    /// A fresh path in the downloads folder for a file called `name`.
    #[must_use]
    pub fn download_path(&self, name: &str) -> PathBuf {
        let folder = self
            .downloads
            .get()
            .cloned()
            .unwrap_or_else(|| self.options.home.clone());
        let _ = std::fs::create_dir_all(&folder);
        fresh_path(&folder, &safe_file_name(name))
    }

    /// Stops the node (the window closed).
    pub async fn close(&self) {
        let previous = std::mem::replace(&mut *self.phase.lock().await, Phase::Closed);
        if let Phase::Running(peer) = previous {
            peer.shutdown().await;
        }
        let tokens: Vec<String> = self
            .staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        self.unstage(&tokens);
    }

    /// After the store opened: run if enrolled, else wait for the first-run screen.
    async fn opened(&self, store: Store) -> Phase {
        let store = Arc::new(store);
        match store.identity() {
            Ok(Some(_)) => self.running(store).await,
            Ok(None) => Phase::Open(store),
            Err(e) => Phase::Fatal(format!("the message store cannot be read: {e}")),
        }
    }

    async fn running(&self, store: Arc<Store>) -> Phase {
        // Files left from a crash while sending: the messages either were sealed or never were.
        let _ = std::fs::remove_dir_all(self.options.home.join(OUTGOING));
        let config = Config {
            listen: self.options.listen.clone(),
            max_attachment: self.options.max_attachment,
            watch_presence: true,
        };
        match Peer::start(store, config).await {
            Ok(peer) => {
                self.watch(&peer);
                Phase::Running(peer)
            }
            Err(e) => Phase::Fatal(format!("Parley could not start: {e:#}")),
        }
    }

    /// Pushes the peer's events, changes of its status, and a failed store to the window.
    fn watch(&self, peer: &Arc<Peer>) {
        let Some(emit) = self.emit.get().cloned() else {
            return;
        };
        let mut events = peer.subscribe();
        let forward = emit.clone();
        tauri::async_runtime::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => forward(view::event(&event)),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the window missed events; it reloads");
                        forward(json!({ "event": "expired", "count": 0 }));
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        let weak = Arc::downgrade(peer);
        let phase = self.phase.clone();
        let home = self.options.home.display().to_string();
        tauri::async_runtime::spawn(async move {
            let mut last = Value::Null;
            let mut tick = tokio::time::interval(STATUS_EVERY);
            loop {
                tick.tick().await;
                let Some(peer) = weak.upgrade() else { return };
                if let Some(failure) = peer.store_failed() {
                    // As the daemon does: a store that could not make a write durable refuses
                    // every write after it, so the node stops and the window says why.
                    tracing::error!(error = %failure, "the message store failed; stopping");
                    emit(json!({ "event": "stopped", "message": STORE_FAILED }));
                    peer.shutdown().await;
                    *phase.lock().await = Phase::Fatal(STORE_FAILED.to_owned());
                    return;
                }
                if let Ok(mut status) = peer.status() {
                    status["home"] = json!(home);
                    if status != last {
                        last = status.clone();
                        emit(json!({ "event": "status", "status": status }));
                    }
                }
            }
        });
    }

    fn describe(&self, phase: &Phase, message: Option<String>) -> Boot {
        let store_exists = Store::exists(&self.store_path());
        let (name, user, message, warning) = match phase {
            Phase::Closed if store_exists => ("unlock", None, message, None),
            Phase::Closed | Phase::Open(_) => ("enroll", None, message, None),
            Phase::Running(peer) => (
                "ready",
                Some(peer.user().to_string()),
                message,
                peer.key_in_file().then(|| KEY_FILE_WARNING.to_owned()),
            ),
            Phase::Fatal(why) => ("fatal", None, Some(why.clone()), None),
        };
        Boot {
            phase: name,
            home: self.options.home.display().to_string(),
            user,
            store_exists,
            message,
            warning,
            defaults: Defaults {
                server: self.options.server.clone(),
                fingerprint: self.options.ca_fingerprint.clone(),
            },
        }
    }
}

fn join_warnings(mut warnings: Vec<String>, more: Option<String>) -> Option<String> {
    warnings.extend(more);
    (!warnings.is_empty()).then(|| warnings.join(" "))
}

fn open_store(path: &Path, unlock: Unlock) -> Result<Store, StoreOpenError> {
    tokio::task::block_in_place(|| Store::open(path, unlock))
}

/// A store that cannot be opened, in words for the window.
fn open_failure(e: &StoreOpenError) -> Failure {
    match e {
        StoreOpenError::InUse { path } => Failure::new(
            "home_in_use",
            format!(
                "This Parley home ({}) is already open in another Parley, the desktop app or `parley daemon`. Close that one first, or start this one with --home for another home.",
                path.parent().unwrap_or(path).display()
            ),
        ),
        StoreOpenError::WrongPassphrase => Failure::new(
            "wrong_passphrase",
            "that passphrase does not open this device's messages; try again",
        ),
        other => Failure::new("store_unavailable", other.to_string()),
    }
}

/// An enrollment failure, in words for the first-run screen.
fn enroll_failure(e: EnrollCommandError) -> Failure {
    match e {
        EnrollCommandError::Enrollment(EnrollError::Unreachable(server)) => Failure::new(
            "unreachable",
            format!(
                "The rendezvous at {server} could not be reached: check the address and that the server is running."
            ),
        ),
        EnrollCommandError::Enrollment(EnrollError::FingerprintMismatch { expected, actual }) => {
            Failure::new(
                "fingerprint_mismatch",
                format!(
                    "The rendezvous presented the CA {actual}, not {expected}: this may not be your rendezvous. Check the fingerprint with its operator; nothing was sent."
                ),
            )
        }
        EnrollCommandError::Enrollment(EnrollError::InvalidCredentials) => Failure::new(
            "invalid_credentials",
            "That username is already taken and the password does not match: pick another username, or type its password.",
        ),
        EnrollCommandError::Enrollment(EnrollError::Refused { code, message }) => {
            Failure::new(&code, format!("The rendezvous refused: {message}"))
        }
        other => Failure::new("enroll_failed", other.to_string()),
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

fn random_hex() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| {
        Failure::new(
            "internal",
            "the system's random generator failed; try again",
        )
    })?;
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
