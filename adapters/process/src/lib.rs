//! What a Parley program does to its own process before anything else, so that what it holds
//! stays its user's: both binaries (`parley`, `parley-rendezvous`) call [`harden`] first
//! thing in `main`, and [`private_tree`] on their data folder before they open anything in it.
//!
//! - **Private files.** The file-creation mask is `077`: every file and folder the process
//!   creates from then on — sled's databases, the mailbox's entries, certificates, saved
//!   attachments — is its user's only, whatever the library that creates it asks for.
//! - **A private folder.** [`private_tree`] makes a folder `0700` and takes the group's and
//!   others' permission bits off everything in it, so that a folder made before (by an older
//!   release, by `mkdir -p` in a Dockerfile, by hand) is as private as a new one.
//! - **No core dumps.** The process is made non-dumpable (`PR_SET_DUMPABLE` 0: no core file,
//!   and its `/proc/<pid>` files — memory, environment — are root's, not readable by other
//!   processes of the same user) and its core-file limit is 0, soft and hard. A core dump of a
//!   daemon holds its keys, the store key and the text of messages. `PARLEY_ALLOW_CORE_DUMPS=1`
//!   leaves both as they were, for debugging a crash.
//!
//! **Architecture invariant:** acts on the process and the file system only; knows nothing of
//! Parley's stores, keys or protocols.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::stat::{Mode, umask};

/// The variable that, set to `1`, leaves core dumps as the environment set them.
pub const ALLOW_CORE_DUMPS: &str = "PARLEY_ALLOW_CORE_DUMPS";

/// What [`harden`] did about core dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreDumps {
    /// Off: not dumpable, core-file limit 0.
    Off,
    /// Left as they were, because `PARLEY_ALLOW_CORE_DUMPS=1`.
    Allowed,
    /// Asked off, but the kernel refused (the sentence says what); a warning to log.
    Failed(String),
}

/// Sets the file-creation mask to `077` and turns core dumps off unless
/// `PARLEY_ALLOW_CORE_DUMPS=1`. Call it first in `main`, before any thread or file exists.
/// Never fails: a refusal by the kernel is reported, for the caller to log.
pub fn harden() -> CoreDumps {
    umask(Mode::from_bits_truncate(0o077));
    if std::env::var_os(ALLOW_CORE_DUMPS).is_some_and(|v| v == "1") {
        return CoreDumps::Allowed;
    }
    let dumpable = nix::sys::prctl::set_dumpable(false);
    let limit = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    match (dumpable, limit) {
        (Ok(()), Ok(())) => CoreDumps::Off,
        (Err(e), _) => CoreDumps::Failed(format!(
            "cannot make the process non-dumpable ({e}); a crash may leave a core dump holding keys"
        )),
        (_, Err(e)) => CoreDumps::Failed(format!(
            "cannot set the core-file limit to 0 ({e}); a crash may leave a core dump holding keys"
        )),
    }
}

/// A folder or file that could not be made private.
#[derive(Debug, thiserror::Error)]
#[error("cannot make {} private: {source}; the folder must be this user's own", path.display())]
pub struct Error {
    /// The folder or file.
    pub path: PathBuf,
    /// The operating system's reason.
    #[source]
    pub source: std::io::Error,
}

/// Creates `dir` (and its parents) when missing, makes it `0700`, and takes the group's and
/// others' permission bits off every file and folder in it, at any depth (a `0644` file becomes
/// `0600`, a `0755` folder `0700`). Symbolic links are neither followed nor changed. The walk
/// reads every entry once, so it costs a `stat` per file at start.
///
/// # Errors
/// [`Error`] for the first entry that cannot be read or changed (one owned by another user,
/// say).
pub fn private_tree(dir: &Path) -> Result<(), Error> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| Error { path, source }
    };
    fs::create_dir_all(dir).map_err(fail(dir))?;
    restrict(dir, 0o700).map_err(fail(dir))?;
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).map_err(fail(&folder))? {
            let entry = entry.map_err(fail(&folder))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(fail(&path))?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            let private = mode & !0o077;
            if private != mode {
                restrict(&path, private).map_err(fail(&path))?;
            }
            if meta.is_dir() {
                folders.push(path);
            }
        }
    }
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("the path exists")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn an_open_tree_becomes_private_and_links_are_left_alone() {
        let root = tempfile::tempdir().expect("a temporary folder");
        let outside = root.path().join("outside.txt");
        fs::write(&outside, "not ours").expect("write");
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).expect("chmod");
        let data = root.path().join("data");
        fs::create_dir(&data).expect("mkdir");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).expect("chmod");
        let nested = data.join("registry").join("deep");
        fs::create_dir_all(&nested).expect("mkdir");
        for (file, m) in [
            (data.join("ca-cert.pem"), 0o644),
            (nested.join("db"), 0o664),
            (data.join("tool"), 0o755),
            (data.join("secret"), 0o600),
        ] {
            fs::write(&file, "x").expect("write");
            fs::set_permissions(&file, fs::Permissions::from_mode(m)).expect("chmod");
        }
        fs::set_permissions(data.join("registry"), fs::Permissions::from_mode(0o775))
            .expect("chmod");
        std::os::unix::fs::symlink(&outside, data.join("link")).expect("symlink");

        private_tree(&data).expect("made private");

        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("registry")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&data.join("ca-cert.pem")), 0o600);
        assert_eq!(mode(&nested.join("db")), 0o600);
        assert_eq!(mode(&data.join("tool")), 0o700);
        assert_eq!(mode(&data.join("secret")), 0o600);
        assert_eq!(
            mode(&outside),
            0o644,
            "a link's target is not ours to change"
        );
    }

    #[test]
    fn a_missing_folder_is_created_private() {
        let root = tempfile::tempdir().expect("a temporary folder");
        let data = root.path().join("a").join("b");
        private_tree(&data).expect("created");
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn a_file_where_the_folder_should_be_is_one_sentence() {
        let root = tempfile::tempdir().expect("a temporary folder");
        let file = root.path().join("data");
        fs::write(&file, "x").expect("write");
        let error = private_tree(&file).expect_err("not a folder");
        assert!(
            error.to_string().starts_with("cannot make ")
                && error.to_string().contains("data private"),
            "{error}"
        );
    }
}
