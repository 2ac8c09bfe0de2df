//! One-paste joining with real processes: the `invite:` line a real rendezvous printed enrolls
//! a peer with `parley enroll --invite`; a tampered or malformed invite is refused with one
//! sentence, a non-zero exit and nothing left in the home.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use parley_testkit::{Rendezvous, enroll_invite, parley, stderr};

/// The invite with the last hex digit of its fingerprint changed: still well formed, but it
/// names another CA.
fn tampered(invite: &str) -> String {
    let (head, last) = invite.split_at(invite.len() - 1);
    format!("{head}{}", if last == "0" { '1' } else { '0' })
}

fn one_sentence(out: &std::process::Output) -> String {
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn the_printed_invite_enrolls_and_a_tampered_or_malformed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));

    // A fingerprint changed by one hex digit: the handshake's CA is not the one named.
    let mallory = dir.path().join("mallory");
    let out = enroll_invite(&mallory, &tampered(&rv.invite), "alice", "pw-alice", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = one_sentence(&out);
    assert!(err.contains("fingerprint") || err.contains("CA"), "{err}");
    assert!(
        !mallory.exists(),
        "a refused enrollment left {}",
        mallory.display()
    );

    // Malformed invites: usage errors, before anything is created or sent.
    let malformed = [
        rv.invite.replace("parley://join?", "parley://jion?"),
        rv.invite.replace("&ca=", "&ca=sha1:"),
        format!("{}&user=bob", rv.invite),
        format!("{}&ca=sha256:{}", rv.invite, "0".repeat(64)),
        rv.invite.replace("https%3A", "http%3A"),
        "https://127.0.0.1:8443".to_owned(),
    ];
    for invite in &malformed {
        let out = enroll_invite(&mallory, invite, "alice", "pw-alice", &[]);
        assert_eq!(out.status.code(), Some(2), "{invite}: {}", stderr(&out));
        let err = one_sentence(&out);
        assert!(err.contains("invite"), "{err}");
        assert!(!mallory.exists());
    }

    // --invite replaces --server and --ca-fingerprint: clap refuses them together.
    for extra in [
        ["--server", rv.url.as_str()],
        ["--ca-fingerprint", rv.fingerprint.as_str()],
    ] {
        let out = enroll_invite(&mallory, &rv.invite, "alice", "pw-alice", &extra);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
        assert!(!mallory.exists());
    }

    // The invite as printed.
    let alice = dir.path().join("alice");
    let out = enroll_invite(&alice, &rv.invite, "alice", "pw-alice", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("enrolled: alice"), "{stdout}");
    assert!(
        stdout.contains(&format!("ca-fingerprint: {}", rv.fingerprint)),
        "{stdout}"
    );
    assert!(
        !stderr(&out).contains("trusted the rendezvous CA"),
        "an invite pins the CA: {}",
        stderr(&out)
    );
    // Enrolled: the daemon is what is missing now.
    let out = parley(&alice, &["status"]);
    assert!(
        stderr(&out).starts_with("no Parley daemon is running"),
        "{}",
        stderr(&out)
    );
    drop(rv);
}
