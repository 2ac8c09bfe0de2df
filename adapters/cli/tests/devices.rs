//! This user's signed device list with real processes: bob's first device publishes the list
//! naming itself (`parley devices --json` shows it, current, named after the host); a second
//! home enrolled as bob with the password alone is not in it, sees the first device's list
//! with itself absent, and says so in `status` and in its daemon's log.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use parley_testkit::{Daemon, Log, Rendezvous, enroll, json, parley, stderr};
use serde_json::Value;

fn devices(home: &std::path::Path) -> Vec<Value> {
    let out = parley(home, &["devices", "--json"]);
    assert!(out.status.success(), "devices: {}", stderr(&out));
    json(&out).as_array().expect("an array").clone()
}

#[test]
fn the_first_device_signs_the_list_and_a_device_enrolled_by_password_alone_is_not_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let laptop = dir.path().join("laptop");
    assert!(enroll(&rv, &laptop, "bob", "pw-bob").status.success());

    // No daemon: one sentence that says what to do.
    let out = parley(&laptop, &["devices"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no Parley daemon is running"),
        "{}",
        stderr(&out)
    );

    let mut daemon = Daemon::start(&laptop);
    let listed = devices(&laptop);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first = &listed[0];
    let id = first["id"].as_str().expect("id");
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() && host.len() <= 64 {
        assert_eq!(first["name"], host, "named after the host");
    }
    assert_eq!(first["current"], true);
    assert!(
        first["added_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    let text = parley(&laptop, &["devices"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.starts_with(id) && text.trim_end().ends_with("(this device)"),
        "{text}"
    );

    let status = json(&parley(&laptop, &["status", "--json"]));
    assert_eq!(
        status["device_list"],
        serde_json::json!({"version": 1, "devices": 1, "this_device": true}),
        "{status}"
    );

    // A restart keeps the same list (held, not published anew).
    assert!(daemon.terminate().success());
    let _laptop_daemon = Daemon::start(&laptop);
    assert_eq!(devices(&laptop), listed);

    // A second home of bob with the password only: not signed in by the laptop.
    let desktop = dir.path().join("desktop");
    assert!(enroll(&rv, &desktop, "bob", "pw-bob").status.success());
    let log = dir.path().join("desktop.log");
    let desktop_daemon = Daemon::options(&desktop)
        .env("RUST_LOG", "info")
        .log(Log::File(log.clone()))
        .start();
    let seen = devices(&desktop);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["id"], id, "the laptop's list");
    assert_eq!(seen[0]["current"], false, "the desktop is not in it");
    let status = json(&parley(&desktop, &["status", "--json"]));
    assert_eq!(status["device_list"]["this_device"], false, "{status}");
    let text = String::from_utf8(parley(&desktop, &["status"]).stdout).unwrap();
    assert!(text.contains("this device NOT among them"), "{text}");
    parley_testkit::wait_for("the desktop's daemon to warn", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("this device is not in its user's signed device list")
    });
    drop(desktop_daemon);
}
