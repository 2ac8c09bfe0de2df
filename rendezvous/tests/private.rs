//! What the rendezvous does to its own process and folder, seen from outside: a data folder
//! made before (as a Dockerfile's `mkdir -p /data` makes it) and everything in it become its
//! user's only at start, what it writes later is private too, and it cannot dump core unless
//! `PARLEY_ALLOW_CORE_DUMPS=1` says so.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use parley_testkit::procfs::{core_limit, mode, open_to_others, proc_owner};
use parley_testkit::{Log, Rendezvous, is_root, tools};

/// The user the dumpability check runs the rendezvous as (`nobody`).
const NOBODY: u32 = 65534;

/// The binary on `data`, its warnings on stderr.
fn start(data: &Path) -> Rendezvous {
    Rendezvous::options(data)
        .env("RUST_LOG", "warn,rustls=error")
        .log(Log::Inherit)
        .start()
}

/// Asserts nothing under `dir` is open to the group or others.
fn assert_private(dir: &Path, what: &str) {
    let open = open_to_others(dir);
    assert!(open.is_empty(), "{what}: open to others: {open:?}");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[test]
fn a_data_folder_made_before_becomes_private_and_so_does_everything_written_in_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let old = data.join("old");
    fs::create_dir_all(&old).expect("mkdir");
    chmod(&data, 0o755);
    chmod(&old, 0o775);
    for (file, m) in [(data.join("notes.txt"), 0o644), (old.join("db"), 0o664)] {
        fs::write(&file, "left by someone before").expect("write");
        chmod(&file, m);
    }
    let server = start(&data);
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("notes.txt")), 0o600);
    assert_eq!(mode(&old), 0o700);
    assert_eq!(mode(&old.join("db")), 0o600);
    assert_private(&data, "after start");
    common::enroll_with_client(&server, "alice");
    common::enroll_with_client(&server, "bob");
    drop(server);
    assert!(data.join("registry").is_dir() && data.join("ca-cert.pem").is_file());
    assert_private(
        &data,
        "what the rendezvous wrote (CA, keys, registry, mailbox)",
    );
}

#[test]
fn the_rendezvous_cannot_dump_core_unless_asked_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hardened = start(&dir.path().join("hardened"));
    assert_eq!(
        core_limit(hardened.pid()),
        ("0".to_owned(), "0".to_owned()),
        "core files limited to 0 bytes, soft and hard"
    );
    let allowed = Rendezvous::options(&dir.path().join("allowed"))
        .env("PARLEY_ALLOW_CORE_DUMPS", "1")
        .log(Log::Inherit)
        .start();
    assert_eq!(
        core_limit(allowed.pid()),
        core_limit(std::process::id()),
        "PARLEY_ALLOW_CORE_DUMPS=1 keeps the limit it was started with"
    );
}

#[test]
fn the_rendezvous_is_not_dumpable_so_its_user_s_other_processes_cannot_read_its_memory() {
    // /proc/<pid>/environ, mem, … belong to the process's user while it is dumpable and to
    // root once it is not: seen from outside only when it runs as another user than root.
    if !is_root() || !tools::tool_available("setpriv", "util-linux") {
        if !is_root() {
            tools::skip("this test runs the rendezvous as nobody: run the tests as root");
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    chmod(dir.path(), 0o755);
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let folder = |name: &str| {
        let data = dir.path().join(name);
        fs::create_dir(&data).expect("mkdir");
        std::os::unix::fs::chown(&data, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
        data
    };
    let hardened = Rendezvous::options(&folder("hardened"))
        .via(&as_nobody)
        .log(Log::Inherit)
        .start();
    assert_eq!(
        proc_owner(hardened.pid()),
        0,
        "not dumpable: its /proc files are root's, not nobody's"
    );
    let allowed = Rendezvous::options(&folder("allowed"))
        .via(&as_nobody)
        .env("PARLEY_ALLOW_CORE_DUMPS", "1")
        .log(Log::Inherit)
        .start();
    assert_eq!(
        proc_owner(allowed.pid()),
        NOBODY,
        "with PARLEY_ALLOW_CORE_DUMPS=1 it stays dumpable"
    );
}
