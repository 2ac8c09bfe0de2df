//! `parley-bench`: Parley's costs as ratios to baselines measured in the same run, on the same
//! machine, so a shared and noisy machine moves both sides of each ratio together.
//!
//! ```text
//! cargo build --release --bins && cargo run --release -p parley-bench -- [--quick] [--json] [--scaling]
//! ```
#![allow(missing_docs)]

mod floor;
mod mailbox;
mod parley;
mod punch;
mod relay;

use floor as baseline;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "parley-bench",
    about = "Parley measured against the physical floor"
)]
struct Args {
    /// A short run (under a minute): fewer samples, smaller sizes.
    #[arg(long)]
    quick: bool,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also measure how cost grows with message size, contacts and peers (three sizes each).
    #[arg(long)]
    scaling: bool,
    /// Internal: run the rendezvous in this process (the benchmark's child).
    #[arg(long, hide = true, value_name = "DIR")]
    serve_rendezvous: Option<std::path::PathBuf>,
}

/// How much work each measure does.
struct Plan {
    messages: usize,
    throughput_messages: usize,
    concurrency: usize,
    connects: usize,
    bulk_bytes: u64,
    crypto_rounds: usize,
    enrollments: usize,
    peers: usize,
    lookups_per_peer: usize,
    fsync_for: Duration,
    /// Relay slots (and circuits) in each batch of the relay's memory measure.
    relay_batch: usize,
    /// Pairs of daemons behind two NATs whose first message is timed to a direct connection.
    punches: usize,
    /// Mailbox deposits timed.
    mailbox_deposits: usize,
    /// Mailbox entries held when the rendezvous's memory is read (then all fetched).
    mailbox_held: usize,
    /// Rounds of a message sent to a stopped device, timed from its start to the message stored.
    offline_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                messages: 40,
                throughput_messages: 200,
                concurrency: 16,
                connects: 3,
                bulk_bytes: 8 << 20,
                crypto_rounds: 200,
                enrollments: 4,
                peers: 40,
                lookups_per_peer: 10,
                fsync_for: Duration::from_millis(700),
                relay_batch: 4,
                punches: 1,
                mailbox_deposits: 500,
                // A debug build deposits a few hundred a second: the timed deposits are all held.
                mailbox_held: 500,
                offline_rounds: 1,
            }
        } else {
            Self {
                messages: 500,
                throughput_messages: 2000,
                concurrency: 32,
                connects: 10,
                bulk_bytes: 256 << 20,
                crypto_rounds: 5000,
                enrollments: 16,
                peers: 1000,
                lookups_per_peer: 10,
                fsync_for: Duration::from_secs(3),
                // The relay takes at most 60 new slots and 60 new circuits a minute from one
                // address (libp2p's default), and every peer here dials from 127.0.0.1.
                relay_batch: 10,
                punches: 3,
                mailbox_deposits: 5000,
                mailbox_held: 100_000,
                offline_rounds: 3,
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

async fn run(args: &Args) -> Result<Value> {
    let plan = Plan::new(args.quick);
    let dir = tempfile::tempdir()?;
    let rv = parley::Rendezvous::spawn(dir.path())?;
    let rss_start = rv.rss()?;
    let progress = |what: &str| {
        if !args.json {
            eprintln!("measuring {what}…");
        }
    };

    progress("enrollment");
    let (enrollments_per_second, enrollment_cores) =
        parley::enrollments(&rv, &dir.path().join("enroll"), plan.enrollments, 2).await?;
    let alice = parley::enroll(&rv, &dir.path().join("alice"), "alice").await?;
    let bob_store = parley::enroll(&rv, &dir.path().join("bob"), "bob").await?;
    let alice = Arc::new(parley::Device::start(alice).await?);
    let bob = parley::Device::start(bob_store.clone()).await?;

    progress("latency");
    let parley_latency = parley::latency(&alice, &bob, plan.messages, 256).await?;
    let echo = baseline::durable_echo(&dir.path().join("echo"), plan.messages, 256).await?;
    let stock = baseline::stock_libp2p_echo(&dir.path().join("stock"), plan.messages, 256).await?;

    progress("relayed latency");
    let relayed = relay::latency(&rv, plan.messages, 256).await?;

    progress("throughput");
    let parley_throughput = parley::throughput(
        &alice,
        &bob.user,
        plan.throughput_messages,
        1024,
        plan.concurrency,
    )
    .await?;
    let fsyncs = baseline::fdatasync_rate(&dir.path().join("fsync"), plan.fsync_for).await?;

    progress(&format!(
        "the mailbox: {} deposits, {} held",
        plan.mailbox_deposits, plan.mailbox_held
    ));
    let mail = mailbox::measure(
        &dir.path().join("mailbox"),
        plan.mailbox_deposits,
        plan.mailbox_held,
    )
    .await?;

    progress("connect");
    let parley_connect =
        parley::connect(&rv, &bob, &dir.path().join("connect"), plan.connects).await?;
    let tls_connect = baseline::tls_connect(&dir.path().join("tls-connect"), plan.connects).await?;

    progress("bulk");
    let parley_bulk = parley::bulk(&alice, &bob, dir.path(), plan.bulk_bytes).await?;
    let tls_bulk = baseline::tls_bulk(plan.bulk_bytes).await?;

    progress("crypto");
    let (seal, open) = parley::crypto(plan.crypto_rounds, 256)?;
    let (seal_floor, open_floor) = baseline::crypto_primitives(plan.crypto_rounds, 256)?;
    let (initiate, respond) = parley::first_contact_crypto(plan.crypto_rounds.div_ceil(10))?;

    progress("memory");
    let idle_daemon = parley::idle_daemon_rss(&rv, dir.path()).await?;

    progress("offline delivery");
    let (offline, bob) =
        mailbox::offline_to_delivered(&alice, bob, &bob_store, plan.offline_rounds).await?;
    drop(bob_store);
    if let Ok(alice) = Arc::try_unwrap(alice) {
        alice.stop().await;
    }
    bob.stop().await;

    progress(&format!("the directory with {} peers", plan.peers));
    let load = parley::directory_load(&rv, plan.peers, plan.lookups_per_peer).await?;

    progress(&format!(
        "the relay with {} slots",
        relay::BATCHES * plan.relay_batch
    ));
    let relay_memory = relay::memory(&dir.path().join("relay-memory"), plan.relay_batch).await?;

    progress("hole punching");
    let (punch_time, punch_note) = match punch::unavailable() {
        Some(why) => (None, why),
        None => {
            let lab = dir.path().join("punch");
            let pairs = plan.punches;
            match tokio::task::spawn_blocking(move || punch::punch_times(&lab, pairs)).await? {
                Ok(punches) => (
                    Some(ms(baseline::percentile(&punches.times, 0.5))),
                    format!(
                        "p50 over {pairs} pair(s) of daemons: first relayed message to a direct \
                         connection, two port-preserving NATs, {}",
                        punches
                            .wan_delay
                            .map_or("no wan delay (no netem in this kernel)".to_owned(), |d| {
                                format!("wan links delayed {d} each way")
                            })
                    ),
                ),
                Err(e) => (None, format!("not measured: {e:#}")),
            }
        }
    };

    let p = baseline::percentile;
    let latency = (p(&parley_latency, 0.5), p(&parley_latency, 0.99));
    let echo_p = (p(&echo, 0.5), p(&echo, 0.99));
    let stock_p = (p(&stock, 0.5), p(&stock, 0.99));
    let connect = p(&parley_connect, 0.5);
    let connect_floor = p(&tls_connect, 0.5);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let per_peer = load.rss_loaded.saturating_sub(load.rss_idle) as f64 / load.peers as f64;
    let relayed_p = (p(&relayed.relayed, 0.5), p(&relayed.relayed, 0.99));
    let direct_p = (p(&relayed.direct, 0.5), p(&relayed.direct, 0.99));

    let mut doc = json!({
        "latency_ratio": ratio(ms(latency.0), ms(echo_p.0)),
        "throughput_ratio": ratio(parley_throughput, fsyncs),
        "connect_ratio": ratio(ms(connect), ms(connect_floor)),
        "bulk_ratio": ratio(parley_bulk, tls_bulk),
        "crypto_ratio": ratio(ms(seal + open), ms(seal_floor + open_floor)),
        "relay_ratio": ratio(ms(relayed_p.0), ms(direct_p.0)),
        "mailbox_deposit_ratio": ratio(mail.deposits_per_second, fsyncs),
        "mailbox_fetch_ratio": ratio(mail.fetch_per_second, fsyncs),
        "offline_to_delivered": ms(p(&offline, 0.5)),
        "quick": args.quick,
        "latency": {
            "message_bytes": 256, "samples": plan.messages,
            "parley_p50_ms": ms(latency.0), "parley_p99_ms": ms(latency.1),
            "durable_echo_p50_ms": ms(echo_p.0), "durable_echo_p99_ms": ms(echo_p.1),
            "stock_libp2p_p50_ms": ms(stock_p.0), "stock_libp2p_p99_ms": ms(stock_p.1),
            "p99_ratio": ratio(ms(latency.1), ms(echo_p.1)),
        },
        "relayed_latency": {
            "message_bytes": 256, "envelope_bytes": relayed.envelope_bytes,
            "samples": plan.messages,
            "relayed_p50_ms": ms(relayed_p.0), "relayed_p99_ms": ms(relayed_p.1),
            "direct_p50_ms": ms(direct_p.0), "direct_p99_ms": ms(direct_p.1),
        },
        "punch_time": punch_time,
        "punch_time_note": punch_note,
        "throughput": {
            "message_bytes": 1024, "messages": plan.throughput_messages,
            "concurrency": plan.concurrency,
            "parley_messages_per_s": parley_throughput,
            "fdatasync_per_s": fsyncs,
        },
        "connect": {
            "samples": plan.connects,
            "parley_p50_ms": ms(connect),
            "tls_durable_echo_p50_ms": ms(connect_floor),
        },
        "bulk": {
            "bytes": plan.bulk_bytes,
            "parley_mib_per_s": mib(parley_bulk),
            "tls_mib_per_s": mib(tls_bulk),
        },
        "first_contact": {
            "parley_p50_ms": ms(connect),
            "agreement_initiate_us": initiate.as_secs_f64() * 1e6,
            "agreement_respond_us": respond.as_secs_f64() * 1e6,
            "note": "a first message to a device never met, delivered: directory look-up, \
                     prekey fetch, the hybrid agreement, sealing, dial, handshake and the \
                     signed receipt (the connect figure); the agreement's share is the \
                     initiator's and responder's crypto, each with the first message",
        },
        "crypto": {
            "message_bytes": 256,
            "what": "seal and open of a ratchet message in a session (steady state, no DH step), \
                     against its primitives alone",
            "seal_us": seal.as_secs_f64() * 1e6, "open_us": open.as_secs_f64() * 1e6,
            "primitives_seal_us": seal_floor.as_secs_f64() * 1e6,
            "primitives_open_us": open_floor.as_secs_f64() * 1e6,
        },
        "rendezvous": {
            "argon2id": "m=19456 KiB, t=2, p=1",
            "enrollments_per_s": enrollments_per_second,
            "enrollments_at_once": 2,
            "enrollment_busy_cores": enrollment_cores,
            "lookup_busy_cores": load.busy_cores,
            "peers": load.peers,
            "lookups_per_s": load.lookups_per_second,
            "rss_start_mib": mib(rss_start as f64),
            "rss_idle_mib": mib(load.rss_idle as f64),
            "rss_loaded_mib": mib(load.rss_loaded as f64),
            "rss_per_peer_kib": per_peer / 1024.0,
        },
        "relay": {
            "reservations": relay::BATCHES * relay_memory.batch,
            "circuits": relay::BATCHES * relay_memory.batch,
            "batches": relay::BATCHES,
            "rss_idle_mib": mib(relay_memory.rss_idle as f64),
            "rss_reserved_mib": relay_memory.reserved.iter().map(|b| mib(*b as f64)).collect::<Vec<_>>(),
            "rss_circuits_mib": relay_memory.opened.iter().map(|b| mib(*b as f64)).collect::<Vec<_>>(),
            "rss_per_reservation_kib": relay_memory.per_reservation() / 1024.0,
            "rss_per_circuit_kib": relay_memory.per_circuit() / 1024.0,
        },
        "mailbox": {
            "entry_bytes": mailbox::ENTRY_BYTES,
            "deposits": mail.deposits,
            "senders": mailbox::SENDERS,
            "in_flight": mailbox::SENDERS * mailbox::IN_FLIGHT_PER_SENDER,
            "deposits_per_s": mail.deposits_per_second,
            "deposit_busy_cores": mail.deposit_busy_cores,
            "held": mail.held,
            "fetch_per_s": mail.fetch_per_second,
            "fdatasync_per_s": fsyncs,
            "rss_empty_mib": mib(mail.rss_empty as f64),
            "rss_held_mib": mib(mail.rss_held as f64),
            "rss_per_held_entry_bytes": mail.rss_per_entry(),
            "offline_rounds": plan.offline_rounds,
            "offline_to_delivered_ms": offline.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
        },
        "memory": {
            "idle_daemon_rss_mib": idle_daemon.map(|b| mib(b as f64)),
            "rendezvous_rss_mib": mib(load.rss_loaded as f64),
        },
    });
    if args.scaling {
        doc["scaling"] = scaling(&rv, dir.path()).await?;
    }
    drop(rv);
    Ok(doc)
}

/// Cost at three sizes of each dimension: message size, contacts of the recipient, peers on
/// one rendezvous.
async fn scaling(rv: &parley::Rendezvous, dir: &std::path::Path) -> Result<Value> {
    let alice =
        parley::Device::start(parley::enroll(rv, &dir.join("s-alice"), "salice").await?).await?;
    let bob = parley::Device::start(parley::enroll(rv, &dir.join("s-bob"), "sbob").await?).await?;
    let mut sizes = Vec::new();
    for size in [256usize, 4096, 16_384] {
        let t = parley::latency(&alice, &bob, 100, size).await?;
        let e = baseline::durable_echo(&dir.join(format!("s-echo-{size}")), 100, size).await?;
        sizes.push(json!({
            "message_bytes": size,
            "parley_p50_ms": ms(baseline::percentile(&t, 0.5)),
            "durable_echo_p50_ms": ms(baseline::percentile(&e, 0.5)),
        }));
    }
    let mut contacts = Vec::new();
    let mut senders = Vec::new();
    for target in [1usize, 10, 50] {
        while senders.len() + 1 < target {
            let i = senders.len();
            let store =
                parley::enroll(rv, &dir.join(format!("s-c{i}")), &format!("contact{i:03}")).await?;
            let device = parley::Device::start(store).await?;
            device.send(&bob.user, "hello", &[]).await?;
            senders.push(device);
        }
        let t = parley::latency(&alice, &bob, 100, 256).await?;
        contacts.push(json!({
            "recipient_contacts": target,
            "parley_p50_ms": ms(baseline::percentile(&t, 0.5)),
        }));
    }
    for device in senders {
        device.stop().await;
    }
    alice.stop().await;
    bob.stop().await;
    let mut peers = Vec::new();
    for n in [100usize, 300, 1000] {
        // A fresh rendezvous each time: memory an allocator took stays taken.
        let fresh = parley::Rendezvous::spawn(&dir.join(format!("scaling-{n}")))?;
        let load = parley::directory_load(&fresh, n, 10).await?;
        peers.push(json!({
            "peers": n,
            "lookups_per_s": load.lookups_per_second,
            "rss_per_peer_kib": load.rss_loaded.saturating_sub(load.rss_idle) as f64 / n as f64 / 1024.0,
            "rendezvous_rss_mib": mib(load.rss_loaded as f64),
        }));
        drop(fresh);
    }
    Ok(json!({ "message_size": sizes, "contacts": contacts, "peers": peers }))
}

fn goal(name: &str, value: f64, goal: f64, higher_is_better: bool) -> String {
    let met = if higher_is_better {
        value >= goal
    } else {
        value <= goal
    };
    format!(
        "{name:<18} {value:>9.2}   goal {} {goal:<6} {}",
        if higher_is_better { "≥" } else { "≤" },
        if met { "met" } else { "MISSED" }
    )
}

fn table(doc: &Value) -> String {
    let f = |path: &str| {
        doc.pointer(path)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let mut out = vec![
        format!(
            "latency     256 B     parley p50 {:.2} ms  p99 {:.2} ms | durable echo p50 {:.2} ms  p99 {:.2} ms | stock libp2p p50 {:.2} ms",
            f("/latency/parley_p50_ms"),
            f("/latency/parley_p99_ms"),
            f("/latency/durable_echo_p50_ms"),
            f("/latency/durable_echo_p99_ms"),
            f("/latency/stock_libp2p_p50_ms")
        ),
        format!(
            "relayed     256 B     through the relay p50 {:.2} ms  p99 {:.2} ms | direct p50 {:.2} ms  p99 {:.2} ms (alternating rounds, bare nodes)",
            f("/relayed_latency/relayed_p50_ms"),
            f("/relayed_latency/relayed_p99_ms"),
            f("/relayed_latency/direct_p50_ms"),
            f("/relayed_latency/direct_p99_ms")
        ),
        format!(
            "punch                 {}{}",
            doc.pointer("/punch_time")
                .and_then(Value::as_f64)
                .map_or_else(String::new, |v| format!("punch_time {v:.0} ms | ")),
            doc.pointer("/punch_time_note")
                .and_then(Value::as_str)
                .unwrap_or("—")
        ),
        format!(
            "throughput  1 KiB     parley {:.0} msg/s | fdatasync {:.0} /s",
            f("/throughput/parley_messages_per_s"),
            f("/throughput/fdatasync_per_s")
        ),
        format!(
            "connect               parley p50 {:.2} ms | TCP + TLS + durable echo p50 {:.2} ms",
            f("/connect/parley_p50_ms"),
            f("/connect/tls_durable_echo_p50_ms")
        ),
        format!(
            "bulk        {:>4} MiB  parley {:.1} MiB/s | raw TLS {:.1} MiB/s",
            f("/bulk/bytes") / 1_048_576.0,
            f("/bulk/parley_mib_per_s"),
            f("/bulk/tls_mib_per_s")
        ),
        format!(
            "crypto      256 B     seal {:.1} µs open {:.1} µs | primitives {:.1} + {:.1} µs",
            f("/crypto/seal_us"),
            f("/crypto/open_us"),
            f("/crypto/primitives_seal_us"),
            f("/crypto/primitives_open_us")
        ),
        format!(
            "first contact         {:.2} ms to the receipt | agreement {:.0} µs initiator, {:.0} µs responder",
            f("/first_contact/parley_p50_ms"),
            f("/first_contact/agreement_initiate_us"),
            f("/first_contact/agreement_respond_us")
        ),
        format!(
            "rendezvous            {:.1} enrollments/s, 2 at once (Argon2id m=19456 KiB t=2 p=1), {:.2} cores busy | {:.0} look-ups/s with {} peers, {:.2} cores busy | {:.1} KiB per peer",
            f("/rendezvous/enrollments_per_s"),
            f("/rendezvous/enrollment_busy_cores"),
            f("/rendezvous/lookups_per_s"),
            f("/rendezvous/peers"),
            f("/rendezvous/lookup_busy_cores"),
            f("/rendezvous/rss_per_peer_kib")
        ),
        format!(
            "relay                 {} slots: {:.1} KiB per slot (with its peer's connection) | {} circuits: {:.1} KiB per circuit (rendezvous RSS, median batch, estimate)",
            f("/relay/reservations"),
            f("/relay/rss_per_reservation_kib"),
            f("/relay/circuits"),
            f("/relay/rss_per_circuit_kib")
        ),
        format!(
            "mailbox     1 KiB     {:.0} deposits/s held ({} deposits, {} in flight from {} senders), {:.2} cores busy | {:.0} fetched+acknowledged/s | fdatasync {:.0} /s",
            f("/mailbox/deposits_per_s"),
            f("/mailbox/deposits"),
            f("/mailbox/in_flight"),
            f("/mailbox/senders"),
            f("/mailbox/deposit_busy_cores"),
            f("/mailbox/fetch_per_s"),
            f("/mailbox/fdatasync_per_s")
        ),
        format!(
            "mailbox memory        {} held: rendezvous {:.1} MiB → {:.1} MiB, {:.0} B per held entry | offline_to_delivered p50 {:.0} ms (known contact, {} round(s))",
            f("/mailbox/held"),
            f("/mailbox/rss_empty_mib"),
            f("/mailbox/rss_held_mib"),
            f("/mailbox/rss_per_held_entry_bytes"),
            f("/offline_to_delivered"),
            f("/mailbox/offline_rounds")
        ),
        format!(
            "memory                idle daemon {} | rendezvous with peers {:.1} MiB",
            doc.pointer("/memory/idle_daemon_rss_mib")
                .and_then(Value::as_f64)
                .map_or(
                    "not measured (build the `parley` binary)".into(),
                    |v| format!("{v:.1} MiB")
                ),
            f("/memory/rendezvous_rss_mib")
        ),
        String::new(),
        goal("latency_ratio", f("/latency_ratio"), 3.0, false),
        goal("connect_ratio", f("/connect_ratio"), 2.0, false),
        goal("throughput_ratio", f("/throughput_ratio"), 10.0, true),
        goal("bulk_ratio", f("/bulk_ratio"), 0.15, true),
        goal("relay_ratio", f("/relay_ratio"), 1.5, false),
        goal(
            "mailbox_deposit",
            f("/mailbox/deposits_per_s"),
            1000.0,
            true,
        ),
        goal("mailbox_fetch", f("/mailbox/fetch_per_s"), 1000.0, true),
        format!(
            "{:<18} {:>9.2}   {:>9.2}   (reported: per second over fdatasync per second, the disk's bound)",
            "mailbox ratios",
            f("/mailbox_deposit_ratio"),
            f("/mailbox_fetch_ratio")
        ),
        format!(
            "{:<18} {:>9.2}   (reported; lower is better)",
            "crypto_ratio",
            f("/crypto_ratio")
        ),
    ];
    if let Some(rss) = doc
        .pointer("/memory/idle_daemon_rss_mib")
        .and_then(Value::as_f64)
    {
        out.push(goal("idle_daemon_mib", rss, 30.0, false));
    }
    out.join("\n")
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.serve_rendezvous {
        return match parley::serve_rendezvous(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("the benchmark's rendezvous failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(doc) => {
            if args.json {
                // The readable table goes to stderr, so a run kept as JSON is readable too.
                eprintln!("{}", table(&doc));
                println!("{doc}");
            } else {
                println!("{}", table(&doc));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("the benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
