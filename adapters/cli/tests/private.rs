//! What `parley` does to its own process and home, seen from outside: a home made before
//! and everything in it become the user's only, what the daemon writes later is private too,
//! the daemon keeps no `PARLEY_PASSPHRASE` in its environment, and it cannot dump core unless
//! `PARLEY_ALLOW_CORE_DUMPS=1` says so.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use parley_testkit::{
    Daemon, Log, Rendezvous, is_root, json, parley,
    peer::command,
    procfs::{core_limit, environ, mode, open_to_others, proc_owner},
    save_attachment, stderr, tools,
};

const PASSPHRASE: &str = "correct horse battery staple";
/// The user the dumpability check runs the daemon as (`nobody`).
const NOBODY: u32 = 65534;
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `parley enroll` of `user` into `home`, its store locked with [`PASSPHRASE`], run through
/// `via` (nothing, or a launcher such as `setpriv`).
fn enroll(rv: &Rendezvous, home: &Path, user: &str, via: &[&str]) -> Output {
    let mut cmd = match via.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(parley_testkit::binary("parley"));
            cmd.arg("--home").arg(home);
            cmd
        }
        None => command(home),
    };
    cmd.args(["enroll", "--server", &rv.url, "--user", user])
        .args(["--ca-fingerprint", &rv.fingerprint])
        .env("PARLEY_PASSWORD", "pw")
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_private(dir: &Path, what: &str) {
    let open = open_to_others(dir);
    assert!(open.is_empty(), "{what}: open to others: {open:?}");
}

fn daemon(home: &Path) -> Daemon {
    Daemon::options(home)
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .log(Log::Inherit)
        .start()
}

#[test]
fn a_home_made_before_becomes_private_and_so_does_everything_the_daemon_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    // Alice's home was made by hand (or by a volume), open to everyone, with a file in it.
    let alice = dir.path().join("alice");
    fs::create_dir(&alice).unwrap();
    chmod(&alice, 0o755);
    fs::write(alice.join("notes.txt"), "mine").unwrap();
    chmod(&alice.join("notes.txt"), 0o644);
    let bob = dir.path().join("bob");
    for (home, user) in [(&alice, "alice"), (&bob, "bob")] {
        let out = enroll(&rv, home, user, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(mode(&alice), 0o700, "enroll made the home private");
    assert_eq!(mode(&alice.join("notes.txt")), 0o600);
    assert_private(&alice, "alice's home after enroll");

    // The daemon tightens what was loosened while it was not running, at start.
    chmod(&alice, 0o755);
    chmod(&alice.join("notes.txt"), 0o644);
    let _alice_daemon = daemon(&alice);
    let _bob_daemon = daemon(&bob);
    assert_eq!(mode(&alice), 0o700, "the daemon made the home private");
    assert_eq!(mode(&alice.join("notes.txt")), 0o600);

    // Messages, an attachment and a saved copy: everything written is private.
    let file = dir.path().join("photo.bin");
    fs::write(&file, vec![7u8; 100_000]).unwrap();
    let out = parley(
        &alice,
        &[
            "send",
            "bob",
            "with a file",
            "--attach",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(parley(&bob, &["send", "alice", "back"]).status.success());
    let history = json(&parley(&bob, &["history", "alice", "--json"]));
    let id = history["messages"][0]["id"].as_str().unwrap().to_owned();
    let saved: PathBuf = dir.path().join("saved.bin");
    let out = save_attachment(&bob, "alice", &id, &saved);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&saved), 0o600, "a saved attachment is its user's only");
    assert_private(&alice, "alice's home");
    assert_private(&bob, "bob's home");
    drop(rv);
}

#[test]
fn the_daemon_keeps_no_passphrase_in_its_environment_and_cannot_dump_core() {
    let dir = tempfile::tempdir().unwrap();
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let alice = dir.path().join("alice");
    let out = enroll(&rv, &alice, "alice", &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut hardened = daemon(&alice);
    // It opened a passphrase store, so it had the passphrase; its environment does not.
    let env = environ(hardened.pid());
    assert!(
        !env.iter().any(|e| e.starts_with("PARLEY_PASSPHRASE=")),
        "the daemon's environment still holds the passphrase: {env:?}"
    );
    assert!(
        !env.iter().any(|e| e.contains(PASSPHRASE)),
        "the passphrase is nowhere in the environment"
    );
    assert!(
        env.iter().any(|e| e == "PARLEY_PASSPHRASE_ON_STDIN=1"),
        "it came over the pipe: {env:?}"
    );
    assert_eq!(
        core_limit(hardened.pid()),
        ("0".to_owned(), "0".to_owned()),
        "core files limited to 0 bytes, soft and hard"
    );
    assert!(hardened.terminate().success(), "a clean stop on SIGTERM");

    let allowed = Daemon::options(&alice)
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .env("PARLEY_ALLOW_CORE_DUMPS", "1")
        .log(Log::Inherit)
        .start();
    assert_eq!(
        core_limit(allowed.pid()),
        core_limit(std::process::id()),
        "PARLEY_ALLOW_CORE_DUMPS=1 keeps the limit it was started with"
    );
    assert!(
        !environ(allowed.pid())
            .iter()
            .any(|e| e.starts_with("PARLEY_PASSPHRASE=")),
        "the passphrase leaves the environment either way"
    );
    drop(rv);
}

#[test]
fn the_daemon_is_not_dumpable_so_its_user_s_other_processes_cannot_read_its_memory() {
    // /proc/<pid>/environ, mem, … belong to the process's user while it is dumpable and to
    // root once it is not: seen from outside only when it runs as another user than root.
    if !is_root() {
        tools::skip("this test runs the daemon as nobody: run the tests as root");
        return;
    }
    if !tools::tool_available("setpriv", "util-linux") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let rv = Rendezvous::start(&dir.path().join("rendezvous"));
    let alice = dir.path().join("alice");
    fs::create_dir(&alice).unwrap();
    std::os::unix::fs::chown(&alice, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = enroll(&rv, &alice, "alice", &AS_NOBODY);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut hardened = Daemon::options(&alice)
        .via(&AS_NOBODY)
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .log(Log::Inherit)
        .start();
    assert_eq!(
        proc_owner(hardened.pid()),
        0,
        "not dumpable: its /proc files are root's, not nobody's"
    );
    // Run again without the passphrase although nobody may not enter the folders of its path.
    assert!(
        !environ(hardened.pid())
            .iter()
            .any(|e| e.starts_with("PARLEY_PASSPHRASE=")),
        "the passphrase leaves the environment of a daemon run as another user"
    );
    assert!(hardened.terminate().success());
    let allowed = Daemon::options(&alice)
        .via(&AS_NOBODY)
        .env("PARLEY_PASSPHRASE", PASSPHRASE)
        .env("PARLEY_ALLOW_CORE_DUMPS", "1")
        .log(Log::Inherit)
        .start();
    assert_eq!(
        proc_owner(allowed.pid()),
        NOBODY,
        "with PARLEY_ALLOW_CORE_DUMPS=1 it stays dumpable"
    );
    drop(rv);
}
