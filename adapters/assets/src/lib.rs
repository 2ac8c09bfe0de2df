//! Shell completions (bash, zsh, fish) and manual pages of a Parley program, generated from the
//! program's own clap definition, so that they cannot drift from what it accepts.
//!
//! Each binary writes them when started with `PARLEY_WRITE_ASSETS=DIR` in its environment
//! (and does nothing else), which `scripts/package.sh` does with the freshly built binary.
//! Nothing is generated during a normal build, and no hidden flag or subcommand shows in the
//! completions or the pages.
//!
//! **Architecture invariant:** knows clap and the file system only; nothing of Parley's
//! stores, keys or protocols.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The environment variable that makes a Parley program write its assets into the folder it
/// names, then exit.
pub const VARIABLE: &str = "PARLEY_WRITE_ASSETS";

/// Writes the assets of `command` into `dir` and says how it went as an exit code: 0, or 1
/// with one sentence on stderr.
#[must_use]
pub fn run(command: clap::Command, dir: &Path) -> std::process::ExitCode {
    match write(command, dir) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes the completions and manual pages of `command` into `dir` (made if missing) and
/// returns the files written.
///
/// The names are those the Debian layout expects once installed: `bash/NAME`
/// (`/usr/share/bash-completion/completions/`), `zsh/_NAME`
/// (`/usr/share/zsh/vendor-completions/`), `fish/NAME.fish`
/// (`/usr/share/fish/vendor_completions.d/`), and `man/NAME.1` plus `man/NAME-SUBCOMMAND.1`
/// for every subcommand that is not hidden (`/usr/share/man/man1/`).
///
/// # Errors
///
/// The I/O error of the first file or folder that could not be made, with its path.
pub fn write(command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, io::Error> {
    let name = command.get_name().to_owned();
    let mut written = Vec::new();
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let folder = dir.join(sub);
        make_dir(&folder)?;
        let path = folder.join(file);
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), &name, &mut out);
        fs::write(&path, out).map_err(|e| at(&path, e))?;
        written.push(path);
    }
    let man = dir.join("man");
    make_dir(&man)?;
    clap_mangen::generate_to(command, &man).map_err(|e| at(&man, e))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)
        .map_err(|e| at(&man, e))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "1"))
        .collect();
    pages.sort();
    written.extend(pages);
    Ok(written)
}

fn make_dir(path: &Path) -> Result<(), io::Error> {
    fs::create_dir_all(path).map_err(|e| at(path, e))
}

/// The error with the path it concerns, in one sentence.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot write {}: {error}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    /// A tool.
    #[derive(Parser)]
    #[command(name = "tool", version)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Send something.
        Send,
        /// Show the safety number.
        SafetyNumber,
        /// Not for people.
        #[command(hide = true)]
        Secret,
    }

    #[test]
    fn writes_each_shell_and_a_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let written = write(<Cli as clap::CommandFactory>::command(), dir.path())
            .expect("the files are written");
        let names: Vec<String> = written
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .expect("inside")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "bash/tool",
                "zsh/_tool",
                "fish/tool.fish",
                "man/tool-safety-number.1",
                "man/tool-send.1",
                "man/tool.1",
            ]
        );
        let bash = fs::read_to_string(dir.path().join("bash/tool")).expect("bash");
        assert!(bash.contains("safety-number"));
        let _ = Cli::try_parse_from(["tool", "send"]).expect("parses");
    }

    #[test]
    fn says_which_path_it_could_not_write() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let file = dir.path().join("file");
        fs::write(&file, b"").expect("a file");
        let error = write(<Cli as clap::CommandFactory>::command(), &file)
            .expect_err("a file is no folder");
        assert!(error.to_string().contains("cannot write"), "{error}");
    }
}
