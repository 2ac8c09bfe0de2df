//! `parley`: the headless Parley peer.
//!
//! `enroll` makes the device's keys and has them certified; `daemon` runs the node; the other
//! subcommands talk to the daemon over the control socket in the home folder. This binary only
//! parses arguments and wires adapters; the rules live in `parley-usecases`.
#![forbid(unsafe_code)]

mod chat;
mod client;
mod compose;
mod control;
mod daemon;
mod enroll;
mod present;
mod terminal;
mod unlock;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use parley_domain::ratchet::RekeyEvery;
use parley_domain::{MessageId, Ttl, Username};
use parley_peer::{Home, view};
use serde::{Serialize, de::DeserializeOwned};

use crate::control::Request;

/// Parley: peer-to-peer messages over mutual TLS.
#[derive(Parser)]
#[command(name = "parley", version, about)]
struct Cli {
    /// The home folder (keys, certificate, store, control socket).
    #[arg(long, env = "PARLEY_HOME", global = true)]
    home: Option<PathBuf>,
    /// How log records on stderr are written.
    #[arg(long, value_enum, default_value_t, global = true)]
    log_format: parley_telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make this device's keys and have them certified by the rendezvous.
    Enroll {
        /// The rendezvous's HTTPS address, e.g. https://127.0.0.1:8443.
        #[arg(long, required_unless_present = "invite")]
        server: Option<String>,
        /// The username to enroll (a-z, 0-9, '-', '_'; 3-32 characters).
        #[arg(long)]
        user: String,
        /// The CA fingerprint the rendezvous printed (sha256:<64 hex>); without it the CA is
        /// trusted on first use.
        #[arg(long)]
        ca_fingerprint: Option<String>,
        /// The invite the rendezvous printed (parley://join?server=…&ca=…): its server and CA
        /// fingerprint, instead of --server and --ca-fingerprint.
        #[arg(long, value_name = "URI", conflicts_with_all = ["server", "ca_fingerprint"])]
        invite: Option<String>,
    },
    /// Run the peer until SIGINT or SIGTERM.
    Daemon {
        /// Where to listen for peers.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
        listen: String,
        /// The largest attachment sent or accepted, in MiB.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        max_attachment_mib: u64,
        /// Move each conversation's keys on (a DH ratchet step) after a random wait in MIN..MAX
        /// while it is active; the mutual-TLS links refresh their traffic keys on the same kind
        /// of timer.
        #[arg(long, value_name = "MIN..MAX", default_value = "30s..120s", value_parser = parse_rekey_every)]
        rekey_every: RekeyEvery,
    },
    /// Send a message; exits 0 once the recipient's receipt is back.
    Send {
        /// The recipient.
        user: String,
        /// The text. Omitted, it is read from standard input (what keeps it out of the process
        /// list and the shell's history: given here, any local user can read it while the
        /// command runs).
        text: Option<String>,
        /// Read the text from FILE instead (UTF-8; one final newline is dropped).
        #[arg(long, value_name = "FILE", conflicts_with = "text")]
        text_file: Option<PathBuf>,
        /// Make it disappear this long after it is written: 30s, 10m, 1h, 7d (at most 30d).
        #[arg(long)]
        ttl: Option<String>,
        /// Attach a file (repeatable; at most 8).
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Save attachment INDEX (from 0) of a received or sent message to a new file.
    SaveAttachment {
        /// The other party of the conversation.
        user: String,
        /// The message id (32 hex digits, as `history` shows).
        id: String,
        /// Where to write it (must not exist).
        #[arg(long = "to", value_name = "FILE")]
        to: PathBuf,
        /// Which attachment of the message.
        #[arg(long, default_value_t = 0)]
        index: usize,
    },
    /// Show the conversation with USER, oldest first.
    History {
        /// The other party.
        user: String,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// List the conversations.
    Conversations {
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Show the user, peer id, listen addresses and rendezvous connection.
    Status {
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number to compare with USER (and the new one if USER's keys changed).
    SafetyNumber {
        /// The contact.
        user: String,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Accept the new keys USER presented, after comparing the safety number.
    Trust {
        /// The contact.
        user: String,
    },
    /// Chat with USER: typed lines are sent, incoming ones appear; /status and /quit.
    Chat {
        /// The other party.
        user: String,
    },
    /// List this user's devices, as their signed device list names them.
    Devices {
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// The second factor (a code from an authenticator app) for enrolling this user.
    Totp {
        #[command(subcommand)]
        action: TotpAction,
    },
}

#[derive(Subcommand)]
enum TotpAction {
    /// Turn it on: prints the otpauth:// URI to add to an authenticator app (shown once);
    /// from then on every `parley enroll` of this user needs a current code (PARLEY_TOTP).
    Enable,
    /// Turn it off, with a current code from PARLEY_TOTP or asked on the terminal.
    Disable,
}

/// A usage error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

fn main() -> ExitCode {
    // First: every file from here on is private, and a crash leaves no core dump of keys or
    // messages.
    let mut warnings = Vec::new();
    if let parley_process::CoreDumps::Failed(warning) = parley_process::harden() {
        warnings.push(warning);
    }
    // Packaging only: the completions and manual pages, from this very definition.
    if let Some(dir) = std::env::var_os(parley_assets::VARIABLE) {
        return parley_assets::run(<Cli as clap::CommandFactory>::command(), dir.as_ref());
    }
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Daemon { .. });
    if daemon {
        // Before any thread exists: on success this does not return, the program runs again
        // in this process without the passphrase in its environment.
        warnings.extend(unlock::hide_passphrase());
    } else {
        // The daemon sets up its own telemetry once it knows its user (the `parley.user` of
        // its traces); every other command only logs.
        parley_telemetry::init_logs(cli.log_format, "warn");
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, warnings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A sentence can quote what a peer said (a refusal's reason).
            eprintln!("{}", terminal::inline(&sentence(&error)));
            if error.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error as one sentence: the outermost context, then the root cause if it adds anything.
fn sentence(error: &anyhow::Error) -> String {
    let top = error.to_string();
    let root = error.root_cause().to_string();
    if root == top || top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}

fn home(cli_home: Option<PathBuf>) -> Result<Home> {
    let path = cli_home
        .or_else(Home::default_path)
        .ok_or_else(|| Usage("no home folder: pass --home DIR or set PARLEY_HOME".into()))?;
    Ok(Home::new(path))
}

fn parse_user(raw: &str) -> Result<Username> {
    Username::parse(raw).map_err(|e| Usage(format!("{raw:?} is not a valid username: {e}")).into())
}

/// Asks the daemon a query and prints its answer: one JSON document, or `readable` lines.
async fn show<T: DeserializeOwned + Serialize>(
    home: &Home,
    request: &Request,
    json: bool,
    readable: fn(&T) -> String,
) -> Result<()> {
    let answer: T = client::call(home, request).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let text = readable(&answer);
        if !text.is_empty() {
            println!("{text}");
        }
    }
    Ok(())
}

/// Says on stderr when this device's certificate expires within 7 days or has expired. Asks
/// the daemon once more; says nothing when that fails (the command itself succeeded).
async fn warn_certificate(home: &Home) {
    if let Ok(status) = client::call::<view::Status>(home, &Request::Status).await
        && let Some(warning) = status.certificate.warning
    {
        eprintln!("warning: {warning}");
    }
}

/// Runs the command; `warnings` are for the daemon to log once its logs are set up.
async fn run(cli: Cli, warnings: Vec<String>) -> Result<()> {
    let home = home(cli.home)?;
    let log_format = cli.log_format;
    match cli.command {
        Command::Enroll {
            server,
            user,
            ca_fingerprint,
            invite,
        } => {
            let target =
                enroll::Target::from_args(server, ca_fingerprint.as_deref(), invite.as_deref())?;
            enroll::run(&home, &target, parse_user(&user)?).await
        }
        Command::Daemon {
            listen,
            max_attachment_mib,
            rekey_every,
        } => {
            let listen = listen.parse().map_err(|_| {
                Usage(format!(
                    "{listen:?} is not a multiaddr such as /ip4/127.0.0.1/tcp/0"
                ))
            })?;
            daemon::run(
                &home,
                listen,
                log_format,
                max_attachment_mib * 1024 * 1024,
                rekey_every,
                &warnings,
            )
            .await
        }
        Command::Send {
            user,
            text,
            text_file,
            ttl,
            attach,
        } => {
            let to = parse_user(&user)?;
            let text = compose::text(text, text_file.as_deref())?;
            let ttl = ttl
                .map(|raw| {
                    let ttl = Ttl::parse(&raw).map_err(|e| Usage(format!("--ttl {raw:?}: {e}")))?;
                    if ttl == Ttl::MAX && raw != ttl.to_string() {
                        eprintln!(
                            "note: --ttl is at most {ttl}; this message disappears after {ttl}"
                        );
                    }
                    Ok::<_, anyhow::Error>(ttl)
                })
                .transpose()?;
            let attachments = attachments(&attach)?;
            let sent: view::Sent = client::call(
                &home,
                &Request::Send {
                    to,
                    text,
                    ttl,
                    attachments,
                },
            )
            .await?;
            if sent.queued {
                println!("queued: {}", sent.id);
            } else {
                println!("delivered: {}", sent.id);
            }
            warn_certificate(&home).await;
            Ok(())
        }
        Command::History { user, json } => {
            let with = parse_user(&user)?;
            show(
                &home,
                &Request::History { with },
                json,
                present::history_lines,
            )
            .await
        }
        Command::Conversations { json } => {
            show(
                &home,
                &Request::Conversations,
                json,
                |list: &Vec<view::Conversation>| present::conversation_lines(list),
            )
            .await
        }
        Command::Status { json } => {
            let status: view::Status = client::call(&home, &Request::Status).await?;
            if let Some(warning) = &status.certificate.warning {
                eprintln!("warning: {warning}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{}", present::status_lines(&status));
            }
            Ok(())
        }
        Command::SafetyNumber { user, json } => {
            let user = parse_user(&user)?;
            show(
                &home,
                &Request::Contact { user },
                json,
                present::contact_lines,
            )
            .await
        }
        Command::Trust { user } => {
            let user = parse_user(&user)?;
            let _: view::Trusted =
                client::call(&home, &Request::Trust { user: user.clone() }).await?;
            println!("trusted the new keys of {user}; waiting messages go out now");
            Ok(())
        }
        Command::Chat { user } => chat::run(&home, parse_user(&user)?).await,
        Command::Devices { json } => {
            show(
                &home,
                &Request::Devices,
                json,
                |list: &Vec<view::Device>| present::device_lines(list),
            )
            .await
        }
        Command::Totp {
            action: TotpAction::Enable,
        } => {
            let enabled: view::TotpEnabled = client::call(&home, &Request::TotpEnable).await?;
            println!("{}", enabled.uri);
            eprintln!(
                "Add this to your authenticator app now (it is not shown again); every enrollment of this user needs its current code from now on."
            );
            Ok(())
        }
        Command::Totp {
            action: TotpAction::Disable,
        } => {
            let code = totp_code()?;
            let _: view::TotpDisabled = client::call(&home, &Request::TotpDisable { code }).await?;
            println!("second factor off");
            Ok(())
        }
        Command::SaveAttachment {
            user,
            id,
            to,
            index,
        } => {
            let with = parse_user(&user)?;
            let id = MessageId::parse(&id)
                .map_err(|e| Usage(format!("{id:?} is not a message id: {e}")))?;
            let dest = absolute(&to)?;
            if dest.exists() {
                return Err(Usage(format!(
                    "{} exists already; choose a new file name",
                    dest.display()
                ))
                .into());
            }
            let saved: view::Saved = client::call(
                &home,
                &Request::SaveAttachment {
                    with,
                    id,
                    index,
                    to: dest.clone(),
                },
            )
            .await?;
            println!("saved: {} ({} bytes)", dest.display(), saved.bytes);
            Ok(())
        }
    }
}

/// A second-factor code: from PARLEY_TOTP, else asked on the terminal (not echoed).
fn totp_code() -> Result<String> {
    if let Ok(code) = std::env::var("PARLEY_TOTP") {
        return Ok(code);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Usage(
            "no second-factor code: set PARLEY_TOTP to the authenticator app's current code, or run this in a terminal".into(),
        )
        .into());
    }
    Ok(rpassword::prompt_password(
        "code from the authenticator app: ",
    )?)
}

/// The absolute form of a path given on the command line (the daemon has another working
/// folder).
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Usage(format!("{}: {e}", path.display())).into())
}

/// Checks the files to attach and names them for the daemon (absolute paths).
fn attachments(files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if files.len() > parley_domain::envelope::MAX_ATTACHMENTS {
        return Err(Usage(format!(
            "at most {} attachments per message",
            parley_domain::envelope::MAX_ATTACHMENTS
        ))
        .into());
    }
    files
        .iter()
        .map(|file| {
            let path = absolute(file)?;
            if !path.is_file() {
                return Err(Usage(format!("{} is not a readable file", file.display())).into());
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            parley_domain::envelope::check_attachment_name(&name)
                .map_err(|e| Usage(format!("{}: {e}", file.display())))?;
            Ok(path)
        })
        .collect()
}

/// `--rekey-every`: the domain's reading of `MIN..MAX`.
fn parse_rekey_every(raw: &str) -> Result<RekeyEvery, String> {
    RekeyEvery::parse(raw)
}
