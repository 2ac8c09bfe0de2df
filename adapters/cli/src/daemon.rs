//! `parley daemon`: wires the store, the node and the use cases, serves the control socket,
//! retries the outbox, and stops cleanly on SIGINT or SIGTERM.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use parley_domain::{Digest, MessageId, MessageText, PeerKeys, Timestamp, Ttl, Username};
use parley_envelope::Sealer;
use parley_p2p::{AttachmentConfig, Credentials, Multiaddr, Node, NodeConfig};
use parley_store::Store;
use parley_telemetry::{LogFormat, Service};
use parley_usecases::{
    commands::{Messaging, ReceiveMessage, SaveError, SendError, SendMessage, TrustError},
    ports::{AttachmentError, AttachmentSource, Clock, Event, EventSink, IdentityStore},
    queries,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::broadcast,
};

use crate::{
    control::{self, Request, Response},
    present,
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
/// How often the daemon looks whether the store has failed.
const STORE_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often expired messages are deleted (queries hide them from the very millisecond they
/// expire; this is when their keys and records go).
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp(ms)
    }
}

/// Events fan out to every control-socket subscriber.
pub struct Broadcast(broadcast::Sender<Event>);

impl EventSink for Broadcast {
    fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.0.send(event);
    }
}

type Core = Messaging<Arc<Store>, Node, Node, SystemClock, Arc<Broadcast>, Sealer>;

struct Daemon {
    user: Username,
    keys: PeerKeys,
    core: Core,
    node: Node,
    events: Arc<Broadcast>,
    rendezvous_addrs: Vec<String>,
}

/// Runs the daemon until a signal arrives.
pub async fn run(
    home: &Path,
    listen: Multiaddr,
    log_format: LogFormat,
    max_attachment: u64,
) -> Result<()> {
    let store = Arc::new(crate::unlock::open_store(home)?);
    store.set_attachment_limit(max_attachment);
    // Expired messages go before anything else reads the store.
    let purged = tokio::task::block_in_place(|| {
        parley_usecases::ports::MessageStore::purge_expired(&*store, SystemClock.now())
    })?;
    let identity = store
        .identity()?
        .ok_or_else(|| anyhow!("this home is not enrolled yet; run `parley enroll` first"))?;
    let telemetry = parley_telemetry::init(
        log_format,
        "info",
        Service {
            name: "parley-peer",
            user: Some(identity.user.as_str()),
        },
    );
    if purged > 0 {
        tracing::info!(purged, "expired messages deleted at start-up");
    }
    if let Some(warning) = crate::unlock::key_file_warning(&store) {
        tracing::warn!("{warning}");
    }
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

    let socket_path = home.join(control::SOCKET);
    let listener = bind_control_socket(&socket_path)?;

    let (node, mut inbound) = Node::start(NodeConfig {
        credentials,
        user: identity.user.clone(),
        listen,
        rendezvous,
        inbound_queue: INBOUND_QUEUE,
        attachments: Some(AttachmentConfig {
            staging: {
                let store = store.clone();
                Arc::new(move |from: &Username, sha256: &Digest| store.staging_path(from, sha256))
            },
            max_bytes: sealed_size(max_attachment),
        }),
    })
    .await?;
    let snapshot = parley_usecases::ports::NodeInfo::snapshot(&node);
    println!("user: {}", identity.user);
    println!("peer-id: {}", snapshot.peer_id);
    for addr in &snapshot.listen_addrs {
        println!("listen: {addr}");
    }
    println!("control: {}", socket_path.display());

    let events = Arc::new(Broadcast(broadcast::channel(EVENT_BUFFER).0));
    let own_keys = parley_p2p::pki::inspect(&identity.certificate_der)
        .context("the stored certificate cannot be read; enroll again")?
        .keys();
    let daemon = Arc::new(Daemon {
        user: identity.user.clone(),
        keys: own_keys,
        core: Messaging::new(
            identity.user.clone(),
            store.clone(),
            node.clone(),
            node.clone(),
            SystemClock,
            events.clone(),
            Sealer::new(&identity.ed25519, &identity.x25519),
        ),
        node: node.clone(),
        events,
        rendezvous_addrs: identity.rendezvous_addrs.clone(),
    });

    let (stop_tx, _) = broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();

    let d = daemon.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        // Several messages are stored at once so that one sync covers them all (group
        // commit); each gets its receipt only after that sync.
        let slots = Arc::new(tokio::sync::Semaphore::new(RECEIVING_AT_ONCE));
        let mut receiving = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                Some(_) = receiving.join_next(), if !receiving.is_empty() => {}
                next = inbound.recv() => {
                    let Some(inbound) = next else { break };
                    let Ok(slot) = slots.clone().acquire_owned().await else { break };
                    let d = d.clone();
                    receiving.spawn(async move {
                        let _slot = slot;
                        let cmd = ReceiveMessage {
                            from: inbound.from.clone(),
                            keys: inbound.keys,
                            envelope: inbound.envelope.clone(),
                        };
                        // Storing waits for the disk: keep that off the async workers.
                        let span = inbound.span();
                        let outcome = tokio::task::spawn_blocking(move || {
                            span.in_scope(|| d.core.receive(cmd))
                        })
                        .await;
                        match outcome {
                            Ok(Ok(_)) => inbound.accept(),
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, code = e.code(), "incoming message refused");
                                if e.is_permanent() {
                                    inbound.reject(e.to_string());
                                } else {
                                    inbound.refuse(e.to_string());
                                }
                            }
                            Err(_) => inbound.refuse("the recipient failed to store it".into()),
                        }
                    });
                }
            }
        }
        receiving.shutdown().await;
    });

    let d = daemon.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                _ = tick.tick() => {
                    if let Err(e) = tokio::task::block_in_place(|| d.core.purge_expired()) {
                        tracing::error!(error = %e, "purging expired messages failed");
                    }
                }
            }
        }
    });

    let d = daemon.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(RETRY_EVERY);
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                _ = tick.tick() => {
                    if let Err(e) = d.core.retry_outbox().await {
                        tracing::error!(error = %e, "outbox retry failed");
                    }
                }
            }
        }
    });

    let d = daemon.clone();
    let mut stop = stop_tx.subscribe();
    tasks.spawn(async move {
        let mut clients = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => { clients.spawn(serve_client(d.clone(), stream)); }
                    Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
                },
                Some(_) = clients.join_next(), if !clients.is_empty() => {}
            }
        }
        clients.shutdown().await;
    });

    // A store that could not make a write durable refuses every write after it (and so every
    // incoming message, without a receipt); only opening it again recovers. Stop, and say why.
    let failure = tokio::select! {
        signal = wait_for_signal() => { signal?; None }
        failure = store_failure(&store) => Some(failure),
    };
    if let Some(failure) = &failure {
        tracing::error!(error = %failure, "the message store failed; stopping");
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(());
    while tasks.join_next().await.is_some() {}
    node.shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    drop(daemon);
    telemetry.shutdown().await;
    // The detail is in the log record above; the sentence says what to do.
    match failure {
        Some(_) => Err(anyhow!(
            "the daemon stopped because the message store could not write to disk; no message was acknowledged that is not stored: free space or fix the disk, then start the daemon again"
        )),
        None => Ok(()),
    }
}

/// Resolves with the reason once the store has failed.
async fn store_failure(store: &Store) -> String {
    let mut tick = tokio::time::interval(STORE_CHECK_EVERY);
    loop {
        tick.tick().await;
        if let Some(failure) = store.failure() {
            return failure;
        }
    }
}

/// Binds the socket with mode 0600. A leftover socket from a crashed daemon is replaced: the
/// store's lock, taken before this, already proved no other daemon owns this home.
fn bind_control_socket(path: &PathBuf) -> Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| {
            format!("cannot remove the stale control socket {}", path.display())
        })?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", path.display()))?;
    Ok(listener)
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

async fn serve_client(daemon: Arc<Daemon>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(control::MAX_REQUEST as u64 + 1)).lines();
    let line = match lines.next_line().await {
        Ok(Some(line)) => line,
        _ => return,
    };
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(request) => request,
        Err(_) => {
            let _ = reply(&mut write, failure("bad_request", "the daemon did not understand the request; are parley and the daemon the same version?")).await;
            return;
        }
    };
    if let Request::Subscribe = request {
        let mut events = daemon.events.0.subscribe();
        let _ = reply(
            &mut write,
            Response::Ok {
                data: json!({ "subscribed": true }),
            },
        )
        .await;
        loop {
            match events.recv().await {
                Ok(event) => {
                    let data = match event {
                        Event::MessageReceived(m) => {
                            json!({ "event": "message", "message": present::message(&m) })
                        }
                        Event::KeysChanged { user } => {
                            json!({ "event": "keys_changed", "user": user.as_str() })
                        }
                        Event::MessageDelivered { id, to } => {
                            json!({ "event": "delivered", "id": id.to_string(), "to": to.as_str() })
                        }
                        _ => continue,
                    };
                    if reply(&mut write, Response::Ok { data }).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
    let response = handle(&daemon, request).await;
    let _ = reply(&mut write, response).await;
}

async fn reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&response).unwrap_or_default();
    line.push(b'\n');
    write.write_all(&line).await
}

fn failure(code: &str, error: impl Into<String>) -> Response {
    Response::Error {
        error: error.into(),
        code: code.into(),
    }
}

fn username(raw: &str) -> Result<Username, Response> {
    Username::parse(raw).map_err(|e| {
        failure(
            "invalid_username",
            format!("{raw:?} is not a valid username: {e}"),
        )
    })
}

async fn handle(daemon: &Daemon, request: Request) -> Response {
    let result: Result<Value, Response> = async {
        match request {
            Request::Send { to, text, ttl, attachments } => {
                let to = username(&to)?;
                let text = MessageText::parse(text)
                    .map_err(|e| failure("invalid_text", format!("cannot send: {e}")))?;
                let ttl = ttl
                    .map(|raw| Ttl::parse(&raw).map_err(|e| failure("invalid_ttl", format!("cannot send: {e}"))))
                    .transpose()?;
                let attachments = attachments
                    .into_iter()
                    .map(|path| AttachmentSource {
                        name: Path::new(&path)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        path,
                    })
                    .collect();
                let id = MessageId::from_bytes(random_id()?);
                send_patiently(&daemon.core, SendMessage { id, to: to.clone(), text, ttl, attachments })
                    .await
                    .map_err(|e| failure(e.code(), e.to_string()))?;
                Ok(json!({ "id": id.to_string(), "to": to.as_str(), "delivered": true }))
            }
            Request::History { with } => {
                let with = username(&with)?;
                let history = queries::history(daemon.core.store(), &with, SystemClock.now())
                    .map_err(|e| failure("store_unavailable", e.to_string()))?;
                Ok(present::history(with.as_str(), &history))
            }
            Request::Conversations => {
                let list = queries::conversations(daemon.core.store(), SystemClock.now())
                    .map_err(|e| failure("store_unavailable", e.to_string()))?;
                Ok(Value::Array(list.iter().map(present::conversation).collect()))
            }
            Request::Status => {
                let status = queries::status(&daemon.user, &daemon.node, daemon.core.store(), SystemClock.now())
                    .map_err(|e| failure("store_unavailable", e.to_string()))?;
                Ok(present::status(&status, &daemon.rendezvous_addrs))
            }
            Request::Contact { user } => {
                let user = username(&user)?;
                let view = queries::contact(daemon.core.store(), &daemon.user, &daemon.keys, &user)
                    .map_err(|e| failure("store_unavailable", e.to_string()))?
                    .ok_or_else(|| {
                        failure(
                            "unknown_contact",
                            format!("{user} is not one of your contacts yet; keys are pinned at the first message"),
                        )
                    })?;
                Ok(present::contact(&view))
            }
            Request::Trust { user } => {
                let user = username(&user)?;
                daemon.core.trust_new_keys(&user).map_err(|e| {
                    let code = match e {
                        TrustError::UnknownContact(_) => "unknown_contact",
                        TrustError::NothingPending(_) => "nothing_pending",
                        TrustError::Seal(_) => "seal_failed",
                        _ => "store_unavailable",
                    };
                    failure(code, e.to_string())
                })?;
                Ok(json!({ "user": user.as_str(), "trusted": true }))
            }
            Request::SaveAttachment { with, id, index, to } => {
                let with = username(&with)?;
                let id = MessageId::parse(&id)
                    .map_err(|e| failure("invalid_id", format!("{id:?} is not a message id: {e}")))?;
                let bytes = tokio::task::block_in_place(|| {
                    daemon.core.save_attachment(&with, &id, index, &to)
                })
                .map_err(|e| {
                    let code = match &e {
                        SaveError::NoMessage { .. } => "no_message",
                        SaveError::NoAttachment { .. } => "no_attachment",
                        SaveError::Attachment(AttachmentError::Damaged) => "attachment_damaged",
                        SaveError::Attachment(AttachmentError::Destination(_)) => "destination",
                        _ => "store_unavailable",
                    };
                    failure(code, e.to_string())
                })?;
                Ok(json!({ "saved": to, "bytes": bytes }))
            }
            Request::Subscribe => Err(failure("bad_request", "subscribe is handled elsewhere")),
        }
    }
    .await;
    match result {
        Ok(data) => Response::Ok { data },
        Err(response) => response,
    }
}

/// Sends, giving a stranger a short grace to appear in the directory: a peer that started a
/// moment ago may not have registered yet. Only refusals that kept nothing are retried, so a
/// retry can never create a second message.
async fn send_patiently(core: &Core, cmd: SendMessage) -> Result<(), SendError> {
    let deadline = tokio::time::Instant::now() + SEND_GRACE;
    loop {
        match core.send(cmd.clone()).await {
            Err(
                SendError::UnknownUser(_) | SendError::DirectoryUnavailable { queued: false, .. },
            ) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The encrypted size of an attachment of `plain` bytes (a 16-byte tag per 64 KiB chunk).
fn sealed_size(plain: u64) -> u64 {
    let chunk = parley_envelope::CHUNK as u64;
    plain + 16 * plain.div_ceil(chunk).max(1)
}

/// 16 random bytes from the operating system's generator.
fn random_id() -> Result<[u8; 16], Response> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| {
        failure(
            "internal",
            "the system's random generator failed; nothing was sent",
        )
    })?;
    Ok(bytes)
}
