//! `parley-desktop`: Parley in a window. Arguments and environment as for `parley`.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// Parley, the desktop app: peer-to-peer messages over mutual TLS.
#[derive(Parser)]
#[command(name = "parley-desktop", version, about)]
struct Cli {
    /// The home folder (keys, certificate, store); default ~/.parley.
    #[arg(long, env = "PARLEY_HOME")]
    home: Option<PathBuf>,
    /// Where to listen for peers.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: String,
    /// The largest attachment sent or accepted, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_attachment_mib: u64,
    /// The rendezvous address to offer on the first-run screen.
    #[arg(long, env = "PARLEY_SERVER")]
    server: Option<String>,
    /// The CA fingerprint to offer on the first-run screen.
    #[arg(long, env = "PARLEY_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// Where saved attachments go; default: your downloads folder.
    #[arg(long)]
    downloads: Option<PathBuf>,
    /// An invite (parley://join?…) to open the first-run screen with: what the desktop entry
    /// passes when a parley: link is opened.
    #[arg(value_name = "INVITE")]
    invite: Option<String>,
    /// How log records on stderr are written.
    #[arg(long, value_enum, default_value_t)]
    log_format: parley_telemetry::LogFormat,
}

fn main() -> ExitCode {
    // Packaging only: the completions and manual pages, from this very definition.
    if let Some(dir) = std::env::var_os(parley_assets::VARIABLE) {
        return parley_assets::run(<Cli as clap::CommandFactory>::command(), dir.as_ref());
    }
    let cli = Cli::parse();
    let Some(home) = cli.home.or_else(parley_peer::Home::default_path) else {
        eprintln!("error: no home folder: pass --home DIR or set PARLEY_HOME");
        return ExitCode::from(2);
    };
    let Ok(listen) = cli.listen.parse() else {
        eprintln!(
            "error: --listen {} is not a multiaddr (for example /ip4/0.0.0.0/tcp/0)",
            cli.listen
        );
        return ExitCode::from(2);
    };
    // The exporter's batches are sent from the runtime the app's commands run on.
    let telemetry = tauri::async_runtime::block_on(async {
        parley_telemetry::init(
            cli.log_format,
            "info",
            parley_telemetry::Service {
                name: "parley-desktop",
                user: None,
            },
        )
    });
    let options = parley_desktop::Options {
        home,
        listen,
        max_attachment: cli.max_attachment_mib * 1024 * 1024,
        server: cli.server,
        ca_fingerprint: cli.ca_fingerprint,
        invite: cli.invite,
        downloads: cli.downloads,
    };
    match parley_desktop::run(options, telemetry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
