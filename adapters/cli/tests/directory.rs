//! Several certificates of one name, from the attacker's side, with real processes: someone
//! who knows bob's password runs `parley enroll` for "bob" again from another home, gets a
//! certificate for new keys, and comes online as bob. Neither coming nor going may hide the
//! real bob, and a contact who pinned the real bob keeps writing to him alone.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use parley_testkit::{Daemon, Rendezvous, enroll, json, pair, parley, stderr, texts, wait_for};

/// A gauge of the rendezvous's metrics, read over its HTTPS port; 0 when absent.
fn gauge(rv: &Rendezvous, name: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", &format!("{}/metrics", rv.url)])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Waits until the rendezvous holds connections with exactly `n` devices.
fn connected_devices(rv: &Rendezvous, n: u64) {
    wait_for(&format!("the rendezvous to hold {n} devices"), || {
        gauge(rv, "parley_connected_peers") == n
    });
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys_changed(home: &Path, with: &str) -> bool {
    let out = parley(home, &["safety-number", with, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)["keys_changed"] == true
}

#[test]
fn a_second_certificate_of_bob_that_publishes_and_leaves_does_not_hide_the_real_bob() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let home = |name: &str| dir.path().join(name);
    let (bob, carol, elsewhere) = (home("bob"), home("carol"), home("elsewhere"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &carol, "carol", "pw-carol").status.success());
    let bob_daemon = Daemon::start(&bob);
    let _carol_daemon = Daemon::start(&carol);
    connected_devices(&rv, 2);

    // The attacker enrolls "bob" again with the password, from a home of their own (new
    // keys), publishes as bob, and stops.
    let out = enroll(&rv, &elsewhere, "bob", "pw-bob");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut posing = Daemon::start(&elsewhere);
    assert_ne!(posing.peer_id, bob_daemon.peer_id, "a second device of bob");
    connected_devices(&rv, 3);
    assert!(posing.terminate().success());
    connected_devices(&rv, 2);

    // Carol never met bob: only the directory can tell her where he is, and it must at once.
    let started = Instant::now();
    let out = parley(&carol, &["send", "bob", "are you still there?"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("delivered: "),
        "delivered to the real bob, not held for later: {}",
        stdout(&out)
    );
    assert!(
        took < Duration::from_secs(10),
        "found at once, not after a wait: {took:?}"
    );
    assert_eq!(
        texts(&bob, "carol"),
        [pair("carol", "are you still there?")]
    );
    assert!(!keys_changed(&carol, "bob"));
    assert_eq!(
        json(&parley(&bob, &["status", "--json"]))["rendezvous"]["connected"],
        true,
        "bob never left"
    );
}

#[test]
fn with_the_real_bob_and_an_impostor_online_a_contact_writes_to_the_pinned_bob_only() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let home = |name: &str| dir.path().join(name);
    let (alice, bob, elsewhere) = (home("alice"), home("bob"), home("elsewhere"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    let mut bob_daemon = Daemon::start(&bob);
    let mut alice_daemon = Daemon::start(&alice);
    let out = parley(&alice, &["send", "bob", "first contact"]);
    assert!(out.status.success(), "alice pins bob: {}", stderr(&out));

    // The impostor comes online as bob after him, so it is the newest publication; alice
    // starts afresh, so no open connection tells her where the real bob is.
    assert!(alice_daemon.terminate().success());
    assert!(enroll(&rv, &elsewhere, "bob", "pw-bob").status.success());
    let _posing = Daemon::start(&elsewhere);
    let _alice_daemon = Daemon::start(&alice);
    connected_devices(&rv, 3);

    let out = parley(&alice, &["send", "bob", "only for the real bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("delivered: "), "{}", stdout(&out));
    assert_eq!(
        texts(&bob, "alice"),
        [
            pair("alice", "first contact"),
            pair("alice", "only for the real bob")
        ]
    );
    assert!(
        texts(&elsewhere, "alice").is_empty(),
        "the impostor received nothing"
    );
    assert!(
        !keys_changed(&alice, "bob"),
        "no alarm while the real bob is there"
    );

    // With only the impostor online, it is the key change it always was.
    assert!(bob_daemon.terminate().success());
    connected_devices(&rv, 2);
    let out = parley(&alice, &["send", "bob", "are you really bob?"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("keys have changed"),
        "{}",
        stderr(&out)
    );
    assert!(keys_changed(&alice, "bob"));
    assert!(
        texts(&elsewhere, "alice").is_empty(),
        "nothing reached the other keys"
    );
}
