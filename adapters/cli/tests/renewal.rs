//! Certificates renew themselves, with real processes: a rendezvous issuing three-day
//! certificates, real daemons. A connected daemon renews at once (fewer than ten days left),
//! keeps the new certificate across a restart, keeps its keys, and a contact who pinned it
//! still delivers without a key-change warning; with the rendezvous gone, `status` warns on
//! stderr and in its plain and JSON output. Every process is stopped at the end, also on
//! failure (the test kit's handles kill their process when dropped).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use parley_testkit::{Daemon, Log, Rendezvous, enroll, json, parley, stderr, texts, wait_for};
use serde_json::Value;

fn status(home: &Path) -> Value {
    let out = parley(home, &["status", "--json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    json(&out)
}

fn expires_at(home: &Path) -> String {
    status(home)["certificate"]["expires_at"]
        .as_str()
        .expect("status carries certificate.expires_at")
        .to_owned()
}

fn parse(rfc3339: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("expires_at is RFC 3339")
}

#[test]
fn a_connected_daemon_renews_its_certificate_with_the_same_keys_and_contacts_see_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .args(&["--certificate-days", "3"])
        .start();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    assert!(enroll(&rv, &bob, "bob", "pw-bob").status.success());
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    // Alice's enrolled certificate expires at the latest three days (and a second, its times
    // being whole seconds) from now; a renewal three seconds later must expire later than that.
    let enrolled_by = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    std::thread::sleep(std::time::Duration::from_secs(3));

    let bob_daemon = Daemon::start(&bob);
    let log = dir.path().join("alice.log");
    let alice_daemon = Daemon::options(&alice)
        .env("RUST_LOG", "info")
        .log(Log::File(log.clone()))
        .start();
    let peer_id = alice_daemon.peer_id.clone();

    // Bob meets alice and pins her keys.
    let sent = parley(&bob, &["send", "alice", "before"]);
    assert!(sent.status.success(), "{}", stderr(&sent));

    // Three days is fewer than ten: she renews as soon as she is connected, and says so once.
    wait_for("alice's daemon to log its renewal", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("renewed this device's certificate (same keys)"))
    });
    let renewed = expires_at(&alice);
    assert!(
        parse(&renewed) > enrolled_by + time::Duration::seconds(1),
        "the renewed certificate expires later than the enrolled one: {renewed}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains("BEGIN CERTIFICATE"),
        "no certificate in the log"
    );

    // The renewed certificate was kept: a restart presents it (or a newer one), same keys.
    drop(alice_daemon);
    let alice_daemon = Daemon::start(&alice);
    assert_eq!(alice_daemon.peer_id, peer_id, "same key, same peer id");
    assert!(
        parse(&expires_at(&alice)) >= parse(&renewed),
        "the renewed certificate survives a restart"
    );
    let doc = status(&alice);
    assert_eq!(doc["peer_id"], peer_id.as_str());
    assert_eq!(doc["certificate"]["days_left"], 2, "{doc}");

    // Bob reaches her on a new connection with her new certificate: no key-change alarm.
    let sent = parley(&bob, &["send", "alice", "after"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let said = stderr(&sent);
    assert!(
        String::from_utf8_lossy(&sent.stdout).starts_with("delivered: "),
        "delivered at once, not held: {said}"
    );
    assert!(
        !said.contains("changed") && !said.contains("safety"),
        "no key-change warning: {said}"
    );
    assert!(
        said.contains("certificate expires in 2 days"),
        "send warns of bob's own three-day certificate: {said}"
    );
    let out = parley(&bob, &["safety-number", "alice", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(json(&out)["keys_changed"], true, "{}", json(&out));
    wait_for("alice to hold both messages", || {
        let got = texts(&alice, "bob");
        got.iter().any(|(_, t)| t == "before") && got.iter().any(|(_, t)| t == "after")
    });
    drop((alice_daemon, bob_daemon));
}

#[test]
fn a_certificate_expiring_within_seven_days_is_warned_of_in_status_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .args(&["--certificate-days", "3"])
        .start();
    let alice = dir.path().join("alice");
    assert!(enroll(&rv, &alice, "alice", "pw-alice").status.success());
    // No rendezvous: nothing can renew it.
    rv.stop();
    let _daemon = Daemon::options(&alice).spawn();

    let out = parley(&alice, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warned = stderr(&out);
    assert!(
        warned.contains("certificate expires in 2 days") && warned.contains("parley enroll"),
        "a one-sentence warning saying what to do: {warned}"
    );
    let plain = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        plain
            .lines()
            .any(|l| l.starts_with("certificate: expires ") && l.ends_with("(2 days left)")),
        "{plain}"
    );
    for line in ["user: alice", "outbox: 0", "queued: 0"] {
        assert!(
            plain.lines().any(|l| l == line),
            "the contract's {line:?} stays: {plain}"
        );
    }

    let out = parley(&alice, &["status", "--json"]);
    assert!(stderr(&out).contains("certificate expires in 2 days"));
    let doc = json(&out);
    assert_eq!(doc["certificate"]["days_left"], 2, "{doc}");
    assert_eq!(doc["user"], "alice");
    assert_eq!(doc["rendezvous_connected"], false);
    let expires = parse(
        doc["certificate"]["expires_at"]
            .as_str()
            .expect("expires_at"),
    );
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::days(2) && left <= time::Duration::days(3),
        "{left}"
    );
}
