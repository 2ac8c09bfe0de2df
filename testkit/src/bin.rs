//! The workspace's binaries, found next to the test executable.
//!
//! `env!("CARGO_BIN_EXE_…")` exists only in a crate's own tests, so the kit looks for a binary
//! where cargo puts it: a test runs as `<target>/<profile>/deps/<test>-<hash>`, the binaries
//! sit in `<target>/<profile>/`. Cargo builds a crate's own binaries before its integration
//! tests; another crate's binaries are there after `cargo build --workspace --bins` (or any
//! `cargo test --workspace`, which builds every binary).

use std::path::PathBuf;

/// The path of the workspace binary `name` (`parley`, `parley-rendezvous`, …).
///
/// # Panics
/// When it has not been built, saying how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in <target>/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` (test.sh does) before this test",
        path.display()
    );
    path
}
