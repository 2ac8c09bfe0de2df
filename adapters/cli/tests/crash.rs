//! Crash campaign with real processes: during a burst of messages from alice to bob, one of the
//! two daemons is killed with SIGKILL at random moments, round after round, and restarted.
//!
//! After every restart the store opens and every message whose receipt the sender got before
//! the kill is in bob's history exactly once. At the end, once both daemons run, the outbox has
//! delivered the rest: every message alice kept is in bob's history exactly once, in alice's
//! order, verified, with bob's chain of alice's messages intact; nothing is lost or duplicated.
//!
//! A third campaign kills the rendezvous while it holds mail for bob, then bob while he collects
//! it: every message still arrives once, in order.
//!
//! Every message travels in the conversation's ratchet session, written with the message in one
//! transaction on both sides; after each campaign a reply each way must still open, verified:
//! the two sides' keys are in step whatever the kills interrupted.
//!
//! Sizes come from the environment (the defaults are the test suite's short campaign):
//! `PARLEY_CRASH_MESSAGES` (1000), `PARLEY_CRASH_MAIL_MESSAGES` (150, the mailbox campaign),
//! `PARLEY_CRASH_ROUNDS` (at least this many kills, 8),
//! `PARLEY_CRASH_SEED` (replays a campaign; the seed is printed), `PARLEY_CRASH_REPORT`
//! (a file to which each campaign appends its result line), and `PARLEY_CRASH_LOGS` (a folder
//! into which every daemon's run writes its log at `RUST_LOG=debug`, one file per start).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use parley_testkit::{Daemon, Rendezvous, control, enrolled_pair, history};
use serde_json::{Value, json};

/// How long the outbox gets to deliver the rest once both daemons run.
const CONVERGE: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Receiver,
    Sender,
}

#[test]
fn killing_the_receiver_loses_and_duplicates_nothing() {
    campaign(Victim::Receiver);
}

#[test]
fn killing_the_sender_loses_and_duplicates_nothing() {
    campaign(Victim::Sender);
}

/// Bob is away; alice writes to him through the mailbox while the rendezvous is killed with
/// SIGKILL at random moments (between a deposit and its acknowledgement, among others) and
/// restarted on the same ports. Then bob comes back and is himself killed at random moments
/// while he collects (between storing and acknowledging). Nothing the rendezvous said it held is
/// lost, and nothing arrives twice.
#[test]
fn killing_the_rendezvous_and_the_collecting_recipient_loses_and_duplicates_nothing() {
    let messages = env_number("PARLEY_CRASH_MAIL_MESSAGES", 150) as usize;
    let min_rounds = env_number("PARLEY_CRASH_ROUNDS", 8);
    let seed = env_number(
        "PARLEY_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
            | 1,
    );
    let label = "rendezvous and collecting recipient killed";
    eprintln!("crash campaign ({label}): seed {seed}");
    let mut rng = Rng(seed);

    let (dir, rv, alice, bob) = enrolled_pair();
    let mut bob_daemon = start(&bob);
    let alice_daemon = start(&alice);
    let first = control(
        &alice,
        &json!({ "cmd": "send", "to": "bob", "text": "hello" }),
    )
    .expect("the first message");
    assert_eq!(
        first["data"]["delivered"], true,
        "the first message: {first}"
    );
    assert!(bob_daemon.terminate().success());

    let data = dir.path().join("rendezvous");
    let https = rv.url.trim_start_matches("https://").to_owned();
    let p2p = rv.p2p.split("/p2p/").next().expect("p2p").to_owned();
    let shared = Arc::new(Shared {
        acked: Mutex::new(HashSet::new()),
        done: AtomicBool::new(false),
    });
    let killer = {
        let shared = shared.clone();
        let mut rng = Rng(rng.below(u64::MAX) | 1);
        std::thread::spawn(move || {
            let mut rv = rv;
            let mut rounds = 0;
            while rounds < min_rounds || !shared.done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
                let held_before = shared.acked.lock().unwrap().len();
                rv.proc().kill();
                drop(rv);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                rv = Rendezvous::options(&data).https(&https).p2p(&p2p).start();
                let held = held_entries(&rv);
                assert!(
                    held >= held_before as u64,
                    "after kill {rounds}, the rendezvous holds {held} entries but said it held {held_before}"
                );
            }
            (rounds, rv)
        })
    };

    // The burst, to bob who is away: each message is held by the rendezvous (queued), or kept
    // in alice's outbox while the rendezvous is down (deposited later by the outbox round).
    // A failure in the burst still stops the killer thread and its rendezvous (below).
    let burst = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut queued = 0usize;
        let mut kept = 0usize;
        for i in 0..messages {
            let text = format!("m{i:04}");
            let request = json!({ "cmd": "send", "to": "bob", "text": text });
            let answer = control(&alice, &request).expect("alice's daemon answers");
            if answer["data"]["queued"] == true {
                queued += 1;
                shared.acked.lock().unwrap().insert(text);
            } else {
                assert!(
                    ["offline", "unreachable", "rendezvous_unavailable"]
                        .contains(&answer["code"].as_str().unwrap_or_default()),
                    "sending {text} failed unexpectedly: {answer}"
                );
                kept += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        }
        (queued, kept)
    }));
    shared.done.store(true, Ordering::SeqCst);
    let joined = killer.join();
    let (queued, kept) = burst.unwrap_or_else(|failure| std::panic::resume_unwind(failure));
    let (mut rounds, rv) = joined.expect("the killer thread");

    // Bob comes back, and is killed while he collects.
    let mut bob_daemon = start(&bob);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(50 + rng.below(600)));
        bob_daemon.kill();
        rounds += 1;
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        bob_daemon = start(&bob);
    }
    let _processes = (alice_daemon, bob_daemon, rv);
    converge(
        &alice,
        &bob,
        &Tally {
            label,
            seed,
            rounds,
            min_rounds,
            messages,
            receipts: 0,
            queued: queued + kept,
            resent: 0,
        },
    );
}

/// The rendezvous's `parley_mailbox_held_entries`.
fn held_entries(rv: &Rendezvous) -> u64 {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", &format!("{}/metrics", rv.url)])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("parley_mailbox_held_entries ")?.parse().ok())
        .unwrap_or_else(|| panic!("no parley_mailbox_held_entries in the metrics"))
}

/// The daemon of `home`, started; with its log kept when `PARLEY_CRASH_LOGS` names a folder.
fn start(home: &Path) -> Daemon {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match std::env::var_os("PARLEY_CRASH_LOGS") {
        Some(folder) => {
            let n = STARTS.fetch_add(1, Ordering::SeqCst);
            let name = home.file_name().unwrap_or_default().to_string_lossy();
            let path = PathBuf::from(folder).join(format!("{name}-{n:03}.log"));
            Daemon::options(home).debug_log(&path).start()
        }
        None => Daemon::start(home),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*): a printed seed replays a campaign.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The burst's texts in a history, in its order.
fn burst_texts(history: &Value, from: &str) -> Vec<String> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["from"] == from && m["text"].as_str().is_some_and(|t| t.starts_with('m')))
        .map(|m| m["text"].as_str().expect("text").to_owned())
        .collect()
}

fn counts(texts: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for text in texts {
        *counts.entry(text.as_str()).or_insert(0) += 1;
    }
    counts
}

/// What the killer thread shares with the sending loop.
struct Shared {
    acked: Mutex<HashSet<String>>,
    done: AtomicBool,
}

fn campaign(victim: Victim) {
    let messages = env_number("PARLEY_CRASH_MESSAGES", 1000) as usize;
    let min_rounds = env_number("PARLEY_CRASH_ROUNDS", 8);
    let seed = env_number(
        "PARLEY_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
            | 1,
    );
    let label = match victim {
        Victim::Receiver => "receiver killed",
        Victim::Sender => "sender killed",
    };
    eprintln!("crash campaign ({label}): seed {seed}");

    let (_dir, _rv, alice, bob) = enrolled_pair();
    let bob_daemon = start(&bob);
    let alice_daemon = start(&alice);
    // The first message pins bob's keys, so that later ones wait in the outbox while he is away.
    let first = control(
        &alice,
        &json!({ "cmd": "send", "to": "bob", "text": "hello" }),
    )
    .expect("the first message");
    assert_eq!(first["status"], "ok", "the first message: {first}");

    let (victim_home, victim_proc, other_proc) = match victim {
        Victim::Receiver => (bob.clone(), bob_daemon, alice_daemon),
        Victim::Sender => (alice.clone(), alice_daemon, bob_daemon),
    };
    let shared = Arc::new(Shared {
        acked: Mutex::new(HashSet::new()),
        done: AtomicBool::new(false),
    });
    let killer = {
        let shared = shared.clone();
        let bob = bob.clone();
        std::thread::spawn(move || {
            kill_rounds(
                victim_home,
                victim_proc,
                &bob,
                &shared,
                min_rounds,
                Rng(seed),
            )
        })
    };

    // The burst: one message after the other, as fast as the daemon takes them. A message is
    // sent again only when the sender's daemon died and its history does not hold it: the
    // user was told it failed, and nothing of it was kept.
    // A failure in the burst still stops the killer thread and its daemon (below).
    let burst = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut queued = 0usize;
        let mut resent = 0usize;
        for i in 0..messages {
            let text = format!("m{i:04}");
            loop {
                let request = json!({ "cmd": "send", "to": "bob", "text": text });
                match control(&alice, &request) {
                    Ok(answer) if answer["data"]["queued"] == true => {
                        // Held by the rendezvous while bob is away; delivered later.
                        queued += 1;
                        break;
                    }
                    Ok(answer) if answer["status"] == "ok" => {
                        shared.acked.lock().unwrap().insert(text.clone());
                        break;
                    }
                    Ok(answer)
                        if ["offline", "unreachable", "rendezvous_unavailable"]
                            .contains(&answer["code"].as_str().unwrap_or_default()) =>
                    {
                        // Kept in the outbox, delivered later (checked at the end).
                        queued += 1;
                        break;
                    }
                    Ok(answer) => panic!("sending {text} failed unexpectedly: {answer}"),
                    Err(_) => {
                        let kept = burst_texts(&history(&alice, "bob"), "alice").contains(&text);
                        if kept {
                            break;
                        }
                        resent += 1;
                    }
                }
            }
        }
        (queued, resent)
    }));
    shared.done.store(true, Ordering::SeqCst);
    let joined = killer.join();
    let (queued, resent) = burst.unwrap_or_else(|failure| std::panic::resume_unwind(failure));
    let (rounds, victim_proc) = joined.expect("the killer thread");
    let _processes = (victim_proc, other_proc);

    let acked = shared.acked.lock().unwrap().len();
    converge(
        &alice,
        &bob,
        &Tally {
            label,
            seed,
            rounds,
            min_rounds,
            messages,
            receipts: acked,
            queued,
            resent,
        },
    );
}

/// What a campaign counted, for its result line.
struct Tally {
    label: &'static str,
    seed: u64,
    rounds: u64,
    min_rounds: u64,
    messages: usize,
    receipts: usize,
    queued: usize,
    resent: usize,
}

/// Waits until both daemons settled everything (every message of alice's delivered, bob holding
/// as many), then checks that nothing was lost, duplicated, reordered or left unverified.
fn converge(alice: &Path, bob: &Path, tally: &Tally) {
    let Tally {
        label,
        seed,
        rounds,
        min_rounds,
        messages,
        receipts,
        queued,
        resent,
    } = *tally;
    // Both daemons run: the outbox and the mailbox deliver the rest.
    let deadline = Instant::now() + CONVERGE;
    let (sent, received, bob_history, alice_history) = loop {
        let alice_history = history(alice, "bob");
        let bob_history = history(bob, "alice");
        let sent = burst_texts(&alice_history, "alice");
        let received = burst_texts(&bob_history, "alice");
        let delivered = alice_history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .all(|m| m["delivery"] == "delivered");
        if delivered && received.len() >= sent.len() {
            break (sent, received, bob_history, alice_history);
        }
        if Instant::now() >= deadline {
            let waiting: Vec<String> = alice_history["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .filter(|m| m["delivery"] != "delivered")
                .map(|m| format!("{} ({})", m["text"], m["delivery"]))
                .collect();
            panic!(
                "the outbox did not deliver within {CONVERGE:?}: alice kept {}, bob has {}; not delivered: {}",
                sent.len(),
                received.len(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };

    let sent_counts = counts(&sent);
    let received_counts = counts(&received);
    // Every message was either receipted, kept in alice's outbox, or sent again until kept.
    let lost: Vec<String> = (0..messages)
        .map(|i| format!("m{i:04}"))
        .filter(|t| !received_counts.contains_key(t.as_str()))
        .collect();
    let duplicated: usize = received_counts
        .values()
        .chain(sent_counts.values())
        .map(|n| n - 1)
        .sum();
    let out_of_order = sent.iter().zip(&received).filter(|(a, b)| a != b).count();
    let line = format!(
        "crash campaign ({label}): rounds {rounds}, messages {messages}, receipts {}, queued {queued}, sent again after a sender crash {resent}, lost {}, duplicated {duplicated}, out of order {out_of_order}, seed {seed}",
        receipts,
        lost.len(),
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("PARLEY_CRASH_REPORT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("the report file opens");
        writeln!(file, "{line}").expect("the report is written");
    }

    assert!(
        rounds >= min_rounds,
        "only {rounds} kills (wanted {min_rounds})"
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(duplicated, 0, "duplicated messages");
    assert_eq!(received.len(), messages, "bob has every message");
    assert_eq!(received, sent, "bob's history is in alice's order");
    let chain = &bob_history["chain"]["incoming"];
    assert_eq!(
        chain["state"], "intact",
        "bob's chain of alice's messages: {chain}"
    );
    assert_eq!(
        chain["last_seq"].as_u64(),
        alice_history["chain"]["outgoing"]["last_seq"].as_u64(),
        "bob's chain ends where alice's does"
    );
    let unverified: Vec<&Value> = bob_history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["verified"] != true)
        .collect();
    assert!(unverified.is_empty(), "not verified: {unverified:?}");
    keeps_talking(alice, bob);
}

/// After the kills the two sides' conversation keys are still in step: a reply each way opens
/// (no "cannot decrypt" after a restart), verified.
fn keeps_talking(alice: &Path, bob: &Path) {
    for (from, home, to, other) in [("bob", bob, "alice", alice), ("alice", alice, "bob", bob)] {
        let text = format!("{from} after the crashes");
        let out = parley_testkit::parley(home, &["send", to, &text]);
        assert!(
            out.status.success(),
            "{from} → {to} after the campaign: {}",
            parley_testkit::stderr(&out)
        );
        let got = history(other, from);
        assert!(
            got["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .any(|m| m["text"] == text.as_str() && m["verified"] == true),
            "{to} opened {from}'s message after the campaign"
        );
    }
}

/// Kills the victim at random moments until the burst is over and `min_rounds` kills are done,
/// restarting it each time and checking what it must have kept. Returns the number of kills
/// and the running victim.
fn kill_rounds(
    home: PathBuf,
    mut proc: Daemon,
    bob: &Path,
    shared: &Shared,
    min_rounds: u64,
    mut rng: Rng,
) -> (u64, Daemon) {
    let mut rounds = 0;
    while rounds < min_rounds || !shared.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50 + rng.below(750)));
        let acked_before = shared.acked.lock().unwrap().clone();
        proc.kill();
        rounds += 1;
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        // `Daemon::start` waits for the control socket and the rendezvous: the store opened.
        proc = start(&home);
        let received = burst_texts(&history(bob, "alice"), "alice");
        let received = counts(&received);
        for text in &acked_before {
            assert_eq!(
                received.get(text.as_str()),
                Some(&1),
                "after kill {rounds}, {text} (its receipt was back) is not in bob's history exactly once"
            );
        }
    }
    (rounds, proc)
}
