//! One network namespace by name, and the checked way to run a command: a command that fails
//! panics, saying which command it was and what it printed on stderr.

use std::{
    ffi::OsStr,
    io::Write,
    process::{Command, Output, Stdio},
};

/// A network namespace of a [`Lab`](super::Lab), known by its name. Cloning copies the name;
/// the namespace itself belongs to the lab and is deleted when the lab drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub(super) fn new(name: String) -> Self {
        Self { name }
    }

    /// Its name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What runs a program inside it, `ip netns exec <name>`, for the `via(..)` of the test
    /// kit's process options ([`Rendezvous::options`](crate::Rendezvous::options),
    /// [`Daemon::options`](crate::Daemon::options)).
    pub fn launcher(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(str::to_owned)
            .to_vec()
    }

    /// A command that runs `program` inside it, to add arguments to and start.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args` (program first) inside it and returns what it printed on stdout.
    ///
    /// # Panics
    /// When `args` is empty, or the command cannot start or exits unsuccessfully (the message
    /// names the command and holds its stderr).
    pub fn run(&self, args: &[&str]) -> String {
        self.run_with_input(args, "")
    }

    /// Like [`run`](Self::run), with `input` written to the command's stdin.
    ///
    /// # Panics
    /// As [`run`](Self::run).
    pub fn run_with_input(&self, args: &[&str], input: &str) -> String {
        let (program, rest) = args
            .split_first()
            .expect("a command to run in a namespace names its program");
        let mut cmd = self.command(program);
        cmd.args(rest);
        checked(cmd, input)
    }
}

/// Runs `ip args` in the namespace of the test process (where namespaces are added and
/// deleted and veth pairs are made) and returns its stdout.
///
/// # Panics
/// As [`Namespace::run`].
pub(super) fn ip(args: &[&str]) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    checked(cmd, "")
}

/// Runs `cmd` with `input` on its stdin, and returns its stdout.
///
/// # Panics
/// When it cannot start or exits unsuccessfully, naming the command and quoting its stderr.
pub(super) fn checked(cmd: Command, input: &str) -> String {
    let out = output(cmd, input);
    assert!(
        out.status.success(),
        "`{}` failed ({}): {}",
        shown(&out.cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a finished command left: its status and output, and the command line for messages.
pub(super) struct Finished {
    pub(super) cmd: Command,
    pub(super) status: std::process::ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Runs `cmd` with `input` on its stdin, successful or not.
///
/// # Panics
/// When it cannot be started at all.
pub(super) fn output(mut cmd: Command, input: &str) -> Finished {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("`{}` cannot start: {e}", shown(&cmd)));
    let mut stdin = child
        .stdin
        .take()
        .expect("stdin was made a pipe just above");
    // A program that exits without reading its input closes the pipe; its status tells.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{}` cannot be waited for: {e}", shown(&cmd)));
    Finished {
        cmd,
        status,
        stdout,
        stderr,
    }
}

/// `cmd` as a shell would show it.
pub(super) fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
