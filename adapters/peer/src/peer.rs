//! [`Peer`]: starting the node on an opened store, and the application API over it.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use parley_domain::ratchet::RekeyEvery;
use parley_domain::{Digest, MessageId, MessageText, PeerKeys, Ttl, Username};
use parley_envelope::Sealer;
use parley_p2p::{AttachmentConfig, Credentials, Multiaddr, Node, NodeConfig};
use parley_store::Store;
use parley_usecases::{
    commands::{Messaging, OwnDevices, SendMessage, Sent},
    ports::{
        AccountService, AttachmentSource, Clock, DeviceLists, Event, EventSink, Expiry,
        IdentityStore, NodeInfo,
    },
    queries,
};
use tokio::{
    sync::{broadcast, watch},
    task::JoinSet,
};

use crate::{PeerError, SystemClock, background, blocking, view};

// The message protocol carries the largest envelope the envelope format makes, and refuses
// anything larger unread: the two caps are one number, checked here where both are wired.
const _: () =
    assert!(parley_p2p::message::MAX_ENVELOPE_BYTES == parley_envelope::MAX_ENVELOPE_BYTES);

/// How often the outbox is retried while it holds messages.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Inbound messages waiting to be stored.
const INBOUND_QUEUE: usize = 256;
/// Events buffered per watcher; a slower watcher misses events rather than slowing the node.
const EVENT_BUFFER: usize = 256;
/// How often the store is asked whether it has failed.
const STORE_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often expired messages are deleted (queries hide them from the very millisecond they
/// expire; this is when their keys and records go).
const PURGE_EVERY: Duration = Duration::from_secs(1);
/// How often contacts' presence is asked of the directory, when presence is watched.
const PRESENCE_EVERY: Duration = Duration::from_secs(15);
/// Contacts whose presence is watched: the most recent conversations. Each round costs one
/// directory look-up per contact, well inside the rendezvous's per-device allowance.
const PRESENCE_CONTACTS: usize = 24;

/// Events fan out to every watcher (control-socket subscribers, the desktop window).
pub(crate) struct Broadcast(broadcast::Sender<Event>);

impl EventSink for Broadcast {
    fn emit(&self, event: Event) {
        // No watcher is not an error.
        let _ = self.0.send(event);
    }
}

pub(crate) type Core = Messaging<Arc<Store>, Node, Node, SystemClock, Arc<Broadcast>, Sealer, Node>;

/// This user's signed device list, over the store, the node and this device's key.
pub(crate) type Devices = OwnDevices<Arc<Store>, Node, Sealer>;

/// How the peer runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen for peers.
    pub listen: Multiaddr,
    /// The largest attachment sent or accepted, in bytes of plaintext.
    pub max_attachment: u64,
    /// The interval of timed DH ratchet steps (and of the TLS links' key refreshes).
    pub rekey_every: RekeyEvery,
    /// Whether to ask the directory, now and then, which contacts are online (the desktop's
    /// presence dots). A headless peer does not need it.
    pub watch_presence: bool,
    /// What the sentence names when the peer stops on a failed store (`the daemon`,
    /// `Parley`).
    pub program: &'static str,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The recipient.
    pub to: Username,
    /// The text.
    pub text: MessageText,
    /// The time to live, for a disappearing message.
    pub ttl: Option<Ttl>,
    /// Files to attach, in order.
    pub attachments: Vec<Attachment>,
}

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name it travels under.
    pub name: String,
    /// Where it lies.
    pub path: PathBuf,
}

impl Attachment {
    /// The file at `path`, under its own file name.
    #[must_use]
    pub fn file(path: PathBuf) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self { name, path }
    }
}

/// The running peer. Share it behind an [`Arc`]; stop it with [`Peer::shutdown`].
pub struct Peer {
    user: Username,
    keys: PeerKeys,
    pub(crate) core: Core,
    pub(crate) devices: Devices,
    /// What this device calls itself in its user's device list.
    pub(crate) device_name: String,
    /// One refresh of the device list at a time: two at once could both publish a first
    /// version, and the rendezvous would refuse the second as not newer.
    devices_turn: tokio::sync::Mutex<()>,
    node: Node,
    store: Arc<Store>,
    events: Arc<Broadcast>,
    rendezvous_addrs: Vec<String>,
    presence: Mutex<HashMap<Username, bool>>,
    program: &'static str,
    /// Turns true once: every background task ends then (a task that starts late still sees
    /// it).
    pub(crate) stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl Peer {
    /// Starts the node on an opened store and the background work around it: the one entry
    /// point of the daemon, the desktop and the benchmark. Needs a multi-threaded tokio
    /// runtime.
    ///
    /// # Errors
    /// [`PeerError`]: the home is not enrolled, the stored identity is unusable, or the node
    /// cannot listen.
    pub async fn start(store: Arc<Store>, config: Config) -> Result<Arc<Self>, PeerError> {
        store.set_attachment_limit(config.max_attachment);
        // Expired messages go before anything else reads the store.
        let purged = blocking(|| Expiry::purge_expired(&*store, SystemClock.now()))?;
        if purged > 0 {
            tracing::info!(purged, "expired messages deleted at start-up");
        }
        let identity = store.identity()?.ok_or(PeerError::NotEnrolled)?;
        let credentials = Credentials::new(
            &identity.ed25519,
            identity.certificate_der.clone(),
            identity.ca_der.clone(),
        )
        .map_err(PeerError::CertificateMismatch)?;
        let rendezvous = identity
            .rendezvous_addrs
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|_| PeerError::RendezvousAddress(a.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (node, inbound) = Node::start(NodeConfig {
            credentials,
            user: identity.user.clone(),
            listen: config.listen,
            rendezvous,
            inbound_queue: INBOUND_QUEUE,
            attachments: Some(AttachmentConfig {
                staging: {
                    let store = store.clone();
                    Arc::new(move |from: &Username, sha256: &Digest| {
                        store.staging_path(from, sha256)
                    })
                },
                max_bytes: sealed_size(config.max_attachment),
            }),
            renew: true,
            // The same kind of timer as the ratchet's.
            tls_refresh: (
                Duration::from_millis(config.rekey_every.min_ms),
                Duration::from_millis(config.rekey_every.max_ms),
            ),
        })
        .await
        .map_err(PeerError::Node)?;
        let keys = parley_p2p::pki::inspect(&identity.certificate_der)
            .map_err(PeerError::CertificateUnreadable)?
            .keys();
        let events = Arc::new(Broadcast(broadcast::channel(EVENT_BUFFER).0));
        let peer = Arc::new(Self {
            user: identity.user.clone(),
            keys,
            core: Messaging::new(
                identity.user.clone(),
                store.clone(),
                node.clone(),
                node.clone(),
                SystemClock,
                events.clone(),
                Sealer::new(&identity.ed25519, &identity.x25519).with_rekey_every(
                    Duration::from_millis(config.rekey_every.min_ms),
                    Duration::from_millis(config.rekey_every.max_ms),
                ),
                node.clone(),
            ),
            devices: OwnDevices::new(
                identity.user.clone(),
                store.clone(),
                node.clone(),
                Sealer::new(&identity.ed25519, &identity.x25519),
            ),
            device_name: this_device_name(),
            devices_turn: tokio::sync::Mutex::new(()),
            node,
            store,
            events,
            rendezvous_addrs: identity.rendezvous_addrs.clone(),
            presence: Mutex::new(HashMap::new()),
            program: config.program,
            stop: watch::channel(false).0,
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = peer.tasks.lock().await;
            tasks.spawn(background::receive(peer.clone(), inbound));
            tasks.spawn(background::collect_mail(peer.clone()));
            tasks.spawn(background::keep_certificate(peer.clone()));
            tasks.spawn(background::keep_prekeys(peer.clone(), peer.store.clone()));
            tasks.spawn(background::keep_device_list(peer.clone()));
            tasks.spawn(background::every(
                peer.clone(),
                PURGE_EVERY,
                |p| async move {
                    if let Err(e) = blocking(|| p.core.purge_expired()) {
                        tracing::error!(error = %e, "purging expired messages failed");
                    }
                },
            ));
            tasks.spawn(background::every(
                peer.clone(),
                RETRY_EVERY,
                |p| async move {
                    if let Err(e) = p.core.retry_outbox().await {
                        tracing::error!(error = %e, "outbox retry failed");
                    }
                },
            ));
            if config.watch_presence {
                tasks.spawn(background::every(
                    peer.clone(),
                    PRESENCE_EVERY,
                    |p| async move {
                        p.refresh_presence().await;
                    },
                ));
            }
        }
        Ok(peer)
    }

    /// The enrolled user.
    #[must_use]
    pub fn user(&self) -> &Username {
        &self.user
    }

    /// The node's state: peer id, listen addresses, rendezvous connection.
    #[must_use]
    pub fn snapshot(&self) -> parley_usecases::ports::NodeSnapshot {
        self.node.snapshot()
    }

    /// The node itself, for what the application API does not cover (the benchmark's
    /// directory look-ups).
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// A new watcher of the peer's events.
    #[must_use]
    pub fn watch(&self) -> Watcher {
        Watcher(self.events.0.subscribe())
    }

    /// Resolves once the store has failed, after stopping the peer, with the sentence to show
    /// (`None` when the peer was stopped otherwise first). A store that could not make a write
    /// durable refuses every write after it (and so every incoming message, without a
    /// receipt); only opening it again recovers: so the peer stops, and says why. The detail
    /// goes to the log.
    pub async fn stop_on_store_failure(&self) -> Option<PeerError> {
        let mut stop = self.stop.subscribe();
        let mut tick = tokio::time::interval(STORE_CHECK_EVERY);
        let failure = loop {
            tokio::select! {
                () = background::stopped(&mut stop) => return None,
                _ = tick.tick() => {
                    if let Some(failure) = self.store.failure() {
                        break failure;
                    }
                }
            }
        };
        tracing::error!(error = %failure, "the message store failed; stopping");
        self.shutdown().await;
        Some(PeerError::Stopped {
            program: self.program,
        })
    }

    /// Whether the store's key lies in a file next to it rather than behind a passphrase.
    #[must_use]
    pub fn key_in_file(&self) -> bool {
        self.store.key_source() == parley_store::KeySource::KeyFile
    }

    /// Stops the background work and the node, and waits for both. Idempotent.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        self.node.shutdown().await;
    }

    /// Sends a message and waits for the recipient's receipt, giving a stranger a short grace
    /// to appear in the directory. The answer names the message.
    ///
    /// # Errors
    /// [`PeerError::Queued`] when the message is kept and goes out by itself later;
    /// [`PeerError::Send`] when nothing is kept.
    pub async fn send(&self, outgoing: Outgoing) -> Result<view::Sent, PeerError> {
        let id = MessageId::from_bytes(random_id()?);
        let to = outgoing.to;
        let cmd = SendMessage {
            id,
            to: to.clone(),
            text: outgoing.text,
            ttl: outgoing.ttl,
            attachments: outgoing
                .attachments
                .into_iter()
                .map(|a| AttachmentSource {
                    name: a.name,
                    path: a.path,
                })
                .collect(),
        };
        // A stranger gets a short grace to appear in the directory (the use case's rule).
        let sent = self.core.send_patiently(cmd).await.map_err(|e| {
            if e.queued() {
                PeerError::Queued(e)
            } else {
                PeerError::Send(e)
            }
        })?;
        self.set_presence(&to, sent == Sent::Delivered);
        Ok(view::Sent {
            delivered: sent == Sent::Delivered,
            id: id.to_string(),
            queued: sent == Sent::Queued,
            to: to.to_string(),
        })
    }

    /// The conversation with `with`, oldest first, with its chains' state.
    ///
    /// # Errors
    /// [`PeerError::Store`].
    pub fn history(&self, with: &Username) -> Result<view::History, PeerError> {
        let history = blocking(|| queries::history(self.core.store(), with, SystemClock.now()))?;
        Ok(view::History::new(with, &history))
    }

    /// Every conversation, most recent first, each with whether the contact is online (`null`
    /// when not known).
    ///
    /// # Errors
    /// [`PeerError::Store`].
    pub fn conversations(&self) -> Result<Vec<view::Conversation>, PeerError> {
        let list = blocking(|| {
            let store = self.core.store();
            queries::conversations(store, SystemClock.now())?
                .into_iter()
                .map(|c| queries::ratchet(store, &c.with).map(|r| (c, r)))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(list
            .iter()
            .map(|(c, r)| view::Conversation::new(c, presence.get(&c.with).copied(), r))
            .collect())
    }

    /// Replaces the stored certificate with `der` (a renewal: same user, same keys). Blocks.
    ///
    /// # Errors
    /// [`PeerError::NotEnrolled`] when the identity is gone; [`PeerError::Store`].
    pub(crate) fn keep_certificate(&self, der: Vec<u8>) -> Result<(), PeerError> {
        let mut identity = self.store.identity()?.ok_or(PeerError::NotEnrolled)?;
        identity.certificate_der = der;
        self.store.save_identity(&identity)?;
        Ok(())
    }

    /// The peer's state.
    ///
    /// # Errors
    /// [`PeerError::Store`].
    pub fn status(&self) -> Result<view::Status, PeerError> {
        let now = SystemClock.now();
        let (status, list) = blocking(|| {
            Ok::<_, PeerError>((
                queries::status(&self.user, &self.node, self.core.store(), now)?,
                DeviceLists::device_list(&*self.store, &self.user)?,
            ))
        })?;
        let certificate = self.node.certificate().borrow().validity;
        let mut view = view::Status::new(&status, &self.rendezvous_addrs, &certificate, now);
        view.device_list = list.map(|l| view::DeviceListSummary::of(&l, &self.keys.ed25519));
        Ok(view)
    }

    /// A contact's safety number, and the one its new keys would give.
    ///
    /// # Errors
    /// [`PeerError::UnknownContact`] before the first message; [`PeerError::Store`].
    pub fn contact(&self, user: &Username) -> Result<view::Contact, PeerError> {
        let (contact, ratchet) = blocking(|| {
            let store = self.core.store();
            Ok::<_, PeerError>((
                queries::contact(store, &self.user, &self.keys, user)?,
                queries::ratchet(store, user)?,
            ))
        })?;
        let contact = contact.ok_or_else(|| PeerError::UnknownContact(user.clone()))?;
        Ok(view::Contact::new(&contact, &ratchet))
    }

    /// Accepts the keys `user` presented since the first contact.
    ///
    /// # Errors
    /// [`PeerError::Trust`] when there is nothing to accept.
    pub fn trust(&self, user: &Username) -> Result<view::Trusted, PeerError> {
        blocking(|| self.core.trust_new_keys(user)).map_err(PeerError::Trust)?;
        Ok(view::Trusted {
            trusted: true,
            user: user.to_string(),
        })
    }

    /// Turns the second factor of this user on at the rendezvous: from now on every
    /// enrollment of the name needs a current code. The answer holds the `otpauth://` URI of
    /// the new secret, to show once (as text and as a QR code).
    ///
    /// # Errors
    /// [`PeerError::Account`]: `totp_on` when it is on already, `rendezvous_unavailable`.
    pub async fn totp_enable(&self) -> Result<view::TotpEnabled, PeerError> {
        let secret = AccountService::totp_enable(&self.node)
            .await
            .map_err(PeerError::Account)?;
        let uri = parley_domain::totp::otpauth_uri(&self.user, &secret);
        Ok(view::TotpEnabled {
            qr_svg: view::qr_svg(&uri),
            uri,
        })
    }

    /// Turns the second factor of this user off, with a current `code`.
    ///
    /// # Errors
    /// [`PeerError::NotACode`]; [`PeerError::Account`]: `totp_off`, `invalid_totp`,
    /// `locked_out`, `rendezvous_unavailable`.
    pub async fn totp_disable(&self, code: &str) -> Result<view::TotpDisabled, PeerError> {
        parley_domain::totp::TotpCode::parse(code).map_err(PeerError::NotACode)?;
        AccountService::totp_disable(&self.node, code)
            .await
            .map_err(PeerError::Account)?;
        Ok(view::TotpDisabled { totp: false })
    }

    /// This user's devices as their signed list names them, the list made sure of at the
    /// rendezvous first (see [`OwnDevices::refresh`]).
    ///
    /// # Errors
    /// [`PeerError::Devices`]: `rendezvous_unavailable`, `device_list_refused` (the rendezvous
    /// serves a list no device of the user signed, or an older one it will not take back).
    pub async fn devices(&self) -> Result<Vec<view::Device>, PeerError> {
        let devices = self.refresh_devices().await?;
        Ok(view::Device::all(&devices.list, &devices.current))
    }

    /// [`OwnDevices::refresh`], one at a time. It runs on the async worker: its store reads
    /// are small, and it writes (and flushes) only when the list held changes.
    pub(crate) async fn refresh_devices(
        &self,
    ) -> Result<parley_usecases::commands::Devices, PeerError> {
        let _turn = self.devices_turn.lock().await;
        self.devices
            .refresh(SystemClock.now(), &self.device_name)
            .await
            .map_err(PeerError::Devices)
    }

    /// Counts everything in the conversation with `with` as read.
    ///
    /// # Errors
    /// [`PeerError::Store`].
    pub fn mark_read(&self, with: &Username) -> Result<view::Read, PeerError> {
        blocking(|| self.core.mark_read(with))?;
        Ok(view::Read {
            with: with.to_string(),
        })
    }

    /// Decrypts attachment `index` of message `id` in the conversation with `with` into the
    /// new file `to`.
    ///
    /// # Errors
    /// [`PeerError::Save`]: no such message or attachment, damaged, or the file exists.
    pub fn save_attachment(
        &self,
        with: &Username,
        id: &MessageId,
        index: usize,
        to: PathBuf,
    ) -> Result<view::Saved, PeerError> {
        let bytes = blocking(|| self.core.save_attachment(with, id, index, &to))
            .map_err(PeerError::Save)?;
        Ok(view::Saved {
            bytes,
            saved: to.to_string_lossy().into_owned(),
        })
    }

    /// Asks the directory about the most recent conversations' contacts; tells watchers of
    /// each change.
    async fn refresh_presence(&self) {
        let Ok(list) = blocking(|| queries::conversations(self.core.store(), SystemClock.now()))
        else {
            return;
        };
        for summary in list.into_iter().take(PRESENCE_CONTACTS) {
            // A directory that cannot answer tells nothing: the last known state stays.
            if let Ok(online) = queries::online(&self.node, &self.node, &summary.with).await {
                self.set_presence(&summary.with, online);
            }
        }
    }

    pub(crate) fn set_presence(&self, user: &Username, online: bool) {
        let changed = self
            .presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.clone(), online)
            != Some(online);
        if changed {
            self.events.emit(Event::Presence {
                user: user.clone(),
                online,
            });
        }
    }
}

/// The peer's events, as documents.
pub struct Watcher(broadcast::Receiver<Event>);

impl Watcher {
    /// The next event; `None` once the peer is gone. A watcher that fell behind gets
    /// `expired` with count 0 in place of what it missed: the window reloads on it.
    pub async fn next(&mut self) -> Option<view::Event> {
        loop {
            match self.0.recv().await {
                Ok(event) => {
                    if let Some(doc) = view::Event::of(&event) {
                        return Some(doc);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a watcher missed events; it reloads");
                    return Some(view::Event::Expired { count: 0 });
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// The encrypted size of an attachment of `plain` bytes (a 16-byte tag per 64 KiB chunk).
fn sealed_size(plain: u64) -> u64 {
    let chunk = parley_envelope::CHUNK as u64;
    plain + 16 * plain.div_ceil(chunk).max(1)
}

/// 16 random bytes from the operating system's generator.
fn random_id() -> Result<[u8; 16], PeerError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| PeerError::Random)?;
    Ok(bytes)
}

/// The name this device gives itself in its user's first device list: the host's name, else
/// "this device".
fn this_device_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .scan(0usize, |len, c| {
            *len += c.len_utf8();
            (*len <= parley_domain::devices::MAX_DEVICE_NAME).then_some(c)
        })
        .collect();
    if name.is_empty() {
        "this device".to_owned()
    } else {
        name
    }
}
