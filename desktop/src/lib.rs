//! The Parley desktop app: the same peer as `parley daemon` ([`parley_peer::Peer`]), in-process,
//! behind a Tauri window.
//!
//! The Tauri commands ([`commands`]) are thin: each parses what the window sent and calls the
//! peer (or the enrollment use case). The peer's events are pushed to the window as `parley`
//! events ([`parley_peer::view::Event`]). Secrets (passwords, passphrases, keys) pass through a
//! command once and stay in Rust.
//!
//! `session` decides the screen a home calls for and holds the running peer; `enrollment`
//! checks the first-run form and enrolls; `staging` keeps picked files until they are sent;
//! `window` pushes what the peer does to the window; `error` holds the desktop's own
//! refusals.
#![forbid(unsafe_code)]

pub mod commands;
mod enrollment;
mod error;
mod session;
mod staging;
mod window;

use std::path::PathBuf;

pub use error::Error;
use parley_p2p::Multiaddr;
pub use session::Desktop;
use tauri::{Emitter, Manager, Runtime};

/// How the app was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The home folder (store, keys, certificate), as for the `parley` command.
    pub home: PathBuf,
    /// Where the node listens for peers.
    pub listen: Multiaddr,
    /// The largest attachment sent or accepted, in bytes.
    pub max_attachment: u64,
    /// The rendezvous address to offer on the first-run screen.
    pub server: Option<String>,
    /// The CA fingerprint to offer on the first-run screen.
    pub ca_fingerprint: Option<String>,
    /// An invite (`parley://join?…`) the app was opened with, read on the first-run screen
    /// as if pasted; its server and fingerprint then replace the two above.
    pub invite: Option<String>,
    /// Where saved attachments go; `None`: the user's downloads folder.
    pub downloads: Option<PathBuf>,
}

/// The app on `builder`'s runtime (the real one, or Tauri's mock runtime in tests): the state
/// and the commands. Once built, [`connect`] it.
pub fn app<R: Runtime>(builder: tauri::Builder<R>, options: Options) -> tauri::Builder<R> {
    builder
        .manage(Desktop::new(options))
        .invoke_handler(tauri::generate_handler![
            commands::boot,
            commands::unlock,
            commands::check_username,
            commands::read_invite,
            commands::enroll,
            commands::conversations,
            commands::history,
            commands::send,
            commands::mark_read,
            commands::contact,
            commands::trust,
            commands::totp_enable,
            commands::totp_disable,
            commands::status,
            commands::stage_attachment,
            commands::discard_attachment,
            commands::save_attachment,
        ])
}

/// Connects the built app's state to its window: the peer's events are pushed as `parley`
/// events, and saved attachments go to the user's downloads folder.
pub fn connect<R: Runtime>(app: &tauri::App<R>) {
    let handle = app.handle().clone();
    let downloads = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .unwrap_or_else(|_| PathBuf::from("."));
    app.state::<Desktop>().attach_window(
        move |payload| {
            if let Err(e) = handle.emit("parley", payload) {
                tracing::warn!(error = %e, "an event could not reach the window");
            }
        },
        downloads,
    );
}

/// Runs the app until its window closes, then stops the node and flushes `telemetry`.
///
/// # Errors
/// One sentence when the window cannot be created (no display, no WebKitGTK).
pub fn run(options: Options, telemetry: parley_telemetry::Telemetry) -> Result<(), String> {
    let app = app(tauri::Builder::default(), options)
        .build(tauri::generate_context!())
        .map_err(|e| format!("the window could not be opened ({e}); is a display available?"))?;
    connect(&app);
    let mut telemetry = Some(telemetry);
    app.run(move |app, event| {
        if let tauri::RunEvent::Exit = event {
            let desktop = app.state::<Desktop>();
            tauri::async_runtime::block_on(desktop.close());
            if let Some(telemetry) = telemetry.take() {
                tauri::async_runtime::block_on(telemetry.shutdown());
            }
        }
    });
    Ok(())
}
