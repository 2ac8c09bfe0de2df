//! `parley daemon`: opens the store, starts the peer ([`parley_peer::Peer`]), serves the
//! control socket, and stops cleanly on SIGINT or SIGTERM, or when the store fails.

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{Context, Result};
use parley_p2p::Multiaddr;
use parley_peer::{Attachment, Config, Home, Outgoing, Peer, PeerError};
use parley_telemetry::{LogFormat, Service};
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedWriteHalf},
    sync::broadcast,
};

use crate::control::{self, Request, Response, Subscribed};

/// Runs the daemon until a signal arrives.
pub async fn run(
    home: &Home,
    listen: Multiaddr,
    log_format: LogFormat,
    max_attachment: u64,
    rekey_every: parley_domain::ratchet::RekeyEvery,
    warnings: &[String],
) -> Result<()> {
    // Whatever the home held before (an older release, a folder made by hand) is made the
    // user's only; what the daemon creates later is, by the process's file-creation mask.
    parley_process::private_tree(home.path())?;
    let store = Arc::new(crate::unlock::open_store(home)?);
    let user = {
        use parley_usecases::ports::IdentityStore;
        store.identity()?.ok_or(PeerError::NotEnrolled)?.user
    };
    let telemetry = parley_telemetry::init(
        log_format,
        "info",
        Service {
            name: "parley-peer",
            user: Some(user.as_str()),
        },
    );
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if let Some(warning) = crate::unlock::key_file_warning(home, &store) {
        tracing::warn!("{warning}");
    }

    let socket_path = home.control_socket();
    let listener = bind_control_socket(&socket_path)?;
    let peer = Peer::start(
        store,
        Config {
            listen,
            max_attachment,
            rekey_every,
            watch_presence: false,
            program: "the daemon",
        },
    )
    .await?;
    let snapshot = peer.snapshot();
    println!("user: {user}");
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

    let stopped = tokio::select! {
        signal = wait_for_signal() => { signal?; None }
        stopped = peer.stop_on_store_failure() => stopped,
    };
    tracing::info!("stopping");
    let _ = stop_tx.send(());
    let _ = serving.await;
    peer.shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    drop(peer);
    telemetry.shutdown().await;
    match stopped {
        Some(stopped) => Err(stopped.into()),
        None => Ok(()),
    }
}

/// Binds the socket with mode 0600. A leftover socket from a crashed daemon is replaced: the
/// store's lock, taken before this, already proved no other daemon owns this home.
fn bind_control_socket(path: &Path) -> Result<UnixListener> {
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
    let Ok(request) = serde_json::from_str::<Request>(&line) else {
        let refusal = Response::<()>::Error {
            error: "the daemon did not understand the request; are parley and the daemon the same version?".into(),
            code: "bad_request".into(),
        };
        let _ = write_line(&mut write, &refusal).await;
        return;
    };
    let _ = match request {
        Request::Subscribe => subscribe(&peer, &mut write).await,
        Request::Send {
            to,
            text,
            ttl,
            attachments,
        } => {
            let outgoing = Outgoing {
                to,
                text,
                ttl,
                attachments: attachments.into_iter().map(Attachment::file).collect(),
            };
            reply(&mut write, peer.send(outgoing).await).await
        }
        Request::History { with } => reply(&mut write, peer.history(&with)).await,
        Request::Conversations => reply(&mut write, peer.conversations()).await,
        Request::Status => reply(&mut write, peer.status()).await,
        Request::Contact { user } => reply(&mut write, peer.contact(&user)).await,
        Request::Trust { user } => reply(&mut write, peer.trust(&user)).await,
        Request::TotpEnable => reply(&mut write, peer.totp_enable().await).await,
        Request::TotpDisable { code } => reply(&mut write, peer.totp_disable(&code).await).await,
        Request::Devices => reply(&mut write, peer.devices().await).await,
        Request::SaveAttachment {
            with,
            id,
            index,
            to,
        } => reply(&mut write, peer.save_attachment(&with, &id, index, to)).await,
    };
}

/// Streams the peer's events until the client or the peer goes.
async fn subscribe(peer: &Peer, write: &mut OwnedWriteHalf) -> std::io::Result<()> {
    let mut events = peer.watch();
    reply(write, Ok(Subscribed { subscribed: true })).await?;
    while let Some(event) = events.next().await {
        reply(write, Ok(event)).await?;
    }
    Ok(())
}

async fn reply<T: Serialize>(
    write: &mut OwnedWriteHalf,
    result: Result<T, PeerError>,
) -> std::io::Result<()> {
    let response = match result {
        Ok(data) => Response::Ok { data },
        Err(e) => Response::Error {
            error: e.to_string(),
            code: e.code().to_owned(),
        },
    };
    write_line(write, &response).await
}

async fn write_line<T: Serialize>(
    write: &mut OwnedWriteHalf,
    response: &Response<T>,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}
