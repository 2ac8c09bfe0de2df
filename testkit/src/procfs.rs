//! What `/proc` and the file system say about a running program from the outside: its
//! core-file limit, its environment, whether it is dumpable, and which files of a folder are
//! open to the group or to others.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

/// The `Max core file size` row of `/proc/<pid>/limits`: `(soft, hard)`, as written there
/// (`"0"`, `"unlimited"`, …).
///
/// # Panics
/// When the file cannot be read or has no such row.
pub fn core_limit(pid: u32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/limits: {e}"));
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max core file size"))
        .map(|row| {
            let mut words = row.split_whitespace();
            let soft = words.next().unwrap_or_default().to_owned();
            let hard = words.next().unwrap_or_default().to_owned();
            (soft, hard)
        })
        .unwrap_or_else(|| panic!("no core-file row in /proc/{pid}/limits:\n{limits}"))
}

/// The environment `pid` was started with (`/proc/<pid>/environ`: what the program was
/// executed with, whatever it changed since), one `NAME=value` per entry.
///
/// # Panics
/// When it cannot be read (another user's process, or one that is not dumpable, read by a
/// user other than root).
pub fn environ(pid: u32) -> Vec<String> {
    let bytes = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/environ: {e}"));
    bytes
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// Who owns `/proc/<pid>/environ`: the process's user while it is dumpable, root once it made
/// itself non-dumpable (`PR_SET_DUMPABLE` 0), whatever user it runs as.
///
/// # Panics
/// When the file cannot be looked at.
pub fn proc_owner(pid: u32) -> u32 {
    fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot look at /proc/{pid}/environ: {e}"))
        .uid()
}

/// Every file and folder under `dir` (and `dir` itself) that its group or others may use in
/// any way, with its mode; symbolic links are not followed.
///
/// # Panics
/// When a folder cannot be read.
pub fn open_to_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut open = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue; // Removed while we looked (a temporary file).
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            continue;
        }
        if mode & 0o077 != 0 {
            open.push((path.clone(), mode));
        }
        if meta.is_dir() {
            let entries = fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    open
}

/// The mode bits of `path` (permissions, setuid/setgid/sticky).
///
/// # Panics
/// When it does not exist.
pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
