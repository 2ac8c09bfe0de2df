//! The app's state: which screen the home calls for (first run, unlock, running, or a
//! sentence why not), and the running peer.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use parley_domain::{MessageId, Username};
use parley_peer::{Config, Home, Outgoing, Peer, PeerError, view};
use parley_store::{Error as OpenError, Passphrase, Store, Unlock};
use parley_usecases::ports::IdentityStore;

use crate::{
    Error, Options,
    enrollment::{self, Form},
    staging::Staging,
    window::{self, Emit},
};

/// Said once the app runs on a store whose key lies in a file.
const KEY_FILE_WARNING: &str = "This device's messages are protected by a key kept in a file next to them, not by a passphrase: anyone who can read your home folder can read them.";

/// Where the app stands.
pub enum Phase {
    /// No store is open: first run, or a store locked with a passphrase.
    Closed,
    /// The store is open but this home is not enrolled yet.
    Open(Arc<Store>),
    /// Enrolled: the node runs.
    Running(Arc<Peer>),
    /// The home cannot be used by this app now; the sentence says why.
    Fatal(String),
}

/// The phase, shared with the task that stops the peer when its store fails.
pub type Shared = Arc<tokio::sync::Mutex<Phase>>;

/// The app's state, shared by every command.
pub struct Desktop {
    options: Options,
    home: Home,
    phase: Shared,
    emit: OnceLock<Emit>,
    staging: Staging,
}

impl Desktop {
    /// The state for `options`; nothing is opened yet.
    #[must_use]
    pub fn new(options: Options) -> Self {
        let home = Home::new(options.home.clone());
        Self {
            staging: Staging::new(home.outgoing(), options.max_attachment),
            home,
            options,
            phase: Arc::new(tokio::sync::Mutex::new(Phase::Closed)),
            emit: OnceLock::new(),
        }
    }

    /// Connects the window: where events go, and where saved attachments go by default.
    pub fn attach_window(
        &self,
        emit: impl Fn(view::Event) + Send + Sync + 'static,
        downloads: PathBuf,
    ) {
        let _ = self.emit.set(Arc::new(emit));
        self.staging
            .set_downloads(self.options.downloads.clone().unwrap_or(downloads));
    }

    /// The files picked for sending.
    #[must_use]
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Opens what the home allows without asking anything, and says which screen comes next.
    pub async fn boot(&self) -> view::Boot {
        let mut phase = self.phase.lock().await;
        if matches!(*phase, Phase::Closed) && self.home.has_store() {
            let unlock = match std::env::var("PARLEY_PASSPHRASE") {
                Ok(p) if !p.is_empty() => Unlock::Passphrase(Passphrase::new(p)),
                _ => Unlock::KeyFile,
            };
            match self.home.open(unlock) {
                Ok(store) => *phase = self.opened(store).await,
                // The unlock screen asks (again, when PARLEY_PASSPHRASE was wrong).
                Err(OpenError::PassphraseRequired | OpenError::WrongPassphrase) => {}
                Err(e) => *phase = Phase::Fatal(PeerError::from(e).to_string()),
            }
        }
        self.describe(&phase)
    }

    /// Opens a store locked with a passphrase.
    ///
    /// # Errors
    /// `wrong_passphrase`, or why the store cannot be opened.
    pub async fn unlock(&self, passphrase: String) -> Result<view::Boot, Error> {
        let mut phase = self.phase.lock().await;
        if !matches!(*phase, Phase::Closed) {
            return Ok(self.describe(&phase));
        }
        if passphrase.is_empty() {
            return Err(PeerError::PassphraseRequired.into());
        }
        let store = self
            .home
            .open(Unlock::Passphrase(Passphrase::new(passphrase)))
            .map_err(PeerError::from)?;
        *phase = self.opened(store).await;
        Ok(self.describe(&phase))
    }

    /// Enrolls this home at a rendezvous, creating its store if needed, and starts the node.
    ///
    /// # Errors
    /// One sentence: bad input, an unreachable server, a fingerprint mismatch, a taken name
    /// or a wrong password. Nothing is kept on failure.
    pub async fn enroll(&self, form: Form) -> Result<view::Boot, Error> {
        let form = form.check()?;
        let mut phase = self.phase.lock().await;
        let (store, created) = match &*phase {
            Phase::Open(store) => (store.clone(), false),
            Phase::Closed if !self.home.has_store() => {
                self.home.create()?;
                let unlock = if form.passphrase.is_empty() {
                    Unlock::KeyFile
                } else {
                    Unlock::Passphrase(Passphrase::new(form.passphrase))
                };
                let store = self.home.open(unlock).map_err(PeerError::from)?;
                (Arc::new(store), true)
            }
            _ => return Ok(self.describe(&phase)),
        };
        if let Err(e) = enrollment::enroll(&store, &form.request).await {
            if created {
                // The store was made for this attempt and holds nothing: leave no trace, so
                // that the next attempt can choose the passphrase again.
                drop(store);
                let _ = std::fs::remove_dir_all(self.home.store());
            } else {
                *phase = Phase::Open(store);
            }
            return Err(e);
        }
        let trusted_on_first_use = match store.identity() {
            Ok(Some(identity)) if form.request.ca_pin.is_none() => Some(format!(
                "No CA fingerprint was given, so the rendezvous's CA {} was trusted on first use. Compare it with the one the rendezvous printed.",
                identity.ca_fingerprint
            )),
            _ => None,
        };
        *phase = self.running(store).await;
        let boot = self.describe(&phase);
        let warning = match (trusted_on_first_use, boot.warning.clone()) {
            (Some(a), Some(b)) => Some(format!("{a} {b}")),
            (a, b) => a.or(b),
        };
        Ok(view::Boot { warning, ..boot })
    }

    /// The running peer, or why there is none.
    ///
    /// # Errors
    /// `not_ready` before enrollment or unlocking; `stopped` after a fatal failure.
    pub async fn peer(&self) -> Result<Arc<Peer>, Error> {
        match &*self.phase.lock().await {
            Phase::Running(peer) => Ok(peer.clone()),
            Phase::Fatal(message) => Err(Error::Stopped(message.clone())),
            _ => Err(Error::NotReady),
        }
    }

    /// Sends a message with the staged files named by `tokens`. Resolves once the receipt is
    /// back, or once the message is kept in the outbox to go out later; the staged files go
    /// once the message is sealed and kept.
    ///
    /// # Errors
    /// A refusal that kept nothing.
    pub async fn send(
        &self,
        mut outgoing: Outgoing,
        tokens: &[String],
    ) -> Result<view::Outcome, Error> {
        let peer = self.peer().await?;
        outgoing.attachments = self.staging.files(tokens)?;
        let outcome = match peer.send(outgoing).await {
            Ok(sent) if sent.queued => view::Outcome::Queued {
                delivered: false,
                note: format!(
                    "{} is offline; the rendezvous holds the message, sealed, until they are back",
                    sent.to
                ),
                queued: true,
            },
            Ok(sent) => view::Outcome::Delivered {
                delivered: true,
                id: sent.id,
                queued: false,
                to: sent.to,
            },
            Err(queued @ PeerError::Queued(_)) => view::Outcome::Queued {
                delivered: false,
                note: queued.to_string(),
                queued: true,
            },
            Err(e) => return Err(e.into()),
        };
        self.staging.unstage(tokens);
        Ok(outcome)
    }

    /// The status line: the peer's state and the home folder.
    ///
    /// # Errors
    /// The peer does not run, or its store cannot be read.
    pub async fn status(&self) -> Result<view::Status, Error> {
        let mut status = self.peer().await?.status()?;
        status.home = Some(self.home.path().display().to_string());
        Ok(status)
    }

    /// Decrypts attachment `index` of message `id` into a new file in the downloads folder.
    ///
    /// # Errors
    /// The peer's refusal: no such message or attachment, or it is damaged.
    pub async fn save_attachment(
        &self,
        with: &Username,
        id: &MessageId,
        index: usize,
    ) -> Result<view::Saved, Error> {
        let peer = self.peer().await?;
        let shown = id.to_string();
        let name = peer
            .history(with)?
            .messages
            .into_iter()
            .find(|m| m.id == shown)
            .and_then(|m| m.attachments.into_iter().nth(index))
            .map_or_else(|| "attachment".to_owned(), |a| a.name);
        let to = self.staging.download_path(self.home.path(), &name);
        Ok(peer.save_attachment(with, id, index, to)?)
    }

    /// Stops the node (the window closed).
    pub async fn close(&self) {
        let previous = std::mem::replace(&mut *self.phase.lock().await, Phase::Closed);
        if let Phase::Running(peer) = previous {
            peer.shutdown().await;
        }
        self.staging.unstage_all();
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
        self.staging.clear_leftovers();
        let config = Config {
            listen: self.options.listen.clone(),
            max_attachment: self.options.max_attachment,
            rekey_every: parley_domain::ratchet::RekeyEvery::DEFAULT,
            watch_presence: true,
            program: "Parley",
        };
        match Peer::start(store, config).await {
            Ok(peer) => {
                if let Some(emit) = self.emit.get() {
                    let home = self.home.path().display().to_string();
                    window::watch(&peer, emit, home, self.phase.clone());
                }
                Phase::Running(peer)
            }
            Err(e) => Phase::Fatal(format!("Parley could not start: {e}")),
        }
    }

    fn describe(&self, phase: &Phase) -> view::Boot {
        let store_exists = self.home.has_store();
        let (name, user, message, warning) = match phase {
            Phase::Closed if store_exists => (view::Phase::Unlock, None, None, None),
            Phase::Closed | Phase::Open(_) => (view::Phase::Enroll, None, None, None),
            Phase::Running(peer) => (
                view::Phase::Ready,
                Some(peer.user().to_string()),
                None,
                peer.key_in_file().then(|| KEY_FILE_WARNING.to_owned()),
            ),
            Phase::Fatal(why) => (view::Phase::Fatal, None, Some(why.clone()), None),
        };
        view::Boot {
            phase: name,
            home: self.home.path().display().to_string(),
            user,
            store_exists,
            message,
            warning,
            defaults: view::Defaults {
                server: self.options.server.clone(),
                fingerprint: self.options.ca_fingerprint.clone(),
                invite: self.options.invite.clone(),
            },
        }
    }
}
