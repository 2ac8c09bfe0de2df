//! Offline delivery with real processes: a real rendezvous holding mail on disk, real daemons,
//! real sockets on loopback ports chosen at run time, homes in temporary folders. A message to
//! someone offline is `queued`, survives the sender leaving and the rendezvous crashing, and
//! arrives once when the recipient comes back; the sender's copy turns delivered by the receipt
//! that comes back the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use parley_testkit::{
    Daemon, Log, Rendezvous, enroll, history, json, pair, parley, save_attachment, stderr, texts,
    wait_for, wait_within,
};

/// The id `send` printed as `queued: <id>`, asserting exit 0.
fn queued(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "send failed: {}{}",
        stdout,
        stderr(out)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("queued: "))
        .unwrap_or_else(|| panic!("no queued line in {stdout:?}"))
        .to_owned()
}

/// The rendezvous's metrics, over its HTTPS port.
fn metrics(rv: &Rendezvous) -> String {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", &format!("{}/metrics", rv.url)])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sample of the metrics by its name (and labels) as written; 0 when absent.
fn metric(rv: &Rendezvous, sample: &str) -> u64 {
    metrics(rv)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The delivery state of message `id` in `home`'s conversation with `with`.
fn delivery(home: &Path, with: &str, id: &str) -> String {
    history(home, with)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["delivery"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `home`'s messages from `from`, as (text, verified).
fn received(home: &Path, from: &str) -> Vec<(String, bool)> {
    history(home, from)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == from)
        .map(|m| {
            (
                m["text"].as_str().unwrap().to_owned(),
                m["verified"] == true,
            )
        })
        .collect()
}

/// A rendezvous with `users` enrolled (no daemon yet).
fn group(users: &[&str], args: &[&str]) -> (tempfile::TempDir, Rendezvous, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .args(args)
        .start();
    let homes = users
        .iter()
        .map(|u| {
            let home = dir.path().join(u);
            let out = enroll(&rv, &home, u, &format!("pw-{u}"));
            assert!(out.status.success(), "{}", stderr(&out));
            home
        })
        .collect();
    (dir, rv, homes)
}

/// Alice and bob meet (one message each way while both run), then bob's daemon stops.
fn met_then_bob_leaves(alice: &Path, bob: &Path) -> Daemon {
    let alice_daemon = Daemon::start(alice);
    let mut bob_daemon = Daemon::start(bob);
    let out = parley(alice, &["send", "bob", "hello while you are here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(bob_daemon.terminate().success());
    alice_daemon
}

#[test]
fn a_message_to_someone_offline_arrives_after_the_sender_left_and_the_rendezvous_crashed() {
    let (dir, rv, homes) = group(&["alice", "bob"], &[]);
    let (alice, bob) = (&homes[0], &homes[1]);
    let mut alice_daemon = met_then_bob_leaves(alice, bob);

    let id = queued(&parley(alice, &["send", "bob", "are you there"]));
    assert_eq!(delivery(alice, "bob", &id), "queued");
    let status = json(&parley(alice, &["status", "--json"]));
    assert_eq!(status["queued"], 1, "{status}");
    let plain = String::from_utf8_lossy(&parley(alice, &["status"]).stdout).into_owned();
    assert!(plain.contains("queued: 1"), "{plain}");
    assert_eq!(metric(&rv, "parley_mailbox_held_entries"), 1);

    // Alice leaves; the rendezvous crashes and comes back on the same ports.
    assert!(alice_daemon.terminate().success());
    let https = rv.url.trim_start_matches("https://").to_owned();
    let p2p = rv.p2p.split("/p2p/").next().unwrap().to_owned();
    let mut rv = rv;
    rv.proc().kill();
    drop(rv);
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .https(&https)
        .p2p(&p2p)
        .start();

    // Bob comes back: the message is there, verified, once.
    let _bob_daemon = Daemon::start(bob);
    wait_for("bob to collect his mail", || {
        received(bob, "alice").len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2)); // a second collection must not duplicate it
    assert_eq!(
        received(bob, "alice"),
        [
            ("hello while you are here".to_owned(), true),
            ("are you there".to_owned(), true)
        ]
    );
    wait_for("the rendezvous to drop what bob acknowledged", || {
        metric(&rv, "parley_mailbox_held_entries") <= 1 // bob's receipt, held for alice
    });

    // Alice comes back: the receipt waits for her; her copy turns delivered.
    let _alice_daemon = Daemon::start(alice);
    wait_for("alice's copy to turn delivered", || {
        delivery(alice, "bob", &id) == "delivered"
    });
    assert_eq!(json(&parley(alice, &["status", "--json"]))["outbox"], 0);
    wait_for("the mailbox to be empty", || {
        metric(&rv, "parley_mailbox_held_entries") == 0
    });
}

#[test]
fn a_first_message_from_a_stranger_to_someone_offline_is_pinned_and_verified() {
    let (_dir, _rv, homes) = group(&["bob", "carol"], &[]);
    let (bob, carol) = (&homes[0], &homes[1]);
    let _carol_daemon = Daemon::start(carol);

    // Bob never ran a daemon: carol's device gets his certified keys from the rendezvous.
    let id = queued(&parley(carol, &["send", "bob", "we have never met"]));
    assert_eq!(delivery(carol, "bob", &id), "queued");

    let _bob_daemon = Daemon::start(bob);
    wait_for("bob to collect carol's message", || {
        !received(bob, "carol").is_empty()
    });
    assert_eq!(
        received(bob, "carol"),
        [("we have never met".to_owned(), true)]
    );
    // Both sides pinned the other's certified keys: the same safety number, no change.
    let seen_by_bob = json(&parley(bob, &["safety-number", "carol", "--json"]));
    let seen_by_carol = json(&parley(carol, &["safety-number", "bob", "--json"]));
    assert_eq!(seen_by_bob["keys_changed"], false);
    assert_eq!(seen_by_bob["safety_number"], seen_by_carol["safety_number"]);
    wait_for("carol's copy to turn delivered", || {
        delivery(carol, "bob", &id) == "delivered"
    });
}

#[test]
fn a_name_nobody_enrolled_is_still_unknown() {
    let (_dir, _rv, homes) = group(&["alice"], &[]);
    let _daemon = Daemon::start(&homes[0]);
    let out = parley(&homes[0], &["send", "nobody-here", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let control = parley_testkit::control(
        &homes[0],
        &serde_json::json!({"cmd": "send", "to": "nobody-here", "text": "hello"}),
    )
    .unwrap();
    assert_eq!(control["code"], "unknown_user", "{control}");
    assert_eq!(json(&parley(&homes[0], &["status", "--json"]))["outbox"], 0);
}

#[test]
fn a_disappearing_message_that_expires_while_held_is_purged_and_never_shown() {
    let (dir, rv, homes) = group(&["alice", "bob"], &[]);
    let rv_data = dir.path().join("rendezvous");
    let (alice, bob) = (&homes[0], &homes[1]);
    let _alice_daemon = met_then_bob_leaves(alice, bob);

    let id = queued(&parley(
        alice,
        &["send", "bob", "gone in thirty seconds", "--ttl", "30s"],
    ));
    assert_eq!(metric(&rv, "parley_mailbox_held_entries"), 1);
    let entries = rv_data.join("mailbox").join("entries");
    assert_eq!(
        std::fs::read_dir(&entries).unwrap().count(),
        1,
        "held on disk"
    );
    wait_within(
        "the rendezvous to purge the expired entry",
        Duration::from_secs(45),
        || metric(&rv, "parley_mailbox_expired_total") >= 1,
    );
    assert_eq!(metric(&rv, "parley_mailbox_held_entries"), 0);
    assert_eq!(
        std::fs::read_dir(&entries).unwrap().count(),
        0,
        "the purged entry's file is gone from the rendezvous's disk"
    );
    std::thread::sleep(Duration::from_secs(8)); // bob comes back after 40 s

    let _bob_daemon = Daemon::start(bob);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        received(bob, "alice"),
        [("hello while you are here".to_owned(), true)],
        "the expired message never arrives"
    );
    assert!(
        delivery(alice, "bob", &id).is_empty(),
        "gone from alice's history too"
    );
    assert!(metric(&rv, "parley_mailbox_fetches_total") > 0);
}

#[test]
fn attachments_travel_through_the_mailbox_and_one_over_its_cap_stays_in_the_outbox() {
    let (dir, _rv, homes) = group(&["alice", "bob"], &["--mailbox-max-attachment-mib", "1"]);
    let (alice, bob) = (&homes[0], &homes[1]);
    let _alice_daemon = met_then_bob_leaves(alice, bob);

    let small = dir.path().join("photo.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&small, &bytes).unwrap();
    let id = queued(&parley(
        alice,
        &[
            "send",
            "bob",
            "a photo",
            "--attach",
            small.to_str().unwrap(),
        ],
    ));

    let big = dir.path().join("film.bin");
    std::fs::write(&big, vec![7u8; 2 * 1024 * 1024]).unwrap();
    let out = parley(
        alice,
        &["send", "bob", "a film", "--attach", big.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mailbox_attachment_too_large"),
        "the refusal names its code: {}",
        stderr(&out)
    );
    let status = json(&parley(alice, &["status", "--json"]));
    assert_eq!(
        (status["outbox"].as_u64(), status["queued"].as_u64()),
        (Some(2), Some(1)),
        "the film waits in the outbox, not queued: {status}"
    );

    let _bob_daemon = Daemon::start(bob);
    // The photo comes by mail; the film goes directly now that bob is online.
    wait_for("bob to hold both messages", || {
        received(bob, "alice").len() >= 3
    });
    let doc = history(bob, "alice");
    let photo = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .expect("the photo message")
        .clone();
    let saved = dir.path().join("saved.bin");
    let out = save_attachment(bob, "alice", &id, &saved);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&saved).unwrap(), bytes);
    assert_eq!(photo["attachments"][0]["name"], "photo.bin");
}

#[test]
fn an_entry_altered_on_the_rendezvous_disk_is_refused_by_the_recipient_and_never_shown() {
    let (dir, rv, homes) = group(&["alice", "bob"], &[]);
    let (alice, bob) = (&homes[0], &homes[1]);
    let _alice_daemon = met_then_bob_leaves(alice, bob);
    queued(&parley(alice, &["send", "bob", "do not tamper with me"]));

    // With the rendezvous stopped, flip a byte in the middle of every held entry's file.
    let https = rv.url.trim_start_matches("https://").to_owned();
    let p2p = rv.p2p.split("/p2p/").next().unwrap().to_owned();
    assert!(rv.stop().success());
    let blobs = dir
        .path()
        .join("rendezvous")
        .join("mailbox")
        .join("entries");
    let mut flipped = 0;
    for entry in std::fs::read_dir(&blobs).expect("held entries are files") {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        flipped += 1;
    }
    assert_eq!(flipped, 1);
    let _rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .https(&https)
        .p2p(&p2p)
        .start();

    let log = dir.path().join("bob.log");
    let _bob_daemon = Daemon::options(bob).log(Log::File(log.clone())).start();
    wait_for("bob to refuse the altered entry", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("altered")
    });
    assert_eq!(
        received(bob, "alice"),
        [("hello while you are here".to_owned(), true)],
        "the altered message is not shown"
    );
}

#[test]
fn the_rendezvous_keeps_no_plaintext_and_logs_no_text() {
    const CANARY: &str = "canary-7f3a-kept-from-the-operator";
    let dir = tempfile::tempdir().unwrap();
    let rv_log = dir.path().join("rendezvous.log");
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .env("RUST_LOG", "trace")
        .log(Log::File(rv_log.clone()))
        .start();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for (home, user) in [(&bob, "bob"), (&alice, "alice")] {
        assert!(enroll(&rv, home, user, "pw").status.success());
    }
    let _alice_daemon = met_then_bob_leaves(&alice, &bob);
    queued(&parley(&alice, &["send", "bob", CANARY]));
    let attachment = dir.path().join("note.txt");
    std::fs::write(&attachment, format!("{CANARY} in a file")).unwrap();
    queued(&parley(
        &alice,
        &[
            "send",
            "bob",
            "see file",
            "--attach",
            attachment.to_str().unwrap(),
        ],
    ));
    assert!(rv.stop().success());

    let mut files = vec![dir.path().join("rendezvous")];
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        seen += 1;
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds the text in plaintext",
            path.display()
        );
        // The registry names every enrolled user; the mailbox names no sender.
        if path.starts_with(dir.path().join("rendezvous").join("mailbox")) {
            assert!(
                !bytes.windows(5).any(|w| w == b"alice"),
                "{} names the sender",
                path.display()
            );
        }
    }
    assert!(seen > 3, "the data folder was read");
    let log = std::fs::read_to_string(&rv_log).unwrap();
    assert!(
        log.contains("mailbox"),
        "the log was written at trace level"
    );
    assert!(!log.contains(CANARY), "a log line holds the text");
}

#[test]
fn a_later_direct_connection_does_not_deliver_a_queued_message_twice() {
    let (_dir, _rv, homes) = group(&["alice", "bob"], &[]);
    let (alice, bob) = (&homes[0], &homes[1]);
    let _alice_daemon = met_then_bob_leaves(alice, bob);
    let id = queued(&parley(alice, &["send", "bob", "only once"]));
    // Bob comes back: the mailbox and alice's outbox round race to deliver it.
    let _bob_daemon = Daemon::start(bob);
    wait_for("alice's copy to turn delivered", || {
        delivery(alice, "bob", &id) == "delivered"
    });
    std::thread::sleep(Duration::from_secs(4));
    let got = texts(bob, "alice");
    assert_eq!(
        got.iter()
            .filter(|t| **t == pair("alice", "only once"))
            .count(),
        1,
        "{got:?}"
    );
}
