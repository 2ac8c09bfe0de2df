//! Opening the encrypted store: with a passphrase (from `PARLEY_PASSPHRASE`, else asked on the
//! terminal), or with the key file where no passphrase is given.
//!
//! A process's environment can be read, for as long as it runs, by the other processes of its
//! user (`/proc/<pid>/environ`, which shows the environment the program was started with
//! whatever it changes later). So the daemon does not keep `PARLEY_PASSPHRASE` there:
//! [`hide_passphrase`] runs the same program again in the same process (same id, same
//! arguments), with the variable taken out of its environment and the passphrase handed over a
//! pipe on standard input, marked by `PARLEY_PASSPHRASE_ON_STDIN=1`.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parley_peer::Home;
use parley_store::{Error, KeySource, Passphrase, Store, Unlock};

/// The variable the passphrase may be given in.
const PASSPHRASE: &str = "PARLEY_PASSPHRASE";
/// Set to `1`: the passphrase comes on standard input (its bytes, one final `\n` dropped).
const PASSPHRASE_ON_STDIN: &str = "PARLEY_PASSPHRASE_ON_STDIN";
/// The longest passphrase handed over a pipe: well within what a pipe holds before anyone
/// reads it.
const MAX_PASSPHRASE_BYTES: usize = 16 * 1024;
/// The running program, as the kernel knows it.
const SELF_EXE: &str = "/proc/self/exe";

/// Takes `PARLEY_PASSPHRASE` out of this process's environment by running the program again
/// in its place (`exec`: the same process id and arguments) without it, the passphrase on a
/// pipe as standard input. Call it before any thread exists. Returns only when there is nothing
/// to hide (no passphrase in the environment, an empty one, or this is already the program run
/// again), or with a warning when the program could not be run again: the passphrase then
/// stays in the environment.
pub fn hide_passphrase() -> Option<String> {
    if on_stdin() {
        return None;
    }
    let passphrase = std::env::var_os(PASSPHRASE).filter(|p| !p.is_empty())?;
    if passphrase.len() > MAX_PASSPHRASE_BYTES {
        return Some(format!(
            "{PASSPHRASE} is longer than {MAX_PASSPHRASE_BYTES} bytes, so it stays in the \
             daemon's environment"
        ));
    }
    let failed = |e: std::io::Error| {
        Some(format!(
            "cannot take {PASSPHRASE} out of the daemon's environment ({e}); it stays there, \
             readable by this user's other processes"
        ))
    };
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return failed(e),
    };
    let mut bytes = std::os::unix::ffi::OsStringExt::into_vec(passphrase);
    bytes.push(b'\n');
    let written = writer.write_all(&bytes);
    // The passphrase's copy for the pipe is not needed any more.
    bytes.fill(0);
    drop(writer);
    if let Err(e) = written {
        return failed(e);
    }
    // The running image itself, through the kernel's link: it needs no search permission on
    // the folders of its path (a daemon run as another user from a folder only its owner may
    // enter) and is the same program even when a newer one has replaced the file meanwhile.
    let program = match Path::new(SELF_EXE).try_exists() {
        Ok(true) => PathBuf::from(SELF_EXE),
        _ => match std::env::current_exe() {
            Ok(program) => program,
            Err(e) => return failed(e),
        },
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("parley"));
    let e = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .env_remove(PASSPHRASE)
        .env(PASSPHRASE_ON_STDIN, "1")
        .stdin(reader)
        .exec();
    failed(e)
}

fn on_stdin() -> bool {
    std::env::var_os(PASSPHRASE_ON_STDIN).is_some_and(|v| v == "1")
}

/// The passphrase given to this process, if any: on standard input when
/// `PARLEY_PASSPHRASE_ON_STDIN=1`, else in `PARLEY_PASSPHRASE`.
fn given_passphrase() -> Result<Option<String>> {
    let passphrase = if on_stdin() {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_PASSPHRASE_BYTES as u64 + 2)
            .read_to_end(&mut bytes)
            .context("cannot read the passphrase from standard input")?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        if bytes.len() > MAX_PASSPHRASE_BYTES {
            return Err(crate::Usage(format!(
                "the passphrase on standard input is longer than {MAX_PASSPHRASE_BYTES} bytes"
            ))
            .into());
        }
        let passphrase = String::from_utf8(bytes)
            .map_err(|_| crate::Usage("the passphrase on standard input is not UTF-8".into()))?;
        if passphrase.is_empty() {
            return Err(crate::Usage(format!(
                "{PASSPHRASE_ON_STDIN} is set but standard input holds no passphrase"
            ))
            .into());
        }
        passphrase
    } else {
        match std::env::var(PASSPHRASE) {
            Ok(passphrase) => passphrase,
            Err(_) => return Ok(None),
        }
    };
    if passphrase.is_empty() {
        return Err(crate::Usage(
            "PARLEY_PASSPHRASE is set but empty; set a passphrase, or unset it to keep the \
             store's key in a file"
                .into(),
        )
        .into());
    }
    Ok(Some(passphrase))
}

/// Opens the store of `home`, creating it (with a passphrase when one is given) if needed.
///
/// # Errors
/// A wrong or missing passphrase, a store in use, or an unreadable store, each as one sentence.
pub fn open_store(home: &Home) -> Result<Store> {
    if let Some(passphrase) = given_passphrase()? {
        return Ok(home.open(Unlock::Passphrase(Passphrase::new(passphrase)))?);
    }
    let terminal = std::io::stdin().is_terminal();
    if terminal && !home.has_store() {
        let chosen = rpassword::prompt_password(
            "choose a passphrase for this device's message store (empty: keep its key in a file): ",
        )
        .context("cannot read the passphrase")?;
        if chosen.is_empty() {
            return Ok(home.open(Unlock::KeyFile)?);
        }
        let again = rpassword::prompt_password("the same passphrase again: ")
            .context("cannot read the passphrase")?;
        if again != chosen {
            return Err(
                crate::Usage("the two passphrases differ; nothing was created".into()).into(),
            );
        }
        return Ok(home.open(Unlock::Passphrase(Passphrase::new(chosen)))?);
    }
    match home.open(Unlock::KeyFile) {
        Err(Error::PassphraseRequired) if terminal => {
            let passphrase = rpassword::prompt_password("passphrase for the message store: ")
                .context("cannot read the passphrase")?;
            Ok(home.open(Unlock::Passphrase(Passphrase::new(passphrase)))?)
        }
        other => Ok(other?),
    }
}

/// The warning to give once at start when the store's key lies in a file next to it.
#[must_use]
pub fn key_file_warning(home: &Home, store: &Store) -> Option<String> {
    (store.key_source() == KeySource::KeyFile).then(|| {
        format!(
            "the message store's key is kept in a file next to it ({}); anyone who can read \
             this folder can read your messages. Set PARLEY_PASSPHRASE (or enroll in a \
             terminal) to protect it with a passphrase instead.",
            home.key_file().display()
        )
    })
}
