//! What the app pushes to its window while the peer runs: the peer's events, changes of the
//! status line, and the peer's stop on a failed store.

use std::{sync::Arc, time::Duration};

use parley_peer::{Peer, view};

use crate::session::{Phase, Shared};

/// How often the status line is compared with what the window last saw.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Where the window's events go.
pub type Emit = Arc<dyn Fn(view::Event) + Send + Sync>;

/// Starts pushing `peer`'s events to `emit`; each task ends when the peer is gone.
pub fn watch(peer: &Arc<Peer>, emit: &Emit, home: String, phase: Shared) {
    let mut events = peer.watch();
    let forward = emit.clone();
    tauri::async_runtime::spawn(async move {
        while let Some(event) = events.next().await {
            forward(event);
        }
    });

    let weak = Arc::downgrade(peer);
    let forward = emit.clone();
    tauri::async_runtime::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(STATUS_EVERY);
        loop {
            tick.tick().await;
            let Some(peer) = weak.upgrade() else { return };
            if let Ok(mut status) = peer.status() {
                status.home = Some(home.clone());
                if last.as_ref() != Some(&status) {
                    last = Some(status.clone());
                    forward(view::Event::Status { status });
                }
            }
        }
    });

    let peer = peer.clone();
    let forward = emit.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(stopped) = peer.stop_on_store_failure().await {
            // The phase first: a window told of the stop finds the app stopped.
            let message = stopped.to_string();
            *phase.lock().await = Phase::Fatal(message.clone());
            forward(view::Event::Stopped { message });
        }
    });
}
