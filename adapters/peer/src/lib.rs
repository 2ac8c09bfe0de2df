//! The running Parley peer: the message store, the libp2p node and the use cases, wired once.
//!
//! Two programs drive it: `parley daemon` (over its control socket) and `parley-desktop` (over
//! Tauri commands). Both call the same methods and show the same JSON documents ([`view`]), so
//! a rule changes in one place. The background work lives here too: storing incoming messages
//! with group commit, retrying the outbox, deleting expired messages, watching contacts'
//! presence, and noticing a store that can no longer write.
#![forbid(unsafe_code)]

pub mod view;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use parley_domain::{Digest, MessageId, MessageText, PeerKeys, Timestamp, Ttl, Username};
use parley_envelope::Sealer;
use parley_p2p::{AttachmentConfig, Credentials, Multiaddr, Node, NodeConfig};
use parley_store::Store;
use parley_usecases::{
    commands::{Messaging, ReceiveMessage, SaveError, SendError, SendMessage, TrustError},
    ports::{AttachmentError, AttachmentSource, Clock, Event, EventSink, IdentityStore, NodeInfo},
    queries,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{
    sync::{broadcast, watch},
    task::JoinSet,
};

/// How often the outbox is retried while it holds messages.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long `send` waits for a name that is not (yet) in the directory.
const SEND_GRACE: Duration = Duration::from_secs(3);
/// Inbound messages waiting to be stored.
const INBOUND_QUEUE: usize = 256;
/// Inbound messages being stored at once (they share one sync of the store).
const RECEIVING_AT_ONCE: usize = 32;
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

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(ms)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Events fan out to every watcher (control-socket subscribers, the desktop window).
pub struct Broadcast(broadcast::Sender<Event>);

impl EventSink for Broadcast {
    fn emit(&self, event: Event) {
        // No watcher is not an error.
        let _ = self.0.send(event);
    }
}

type Core = Messaging<Arc<Store>, Node, Node, SystemClock, Arc<Broadcast>, Sealer>;

/// How the peer runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen for peers.
    pub listen: Multiaddr,
    /// The largest attachment sent or accepted, in bytes of plaintext.
    pub max_attachment: u64,
    /// Whether to ask the directory, now and then, which contacts are online (the desktop's
    /// presence dots). A headless peer does not need it.
    pub watch_presence: bool,
}

/// A refusal: a stable snake_case code and one sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The stable code.
    pub code: String,
    /// One sentence.
    pub message: String,
    /// For a send: the message is kept in the outbox and goes out by itself later.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

impl Failure {
    /// A refusal with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            queued: false,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The recipient, as typed.
    pub to: String,
    /// The text.
    pub text: String,
    /// The time to live as typed (`30s`, `10m`, `1h`, `7d`), for a disappearing message.
    pub ttl: Option<String>,
    /// Files to attach.
    pub attachments: Vec<AttachmentSource>,
}

/// The running peer. Share it behind an [`Arc`]; stop it with [`Peer::shutdown`].
pub struct Peer {
    user: Username,
    keys: PeerKeys,
    core: Core,
    node: Node,
    store: Arc<Store>,
    events: Arc<Broadcast>,
    rendezvous_addrs: Vec<String>,
    presence: Mutex<HashMap<Username, bool>>,
    /// Turns true once: every background task ends then (a task that starts late still sees
    /// it).
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl Peer {
    /// Starts the node on an opened store and the background work around it. Needs a
    /// multi-threaded tokio runtime.
    ///
    /// # Errors
    /// One sentence each: the home is not enrolled, the stored identity is unusable, or the
    /// node cannot listen.
    pub async fn start(store: Arc<Store>, config: Config) -> Result<Arc<Self>> {
        store.set_attachment_limit(config.max_attachment);
        // Expired messages go before anything else reads the store.
        let purged = tokio::task::block_in_place(|| {
            parley_usecases::ports::Expiry::purge_expired(&*store, SystemClock.now())
        })?;
        if purged > 0 {
            tracing::info!(purged, "expired messages deleted at start-up");
        }
        let identity = store
            .identity()?
            .ok_or_else(|| anyhow!("this home is not enrolled yet; run `parley enroll` first"))?;
        let credentials = Credentials::new(
            &identity.ed25519,
            identity.certificate_der.clone(),
            identity.ca_der.clone(),
        )
        .context("the stored certificate does not fit the stored key; enroll again")?;
        let rendezvous = identity
            .rendezvous_addrs
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|_| anyhow!("stored rendezvous address {a} is invalid; enroll again"))
            })
            .collect::<Result<Vec<_>>>()?;
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
        })
        .await?;
        let keys = parley_p2p::pki::inspect(&identity.certificate_der)
            .context("the stored certificate cannot be read; enroll again")?
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
                Sealer::new(&identity.ed25519, &identity.x25519),
            ),
            node,
            store,
            events,
            rendezvous_addrs: identity.rendezvous_addrs.clone(),
            presence: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
        });
        {
            let mut tasks = peer.tasks.lock().await;
            tasks.spawn(receive_loop(peer.clone(), inbound));
            tasks.spawn(every(peer.clone(), PURGE_EVERY, |p| async move {
                if let Err(e) = tokio::task::block_in_place(|| p.core.purge_expired()) {
                    tracing::error!(error = %e, "purging expired messages failed");
                }
            }));
            tasks.spawn(every(peer.clone(), RETRY_EVERY, |p| async move {
                if let Err(e) = p.core.retry_outbox().await {
                    tracing::error!(error = %e, "outbox retry failed");
                }
            }));
            if config.watch_presence {
                tasks.spawn(every(peer.clone(), PRESENCE_EVERY, |p| async move {
                    p.refresh_presence().await;
                }));
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

    /// A new watcher of the peer's events.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.0.subscribe()
    }

    /// Resolves, with the reason, once the store has failed: it refuses every write after a
    /// write it could not make durable, so the peer must stop (only opening the store again
    /// recovers).
    pub async fn store_failure(&self) -> String {
        let mut tick = tokio::time::interval(STORE_CHECK_EVERY);
        loop {
            tick.tick().await;
            if let Some(failure) = self.store.failure() {
                return failure;
            }
        }
    }

    /// Why the store failed, if it has (see [`Peer::store_failure`]).
    #[must_use]
    pub fn store_failed(&self) -> Option<String> {
        self.store.failure()
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
    /// [`Failure`]; `queued` says the message is kept and goes out by itself later.
    pub async fn send(&self, outgoing: Outgoing) -> Result<Value, Failure> {
        let to = username(&outgoing.to)?;
        let text = MessageText::parse(outgoing.text)
            .map_err(|e| Failure::new("invalid_text", format!("cannot send: {e}")))?;
        let ttl = outgoing
            .ttl
            .map(|raw| {
                Ttl::parse(&raw)
                    .map_err(|e| Failure::new("invalid_ttl", format!("cannot send: {e}")))
            })
            .transpose()?;
        let id = MessageId::from_bytes(random_id()?);
        let cmd = SendMessage {
            id,
            to: to.clone(),
            text,
            ttl,
            attachments: outgoing.attachments,
        };
        self.send_patiently(cmd).await.map_err(|e| Failure {
            code: e.code().to_owned(),
            message: e.to_string(),
            queued: e.queued(),
        })?;
        self.set_presence(&to, true);
        Ok(json!({ "id": id.to_string(), "to": to.as_str(), "delivered": true }))
    }

    /// Only refusals that kept nothing are retried, so a retry can never create a second
    /// message.
    async fn send_patiently(&self, cmd: SendMessage) -> Result<(), SendError> {
        let deadline = tokio::time::Instant::now() + SEND_GRACE;
        loop {
            match self.core.send(cmd.clone()).await {
                Err(
                    SendError::UnknownUser(_)
                    | SendError::DirectoryUnavailable { queued: false, .. },
                ) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// The conversation with `with`, oldest first, with its chains' state.
    ///
    /// # Errors
    /// [`Failure`] for a bad name or an unreadable store.
    pub fn history(&self, with: &str) -> Result<Value, Failure> {
        let with = username(with)?;
        let history =
            queries::history(self.core.store(), &with, SystemClock.now()).map_err(store_failure)?;
        Ok(view::history(with.as_str(), &history))
    }

    /// Every conversation, most recent first, each with whether the contact is online (`null`
    /// when not known).
    ///
    /// # Errors
    /// [`Failure`] for an unreadable store.
    pub fn conversations(&self) -> Result<Value, Failure> {
        let list =
            queries::conversations(self.core.store(), SystemClock.now()).map_err(store_failure)?;
        let presence = self.presence.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Value::Array(
            list.iter()
                .map(|c| {
                    let mut doc = view::conversation(c);
                    doc["online"] = json!(presence.get(&c.with));
                    doc
                })
                .collect(),
        ))
    }

    /// The peer's state.
    ///
    /// # Errors
    /// [`Failure`] for an unreadable store.
    pub fn status(&self) -> Result<Value, Failure> {
        let status = queries::status(&self.user, &self.node, self.core.store(), SystemClock.now())
            .map_err(store_failure)?;
        Ok(view::status(&status, &self.rendezvous_addrs))
    }

    /// A contact's safety number, and the one its new keys would give.
    ///
    /// # Errors
    /// [`Failure`] `unknown_contact` before the first message, or for a bad name.
    pub fn contact(&self, user: &str) -> Result<Value, Failure> {
        let user = username(user)?;
        let contact = queries::contact(self.core.store(), &self.user, &self.keys, &user)
            .map_err(store_failure)?
            .ok_or_else(|| {
                Failure::new(
                    "unknown_contact",
                    format!(
                        "{user} is not one of your contacts yet; keys are pinned at the first message"
                    ),
                )
            })?;
        Ok(view::contact(&contact))
    }

    /// Accepts the keys `user` presented since the first contact.
    ///
    /// # Errors
    /// [`Failure`] when there is nothing to accept.
    pub fn trust(&self, user: &str) -> Result<Value, Failure> {
        let user = username(user)?;
        self.core.trust_new_keys(&user).map_err(|e| {
            let code = match e {
                TrustError::UnknownContact(_) => "unknown_contact",
                TrustError::NothingPending(_) => "nothing_pending",
                TrustError::Seal(_) => "seal_failed",
                _ => "store_unavailable",
            };
            Failure::new(code, e.to_string())
        })?;
        Ok(json!({ "user": user.as_str(), "trusted": true }))
    }

    /// Counts everything in the conversation with `with` as read.
    ///
    /// # Errors
    /// [`Failure`] for a bad name or a failed store.
    pub fn mark_read(&self, with: &str) -> Result<Value, Failure> {
        let with = username(with)?;
        self.core.mark_read(&with).map_err(store_failure)?;
        Ok(json!({ "with": with.as_str() }))
    }

    /// Decrypts attachment `index` of message `id` in the conversation with `with` into the
    /// new file `to`.
    ///
    /// # Errors
    /// [`Failure`]: no such message or attachment, damaged, or the file exists.
    pub fn save_attachment(
        &self,
        with: &str,
        id: &str,
        index: usize,
        to: &Path,
    ) -> Result<Value, Failure> {
        let with = username(with)?;
        let id = MessageId::parse(id)
            .map_err(|e| Failure::new("invalid_id", format!("{id:?} is not a message id: {e}")))?;
        let to = to.to_string_lossy().into_owned();
        let bytes =
            tokio::task::block_in_place(|| self.core.save_attachment(&with, &id, index, &to))
                .map_err(|e| {
                    let code = match &e {
                        SaveError::NoMessage { .. } => "no_message",
                        SaveError::NoAttachment { .. } => "no_attachment",
                        SaveError::Attachment(AttachmentError::Damaged) => "attachment_damaged",
                        SaveError::Attachment(AttachmentError::Destination(_)) => "destination",
                        _ => "store_unavailable",
                    };
                    Failure::new(code, e.to_string())
                })?;
        Ok(json!({ "saved": to, "bytes": bytes }))
    }

    /// Asks the directory about the most recent conversations' contacts; tells watchers of
    /// each change.
    async fn refresh_presence(&self) {
        let Ok(list) = queries::conversations(self.core.store(), SystemClock.now()) else {
            return;
        };
        for summary in list.into_iter().take(PRESENCE_CONTACTS) {
            // A directory that cannot answer tells nothing: the last known state stays.
            if let Ok(online) = queries::online(&self.node, &summary.with).await {
                self.set_presence(&summary.with, online);
            }
        }
    }

    fn set_presence(&self, user: &Username, online: bool) {
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

/// Stores incoming messages. Several are stored at once so that one sync covers them all
/// (group commit); each gets its receipt only after that sync.
async fn receive_loop(
    peer: Arc<Peer>,
    mut inbound: tokio::sync::mpsc::Receiver<parley_p2p::Inbound>,
) {
    let mut stop = peer.stop.subscribe();
    let slots = Arc::new(tokio::sync::Semaphore::new(RECEIVING_AT_ONCE));
    let mut receiving = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = receiving.join_next(), if !receiving.is_empty() => {}
            next = inbound.recv() => {
                let Some(inbound) = next else { break };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let peer = peer.clone();
                receiving.spawn(async move {
                    let _slot = slot;
                    let from = inbound.from.clone();
                    let cmd = ReceiveMessage {
                        from: inbound.from.clone(),
                        keys: inbound.keys,
                        envelope: inbound.envelope.clone(),
                    };
                    // Storing waits for the disk: keep that off the async workers.
                    let span = inbound.span();
                    let p = peer.clone();
                    let outcome = tokio::task::spawn_blocking(move || {
                        span.in_scope(|| p.core.receive(cmd))
                    })
                    .await;
                    match outcome {
                        Ok(Ok(_)) => {
                            inbound.accept();
                            peer.set_presence(&from, true);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, code = e.code(), "incoming message refused");
                            if e.is_permanent() {
                                inbound.reject_for_good(e.to_string());
                            } else {
                                inbound.refuse_for_now(e.to_string());
                            }
                        }
                        Err(_) => inbound.refuse_for_now("the recipient failed to store it".into()),
                    }
                });
            }
        }
    }
    receiving.shutdown().await;
}

/// Resolves once the peer is stopping (at once if it already is).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Runs `work` every `period` until the peer stops.
async fn every<F, Fut>(peer: Arc<Peer>, period: Duration, work: F)
where
    F: Fn(Arc<Peer>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stop = peer.stop.subscribe();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            _ = tick.tick() => work(peer.clone()).await,
        }
    }
}

fn username(raw: &str) -> Result<Username, Failure> {
    Username::parse(raw).map_err(|e| {
        Failure::new(
            "invalid_username",
            format!("{raw:?} is not a valid username: {e}"),
        )
    })
}

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new("store_unavailable", e.to_string())
}

/// The encrypted size of an attachment of `plain` bytes (a 16-byte tag per 64 KiB chunk).
fn sealed_size(plain: u64) -> u64 {
    let chunk = parley_envelope::CHUNK as u64;
    plain + 16 * plain.div_ceil(chunk).max(1)
}

/// 16 random bytes from the operating system's generator.
fn random_id() -> Result<[u8; 16], Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| {
        Failure::new(
            "internal",
            "the system's random generator failed; nothing was sent",
        )
    })?;
    Ok(bytes)
}
