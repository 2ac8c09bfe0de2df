//! The peer's background tasks: storing incoming messages, and work on a timer. Each ends
//! when the peer stops.

use std::{sync::Arc, time::Duration};

use parley_domain::devices::Standing;
use parley_usecases::{
    commands::{Prekeys, ReceiveMessage, Replenished},
    ports::{NodeInfo, PrekeySecrets},
};
use tokio::{sync::watch, task::JoinSet};

use crate::{Peer, SystemClock};

/// Inbound messages being stored at once (they share one sync of the store).
const RECEIVING_AT_ONCE: usize = 32;

/// Stores incoming messages. Several are stored at once so that one sync covers them all
/// (group commit); each gets its receipt only after that sync.
pub(crate) async fn receive(
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
                    // Storing waits for the disk: keep that off the async workers. Many wait
                    // at once here (group commit), so each gets a thread of the blocking pool
                    // rather than holding a worker.
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

/// How often the mailbox is asked even when nothing said mail is waiting (the rendezvous
/// tells a connected peer at once; this is the net under that).
pub(crate) const MAIL_EVERY: Duration = Duration::from_secs(60);

/// Collects what the rendezvous holds for this device: whenever the node says mail is waiting
/// (the rendezvous told it, or the connection to the rendezvous came back) and every
/// [`MAIL_EVERY`].
pub(crate) async fn collect_mail(peer: Arc<Peer>) {
    let mut stop = peer.stop.subscribe();
    let waiting = peer.node().mail_waiting();
    let mut tick = tokio::time::interval(MAIL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            () = waiting.notified() => {}
            _ = tick.tick() => {}
        }
        // The collection stores to disk as it goes: off the async workers, as `blocking`.
        let p = peer.clone();
        let runtime = tokio::runtime::Handle::current();
        let outcome =
            tokio::task::spawn_blocking(move || runtime.block_on(p.core.collect_mail())).await;
        match outcome {
            Ok(Ok(done)) if done.stored > 0 || done.receipts > 0 => {
                tracing::info!(
                    stored = done.stored,
                    receipts = done.receipts,
                    "mail collected"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::info!(error = %e, "the mail could not be collected now"),
            Err(e) => tracing::error!(error = %e, "collecting the mail failed"),
        }
    }
}

/// How often the prekeys held at the rendezvous are checked once they are there.
pub(crate) const PREKEYS_EVERY: Duration = Duration::from_secs(5 * 60);
/// How soon a check that failed is tried again.
pub(crate) const PREKEYS_RETRY: Duration = Duration::from_secs(60);
/// How often the connection to the rendezvous is looked at while there is none.
const PREKEYS_CONNECT_POLL: Duration = Duration::from_secs(2);

/// Keeps this device's prekeys at the rendezvous ([`Prekeys::replenish`]): once the
/// rendezvous is connected, then every [`PREKEYS_EVERY`] ([`PREKEYS_RETRY`] after a failure).
/// It logs one line when a batch of one-time prekeys is published (the counts, never a key),
/// and the first failure of a run of failures.
pub(crate) async fn keep_prekeys<K: PrekeySecrets + 'static>(peer: Arc<Peer>, secrets: K) {
    let mut stop = peer.stop.subscribe();
    let prekeys = Arc::new(Prekeys::new(peer.node().clone(), secrets, SystemClock));
    let mut wait = Duration::ZERO;
    let mut failing = false;
    while connected_after(&peer, &mut stop, wait).await {
        // Making prekey secrets writes to the store: off the async workers, as `blocking`.
        let p = prekeys.clone();
        let runtime = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || runtime.block_on(p.replenish())).await;
        wait = match outcome {
            Ok(Ok(done)) => {
                failing = false;
                match done {
                    Replenished::Published { added, held } if added > 0 => {
                        tracing::info!(added, held, "published one-time prekeys");
                    }
                    Replenished::Published { held, .. } => {
                        tracing::debug!(held, "published the current signed prekeys");
                    }
                    Replenished::Enough { .. } => {}
                }
                PREKEYS_EVERY
            }
            Ok(Err(e)) => {
                if failing {
                    tracing::debug!(error = %e, code = e.code(), "prekeys not replenished");
                } else {
                    tracing::info!(
                        error = %e,
                        code = e.code(),
                        "the prekeys could not be replenished now; trying again"
                    );
                }
                failing = true;
                PREKEYS_RETRY
            }
            Err(e) => {
                tracing::error!(error = %e, "replenishing the prekeys failed");
                PREKEYS_RETRY
            }
        };
    }
}

/// How often the device list is made sure of at the rendezvous.
const DEVICES_EVERY: Duration = Duration::from_secs(10 * 60);
/// How soon again after a failure.
const DEVICES_RETRY: Duration = Duration::from_secs(30);

/// Makes sure of this user's signed device list once the rendezvous is connected (the first
/// device publishes it), then every [`DEVICES_EVERY`]; says in the log when this device is not
/// in it, or when the rendezvous serves a list this device refuses.
pub(crate) async fn keep_device_list(peer: Arc<Peer>) {
    let mut stop = peer.stop.subscribe();
    let mut wait = Duration::ZERO;
    let mut seen: Option<(u64, Standing)> = None;
    while connected_after(&peer, &mut stop, wait).await {
        wait = match peer.refresh_devices().await {
            Ok(devices) => {
                let now = (devices.list.version, devices.standing);
                if seen != Some(now) {
                    match devices.standing {
                        Standing::Confirmed => tracing::info!(
                            version = devices.list.version,
                            devices = devices.list.devices.len(),
                            "the signed device list names this device"
                        ),
                        Standing::Unconfirmed => tracing::warn!(
                            version = devices.list.version,
                            devices = devices.list.devices.len(),
                            "this device is not in its user's signed device list: contacts see it as a key change until they trust it"
                        ),
                    }
                    seen = Some(now);
                }
                DEVICES_EVERY
            }
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "the device list could not be made sure of now; trying again");
                DEVICES_RETRY
            }
        };
    }
}

/// Sleeps `wait`, then until the rendezvous is connected (polling every
/// [`PREKEYS_CONNECT_POLL`]): `true` then, `false` once the peer stops.
async fn connected_after(
    peer: &Peer,
    stop: &mut watch::Receiver<bool>,
    mut wait: Duration,
) -> bool {
    loop {
        tokio::select! {
            () = stopped(stop) => return false,
            () = tokio::time::sleep(wait) => {}
        }
        if peer.node().snapshot().rendezvous_connected {
            return true;
        }
        wait = PREKEYS_CONNECT_POLL;
    }
}

/// Resolves once the peer is stopping (at once if it already is).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Keeps each renewed certificate in the store, in place of the old one, as enrollment keeps
/// it (sealed, in one sled write, flushed before it counts), so a restart presents it too.
pub(crate) async fn keep_certificate(peer: Arc<Peer>) {
    let mut stop = peer.stop.subscribe();
    let mut held = peer.node().certificate();
    held.mark_unchanged();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            changed = held.changed() => {
                if changed.is_err() {
                    break;
                }
                let der = held.borrow_and_update().der.clone();
                let p = peer.clone();
                let kept = tokio::task::spawn_blocking(move || p.keep_certificate(der)).await;
                match kept {
                    Ok(Ok(())) => tracing::info!("kept the renewed certificate in the store"),
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "keeping the renewed certificate failed; it is used until the daemon stops"
                    ),
                    Err(e) => tracing::error!(error = %e, "keeping the renewed certificate failed"),
                }
            }
        }
    }
}

/// Runs `work` every `period` until the peer stops.
pub(crate) async fn every<F, Fut>(peer: Arc<Peer>, period: Duration, work: F)
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
