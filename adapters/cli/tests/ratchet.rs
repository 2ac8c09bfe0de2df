//! Forward secrecy with real processes: two daemons on a fast rekey timer hold a conversation
//! (both speaking, then one speaking alone), every message verified, `status` counting each
//! side's DH steps and `conversations --json` showing them; the homes hold the conversation's
//! keys only encrypted.
//!
//! The conversation lasts `PARLEY_RATCHET_SECONDS` (default 24 s, what `./test.sh` runs; the
//! long campaign is `PARLEY_RATCHET_SECONDS=180 cargo nextest run -p parley-cli --test
//! ratchet`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use parley_testkit::{Daemon, enrolled_pair, json, parley, stderr};
use serde_json::Value;

fn seconds() -> u64 {
    std::env::var("PARLEY_RATCHET_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24)
        .max(12)
}

fn send(home: &std::path::Path, to: &str, text: &str) {
    let out = parley(home, &["send", to, text]);
    assert!(out.status.success(), "send to {to}: {}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("delivered: "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn rekeys(home: &std::path::Path) -> u64 {
    let status = json(&parley(home, &["status", "--json"]));
    status["rekeys"]
        .as_u64()
        .unwrap_or_else(|| panic!("status --json has rekeys: {status}"))
}

fn history(home: &std::path::Path, with: &str) -> Vec<Value> {
    json(&parley(home, &["history", with, "--json"]))["messages"]
        .as_array()
        .expect("messages")
        .clone()
}

#[test]
fn a_conversation_on_a_fast_rekey_timer_steps_on_both_sides_and_every_message_is_verified() {
    let (_dir, _rv, alice, bob) = enrolled_pair();
    let _bob_daemon = Daemon::options(&bob)
        .args(&["--rekey-every", "2s..4s"])
        .start();
    let _alice_daemon = Daemon::options(&alice)
        .args(&["--rekey-every", "2s..4s"])
        .start();
    let total = seconds();
    let (mut to_bob, mut to_alice) = (0usize, 0usize);

    // Both speak, in turns, for half the time.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(total / 2) {
        to_bob += 1;
        send(&alice, "bob", &format!("alice says {to_bob}"));
        to_alice += 1;
        send(&bob, "alice", &format!("bob says {to_alice}"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (alice_turns, bob_turns) = (rekeys(&alice), rekeys(&bob));
    assert!(
        alice_turns >= 2 && bob_turns >= 2,
        "every change of speaker steps: alice {alice_turns}, bob {bob_turns}"
    );

    // Then alice alone: no change of speaker, so only the timer moves her keys on.
    let alone = Instant::now();
    while alone.elapsed() < Duration::from_secs(total / 2) {
        to_bob += 1;
        send(&alice, "bob", &format!("alice alone {to_bob}"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let alice_alone = rekeys(&alice) - alice_turns;
    let expected = total / 2 / 4; // at most one timed step every 4 s
    assert!(
        alice_alone >= expected.max(1),
        "the 2s..4s timer stepped alice's keys {alice_alone} times in {}s alone (expected at least {expected})",
        total / 2
    );
    assert_eq!(
        rekeys(&bob),
        bob_turns,
        "bob did not speak, so he took no step"
    );

    // Every message arrived once, verified, in order.
    let at_bob = history(&bob, "alice");
    let from_alice: Vec<&Value> = at_bob.iter().filter(|m| m["from"] == "alice").collect();
    assert_eq!(from_alice.len(), to_bob, "each of alice's messages once");
    assert!(
        at_bob.iter().all(|m| m["verified"] == true),
        "every message verified: {at_bob:?}"
    );
    assert_eq!(
        history(&alice, "bob")
            .iter()
            .filter(|m| m["from"] == "bob" && m["verified"] == true)
            .count(),
        to_alice
    );

    // The conversation shows how far its keys moved on.
    let conversations = json(&parley(&alice, &["conversations", "--json"]));
    let ratchet = &conversations[0]["ratchet"];
    assert!(
        ratchet["steps"].as_u64().unwrap() >= alice_turns + alice_alone,
        "{ratchet}"
    );
    assert!(ratchet["last_step_at"].is_string(), "{ratchet}");
    let plain = String::from_utf8_lossy(&parley(&alice, &["status"]).stdout).into_owned();
    assert!(
        plain
            .lines()
            .any(|l| l == format!("rekeys: {}", rekeys(&alice))),
        "plain status shows the rekeys: {plain}"
    );
}

#[test]
fn a_bad_rekey_interval_is_refused_with_one_sentence() {
    let (_dir, _rv, alice, _bob) = enrolled_pair();
    for bad in ["4s..2s", "30s", "1x..2s"] {
        let out = parley(&alice, &["daemon", "--rekey-every", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--rekey-every"), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
