//! `parley-rendezvous`: parses the command line, starts the rendezvous, prints the contract's
//! start lines (`ca-fingerprint:`, `https:`, `p2p:`, `invite:`) and runs until SIGINT or
//! SIGTERM; `parley-rendezvous invite` prints the invite again, with its QR code.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, builder::TypedValueParser as _};
use libp2p::Multiaddr;
use parley_rendezvous::{
    Config, MailboxLimits, MetricsAt, Protection, RelayLimits, limit, start_with,
};
use tokio::signal::unix::{SignalKind, signal};

/// The Parley rendezvous: certificate authority, HTTPS enrollment API and libp2p directory.
#[derive(Debug, Parser)]
#[command(
    name = "parley-rendezvous",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data folder (CA key and certificate, rendezvous key, user registry).
    #[arg(long, default_value = "./rendezvous-data")]
    data: PathBuf,
    /// Address of the HTTPS enrollment API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// libp2p listen address of the directory (port 0 picks a free port).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/4001")]
    p2p: Multiaddr,
    /// The HTTPS URL devices reach this rendezvous at, put in the invite (default: the
    /// `https:` line; pass it when listening on 0.0.0.0 or behind a proxy or NAT).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Address handed to peers instead of the listen address (repeatable).
    #[arg(long)]
    announce: Vec<Multiaddr>,
    /// CA key (PKCS#8 PEM, Ed25519) shared by several instances; nothing is written for it.
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// How many days device certificates last (devices renew themselves once a third is left).
    #[arg(long, value_name = "N", default_value_t = parley_domain::pki::MAX_CERT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=i64::from(parley_domain::pki::MAX_CERT_VALIDITY_DAYS)))]
    certificate_days: u32,
    /// Proxy whose X-Forwarded-For header names the client (repeatable); the header is
    /// ignored on connections from any other address.
    #[arg(long, value_name = "IP")]
    trusted_proxy: Vec<IpAddr>,
    /// Enrollment requests a client may make at once before the rate limit applies.
    #[arg(long, value_name = "N", default_value_t = Protection::default().enroll.burst, value_parser = clap::value_parser!(u32).range(1..))]
    enroll_burst: u32,
    /// Enrollment requests per minute a client regains after its burst.
    #[arg(long, value_name = "N", default_value_t = Protection::default().enroll.per_minute, value_parser = clap::value_parser!(u32).range(1..))]
    enroll_per_minute: u32,
    /// Connections served at once from one client address (trusted proxies excepted).
    #[arg(long, value_name = "N", default_value_t = Protection::default().https.connections_per_source, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_source: u32,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, value_name = "SECONDS", default_value_t = Protection::default().https.header_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body.
    #[arg(long, value_name = "SECONDS", default_value_t = Protection::default().body_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_secs: u64,
    /// Relay slots held at once, all peers together (0 turns the relay off).
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations)]
    relay_max_reservations: usize,
    /// Relay slots one device may hold at once.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_reservations_per_peer, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    relay_max_reservations_per_peer: usize,
    /// Circuits open through the relay at once, all peers together.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits)]
    relay_max_circuits: usize,
    /// Circuits open at once from or to one device.
    #[arg(long, value_name = "N", default_value_t = RelayLimits::default().max_circuits_per_peer, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    relay_max_circuits_per_peer: usize,
    /// Mebibytes one circuit may carry before the peers must open a new one.
    #[arg(long, value_name = "MIB", default_value_t = RelayLimits::default().max_circuit_bytes / (1024 * 1024), value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    relay_max_circuit_mib: u64,
    /// Minutes one circuit may stay open before the peers must open a new one.
    #[arg(long, value_name = "MINUTES", default_value_t = RelayLimits::default().max_circuit_duration.as_secs() / 60, value_parser = clap::value_parser!(u64).range(1..=71_582))]
    relay_max_circuit_minutes: u64,
    /// How long the mailbox holds a message nobody fetched, unless it expires sooner: a number
    /// with s, m, h or d (30s, 10m, 12h, 30d); 0 turns the mailbox off.
    #[arg(long, value_name = "D", default_value = "30d", value_parser = parse_hold)]
    mailbox_hold: i64,
    /// Messages the mailbox holds for one recipient.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().entries_per_recipient, value_parser = clap::value_parser!(u64).range(1..))]
    mailbox_max_entries: u64,
    /// Mebibytes the mailbox holds for one recipient.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().bytes_per_recipient / MIB, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    mailbox_max_mib: u64,
    /// Messages one sender may have waiting in one recipient's mailbox.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().entries_per_sender, value_parser = clap::value_parser!(u64).range(1..))]
    mailbox_max_entries_per_sender: u64,
    /// Mebibytes one sender may have waiting in one recipient's mailbox.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().bytes_per_sender / MIB, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024))]
    mailbox_max_mib_per_sender: u64,
    /// Mebibytes of the largest attachment file the mailbox holds (larger ones are delivered
    /// directly only).
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().largest_attachment / MIB, value_parser = clap::value_parser!(u64).range(1..=1024))]
    mailbox_max_attachment_mib: u64,
    /// Deposits per second one device may make after its burst.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().deposits_per_second, value_parser = clap::value_parser!(u32).range(1..))]
    mailbox_deposits_per_second: u32,
    /// Deposits one device may make at once before the rate applies.
    #[arg(long, value_name = "N", default_value_t = MailboxLimits::default().deposit_burst, value_parser = clap::value_parser!(u32).range(1..))]
    mailbox_deposit_burst: u32,
    /// Where GET /metrics is served: `https` (on the HTTPS API's port), `off`, or an
    /// address such as 127.0.0.1:9090 (a plain-HTTP listener of its own, serving only it).
    #[arg(long, value_name = "https|off|ADDR", default_value = "https", value_parser = parse_metrics)]
    metrics: MetricsAt,
    /// How log records on stderr are written.
    #[arg(long, value_enum, default_value_t)]
    log_format: parley_telemetry::LogFormat,
}

/// `--metrics`: `https`, `off`, or an address.
fn parse_metrics(text: &str) -> Result<MetricsAt, String> {
    match text {
        "https" => Ok(MetricsAt::Https),
        "off" => Ok(MetricsAt::Off),
        addr => addr.parse().map(MetricsAt::Listen).map_err(|_| {
            "--metrics is `https`, `off`, or an address such as 127.0.0.1:9090".to_owned()
        }),
    }
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the invite users join with (`parley enroll --invite`, or the desktop app's
    /// Invite field), and a QR code of it.
    Invite {
        /// The data folder of the rendezvous.
        #[arg(long, default_value = "./rendezvous-data")]
        data: PathBuf,
        /// The HTTPS URL to invite to, instead of the one the last start remembered.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
}

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

/// A hold period (`30s`, `10m`, `12h`, `30d`, or `0`) in milliseconds.
fn parse_hold(text: &str) -> Result<i64, String> {
    const BAD: &str = "a hold period is a whole number with s, m, h or d (30s, 10m, 12h, 30d), or 0 to turn the mailbox off";
    if text == "0" {
        return Ok(0);
    }
    let unit_ms: i64 = match text.chars().last() {
        Some('s') => 1_000,
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        _ => return Err(BAD.into()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD.into());
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        // Ten years at most: an expiry must stay a valid time.
        .filter(|ms| *ms <= 3_650 * 86_400_000)
        .ok_or_else(|| "a hold period is at most 3650d".to_owned())
}

fn main() -> ExitCode {
    // First: every file from here on is private, and a crash leaves no core dump of the CA key.
    let core_dumps = parley_process::harden();
    // Packaging only: the completions and manual pages, from this very definition.
    if let Some(dir) = std::env::var_os(parley_assets::VARIABLE) {
        return parley_assets::run(<Args as clap::CommandFactory>::command(), dir.as_ref());
    }
    let args = Args::parse();
    if let Some(Command::Invite { data, server }) = &args.command {
        return show_invite(data, server.as_deref());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let telemetry = parley_telemetry::init(
            args.log_format,
            "info",
            parley_telemetry::Service {
                name: "parley-rendezvous",
                user: None,
            },
        );
        match core_dumps {
            parley_process::CoreDumps::Failed(warning) => tracing::warn!("{warning}"),
            parley_process::CoreDumps::Allowed => {
                tracing::info!("core dumps allowed (PARLEY_ALLOW_CORE_DUMPS=1)");
            }
            _ => {}
        }
        let outcome = run(args).await;
        telemetry.shutdown().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", sentence(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error as one sentence: the outermost message, and the root cause only where the
/// message does not already say it (the error types here embed their cause).
fn sentence(error: &anyhow::Error) -> String {
    let (top, root) = (error.to_string(), error.root_cause().to_string());
    if top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}

/// `parley-rendezvous invite`: the invite line, then its QR code.
fn show_invite(data: &std::path::Path, server: Option<&str>) -> ExitCode {
    let shown = parley_rendezvous::invite::from_data(data, server).and_then(|invite| {
        let line = format!("invite: {invite}");
        let qr = parley_rendezvous::invite::qr_lines(&invite.to_string())?;
        Ok((line, qr))
    });
    match shown {
        Ok((line, qr)) => {
            println!("{line}\n\n{qr}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let defaults = Protection::default();
    let protection = Protection {
        enroll: limit::Rate {
            burst: args.enroll_burst,
            per_minute: args.enroll_per_minute,
        },
        trusted_proxies: args.trusted_proxy,
        https: parley_rendezvous::https::Limits {
            connections_per_source: args.max_connections_per_source,
            header_timeout: Duration::from_secs(args.header_timeout_secs),
            ..defaults.https
        },
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        relay: RelayLimits {
            max_reservations: args.relay_max_reservations,
            max_reservations_per_peer: args.relay_max_reservations_per_peer,
            max_circuits: args.relay_max_circuits,
            max_circuits_per_peer: args.relay_max_circuits_per_peer,
            max_circuit_bytes: args.relay_max_circuit_mib * 1024 * 1024,
            max_circuit_duration: Duration::from_secs(args.relay_max_circuit_minutes * 60),
            ..defaults.relay
        },
        mailbox: MailboxLimits {
            hold_ms: args.mailbox_hold,
            entries_per_recipient: args.mailbox_max_entries,
            bytes_per_recipient: args.mailbox_max_mib * MIB,
            entries_per_sender: args.mailbox_max_entries_per_sender,
            bytes_per_sender: args.mailbox_max_mib_per_sender * MIB,
            largest_attachment: args.mailbox_max_attachment_mib * MIB,
            deposits_per_second: args.mailbox_deposits_per_second,
            deposit_burst: args.mailbox_deposit_burst,
        },
        ..defaults
    };
    if let Some(url) = &args.public_url {
        // Checked before anything listens.
        parley_domain::Invite::new(url, parley_domain::CaFingerprint::from_digest([0; 32]))
            .context("--public-url")?;
    }
    let data = args.data.clone();
    let running = start_with(
        Config {
            data: args.data,
            https: args.https,
            p2p: args.p2p,
            announce: args.announce,
            ca_key: args.ca_key,
            certificate_days: args.certificate_days,
            metrics: args.metrics,
        },
        protection,
    )
    .await?;
    let p2p = running
        .p2p_addrs()
        .first()
        .map(ToString::to_string)
        .context("the directory listens on no address")?;
    let https = format!("https://{}", running.https());
    if args.public_url.is_none() && running.https().ip().is_unspecified() {
        tracing::warn!(
            "the invite names {https}, which no device can reach: pass --public-url https://HOST:PORT"
        );
    }
    let invite = parley_rendezvous::invite::remember(
        &data,
        args.public_url.as_deref().unwrap_or(&https),
        running.fingerprint(),
    )
    .context("cannot make the invite (--public-url)")?;
    let mut out = std::io::stdout().lock();
    let mut lines = vec![
        format!("ca-fingerprint: {}", running.fingerprint()),
        format!("https: {https}"),
        format!("p2p: {p2p}"),
        format!("invite: {invite}"),
    ];
    // Only when asked for, after the four lines above that are the contract scripts read.
    if let Some(metrics) = running.metrics() {
        lines.push(format!("metrics: http://{metrics}/metrics"));
    }
    for line in lines {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
    }
    drop(out);
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
    }
    running.shutdown().await;
    Ok(())
}
