//! Network faults between real processes: the rendezvous, alice and bob each in their own
//! network namespace, cabled by veth pairs to a bridge in a fourth. nftables drops 30 % of
//! the packets that reach alice and bob; then bob's cable is pulled, his connections are
//! aborted on his side (as a laptop that slept), and the cable is plugged back in.
//!
//! Every message alice sends meanwhile is either receipted or kept in her outbox, and once the
//! network is healthy again bob's daemon has reconnected to the rendezvous and every message
//! is in bob's history exactly once, in order, verified, with the chain intact.
//!
//! The namespaces are the test kit's network lab: three public hosts on its public network.
//! Needs root, `ip` and `tc` (iproute2), `nft` (nftables) and `conntrack`. Where one is
//! missing the test says so on stderr and is skipped; under `CI` (whose machine runs the
//! suite as root, with all installed by test.sh) it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use parley_testkit::{
    Daemon, Host, Lab, Log, Rendezvous, control, enroll_via, history, texts_from,
};
use serde_json::json;

/// Messages sent under packet loss, and while bob's cable is out.
const UNDER_LOSS: usize = 12;
const WHILE_CUT: usize = 3;
/// Share of packets dropped on their way into alice and bob, in percent.
const LOSS_PERCENT: u32 = 30;

fn send_all(alice: &Path, prefix: &str, n: usize) -> (usize, usize) {
    let mut receipts = 0;
    for i in 0..n {
        let text = format!("{prefix}{i:02}");
        let answer = control(alice, &json!({ "cmd": "send", "to": "bob", "text": text }))
            .expect("alice's daemon answers");
        if answer["status"] == "ok" && answer["data"]["delivered"] == true {
            receipts += 1;
        } else if answer["data"]["queued"] != true {
            // Not delivered and not held by the rendezvous either: kept in the outbox.
            let code = answer["code"].as_str().unwrap_or_default();
            assert!(
                ["unreachable", "offline", "rendezvous_unavailable"].contains(&code),
                "{text} was refused in an unexpected way: {answer}"
            );
        }
    }
    (receipts, n - receipts)
}

/// A daemon in `host`'s namespace, up once it reached the rendezvous.
fn daemon(host: &Host, home: &Path, log: &Path) -> Daemon {
    Daemon::options(home)
        .via(&host.ns().launcher())
        .listen("/ip4/0.0.0.0/tcp/0")
        .env("RUST_LOG", "info")
        .log(Log::File(log.to_owned()))
        .start()
}

/// Three public hosts of a fresh lab: the rendezvous running on the first, alice and bob
/// enrolled across the lab from the others (their daemons not started). `None` when the lab
/// cannot be made here (the kit says why).
struct Three {
    // Dropped last: the lab's namespaces outlive everything running in them.
    rv: Rendezvous,
    alice_host: Host,
    bob_host: Host,
    alice: PathBuf,
    bob: PathBuf,
    dir: tempfile::TempDir,
    _lab: Lab,
}

fn three_hosts(test: &str) -> Option<Three> {
    let mut lab = Lab::try_new(test)?;
    let dir = tempfile::tempdir().unwrap();
    let rv_host = lab.public_host("rv");
    let alice_host = lab.public_host("alice");
    let bob_host = lab.public_host("bob");
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .via(&rv_host.ns().launcher())
        .https(&format!("{}:0", rv_host.addr()))
        .p2p(&format!("/ip4/{}/tcp/0", rv_host.addr()))
        .start();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for (user, host, home) in [("bob", &bob_host, &bob), ("alice", &alice_host, &alice)] {
        let out = enroll_via(
            &host.ns().launcher(),
            &rv,
            home,
            user,
            &format!("pw-{user}"),
        );
        assert!(
            out.status.success(),
            "{user} enrolls across the lab: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(Three {
        rv,
        alice_host,
        bob_host,
        alice,
        bob,
        dir,
        _lab: lab,
    })
}

#[test]
fn under_packet_loss_and_a_cut_cable_every_message_arrives_once_and_in_order() {
    let Some(lab) =
        three_hosts("under_packet_loss_and_a_cut_cable_every_message_arrives_once_and_in_order")
    else {
        return;
    };
    // Borrowed, so that the lab drops whole, in its fields' order, at the end.
    let Three {
        rv: _,
        ref alice_host,
        ref bob_host,
        ref alice,
        ref bob,
        ref dir,
        ..
    } = lab;
    let bob_log = dir.path().join("bob.log");
    let _bob_daemon = daemon(bob_host, bob, &bob_log);
    let _alice_daemon = daemon(alice_host, alice, &dir.path().join("alice.log"));
    let first = control(
        alice,
        &json!({ "cmd": "send", "to": "bob", "text": "hello" }),
    )
    .expect("the first message");
    assert_eq!(first["status"], "ok", "{first}");

    alice_host.lose(LOSS_PERCENT);
    bob_host.lose(LOSS_PERCENT);
    let started = Instant::now();
    let (lossy_receipts, lossy_queued) = send_all(alice, "lossy-", UNDER_LOSS);
    let lossy_time = started.elapsed();

    bob_host.cable(false);
    bob_host.drop_connections();
    let (cut_receipts, cut_queued) = send_all(alice, "cut-", WHILE_CUT);
    std::thread::sleep(Duration::from_secs(3));
    bob_host.cable(true);
    alice_host.heal();
    bob_host.heal();

    let expected = 1 + UNDER_LOSS + WHILE_CUT;
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = Instant::now();
    loop {
        let sent = texts_from(&history(alice, "bob"), "alice");
        let received = texts_from(&history(bob, "alice"), "alice");
        if received.len() >= expected {
            assert_eq!(sent.len(), expected, "alice kept each message once");
            assert_eq!(received, sent, "bob has each once, in alice's order");
            let h = history(bob, "alice");
            assert_eq!(h["chain"]["incoming"]["state"], "intact", "{}", h["chain"]);
            assert!(
                h["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .all(|m| m["verified"] == true),
                "every message verified"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the network healed, bob has {} of {expected} messages",
            received.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(&bob_log).unwrap_or_default();
    assert!(
        log.contains("lost the rendezvous connection; re-dialling"),
        "bob's daemon never noticed it lost the rendezvous"
    );
    // Bob redials the rendezvous every 2 s on its own; alice may reach him directly first.
    let reconnected = || {
        control(bob, &json!({ "cmd": "status" })).expect("bob's status")["data"]["rendezvous"]["connected"]
            == true
    };
    let since = Instant::now();
    while !reconnected() {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "bob reconnected to the rendezvous within 20 s of the last delivery:\n{}",
            parley_testkit::tail(&bob_log, 60)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "network faults: {LOSS_PERCENT} % loss: {lossy_receipts} of {UNDER_LOSS} receipted at once, {lossy_queued} queued, in {:.1} s; cable cut: {cut_receipts} receipted, {cut_queued} queued; all {expected} delivered once, in order, {:.1} s after the network healed",
        lossy_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// A sample of the rendezvous's metrics, read over its HTTPS port from inside `host`'s
/// namespace; `None` when the rendezvous did not answer.
fn metric_from(host: &Host, rv: &Rendezvous, name: &str) -> Option<u64> {
    let out = host
        .ns()
        .command("curl")
        .args(["-sk", "--max-time", "5", &format!("{}/metrics", rv.url)])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `name` reads `want`, and says how long that took.
fn wait_metric(host: &Host, rv: &Rendezvous, name: &str, want: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric_from(host, rv, name);
        if now == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {now:?}, not {want}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Bob's cable is pulled without a word (no FIN, no RST reaches the rendezvous): within a
/// minute the rendezvous has closed the silent connection and the directory no longer lists
/// him, so alice's message is held for him at once instead of chasing a dead address; once
/// the cable is back, bob is listed again and collects it.
#[test]
fn a_peer_that_vanishes_without_a_word_leaves_the_directory_within_a_minute() {
    let Some(lab) =
        three_hosts("a_peer_that_vanishes_without_a_word_leaves_the_directory_within_a_minute")
    else {
        return;
    };
    // Borrowed, so that the lab drops whole, in its fields' order, at the end.
    let Three {
        ref rv,
        ref alice_host,
        ref bob_host,
        ref alice,
        ref bob,
        ref dir,
        ..
    } = lab;
    let bob_log = dir.path().join("bob.log");
    let _bob_daemon = daemon(bob_host, bob, &bob_log);
    let _alice_daemon = daemon(alice_host, alice, &dir.path().join("alice.log"));
    // AutoNAT: the rendezvous dials bob back at his own IP (the only IP it dials), and finds
    // him reachable from outside.
    let since = Instant::now();
    loop {
        let status = control(bob, &json!({ "cmd": "status" })).expect("bob's status");
        if status["data"]["reachability"] == "public" {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "bob, on the public network, is found reachable: {status}\n{}",
            parley_testkit::tail(&bob_log, 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let public_after = since.elapsed();
    let first = control(
        alice,
        &json!({ "cmd": "send", "to": "bob", "text": "hello" }),
    )
    .expect("the first message");
    assert_eq!(first["data"]["delivered"], true, "{first}");
    wait_metric(
        alice_host,
        rv,
        "parley_online_users",
        2,
        Duration::from_secs(20),
    );

    bob_host.cable(false);
    let gone = wait_metric(
        alice_host,
        rv,
        "parley_online_users",
        1,
        Duration::from_secs(60),
    );
    let send = Instant::now();
    let held = control(
        alice,
        &json!({ "cmd": "send", "to": "bob", "text": "while away" }),
    )
    .expect("alice's daemon answers");
    assert_eq!(held["data"]["queued"], true, "held for bob: {held}");
    let send_took = send.elapsed();

    bob_host.cable(true);
    let back = wait_metric(
        alice_host,
        rv,
        "parley_online_users",
        2,
        Duration::from_secs(60),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while !texts_from(&history(bob, "alice"), "alice").contains(&"while away".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "bob collected what was held for him:\n{}",
            parley_testkit::tail(&bob_log, 60)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "vanished peer: found public in {:.1} s; out of the directory {:.1} s after the cable was pulled; the next send held in {:.1} s; listed again {:.1} s after it was plugged back",
        public_after.as_secs_f64(),
        gone.as_secs_f64(),
        send_took.as_secs_f64(),
        back.as_secs_f64()
    );
}
