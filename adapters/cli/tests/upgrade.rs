//! A home made by the previous release (before forward secrecy: envelopes of version 1, no
//! ratchet sessions) opens with this one: the passphrase still unlocks it, the conversation,
//! its attachment and the message waiting in the outbox are all there, and the conversation
//! has no ratchet steps yet (it moves to the ratchet at its next message). The fixture and how
//! it was made: `tests/data/previous-release/`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use parley_testkit::{Daemon, json, parley, save_attachment, stderr};

const PASSPHRASE: &str = "fixture passphrase";

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_home_of_the_previous_release_opens_with_its_conversation_and_its_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("alice");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/previous-release/alice"),
        &home,
    );
    // Its rendezvous is long gone: the daemon starts all the same and serves what it holds.
    let _daemon = Daemon::options(&home)
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .spawn();

    let history = json(&parley(&home, &["history", "bob", "--json"]));
    let messages = history["messages"].as_array().expect("messages");
    let texts: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts,
        [
            ("alice", "hello from the previous release"),
            ("bob", "and back, before the upgrade"),
            ("alice", "with a file"),
            ("alice", "waiting in the outbox"),
        ]
    );
    assert!(
        messages.iter().all(|m| m["verified"] == true),
        "{messages:?}"
    );
    assert_eq!(messages[3]["delivery"], "queued", "still in the outbox");
    assert_eq!(history["chain"]["incoming"]["state"], "intact");

    let with_file = &messages[2];
    let saved = dir.path().join("note.txt");
    let out = save_attachment(&home, "bob", with_file["id"].as_str().unwrap(), &saved);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        b"an attachment kept across the upgrade\n"
    );

    let status = json(&parley(&home, &["status", "--json"]));
    assert_eq!(status["outbox"], 1);
    assert_eq!(status["queued"], 1);
    assert_eq!(status["rekeys"], 0, "no ratchet step yet");
    let conversations = json(&parley(&home, &["conversations", "--json"]));
    assert_eq!(conversations[0]["with"], "bob");
    assert_eq!(conversations[0]["ratchet"]["steps"], 0);
    assert!(conversations[0]["ratchet"]["last_step_at"].is_null());
}

#[test]
fn a_home_of_the_previous_release_still_refuses_a_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("alice");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/previous-release/alice"),
        &home,
    );
    let out = std::process::Command::new(parley_testkit::binary("parley"))
        .arg("--home")
        .arg(&home)
        .args(["daemon", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("PARLEY_PASSPHRASE", "not the passphrase")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("passphrase"),
        "one sentence about the passphrase: {}",
        stderr(&out)
    );
}
