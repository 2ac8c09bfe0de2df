//! `parley daemon`: opens the store, starts the peer ([`parley_peer::Peer`]), serves the
//! control socket, and stops cleanly on SIGINT or SIGTERM, or when the store fails.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow};
use parley_p2p::Multiaddr;
use parley_peer::{Config, Failure, Outgoing, Peer, view};
use parley_telemetry::{LogFormat, Service};
use parley_usecases::ports::{AttachmentSource, IdentityStore};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::broadcast,
};

use crate::control::{self, Request, Response};

/// Runs the daemon until a signal arrives.
pub async fn run(
    home: &Path,
    listen: Multiaddr,
    log_format: LogFormat,
    max_attachment: u64,
) -> Result<()> {
    let store = Arc::new(crate::unlock::open_store(home)?);
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
    if let Some(warning) = crate::unlock::key_file_warning(&store) {
        tracing::warn!("{warning}");
    }

    let socket_path = home.join(control::SOCKET);
    let listener = bind_control_socket(&socket_path)?;
    let peer = Peer::start(
        store,
        Config {
            listen,
            max_attachment,
            watch_presence: false,
        },
    )
    .await?;
    let snapshot = peer.snapshot();
    println!("user: {}", identity.user);
    println!("peer-id: {}", snapshot.peer_id);
    for addr in &snapshot.listen_addrs {
        println!("listen: {addr}");
    }
    println!("control: {}", socket_path.display());

    let (stop_tx, mut stop) = broadcast::channel::<()>(1);
    let p = peer.clone();
    let serving = tokio::spawn(async move {
        let mut clients = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.recv() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => { clients.spawn(serve_client(p.clone(), stream)); }
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
        failure = peer.store_failure() => Some(failure),
    };
    if let Some(failure) = &failure {
        tracing::error!(error = %failure, "the message store failed; stopping");
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(());
    let _ = serving.await;
    peer.shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    drop(peer);
    telemetry.shutdown().await;
    // The detail is in the log record above; the sentence says what to do.
    match failure {
        Some(_) => Err(anyhow!(
            "the daemon stopped because the message store could not write to disk; no message was acknowledged that is not stored: free space or fix the disk, then start the daemon again"
        )),
        None => Ok(()),
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

async fn serve_client(peer: Arc<Peer>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(control::MAX_REQUEST as u64 + 1)).lines();
    let line = match lines.next_line().await {
        Ok(Some(line)) => line,
        _ => return,
    };
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(request) => request,
        Err(_) => {
            let _ = reply(&mut write, Err(Failure::new("bad_request", "the daemon did not understand the request; are parley and the daemon the same version?"))).await;
            return;
        }
    };
    if let Request::Subscribe = request {
        let mut events = peer.subscribe();
        let _ = reply(&mut write, Ok(json!({ "subscribed": true }))).await;
        loop {
            match events.recv().await {
                Ok(event) => {
                    let data = view::event(&event);
                    if reply(&mut write, Ok(data)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
    let response = handle(&peer, request).await;
    let _ = reply(&mut write, response).await;
}

async fn reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    result: Result<Value, Failure>,
) -> std::io::Result<()> {
    let response = match result {
        Ok(data) => Response::Ok { data },
        Err(failure) => Response::Error {
            error: failure.message,
            code: failure.code,
        },
    };
    let mut line = serde_json::to_vec(&response).unwrap_or_default();
    line.push(b'\n');
    write.write_all(&line).await
}

async fn handle(peer: &Peer, request: Request) -> Result<Value, Failure> {
    match request {
        Request::Send {
            to,
            text,
            ttl,
            attachments,
        } => {
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
            peer.send(Outgoing {
                to,
                text,
                ttl,
                attachments,
            })
            .await
        }
        Request::History { with } => peer.history(&with),
        Request::Conversations => peer.conversations(),
        Request::Status => peer.status(),
        Request::Contact { user } => peer.contact(&user),
        Request::Trust { user } => peer.trust(&user),
        Request::SaveAttachment {
            with,
            id,
            index,
            to,
        } => peer.save_attachment(&with, &id, index, Path::new(&to)),
        Request::Subscribe => Err(Failure::new(
            "bad_request",
            "subscribe is handled elsewhere",
        )),
    }
}
