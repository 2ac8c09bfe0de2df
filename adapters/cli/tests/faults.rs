//! Storage faults under a real receiving daemon: a full disk (bob's home on a tiny tmpfs) and a
//! disk whose syncs fail (fsync, fdatasync, sync_file_range and msync fail with EIO, injected
//! by the test kit's `LD_PRELOAD` library, `testkit/faults/sync_fault.c`).
//!
//! While the fault lasts, every message alice sends is either receipted and then in bob's
//! history, or refused without a receipt and kept in alice's outbox; bob's daemon never panics
//! and says in one sentence what is wrong. Once the disk is healthy again, the outbox delivers
//! the rest: every message is in bob's history exactly once, in order, chain intact.
//!
//! The full-disk test mounts a tmpfs and so needs root; without it, it says so on stderr and
//! is skipped (under `CI` it fails instead, since the suite's machine runs it as root).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use parley_testkit::{
    Daemon, Rendezvous, control, enroll,
    faults::{SYNC_FAULT_FLAG, sync_fault_library},
    history, skip, tail, texts_from,
    tools::root_with,
};
use serde_json::{Value, json};

/// Messages sent while syncs fail.
const DURING: usize = 12;
/// At most this many messages are sent to fill the disk up.
const MAX_UNTIL_FULL: usize = 3000;

/// What each message sent during the fault got.
#[derive(Debug)]
struct Outcome {
    text: String,
    receipt: bool,
    answer: Value,
}

fn send_burst(alice: &Path, prefix: &str, n: usize) -> Vec<Outcome> {
    send_burst_from(alice, prefix, 0, n)
}

fn send_burst_from(alice: &Path, prefix: &str, from: usize, n: usize) -> Vec<Outcome> {
    (from..from + n)
        .map(|i| {
            let text = format!("{prefix}{i:04}");
            let answer = control(alice, &json!({ "cmd": "send", "to": "bob", "text": text }))
                .expect("alice's daemon answers");
            Outcome {
                receipt: answer["status"] == "ok" && answer["data"]["delivered"] == true,
                text,
                answer,
            }
        })
        .collect()
}

/// Bob's history, if his daemon answers.
fn bob_history(bob: &Path) -> Option<Value> {
    match control(bob, &json!({ "cmd": "history", "with": "alice" })) {
        Ok(answer) if answer["status"] == "ok" => Some(answer["data"].clone()),
        _ => None,
    }
}

/// Checks the state during the fault: no receipt without the message, nothing half-visible.
fn check_during(bob: &Path, outcomes: &[Outcome]) {
    // Neither receipted nor held by the rendezvous: refused, and kept in the outbox.
    for o in outcomes
        .iter()
        .filter(|o| !o.receipt && o.answer["data"]["queued"] != true)
    {
        let code = o.answer["code"].as_str().unwrap_or_default();
        assert!(
            ["unreachable", "offline", "rendezvous_unavailable"].contains(&code),
            "{} was refused in an unexpected way: {}",
            o.text,
            o.answer
        );
    }
    if let Some(history) = bob_history(bob) {
        let texts = texts_from(&history, "alice");
        for o in outcomes.iter().filter(|o| o.receipt) {
            assert_eq!(
                texts.iter().filter(|t| **t == o.text).count(),
                1,
                "{} was receipted but is not in bob's history exactly once",
                o.text
            );
        }
        for m in history["messages"].as_array().expect("messages") {
            assert!(
                m["text"].is_string() && m["verified"] == true,
                "a half-visible message: {m}"
            );
        }
    }
}

/// Waits until every message alice kept is delivered and in bob's history exactly once, in
/// alice's order, with the chain intact.
fn check_recovered(alice: &Path, bob: &Path, expected: usize, bob_log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sent = texts_from(&history(alice, "bob"), "alice");
        let received = bob_history(bob).map(|h| (texts_from(&h, "alice"), h));
        if let Some((received, h)) = received
            && received.len() >= expected
        {
            assert_eq!(sent.len(), expected, "alice kept every message once");
            assert_eq!(received, sent, "bob has each once, in alice's order");
            assert_eq!(h["chain"]["incoming"]["state"], "intact", "{}", h["chain"]);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not deliver everything once the disk was healthy; bob's log ends: {}",
            tail(bob_log, 8)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The daemon's log, for its one-sentence errors and the absence of panics.
fn assert_no_panic(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "the daemon panicked: {}",
        text.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    text
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_owned()))
    }

    /// Fills the file system up to the last byte.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("the filler goes");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Waits for the daemon to stop on its own with exit code 1, its last log line the one
/// sentence that says why and what to do.
fn assert_stops_with_a_sentence(proc: &mut Daemon, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = proc.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon kept running on a failed store; its log ends: {}",
            tail(log, 8)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(1),
        "exit code; log ends: {}",
        tail(log, 8)
    );
    // Log records start with their time; the daemon's own words do not.
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("20") && !l.trim().is_empty())
        .collect();
    assert!(
        matches!(said.as_slice(), [one] if one.starts_with("the daemon stopped because the message store could not write to disk")),
        "the daemon did not say one sentence about the store: {said:?}"
    );
    said[0].to_owned()
}

#[test]
fn a_full_disk_refuses_messages_without_a_receipt_and_recovers_when_space_returns() {
    if !root_with("to mount a tmpfs", &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("bob-disk"), "48m").expect("mount a tmpfs");
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let (alice, bob) = (dir.path().join("alice"), disk.0.join("home"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    let (alice_log, bob_log) = (dir.path().join("alice.log"), dir.path().join("bob.log"));
    let _alice_daemon = Daemon::options(&alice).debug_log(&alice_log).start();
    let mut bob_daemon = Daemon::options(&bob).debug_log(&bob_log).start();
    let first = send_burst(&alice, "before-", 3);
    assert!(first.iter().all(|o| o.receipt), "{first:?}");

    disk.fill();
    // What was written before the disk filled up may still fit in space sled and the key
    // file hold already: send until the first refusal, then a few more.
    let mut during = Vec::new();
    while during.len() < MAX_UNTIL_FULL {
        let mut next = send_burst_from(&alice, "full-", during.len(), 1);
        let refused = !next[0].receipt;
        during.append(&mut next);
        if refused {
            break;
        }
    }
    let receipted = during.iter().filter(|o| o.receipt).count();
    assert!(
        receipted < during.len(),
        "a full disk refused none of {} messages",
        during.len()
    );
    let after = send_burst_from(&alice, "full-", during.len(), 3);
    during.extend(after);
    check_during(&bob, &during);
    // A full disk refuses a write before sled takes it (the key file grows first): the daemon
    // refuses messages and goes on once space returns. If sled's own log hit the full disk,
    // sled refuses every write after it and the daemon stops with its sentence instead.
    std::thread::sleep(Duration::from_secs(1));
    let stopped = bob_daemon.try_wait().is_some();
    let how = if stopped {
        assert_stops_with_a_sentence(&mut bob_daemon, &bob_log)
    } else {
        "kept running, refusing messages".to_owned()
    };
    assert_no_panic(&bob_log);
    eprintln!(
        "disk full: {receipted} of {} receipted before the first refusal, the rest refused; bob's daemon: {how}",
        during.len()
    );

    disk.free();
    if stopped {
        bob_daemon = Daemon::options(&bob).debug_log(&bob_log).start();
    }
    check_recovered(&alice, &bob, 3 + during.len(), &bob_log);
    assert_no_panic(&bob_log);
    drop(bob_daemon);
}

#[test]
fn failing_syncs_refuse_messages_without_a_receipt_and_recover_when_they_work() {
    let dir = tempfile::tempdir().unwrap();
    let Some(shim) = sync_fault_library(dir.path()) else {
        skip("this test needs a C compiler (cc) to build the fault library");
        return;
    };
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    let flag = dir.path().join("syncs-fail");
    let faulty = |home: &Path, log: &Path| {
        Daemon::options(home)
            .debug_log(log)
            .env("LD_PRELOAD", &shim)
            .env(SYNC_FAULT_FLAG, &flag)
            .start()
    };
    let (alice_log, bob_log) = (dir.path().join("alice.log"), dir.path().join("bob.log"));
    let _alice_daemon = Daemon::options(&alice).debug_log(&alice_log).start();
    let mut bob_daemon = faulty(&bob, &bob_log);
    let first = send_burst(&alice, "before-", 3);
    assert!(first.iter().all(|o| o.receipt), "{first:?}");

    std::fs::write(&flag, b"").expect("the fault is on");
    let during = send_burst(&alice, "eio-", DURING);
    check_during(&bob, &during);
    let refused = during.iter().filter(|o| !o.receipt).count();
    assert_eq!(
        refused, DURING,
        "a message was receipted though no sync succeeded: {during:?}"
    );
    let sentence = assert_stops_with_a_sentence(&mut bob_daemon, &bob_log);
    assert_no_panic(&bob_log);
    eprintln!("failing syncs: {refused} of {DURING} refused; bob's daemon said: {sentence}");

    std::fs::remove_file(&flag).expect("the fault is off");
    bob_daemon = faulty(&bob, &bob_log);
    check_recovered(&alice, &bob, 3 + DURING, &bob_log);
    assert_no_panic(&bob_log);
    drop(bob_daemon);
}
