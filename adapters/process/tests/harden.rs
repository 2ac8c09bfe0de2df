//! `harden` on a real process (this test's own, which is why it is alone in its binary): the
//! file-creation mask, the dumpable flag and the core-file limit afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;

use nix::sys::resource::{Resource, getrlimit};
use nix::sys::stat::{Mode, umask};
use parley_process::{ALLOW_CORE_DUMPS, CoreDumps, harden};

#[test]
fn after_harden_new_files_are_private_and_no_core_dump_can_be_written() {
    assert!(
        std::env::var_os(ALLOW_CORE_DUMPS).is_none(),
        "run this test without {ALLOW_CORE_DUMPS}"
    );
    assert_eq!(harden(), CoreDumps::Off);

    let previous = umask(Mode::from_bits_truncate(0o077));
    assert_eq!(previous.bits() & 0o777, 0o077, "the mask harden set");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("new");
    std::fs::write(&file, "x").expect("write");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a file made with the default 0666 request");
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).expect("mkdir");
    let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "a folder made with the default 0777 request");

    assert!(
        !nix::sys::prctl::get_dumpable().expect("PR_GET_DUMPABLE"),
        "the process is not dumpable"
    );
    assert_eq!(
        getrlimit(Resource::RLIMIT_CORE).expect("getrlimit"),
        (0, 0),
        "core files are limited to 0 bytes, soft and hard"
    );
}
