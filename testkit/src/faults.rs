//! Faults injected into a real process: an `LD_PRELOAD` library (`faults/sync_fault.c` in
//! this crate) that makes every fsync, fdatasync, sync_file_range and msync fail with EIO
//! while a flag file exists.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The environment variable that names the flag file: while the file exists, syncs fail.
pub const SYNC_FAULT_FLAG: &str = "PARLEY_FAULT_SYNC";

/// Builds the sync-fault library into `dir` with `cc`; `None` when there is no C compiler.
pub fn sync_fault_library(dir: &Path) -> Option<PathBuf> {
    let library = dir.join("sync_fault.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/sync_fault.c");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(source)
        .arg("-ldl")
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(library)
}
